"""Grafana provisioning (data source, dashboards provider, dashboard JSON files)
and pushing the dashboards to a running Grafana through its HTTP API.

``build(out)`` writes::

    out/provisioning/datasources/lianwatch.yaml   the ClickHouse data source
    out/provisioning/dashboards/lianwatch.yaml    a file provider for out/dashboards
    out/dashboards/lw-*.json                      5 dashboards × (zh, en)

The data source uses the native protocol with host, port, user and database
of a :class:`~lianwatch.sinks.server.ClickHouseConfig` (the command fills it from
``LIANWATCH_CH_*``); the password is never written: Grafana reads it from its own
environment when it provisions (``$LIANWATCH_CH_PASSWORD``, Grafana's env
interpolation).

What grafana-client raises while pushing never leaves this module:
:func:`grafana_errors` turns it into a :class:`~lianwatch.errors.GrafanaError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lianwatch.errors import BuildError, GrafanaError

from .definitions import DASHBOARDS
from .grafana import (DATASOURCE_TYPE, DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID, LANGS, build_all,
                      check_dashboards)

__all__ = ["PASSWORD_ENV", "datasource", "datasource_yaml", "provider_yaml", "build", "apply",
           "grafana_errors", "BuildError"]

#: the variable Grafana's process reads the ClickHouse password from
PASSWORD_ENV = "LIANWATCH_CH_PASSWORD"
DATASOURCE_NAME = "lianwatch ClickHouse"


def _q(s: Any) -> str:
    """A YAML scalar: JSON text is valid YAML (double-quoted flow scalar)."""
    if isinstance(s, bool):
        return "true" if s else "false"
    if isinstance(s, (int, float)):
        return json.dumps(s)
    return json.dumps(str(s), ensure_ascii=False)


def datasource(ch: Any, *, password: str | None = None) -> dict[str, Any]:
    """The data source as Grafana's API takes it (``password`` only for ``apply``)."""
    ds: dict[str, Any] = {
        "name": DATASOURCE_NAME, "uid": DATASOURCE_UID, "type": DATASOURCE_TYPE, "access": "proxy",
        "isDefault": False, "editable": False,
        "jsonData": {"host": ch.host, "port": int(ch.port), "protocol": "native", "secure": bool(ch.secure),
                     "username": ch.user, "defaultDatabase": ch.database,
                     "tlsSkipVerify": not bool(ch.verify), "dialTimeout": int(ch.connect_timeout),
                     "queryTimeout": int(ch.send_receive_timeout)},
    }
    if password is not None:
        ds["secureJsonData"] = {"password": password}
    return ds


def datasource_yaml(ch: Any) -> str:
    ds = datasource(ch)
    j = ds["jsonData"]
    lines = [
        "# lianwatch: the ClickHouse alert store for Grafana (grafana-clickhouse-datasource 4.x).",
        f"# The password comes from Grafana's environment: set {PASSWORD_ENV} for the Grafana process.",
        "apiVersion: 1",
        "datasources:",
        f"  - name: {_q(ds['name'])}",
        f"    uid: {_q(ds['uid'])}",
        f"    type: {_q(ds['type'])}",
        "    access: proxy",
        "    editable: false",
        "    jsonData:",
        *[f"      {k}: {_q(v)}" for k, v in j.items()],
        "    secureJsonData:",
        f"      password: \"${{{PASSWORD_ENV}}}\"",
        "",
    ]
    return "\n".join(lines)


def provider_yaml(dashboards_path: str) -> str:
    return "\n".join([
        "# lianwatch dashboards, provisioned from JSON files (5 dashboards, Chinese and English).",
        "apiVersion: 1",
        "providers:",
        "  - name: \"lianwatch\"",
        "    orgId: 1",
        f"    folder: {_q(FOLDER_TITLE)}",
        f"    folderUid: {_q(FOLDER_UID)}",
        "    type: file",
        "    disableDeletion: false",
        "    allowUiUpdates: false",
        "    updateIntervalSeconds: 60",
        "    options:",
        f"      path: {_q(dashboards_path)}",
        "      foldersFromFilesStructure: false",
        "",
    ])


def build(out: str | Path, *, ch: Any, dashboards_path: str | None = None,
          database: str | None = None, langs: Iterable[str] = LANGS,
          thresholds: Any = None) -> list[Path]:
    """Write provisioning files and dashboard JSON under ``out``; return the files written.

    ``ch``: the ClickHouse server Grafana reads (a ClickHouseConfig); ``thresholds``: the
    panels' thresholds from the rules in force (default: the contract's)."""
    out = Path(out)
    dash_dir = out / "dashboards"
    built = build_all(DASHBOARDS, database=database or ch.database, langs=langs, thresholds=thresholds)
    errs = check_dashboards(built, [datasource(ch)])
    if errs:
        raise BuildError("; ".join(errs))
    written = []
    (out / "provisioning" / "datasources").mkdir(parents=True, exist_ok=True)
    (out / "provisioning" / "dashboards").mkdir(parents=True, exist_ok=True)
    dash_dir.mkdir(parents=True, exist_ok=True)
    p = out / "provisioning" / "datasources" / "lianwatch.yaml"
    p.write_text(datasource_yaml(ch), encoding="utf-8")
    written.append(p)
    p = out / "provisioning" / "dashboards" / "lianwatch.yaml"
    p.write_text(provider_yaml(dashboards_path or str(dash_dir.resolve())), encoding="utf-8")
    written.append(p)
    for d in built:
        p = dash_dir / f"{d['uid']}.json"
        p.write_text(json.dumps(d, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written.append(p)
    return written


@contextmanager
def grafana_errors(url: str) -> Iterator[None]:
    """The Grafana boundary: grafana-client's ``GrafanaException`` tree (HTTP refusals,
    timeouts) and transport errors (``OSError``: niquests' and the socket's) → GrafanaError."""
    from grafana_client.client import GrafanaException

    try:
        yield
    except GrafanaException as exc:
        status = getattr(exc, "status_code", None) or None
        what = f"HTTP {status} {exc}" if status else str(exc)
        raise GrafanaError(f"Grafana {url}: {what}", status=status) from exc
    except OSError as exc:
        raise GrafanaError(f"Grafana {url}: {type(exc).__name__}: {exc}") from exc


def _absent(exc: BaseException) -> bool:
    return isinstance(exc, GrafanaError) and exc.status == 404


def apply(url: str, *, ch: Any, token: str | None = None, with_datasource: bool = False,
          password: str | None = None, database: str | None = None,
          langs: Iterable[str] = LANGS, timeout: float = 10.0, log=print,
          thresholds: Any = None) -> list[str]:
    """Push the dashboards to Grafana at ``url`` (folder created if missing, dashboards
    overwritten by uid). ``token``: a service-account token. ``with_datasource``: also
    create or update the data source for ``ch`` with ``password`` (default: ``ch``'s).
    Returns the dashboard uids pushed; GrafanaError when Grafana cannot be used."""
    from grafana_client import GrafanaApi

    api = GrafanaApi.from_url(url, credential=token or None, timeout=timeout)
    built = build_all(DASHBOARDS, database=database or ch.database, langs=langs, thresholds=thresholds)
    errs = check_dashboards(built, [datasource(ch)])
    if errs:
        raise BuildError("; ".join(errs))

    if with_datasource:
        if password is None and getattr(ch, "password", None) is not None:
            password = ch.password.get_secret_value()
        ds = datasource(ch, password=password or "")
        try:
            with grafana_errors(url):
                api.datasource.get_datasource_by_uid(DATASOURCE_UID)
        except GrafanaError as exc:
            if not _absent(exc):
                raise
            with grafana_errors(url):
                api.datasource.create_datasource(ds)
            log(f"data source {DATASOURCE_UID}: created")
        else:
            with grafana_errors(url):
                api.datasource.update_datasource_by_uid(DATASOURCE_UID, ds)
            log(f"data source {DATASOURCE_UID}: updated")

    try:
        with grafana_errors(url):
            api.folder.get_folder(FOLDER_UID)
        log(f"folder {FOLDER_UID}: exists")
    except GrafanaError as exc:
        if not _absent(exc):
            raise
        with grafana_errors(url):
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        log(f"folder {FOLDER_UID}: created")

    pushed = []
    for d in built:
        with grafana_errors(url):
            api.dashboard.update_dashboard({"dashboard": {**d, "id": None},
                                            "folderUid": FOLDER_UID, "overwrite": True,
                                            "message": "lianwatch dashboards apply"})
        pushed.append(d["uid"])
        log(f"dashboard {d['uid']}: {d['title']}")
    return pushed
