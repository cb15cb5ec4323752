"""GPS pings checked and put in event-time order by the embedded ClickHouse (chDB).

Pings are nearly all of a replay's input. Decoding, validating and sorting them
one Python object at a time costs several times the JSON decoding itself; chDB
does it in C++ straight from the file (``.gz`` too), spills its sort to disk
past a memory limit, and streams the pings back in order as Arrow batches.

The SQL check is conservative: it passes only the plain shape of a valid ping —
a JSON object (no byte-order mark) with none of the ping's keys repeated; ``vehicle_id`` a printable-ASCII id of at
most 128 characters; ``ts`` RFC 3339 to the second with ``Z`` or an explicit
offset, in the years 1970–2105 and within the caller's
:class:`~lianwatch.models.clock.TimeWindow`; ``lat``/``lon`` JSON numbers in range;
the optional fields, when present, JSON values of their type and range. Every other line comes back
with its number and bytes and goes through the one pydantic gate
(:func:`~lianwatch.models.parse.parse_event`), which accepts it (a naive local
time, a fraction of a second, a number sent as text…) or gives the reason it is
set aside. The SQL can make replay faster, never more lenient: the tests hold
every line it passes to what ``parse_event`` makes of it. A byte-order mark at
the start of the file is dropped before the first line goes there.

chDB's errors (a cut-off or corrupted ``.gz``: it reads nothing of such a file)
are converted here, at this module's one boundary with it, into
:class:`~lianwatch.errors.InputError`; :meth:`PingFile.start` raises it before
any ping has been handed on, so the caller can read the file another way.

Order: time, then vehicle, then position, which is the replay order
(``t``, ``"gps"``, vehicle) made total for two different pings of one vehicle
in one second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lianwatch.errors import InputError
from lianwatch.models.clock import DEFAULT_WINDOW, TimeWindow
from lianwatch.models.files import BOM

__all__ = ["PingFile"]


def _number(raw: str, lo: float | None, hi: float | None) -> str:
    """``raw`` is a JSON number (not -0) within [lo, hi]. The raw text comes from a
    document the JSON parser accepted, so a number is whatever starts with - or a digit."""
    cond = [f"{raw} != ''", f"position('-0123456789', substring({raw}, 1, 1)) > 0",
            f"NOT (startsWith({raw}, '-') AND {raw}_f = 0)"]
    if lo is not None:
        cond.append(f"{raw}_f >= {lo}")
    if hi is not None:
        cond.append(f"{raw}_f <= {hi}")
    return "(" + " AND ".join(cond) + ")"


_TS = ('^"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}'
       '(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"$')

# the raw JSON text of each field ('' when absent) and, for numbers, its value
_FIELDS = {"vehicle_id": "vr", "ts": "tr", "lat": "la", "lon": "lo", "speed_kmh": "sp",
           "ignition": "ig", "odometer_km": "od"}
_RAW = ",\n    ".join(f"vs[indexOf(ks, '{k}')] AS {a}" for k, a in _FIELDS.items())
_KNOWN = ", ".join(f"'{k}'" for k in _FIELDS)
_PRESENT = " + ".join(f"({a} != '')" for a in _FIELDS.values())  # a raw value is never ''
_FLOATS = ",\n    ".join(f"toFloat64OrZero({a}) AS {a}_f" for a in ("la", "lo", "sp", "od"))

_SELECT = f"""
SELECT ok, n, raw, t, vid, lat, lon FROM (
  SELECT _row_number + 1 AS n,
    JSONExtractKeysAndValuesRaw(line) AS kv, kv.1 AS ks, kv.2 AS vs,
    {_RAW},
    {_FLOATS},
    parseDateTimeOrNull(concat(substring(tr, 2, 10), ' ', substring(tr, 13, 8)),
                        '%Y-%m-%d %H:%i:%s', 'UTC') AS dt,
    if(length(tr) = 27,
       if(substring(tr, 21, 1) = '-', -1, 1)
         * (toInt32OrZero(substring(tr, 22, 2)) * 3600 + toInt32OrZero(substring(tr, 25, 2)) * 60),
       0) AS off,
    toInt64(toUnixTimestamp(assumeNotNull(dt))) - off AS tt,
    NOT startsWith(line, '\\xEF\\xBB\\xBF')  -- the JSON parser skips a byte-order mark; pydantic does not
      AND arrayCount(k -> k IN ({_KNOWN}), ks) = {_PRESENT}  -- no known key twice
      AND startsWith(vr, '"') AND length(vr) BETWEEN 3 AND 130 AND lengthUTF8(vr) = length(vr)
      AND position(vr, '\\\\') = 0 AND NOT startsWith(vr, '" ') AND NOT endsWith(vr, ' "')
      AND match(tr, '{_TS}') AND dt IS NOT NULL
      AND substring(tr, 2, 4) BETWEEN '1970' AND '2105'  -- DateTime's range: no wrap-around
      AND tt >= {{earliest}} AND tt <= {{latest}}
      AND {_number('la', -90, 90)} AND {_number('lo', -180, 180)}
      AND (sp = '' OR {_number('sp', 0, 400)})
      AND ig IN ('', 'true', 'false', 'null')
      AND (od IN ('', 'null') OR {_number('od', 0, None)}) AS ok,
    if(ok, '', line) AS raw,
    if(ok, toFloat64(tt), 0) AS t,
    if(ok, substring(vr, 2, length(vr) - 2), '') AS vid,
    if(ok, la_f, 0) AS lat,
    if(ok, lo_f, 0) AS lon
  FROM file({{path}}, 'LineAsString')
)
ORDER BY ok, t, vid, lat, lon, raw  -- raw too, so it is made before the sort (not the whole line carried through it)
SETTINGS max_threads = 1, input_format_parallel_parsing = 0,  -- one core
         precise_float_parsing = 1, short_circuit_function_evaluation = 'disable',
         max_bytes_before_external_sort = {{sort_bytes}}, min_external_sort_block_bytes = {{sort_bytes}},
         max_bytes_ratio_before_external_sort = 0, storage_file_read_method = 'pread',
         output_format_arrow_string_as_string = 0
"""


def _sql_path(path: Path) -> str:
    from lianwatch.sinks.sql import quote_str

    return quote_str(str(path.resolve()))


class PingFile:
    """One ``gps.jsonl[.gz]`` through chDB.

    ``rest()`` first: the lines the SQL did not pass, as ``(line_number, bytes)``
    (blank lines among them), for the pydantic gate. Then ``batches()``: the
    passed pings in replay order, as column lists ``(t, vehicle_id, lat, lon)``.
    ``window``: the times the SQL may pass (the same the pydantic gate is given);
    ``workdir``: where chDB spills its sort when no store's session is open (the
    run's scratch directory; without one, ``$TMPDIR``).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "gps.jsonl").write_text(
    ...     '{"vehicle_id":"V2","ts":"2026-03-02T08:00:05+08:00","lat":30.2,"lon":120.1}\\n'
    ...     '{"vehicle_id":"V1","ts":"2026-03-02 08:00:05","lat":30.2,"lon":120.1}\\n'
    ...     '{"vehicle_id":"V1","ts":"2026-03-02T00:00:05Z","lat":30.2,"lon":120.1}\\n')
    >>> f = PingFile(d / "gps.jsonl", workdir=d / "scratch")
    >>> [n for n, _ in f.rest()]  # a naive local time: for the pydantic gate
    [2]
    >>> [(t, v) for ts, vs, _, _ in f.batches() for t, v in zip(ts, vs)]
    [(1772409605.0, 'V1'), (1772409605.0, 'V2')]
    """

    def __init__(self, path: Path, *, sort_bytes: int = 256 << 20,
                 window: TimeWindow = DEFAULT_WINDOW, workdir: Path | None = None) -> None:
        self.path = path
        self.sort_bytes = max(1 << 20, int(sort_bytes))
        self.window = window
        self.workdir = workdir
        self.passed = 0  # pings the SQL passed (known once batches() is exhausted)
        self._stream: Any = None
        self._head: Any = None  # the first batch with passed pings, read while looking for the rest
        self._rested = False  # rest() has run to its end

    @staticmethod
    def can_read(path: Path) -> bool:
        """chDB's ``file()`` reads ``* ? { } [ ]`` in a path as a pattern: such a
        path is left to the Python reader."""
        return not any(c in str(path.resolve()) for c in "*?{}[]")

    def _session(self) -> Any:
        from lianwatch.sinks.chdb_backend import scratch_session

        return scratch_session(self.workdir)

    def _error(self, exc: Exception) -> InputError:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return InputError(f"chDB cannot read {self.path}: {msg}")

    def count_lines(self) -> int:
        try:
            r = self._session().query(
                f"SELECT countIf(notEmpty(trimBoth(line))) FROM file({_sql_path(self.path)}, "
                "'LineAsString')", "CSV")
        except Exception as exc:  # chDB's own errors, converted at this boundary
            raise self._error(exc) from exc
        return int(str(r).strip() or 0)

    def _chunks(self, sql: str) -> Iterator[Any]:
        try:
            yield from self._session().send_query(sql, "ArrowStream")
        except Exception as exc:  # chDB's own errors, converted at this boundary
            # after a failed streaming query chDB's session streams the next one wrong
            # (chDB 4.4: a schema, no rows): close it; its owner reopens it when needed
            from lianwatch.sinks.chdb_backend import close_session, current_path

            path = current_path()
            if path is not None:
                close_session(path)
            raise self._error(exc) from exc

    def start(self) -> None:
        """Run the query. chDB reads, checks and sorts the whole file before the first
        row comes out, so a file it cannot read fails here, with :class:`InputError`."""
        if self._stream is not None:
            return
        sql = (_SELECT.replace("{path}", _sql_path(self.path))
               .replace("{sort_bytes}", str(self.sort_bytes))
               .replace("{earliest}", repr(float(self.window.earliest)))
               .replace("{latest}", repr(float(self.window.latest))))
        stream = self._chunks(sql)
        first = next(stream, None)
        self._stream = stream if first is None else _prepend(first, stream)

    def rest(self) -> Iterator[tuple[int, bytes]]:
        import pyarrow as pa

        self.start()
        for chunk in self._stream:
            for batch in pa.ipc.open_stream(chunk.bytes()):
                ok = batch.column(0)
                n_bad = len(ok) - int(_sum(ok))
                if n_bad:
                    nums = batch.column(1).slice(0, n_bad).to_pylist()
                    raws = batch.column(2).slice(0, n_bad).to_pylist()
                    for n, raw in zip(nums, raws):
                        if n == 1 and raw.startswith(BOM):
                            raw = raw[len(BOM):]
                        yield n, raw
                if n_bad < batch.num_rows:
                    self._head = batch.slice(n_bad)
                    self._rested = True
                    return
        self._rested = True

    def batches(self) -> Iterator[tuple[list[float], list[str], list[float], list[float]]]:
        import pyarrow as pa

        if not self._rested:
            for _ in self.rest():
                pass
        head, self._head = self._head, None
        if head is not None:
            yield self._columns(head)
        for chunk in self._stream:
            for batch in pa.ipc.open_stream(chunk.bytes()):
                yield self._columns(batch)
        self._stream = None

    def _columns(self, batch: Any) -> tuple[list[float], list[str], list[float], list[float]]:
        self.passed += batch.num_rows
        return (batch.column(3).to_numpy().tolist(), batch.column(4).cast("string").to_pylist(),
                batch.column(5).to_numpy().tolist(), batch.column(6).to_numpy().tolist())


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _sum(col: Any) -> int:
    import pyarrow.compute as pc

    return pc.sum(col.cast("uint32")).as_py() or 0
