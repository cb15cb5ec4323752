"""The embedded ClickHouse (chDB) backend: one session per data directory per process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson

from lianwatch.sinks.base import StoreError
from lianwatch.sinks.schema import Capabilities

__all__ = ["ChdbBackend"]

_SESSIONS: dict[str, Any] = {}
_LOCK = threading.RLock()


def _session(path: str):
    from chdb import session as chs

    with _LOCK:
        s = _SESSIONS.get(path)
        if s is None:
            # chDB keeps one embedded server per process: close another path's first
            for other in list(_SESSIONS):
                try:
                    _SESSIONS.pop(other).close()
                except Exception:  # pragma: no cover - best effort
                    pass
            Path(path).mkdir(parents=True, exist_ok=True)
            s = chs.Session(path)
            _SESSIONS[path] = s
        return s


class ChdbBackend:
    kind = "chdb"

    def __init__(self, path: str | Path) -> None:
        self.path = str(Path(path).resolve())
        self._s = _session(self.path)
        self.caps = Capabilities.modern()

    def execute(self, sql: str) -> None:
        try:
            with _LOCK:
                self._s.query(sql)
        except Exception as exc:
            raise StoreError(f"chDB: {exc}") from exc

    def select(self, sql: str) -> list[dict[str, Any]]:
        try:
            with _LOCK:
                res = self._s.query(sql, "JSONEachRow")
                data = res.bytes()
        except Exception as exc:
            raise StoreError(f"chDB: {exc}") from exc
        return [orjson.loads(line) for line in data.splitlines() if line]

    def insert_json_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        payload = b"\n".join(orjson.dumps(r) for r in rows)
        self.execute(f"INSERT INTO {table} FORMAT JSONEachRow\n" + payload.decode("utf-8"))

    def insert_tsv(self, table: str, columns: list[str], payload: str) -> None:
        if payload:
            cols = ", ".join(f"`{c}`" for c in columns)
            self.execute(f"INSERT INTO {table} ({cols}) FORMAT TabSeparated\n{payload}")

    def server_version(self) -> str:
        return self.select("SELECT version() AS v")[0]["v"]

    def close(self) -> None:
        pass  # the session is shared per process; it closes at exit
