"""What the commands build from the settings: the store, the reference data, the notifier.

The library takes what it needs through its constructors (a backend and a
path, a :class:`~lianwatch.sinks.server.ClickHouseConfig`, a provider, a zone);
this module is where the environment's settings become those objects, so no
library module reads the environment.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Any

from lianwatch.errors import ConfigError, StoreError
from lianwatch.settings import (
    AliyunSmsSettings, ClickHouseSettings, NotifySettings, Settings, TencentSmsSettings, read,
)

__all__ = ["settings", "open_configured_store", "load_reference_dir", "configured_policies",
           "make_notifier"]


def settings(**values: Any) -> Settings:
    """The ``LIANWATCH_*`` settings (``values`` override them); ConfigError if unusable."""
    return read(Settings, **values)


def open_configured_store(s: Settings, *, path: str | Path | None = None, migrate: bool = True):
    """The alert store the settings name, migrated unless ``migrate`` is False.

    ``LIANWATCH_STORE=chdb``: the embedded store in ``path`` (default
    ``DATA_DIR/store``); ``clickhouse``: the server of ``LIANWATCH_CH_*``.
    """
    from lianwatch.sinks.store import connect, open_store

    if s.store == "none":
        raise ConfigError("LIANWATCH_STORE=none: this command needs the alert store")
    opener = open_store if migrate else connect
    try:
        if s.store == "clickhouse":
            return opener("clickhouse", clickhouse=read(ClickHouseSettings))
        return opener("chdb", path=path or Path(s.data_dir) / "store")
    except StoreError as exc:
        what = "cannot reach" if exc.transient else "cannot open"
        raise StoreError(f"{what} the alert store: {exc}", transient=exc.transient,
                         code=exc.code) from exc


def load_reference_dir(directory: str | Path, tz: tzinfo):
    """The reference data of a contract directory (bad lines skipped, as replay does)."""
    from lianwatch.models.files import find_files
    from lianwatch.replay.run import DeadLetters, load_reference

    ref, _ = load_reference(find_files(directory), DeadLetters(None), tz)
    return ref


def configured_policies(s: Settings, ns: NotifySettings | None = None):
    """(lifecycle policy, notify policy) from ``LIANWATCH_NOTIFY_POLICY_FILE``, else the
    rules file, else the defaults."""
    from lianwatch.lifecycle.config import load_policies

    ns = ns or read(NotifySettings)
    return load_policies(ns.policy_file or s.rules_file)


def make_notifier(store: Any, ref: Any, s: Settings, *, outbox: str | Path | None = None,
                  provider: Any = None):
    """The notifier the settings describe: provider (``LIANWATCH_NOTIFY_PROVIDER`` and
    its carrier's ``LIANWATCH_ALIYUN_SMS_*`` / ``LIANWATCH_TENCENT_SMS_*``), policies,
    phone-hash key. ``outbox``: send into this outbox file whatever the provider
    setting says (the demo); ``provider``: this provider instead (tests)."""
    from lianwatch.lifecycle.hashkey import phone_hash_key
    from lianwatch.lifecycle.notify import Notifier
    from lianwatch.lifecycle.providers import make_provider

    ns = read(NotifySettings)
    lpolicy, policy = configured_policies(s, ns)
    if provider is None:
        kind = "outbox" if outbox is not None else ns.provider
        provider = make_provider(
            kind, outbox=outbox or ns.outbox or Path(s.data_dir) / "outbox.jsonl",
            aliyun=read(AliyunSmsSettings) if kind == "aliyun" else None,
            tencent=read(TencentSmsSettings) if kind == "tencent" else None,
            sign_name=policy.sign_name, tz=s.zone, carrier=ns.outbox_carrier)
    key = phone_hash_key(ns.phone_hash_key.get_secret_value(),  # the install's own key
                         getattr(getattr(store, "backend", None), "path", None))
    return Notifier(store, ref, provider, policy=policy, lifecycle_policy=lpolicy, tz=s.zone,
                    lang=s.lang, phone_hash_key=key)
