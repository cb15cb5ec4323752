"""Clock formatting and streaming JSONL writers (duplicates, malformed lines).

Simulation time is an integer or float number of seconds since local
(Asia/Shanghai, UTC+8) midnight of ``GenConfig.start``; day ``d`` covers
``[86400*d, 86400*(d+1))``. Days may be negative (payment and project history).
"""

from __future__ import annotations

import gzip as _gzip
import os
import random
from datetime import date, timedelta

import orjson

DAY = 86400
TZ = "+08:00"

_HMS: list[str] | None = None


def hms_table() -> list[str]:
    global _HMS
    if _HMS is None:
        _HMS = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    return _HMS


class Clock:
    """Formats simulation seconds as the contract's timestamp strings."""

    def __init__(self, start: date):
        self.start = start
        self._prefix: dict[int, str] = {}
        self._day_table: tuple[int, list[str]] | None = None
        self.hms = hms_table()

    def date_str(self, day: int) -> str:
        p = self._prefix.get(day)
        if p is None:
            p = (self.start + timedelta(days=day)).isoformat()
            self._prefix[day] = p
        return p

    def date_of(self, day: int) -> date:
        return self.start + timedelta(days=day)

    def _split(self, t: float) -> tuple[int, int]:
        s = int(t)
        return s // DAY, s % DAY

    def rfc(self, t: float) -> str:
        d, s = self._split(t)
        return self.date_str(d) + "T" + self.hms[s] + TZ

    def naive(self, t: float) -> str:
        d, s = self._split(t)
        return self.date_str(d) + " " + self.hms[s]

    def utc(self, t: float) -> str:
        d, s = self._split(int(t) - 8 * 3600)
        return self.date_str(d) + "T" + self.hms[s] + "Z"

    def day_table(self, day: int) -> list[str]:
        """All 86400 RFC 3339 stamps of one day (cached for the current day only)."""
        if self._day_table is None or self._day_table[0] != day:
            pre = self.date_str(day) + "T"
            self._day_table = (day, [pre + h + TZ for h in self.hms])
        return self._day_table[1]


class EventWriter:
    """Writes one event file chunk by chunk.

    ``dup_rate`` of the lines are written a second time at the end of their
    chunk (identical bytes: an upstream redelivery). Malformed lines are
    queued with :meth:`add_malformed` and written after the chunk whose index
    they name (or at :meth:`close`).
    """

    def __init__(self, path: str, gz: bool, rng: random.Random, dup_rate: float):
        self.name = os.path.basename(path)
        if gz:
            self.path = path + ".gz"
            raw = open(self.path, "wb")
            # mtime=0 and no file name: byte-identical output for a seed.
            self._raw = raw
            self._f = _gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=5)
        else:
            self.path = path
            self._raw = None
            self._f = open(path, "wb", buffering=1 << 20)
        self.rng = rng
        self.dup_rate = dup_rate
        self.lines = 0  # physical lines written
        self.good = 0  # distinct good records
        self.dups = 0
        self.malformed: list[str] = []
        self._pending: list[tuple[int, bytes, str]] = []  # (after_chunk, line, reason)
        self._chunks = 0
        self.t_min: float | None = None
        self.t_max: float | None = None

    def note_time(self, t_min: float, t_max: float) -> None:
        if self.t_min is None or t_min < self.t_min:
            self.t_min = t_min
        if self.t_max is None or t_max > self.t_max:
            self.t_max = t_max

    def add_malformed(self, after_chunk: int, line: bytes, reason: str) -> None:
        self._pending.append((after_chunk, line, reason))
        self._pending.sort(key=lambda x: x[0])

    def write_lines(self, lines: list[bytes]) -> None:
        if not lines:
            return
        n = len(lines)
        out = lines
        if self.dup_rate > 0:
            # Expected dup_rate * n duplicates, drawn without per-line work.
            k = 0
            x = n * self.dup_rate
            k = int(x)
            if self.rng.random() < x - k:
                k += 1
            if k:
                idx = sorted(self.rng.sample(range(n), min(k, n)))
                out = lines + [lines[i] for i in idx]
                self.dups += len(idx)
        self._f.write(b"\n".join(out) + b"\n")
        self.lines += len(out)
        self.good += n
        self._chunks += 1
        while self._pending and self._pending[0][0] <= self._chunks:
            _, line, reason = self._pending.pop(0)
            self._write_bad(line, reason)

    def write_redelivery(self, line: bytes) -> None:
        """An explicit duplicate delivery of a line already written."""
        self._f.write(line + b"\n")
        self.lines += 1
        self.dups += 1

    def _write_bad(self, line: bytes, reason: str) -> None:
        self._f.write(line + b"\n")
        self.lines += 1
        self.malformed.append(reason)

    def close(self) -> None:
        for _, line, reason in self._pending:
            self._write_bad(line, reason)
        self._pending = []
        self._f.close()
        if self._raw is not None:
            self._raw.close()


def write_reference(path: str, gz: bool, records: list[dict]) -> str:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    if gz:
        path += ".gz"
        with open(path, "wb") as raw, _gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return path
