"""The ClickHouse server backend (production): clickhouse-driver, native protocol.

- Settings come from :class:`lianwatch.settings.ClickHouseSettings` (``LIANWATCH_CH_*``):
  host, port, user, password, database, TLS (``secure``, ``verify``, ``ca_certs``),
  timeouts, compression.
- The server's version is read at connect and decides how the tables are rendered
  (:class:`~lianwatch.sinks.schema.Capabilities`): 18.16 has no DateTime64, TTL or
  LowCardinality, so timestamps are ``DateTime`` + ``<col>_ms``.
- Inserts are columnar (``INSERT INTO t (cols) VALUES`` with the data as columns): data
  inside the SQL text hangs an 18.16 server, and columnar is the driver's fast path.
  Every column is sent (18.16 applies no DEFAULT for an omitted one); timestamps go
  as integers (``DateTime``: epoch seconds + the ``_ms`` column; ``DateTime64(3)``:
  epoch milliseconds, the driver's raw ticks), never as naive datetimes.
- Compression: ``compression=None`` (the default) uses lz4 when the optional packages
  ``lz4`` and ``clickhouse-cityhash`` are importable; ``"none"`` turns it off; an explicit
  method that cannot be loaded is logged and dropped.
- The password is never printed: not by ``repr``/``str`` of the backend nor in its
  log lines or errors (the settings hold it as ``SecretStr``).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from lianwatch.sinks.base import StoreError
from lianwatch.sinks.chdb_backend import PERMANENT_CODES
from lianwatch.sinks.schema import Capabilities, Table

__all__ = ["ServerBackend", "pick_compression", "parse_version"]

log = logging.getLogger(__name__)
# the driver logs every failed connect with a traceback; the writer reports outages itself
_driver_log = logging.getLogger("clickhouse_driver.connection")
if _driver_log.level == logging.NOTSET:
    _driver_log.setLevel(logging.ERROR)


def parse_version(text: str) -> tuple[int, ...]:
    """``'18.16.1'`` → ``(18, 16, 1)``; ``'24.3.2.23-lts'`` → ``(24, 3, 2, 23)``."""
    parts = []
    for p in str(text).split("."):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group(0)))
    return tuple(parts) or (0,)


def _importable(*mods: str) -> bool:
    import importlib

    try:
        for m in mods:
            importlib.import_module(m)
    except Exception:
        return False
    return True


_COMPRESSION_MODULES = {"lz4": ("lz4.block", "clickhouse_cityhash.cityhash"),
                        "lz4hc": ("lz4.block", "clickhouse_cityhash.cityhash"),
                        "zstd": ("zstd", "clickhouse_cityhash.cityhash")}


def pick_compression(setting: str | None) -> str | bool:
    """The driver's ``compression`` argument for a setting (None = lz4 when available)."""
    s = (setting or "auto").strip().lower()
    if s in ("none", "off", "false", "0", "no"):
        return False
    if s in ("auto", "true", "1", "yes"):
        return "lz4" if _importable(*_COMPRESSION_MODULES["lz4"]) else False
    mods = _COMPRESSION_MODULES.get(s)
    if mods is None:
        log.warning("unknown ClickHouse compression %r: sending uncompressed", setting)
        return False
    if not _importable(*mods):
        log.warning("ClickHouse compression %r needs the packages %s: sending uncompressed",
                    s, ", ".join(m.split(".")[0] for m in mods))
        return False
    return s


def _transient_exc(exc: BaseException) -> tuple[bool, int | None]:
    from clickhouse_driver import errors as e

    code = getattr(exc, "code", None)
    if isinstance(exc, e.ServerException):
        return code not in PERMANENT_CODES, code
    if isinstance(exc, (e.NetworkError, e.SocketTimeoutError, e.UnexpectedPacketFromServerError,
                        EOFError, OSError, TimeoutError)):
        return True, code
    if isinstance(exc, e.Error) and code in (209, 210):  # SOCKET_TIMEOUT, NETWORK_ERROR
        return True, code
    # the driver could not serialize the data (TypeError, struct.error, …): the batch is bad
    return False, code


def _fmt_dt(v: Any) -> Any:
    return v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v


def _fmt_date(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date) else v


def _fmt_float(v: Any) -> Any:
    # as chDB's JSONEachRow: NaN and infinities come back as null
    return None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v


def _converter(typ: str):  # noqa: ANN202
    t = typ
    if t.startswith("Nullable("):
        t = t[9:-1]
    if t.startswith("LowCardinality("):
        t = t[15:-1]
    if t.startswith("DateTime"):
        return _fmt_dt
    if t == "Date":
        return _fmt_date
    if t.startswith("Float"):
        return _fmt_float
    if t.startswith("Decimal"):
        return lambda v: None if v is None else float(v)
    if t == "UUID":
        return lambda v: None if v is None else str(v)
    return None


class ServerBackend:
    """A ClickHouse server over the native protocol, speaking the store's SQL."""

    kind = "clickhouse"

    def __init__(self, settings: Any = None, *, connect: bool = True) -> None:
        if settings is None:
            from lianwatch.settings import ClickHouseSettings

            settings = ClickHouseSettings()
        self.settings = settings
        self.database = settings.database
        self.compression = pick_compression(settings.compression)
        self._lock = threading.RLock()
        self._client: Any = None
        self.version: tuple[int, ...] = (0,)
        self.version_text = ""
        self.caps = Capabilities.modern()
        if connect:
            self.connect()

    # ------------------------------------------------------------------ connection
    def _client_kwargs(self) -> dict[str, Any]:
        s = self.settings
        kw: dict[str, Any] = dict(
            host=s.host, port=int(s.port), user=s.user,
            password=s.password.get_secret_value() if s.password is not None else "",
            database="default",  # ours may not exist yet; every statement names it
            secure=bool(s.secure), verify=bool(s.verify),
            connect_timeout=float(s.connect_timeout),
            send_receive_timeout=float(s.send_receive_timeout),
            sync_request_timeout=min(5.0, float(s.send_receive_timeout)),
            compression=self.compression, client_name="lianwatch",
        )
        if s.ca_certs:
            kw["ca_certs"] = s.ca_certs
        return kw

    def connection_info(self) -> dict[str, Any]:
        """What this backend connects to, safe to print (no password)."""
        s = self.settings
        return {"host": s.host, "port": int(s.port), "user": s.user, "database": self.database,
                "secure": bool(s.secure), "verify": bool(s.verify), "ca_certs": s.ca_certs,
                "compression": self.compression or "none",
                "password": "set" if s.password and s.password.get_secret_value() else "empty"}

    def __repr__(self) -> str:
        s = self.settings
        scheme = "clickhouses" if s.secure else "clickhouse"
        v = f", server={self.version_text}" if self.version_text else ""
        return (f"ServerBackend({scheme}://{s.user}@{s.host}:{s.port}/{self.database}, "
                f"compression={self.compression or 'none'}{v})")

    __str__ = __repr__

    def describe(self) -> str:
        return f"ClickHouse server {self.version_text or '?'} " + repr(self)[len("ServerBackend"):]

    def connect(self) -> None:
        """Open the connection and read the server's version (→ ``caps``)."""
        from clickhouse_driver import Client

        with self._lock:
            if self._client is None:
                self._client = Client(**self._client_kwargs())
            rows = self._run(lambda c: c.execute("SELECT version()"))
            self.version_text = str(rows[0][0])
            self.version = parse_version(self.version_text)
            self.caps = Capabilities.for_version(self.version)
            log.info("connected to ClickHouse %s at %s:%s", self.version_text,
                     self.settings.host, self.settings.port)

    def _run(self, fn):  # noqa: ANN001, ANN202
        with self._lock:
            if self._client is None:
                self.connect()
            try:
                return fn(self._client)
            except Exception as exc:
                transient, code = _transient_exc(exc)
                try:
                    self._client.disconnect()  # a fresh connection for the next statement
                except Exception:  # pragma: no cover - best effort
                    pass
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StoreError(f"ClickHouse {self.settings.host}:{self.settings.port}: "
                                 f"{type(exc).__name__}: {msg[:500]}",
                                 transient=transient, code=code) from None

    # ------------------------------------------------------------------ statements
    def execute(self, sql: str) -> None:
        self._run(lambda c: c.execute(sql))

    def select(self, sql: str) -> list[dict[str, Any]]:
        rows, types = self._run(lambda c: c.execute(sql, with_column_types=True))
        names = [n for n, _ in types]
        convs = [(i, conv) for i, (_, t) in enumerate(types) if (conv := _converter(t))]
        out = []
        for r in rows:
            if convs:
                r = list(r)
                for i, conv in convs:
                    r[i] = conv(r[i])
            out.append(dict(zip(names, r)))
        return out

    def insert(self, database: str, table: Table, rows: Sequence[tuple]) -> None:
        """Insert canonical rows (see :mod:`lianwatch.sinks.schema`) as columns."""
        if not rows:
            return
        names, data = self.columns_of(table, rows)
        cols = ", ".join(f"`{n}`" for n in names)
        sql = f"INSERT INTO {database}.{table.name} ({cols}) VALUES"
        self._run(lambda c: c.execute(sql, data, columnar=True))

    def columns_of(self, table: Table, rows: Sequence[tuple]) -> tuple[list[str], list[list]]:
        """The physical column names and column data of canonical rows on this server."""
        cols = list(zip(*rows))
        names: list[str] = []
        data: list[Any] = []
        dt64 = self.caps.datetime64
        for c, col in zip(table.columns, cols):
            if c.type == "TS":
                if dt64:  # DateTime64(3): the driver takes integers as ticks, i.e. ms
                    names.append(c.name)
                    data.append(list(col))
                else:
                    names += [c.name, f"{c.name}_ms"]
                    data.append([m // 1000 for m in col])
                    data.append([m % 1000 for m in col])
            elif c.type == "Date":
                names.append(c.name)
                data.append([date.fromisoformat(v) if isinstance(v, str) else v for v in col])
            else:
                names.append(c.name)
                data.append(col)
        return names, data

    def server_version(self) -> str:
        if not self.version_text:
            self.connect()
        return self.version_text

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.disconnect()
                except Exception:  # pragma: no cover - best effort
                    pass
