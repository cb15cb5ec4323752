"""The writer's on-disk queue: append-only segment files of checksummed records.

A segment ``seg-<first seq, 20 digits>.lws`` holds rows in the order they were
written; ordering the segments by name orders all spilled rows (every row gets
a sequence number when it enters the writer, so rows persisted at shutdown
from memory slot in between the segments they came between).

One record is one canonical row::

    b"LWR1" | payload length (uint32 LE) | CRC-32 of the payload (uint32 LE) | payload

with the payload ``orjson([table, [values…]])`` (NaN floats travel as null and
come back as NaN: no store column is nullable). A reader checks the magic,
the length and the CRC of every record: a damaged record is skipped (it is
looked for the next magic after it), a record cut short at the end of the
file is reported as truncated, and the counts go to :class:`SpillStats`.
Nothing in a damaged file is fatal.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lianwatch.sinks.schema import TABLES

__all__ = ["SpillQueue", "SpillStats", "read_segment", "encode_record", "MAGIC"]

log = logging.getLogger(__name__)

MAGIC = b"LWR1"
_HDR = struct.Struct("<4sII")
_MAX_RECORD = 256 << 20
_NAN = float("nan")
#: index of the Float64 columns per table (null in the spill → NaN)
_FLOAT_IDX = {name: [i for i, c in enumerate(t.columns) if c.type == "Float64"]
              for name, t in TABLES.items()}


@dataclass
class SpillStats:
    corrupt_records: int = 0   # damaged records skipped (a bad CRC, magic or payload)
    corrupt_bytes: int = 0     # bytes skipped while looking for the next good record
    truncated_records: int = 0  # a record cut short at the end of a file
    files_with_errors: list[str] = field(default_factory=list)


def encode_record(table: str, row: tuple) -> bytes:
    payload = orjson.dumps([table, row])
    return _HDR.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> tuple[str, tuple]:
    table, values = orjson.loads(payload)
    if table not in TABLES or not isinstance(values, list) or len(values) != len(
            TABLES[table].columns):
        raise ValueError(f"not a row of a known table: {payload[:80]!r}")
    for i in _FLOAT_IDX[table]:
        if values[i] is None:
            values[i] = _NAN
    return table, tuple(values)


def read_segment(path: str | Path, stats: SpillStats | None = None) -> list[tuple[str, tuple]]:
    """The good records of a segment, in order; damage is logged, counted and skipped."""
    stats = stats if stats is not None else SpillStats()
    data = Path(path).read_bytes()
    out: list[tuple[str, tuple]] = []
    pos, n, bad = 0, len(data), 0
    hs = _HDR.size
    while pos < n:
        problem = None
        if n - pos < hs:
            problem = "truncated"
        else:
            magic, length, crc = _HDR.unpack_from(data, pos)
            if magic != MAGIC or length > _MAX_RECORD:
                problem = "corrupt"
            elif pos + hs + length > n:
                problem = "truncated"
            else:
                payload = data[pos + hs:pos + hs + length]
                if zlib.crc32(payload) != crc:
                    problem = "corrupt"
                else:
                    try:
                        out.append(_decode(payload))
                    except Exception:  # a CRC-valid record of an unknown shape
                        problem = "corrupt"
                    else:
                        pos += hs + length
                        continue
        # damaged here: find the next record start
        nxt = data.find(MAGIC, pos + 1)
        if problem == "truncated" and nxt < 0:
            stats.truncated_records += 1
            stats.corrupt_bytes += n - pos
            log.warning("spill %s: record at byte %d is truncated (%d bytes to the end): "
                        "skipped", path, pos, n - pos)
            bad += 1
            break
        skip_to = n if nxt < 0 else nxt
        stats.corrupt_records += 1
        stats.corrupt_bytes += skip_to - pos
        log.warning("spill %s: damaged record at byte %d (%d bytes skipped)", path, pos,
                    skip_to - pos)
        bad += 1
        pos = skip_to
    if bad:
        stats.files_with_errors.append(str(path))
    return out


def _seq_of(p: Path) -> int:
    return int(p.stem.split("-", 1)[1])


class SpillQueue:
    """Ordered segments in a directory; one open tail for appends."""

    def __init__(self, directory: str | Path, segment_bytes: int = 4 << 20,
                 fsync: bool = False) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = int(segment_bytes)
        self.fsync = fsync
        self.stats = SpillStats()
        self._tail: Any = None  # open file of the tail segment
        self._tail_path: Path | None = None
        self._rows: dict[Path, int] = {}  # rows per segment (known for ours)
        for tmp in self.dir.glob("seg-*.lws.tmp"):  # a shutdown persist that did not finish
            tmp.unlink(missing_ok=True)
        self._segments: list[Path] = sorted(self.dir.glob("seg-*.lws"), key=_seq_of)
        #: rows spilled by this process, rows read back
        self.rows_written = 0
        self.rows_read = 0

    def next_seq(self) -> int:
        """A sequence number above every row already on disk (each record is > 12 bytes)."""
        if not self._segments:
            return 1
        return max(_seq_of(p) + p.stat().st_size for p in self._segments) + 1

    def __len__(self) -> int:
        return len(self._segments)

    @property
    def pending(self) -> bool:
        return bool(self._segments)

    def first_seq(self) -> int:
        """The sequence number of the oldest row waiting on disk (call when pending)."""
        return _seq_of(self._segments[0])

    def pending_rows(self) -> int | None:
        """Rows waiting on disk (None when segments of an earlier run are not counted yet)."""
        total = 0
        for p in self._segments:
            if p not in self._rows:
                return None
            total += self._rows[p]
        return total

    def append(self, first_seq: int, records: Iterable[tuple[str, tuple]]) -> int:
        """Append rows (their sequence numbers follow ``first_seq``) to the tail segment."""
        n = 0
        buf: list[bytes] = []
        size = 0
        for table, row in records:
            if self._tail is None:
                self._open_tail(first_seq + n)
            rec = encode_record(table, row)
            buf.append(rec)
            size += len(rec)
            n += 1
            assert self._tail_path is not None
            self._rows[self._tail_path] = self._rows.get(self._tail_path, 0) + 1
            if self._tail.tell() + size >= self.segment_bytes:
                self._tail.write(b"".join(buf))
                buf, size = [], 0
                self.seal()
        if buf:
            self._tail.write(b"".join(buf))
            self._sync(self._tail)
        self.rows_written += n
        return n

    def _open_tail(self, seq: int) -> None:
        p = self.dir / f"seg-{seq:020d}.lws"
        self._tail = open(p, "ab")
        self._tail_path = p
        self._segments.append(p)
        self._segments.sort(key=_seq_of)

    def _sync(self, f: Any) -> None:
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())

    def seal(self) -> None:
        """Close the tail: the next append starts a new segment."""
        if self._tail is not None:
            self._sync(self._tail)
            self._tail.close()
            self._tail = None
            self._tail_path = None

    def write_run(self, first_seq: int, records: list[tuple[str, tuple]],
                  sync: bool = True) -> Path:
        """A sealed segment of rows that come before any later segment (a persist of
        what memory held). ``sync``: fsync it (a machine crash; a process crash
        loses nothing written)."""
        p = self.dir / f"seg-{first_seq:020d}.lws"
        tmp = p.with_suffix(".lws.tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(encode_record(t, r) for t, r in records))
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, p)
        self._segments.append(p)
        self._segments.sort(key=_seq_of)
        self._rows[p] = len(records)
        self.rows_written += len(records)
        return p

    def load_next(self) -> tuple[Path, int, list[tuple[str, tuple]]] | None:
        """The oldest segment's rows (sealing it if it is the tail), not yet removed."""
        if not self._segments:
            return None
        p = self._segments[0]
        if p == self._tail_path:
            self.seal()
        rows = read_segment(p, self.stats)
        self._segments.pop(0)
        self._rows.pop(p, None)
        self.rows_read += len(rows)
        return p, _seq_of(p), rows

    def remove(self, path: Path) -> None:
        """A loaded segment whose rows all reached the store."""
        try:
            path.unlink()
        except FileNotFoundError:  # pragma: no cover
            pass

    def iter_all(self) -> Iterator[tuple[str, tuple]]:  # pragma: no cover - diagnostics
        for p in list(self._segments):
            yield from read_segment(p, self.stats)

    def close(self) -> None:
        self.seal()
