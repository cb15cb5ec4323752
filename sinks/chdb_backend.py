"""The embedded ClickHouse (chDB) backend: one session per data directory per process.

chDB keeps one embedded server per process: opening another data directory
closes the session of the previous one; a backend whose session was closed that
way opens its own again on its next statement (closing the other).

Inserts stream TabSeparated bytes through ``Session.send_insert`` (one append
per batch): the fastest way in from Python, about twice ``JSONEachRow`` text
in a query, and it keeps NaN floats that JSON cannot carry. Timestamps go as
``seconds.mmm`` text, which ``DateTime64(3)`` reads exactly.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from lianwatch.sinks.base import StoreError
from lianwatch.sinks.schema import Capabilities, Table
from lianwatch.sinks.sql import quote_ident

__all__ = ["ChdbBackend", "tsv_payload", "current_path", "scratch_session", "close_session",
           "close_sessions", "chdb_errors", "error_code", "PERMANENT_CODES"]

_SESSIONS: dict[str, Any] = {}
_LOCK = threading.RLock()


def current_path() -> str | None:
    """The data directory of this process's open chDB session, if any."""
    with _LOCK:
        return next(iter(_SESSIONS), None)


def _session(path: str):
    from chdb import session as chs

    with _LOCK:
        s = _SESSIONS.get(path)
        if s is None:
            if path != _MEMORY:  # before closing anything: a path that cannot be a store
                Path(path).mkdir(parents=True, exist_ok=True)
            # chDB keeps one embedded server per process: close another path's first
            for other in list(_SESSIONS):
                try:
                    _SESSIONS.pop(other).close()
                except Exception:  # pragma: no cover - best effort
                    pass
            s = chs.Session(path)
            _SESSIONS[path] = s
        return s


_MEMORY = ":memory:"


def close_sessions() -> None:
    """Close this process's embedded server (a process that is done with its store, e.g.
    the stream worker on its way out). Left to interpreter exit, chDB may tear down
    its thread pools before its tables and crash (faults seen with chDB 4.4)."""
    with _LOCK:
        for path in list(_SESSIONS):
            _SESSIONS.pop(path).close()


def scratch_session(workdir: str | Path | None = None):
    """A chDB session for queries over files (no tables of its own).

    Where a sort spills is the session's data directory (its ``tmp/``): the open
    session's if there is one (a store's, under the data directory), else a session
    in ``workdir`` (the caller's scratch directory; chDB also clears that ``tmp/``
    whenever it opens there again). Without a ``workdir`` an in-memory session, whose
    spill goes to ``$TMPDIR`` and stays there if the process is killed: only for
    queries that do not sort. A store opened later replaces the session.
    """
    with _LOCK, chdb_errors():
        path = current_path()
        if path is None:
            path = str(Path(workdir).resolve()) if workdir is not None else _MEMORY
        return _session(path)


def close_session(path: str | Path) -> None:
    """Close this process's chDB session if it is the one in ``path`` (before the
    directory is removed)."""
    key = str(Path(path).resolve())
    with _LOCK:
        s = _SESSIONS.pop(key, None)
        if s is not None:
            s.close()


# ---------------------------------------------------------------------- TabSeparated
def _esc(s: str) -> str:
    # TabSeparated escaping; most values need none, and the checks are cheaper than replaces
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if "\t" in s:
        s = s.replace("\t", "\\t")
    if "\n" in s:
        s = s.replace("\n", "\\n")
    if "\r" in s:
        s = s.replace("\r", "\\r")
    if "\0" in s:
        s = s.replace("\0", "\\0")
    return s


def _quoted(s: str) -> str:
    # an element of an array in TabSeparated: a quoted literal (no raw tab/newline in it)
    return "'" + _esc(s).replace("'", "\\'") + "'"


def _f_str(v: Any) -> str:
    return _esc(v)


_SMALL_MS = 1_000_000_000_000  # before 2001-09-09 a unix time has < 10 digits: ambiguous text


def _f_ts(ms: int) -> str:
    s, m = divmod(int(ms), 1000)
    if ms < _SMALL_MS:  # "0.000" would be read as a date: give the wall time in the column's zone
        from datetime import datetime

        from lianwatch.sinks.schema import TZ
        from zoneinfo import ZoneInfo

        return datetime.fromtimestamp(s, ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M:%S") + f".{m:03d}"
    return f"{s}.{m:03d}"


def _f_float(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def _f_arr(v: Sequence[str]) -> str:
    return "[" + ",".join(_quoted(x) for x in v) + "]"


def _f_int(v: Any) -> str:
    return str(int(v))


def _f_date(v: Any) -> str:
    return v if isinstance(v, str) else v.isoformat()


_FORMATTERS = {"String": _f_str, "LC": _f_str, "TS": _f_ts, "Float64": _f_float,
               "Array(String)": _f_arr, "Date": _f_date}


def tsv_payload(table: Table, rows: Sequence[tuple]) -> bytes:
    """Canonical rows → TabSeparated bytes for the table's abstract columns (modern types)."""
    if (len(table.columns) == 4 and table.name.startswith("events_")
            and min(r[1] for r in rows) >= _SMALL_MS):
        # the archive's hot path (subject, ms, id, raw): format without escaping, then make
        # sure nothing needed it (JSON lines hold no raw tab or newline, rarely a backslash)
        body = "".join(["%s\t%d.%03d\t%s\t%s\n" % (s, t // 1000, t % 1000, i, r)
                        for s, t, i, r in rows])
        n = len(rows)
        if (body.count("\t") == 3 * n and body.count("\n") == n and "\\" not in body
                and "\r" not in body and "\0" not in body):
            return body.encode("utf-8")
        lines = [f"{_esc(s)}\t{t // 1000}.{t % 1000:03d}\t{_esc(i)}\t{_esc(r)}\n"
                 for s, t, i, r in rows]
    else:
        fmts = [_FORMATTERS.get(c.type, _f_int) for c in table.columns]
        lines = ["\t".join([f(v) for f, v in zip(fmts, row)]) + "\n" for row in rows]
    return "".join(lines).encode("utf-8")


_CODE = re.compile(r"Code: (\d+)")
#: ClickHouse error codes that say the data or the statement is wrong (a retry would fail
#: the same way). A missing table or column is not among them: the writer keeps retrying
#: until someone runs ``lianwatch db migrate``.
PERMANENT_CODES = {6, 26, 27, 38, 41, 53, 62, 69, 70, 72, 117, 130, 131}


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code in an error's text (``Code: 62. DB::Exception: …``)."""
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


@contextmanager
def chdb_errors() -> Iterator[None]:
    """The chDB boundary: what the embedded engine raises becomes a :class:`StoreError`.

    * ``chdb.ChdbError`` (a statement failed) and the ``RuntimeError`` the session API
      raises (a data directory the engine cannot open) → ``StoreError`` with the
      ClickHouse ``code`` from the text; ``transient`` unless the code says the
      statement or its data is wrong (:data:`PERMANENT_CODES`);
    * ``OSError`` (the data directory cannot be created) → ``StoreError(transient=False)``.

    Anything else is a bug and goes up as it is.
    """
    try:
        yield
    except StoreError:
        raise
    except RuntimeError as exc:  # chdb.ChdbError is a RuntimeError, so is the session API's
        code = error_code(exc)
        raise StoreError(f"chDB: {exc}", transient=code not in PERMANENT_CODES,
                         code=code) from exc
    except OSError as exc:
        raise StoreError(f"chDB: {exc}", transient=False) from exc


class ChdbBackend:
    kind = "chdb"

    def __init__(self, path: str | Path) -> None:
        self.path = str(Path(path).resolve())
        with chdb_errors():
            _session(self.path)
        self.caps = Capabilities.modern()

    @property
    def _s(self):  # noqa: ANN202 - the live session of our path (reopened if another took over)
        s = _SESSIONS.get(self.path)
        return s if s is not None else _session(self.path)

    def __repr__(self) -> str:
        return f"ChdbBackend(path={self.path!r})"

    def describe(self) -> str:
        return f"chDB {self.server_version()} at {self.path}"

    def execute(self, sql: str) -> None:
        with chdb_errors(), _LOCK:
            self._s.query(sql)

    def select(self, sql: str) -> list[dict[str, Any]]:
        with chdb_errors(), _LOCK:
            data = self._s.query(sql, "JSONEachRow").bytes()
        return [orjson.loads(line) for line in data.splitlines() if line]

    #: a large batch goes as several inserts of this many rows, formatted (Python, GIL)
    #: while the previous one is parsed and written (chDB, no GIL): the two cores overlap
    PIPELINE_ROWS = 25_000

    def insert(self, database: str, table: Table, rows: Sequence[tuple]) -> None:
        """Insert canonical rows (see :mod:`lianwatch.sinks.schema`).

        A batch larger than ``2 × PIPELINE_ROWS`` is inserted in parts; if one fails,
        the parts before it are in (the caller's retry re-sends them: the archive and
        alert tables fold such duplicates).
        """
        n = len(rows)
        if not n:
            return
        step = self.PIPELINE_ROWS
        if n < 2 * step:
            self.insert_bytes(database, table, tsv_payload(table, rows))
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="chdb-insert") as ex:
            pending = None
            for i in range(0, n, step):
                payload = tsv_payload(table, rows[i:i + step])
                if pending is not None:
                    pending.result()  # raises the part's StoreError
                pending = ex.submit(self.insert_bytes, database, table, payload)
            pending.result()

    def insert_bytes(self, database: str, table: Table, payload: bytes) -> None:
        """Insert prebuilt TabSeparated bytes (the table's abstract columns, in order)."""
        if not payload:
            return
        cols = ", ".join(quote_ident(c.name) for c in table.columns)
        with chdb_errors(), _LOCK:
            ins = self._s.send_insert(f"INSERT INTO {database}.{table.name} ({cols})",
                                      "TabSeparated")
            try:
                ins.append(payload)
                ins.finish()
            except BaseException:
                try:
                    ins.cancel()
                except Exception:  # pragma: no cover - already finished/failed
                    pass
                raise

    def server_version(self) -> str:
        return self.select("SELECT version() AS v")[0]["v"]

    def close(self) -> None:
        pass  # the session is shared per process; it closes at exit
