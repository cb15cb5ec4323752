"""The ClickHouse server backend (production): clickhouse-driver, native protocol.

- What to connect to is a :class:`ClickHouseConfig` (host, port, user, password,
  database, TLS: ``secure``, ``verify``, ``ca_certs``; timeouts, compression); the
  commands fill it from the environment (``LIANWATCH_CH_*``,
  :class:`lianwatch.settings.ClickHouseSettings`).
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
  log lines or errors (the config holds it as ``SecretStr``).
"""

from __future__ import annotations

import logging
import math
import re
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, SecretStr

from lianwatch.sinks.base import StoreError
from lianwatch.sinks.chdb_backend import PERMANENT_CODES
from lianwatch.sinks.schema import Capabilities, Table
from lianwatch.sinks.sql import quote_ident

__all__ = ["ServerBackend", "ClickHouseConfig", "clickhouse_errors", "pick_compression",
           "parse_version"]

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


class ClickHouseConfig(BaseModel):
    """A ClickHouse server to connect to (the password never prints: ``SecretStr``)."""

    host: str = "127.0.0.1"
    port: int = 9000
    user: str = "default"
    password: SecretStr = SecretStr("")
    database: str = "lianwatch"
    secure: bool = False
    verify: bool = True
    ca_certs: str | None = None
    #: ``None``: lz4 when clickhouse-cityhash and lz4 are installed; ``"none"``: off
    compression: str | None = None
    connect_timeout: float = 5.0
    send_receive_timeout: float = 30.0


#: driver error codes of a connection that broke (SOCKET_TIMEOUT, NETWORK_ERROR)
_NETWORK_CODES = (209, 210)


def _store_error(exc: BaseException, where: str) -> StoreError | None:
    """The :class:`StoreError` for what the driver (or its socket) raised; None: not ours."""
    from clickhouse_driver import errors as e

    code = getattr(exc, "code", None)
    if isinstance(exc, e.ServerException):
        transient = code not in PERMANENT_CODES  # the server refused the statement
    elif isinstance(exc, (e.NetworkError, e.SocketTimeoutError,
                          e.UnexpectedPacketFromServerError, EOFError, OSError)):
        transient = True  # no server, or the connection broke (OSError covers TimeoutError)
    elif isinstance(exc, e.Error):
        transient = code in _NETWORK_CODES  # other driver errors: the data or a type is wrong
    elif isinstance(exc, (TypeError, ValueError, OverflowError, struct.error)):
        transient = False  # the driver could not serialize the data: the batch is bad
    else:
        return None
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    return StoreError(f"ClickHouse {where}: {type(exc).__name__}: {msg[:500]}",
                      transient=transient, code=code)


@contextmanager
def clickhouse_errors(where: str) -> Iterator[None]:
    """The server boundary: what clickhouse-driver raises becomes a :class:`StoreError`.

    ==========================================  =======================================
    raised                                      StoreError
    ==========================================  =======================================
    ``ServerException`` (the server refused)    ``code``; transient unless the code says
                                                the statement or data is wrong
    ``NetworkError``, ``SocketTimeoutError``,   transient (no server, connection broke)
    ``UnexpectedPacketFromServerError``,
    ``OSError``, ``EOFError``
    other driver errors (``TypeMismatchError``  not transient (except codes 209, 210)
    …)
    ``TypeError``, ``ValueError``,              not transient (the driver could not
    ``OverflowError``, ``struct.error``         serialize the batch)
    ==========================================  =======================================

    ``where`` names the server in the message (``host:port``; never the password).
    Anything else is a bug and goes up as it is.
    """
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        err = _store_error(exc, where)
        if err is None:
            raise
        raise err from exc


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

    def __init__(self, config: ClickHouseConfig, *, connect: bool = True) -> None:
        self.config = config
        self.database = config.database
        self.compression = pick_compression(config.compression)
        self._lock = threading.RLock()
        self._client: Any = None
        self.version: tuple[int, ...] = (0,)
        self.version_text = ""
        self.caps = Capabilities.modern()
        if connect:
            self.connect()

    # ------------------------------------------------------------------ connection
    def _client_kwargs(self) -> dict[str, Any]:
        s = self.config
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
        s = self.config
        return {"host": s.host, "port": int(s.port), "user": s.user, "database": self.database,
                "secure": bool(s.secure), "verify": bool(s.verify), "ca_certs": s.ca_certs,
                "compression": self.compression or "none",
                "password": "set" if s.password and s.password.get_secret_value() else "empty"}

    def __repr__(self) -> str:
        s = self.config
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
                     self.config.host, self.config.port)

    def _run(self, fn):  # noqa: ANN001, ANN202
        with self._lock:
            if self._client is None:
                self.connect()
            try:
                with clickhouse_errors(f"{self.config.host}:{self.config.port}"):
                    return fn(self._client)
            except StoreError:
                try:
                    self._client.disconnect()  # a fresh connection for the next statement
                except Exception:  # pragma: no cover - best effort
                    pass
                raise

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
        cols = ", ".join(quote_ident(n) for n in names)
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
