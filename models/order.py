"""The contract's event order, and event-time ordering of inputs larger than memory.

:data:`sort_key` is the one order every consumer of the contract's events uses
(replay, what-if, incident reconstruction, the producer): event time, then
stream, then the record's id. :class:`ExternalSorter` puts any number of events
in that order in bounded memory, a bucketed distribution sort.

Events are validated dicts of JSON scalars. Input that fits in
``max_in_memory`` events is sorted in memory and never touches the disk.
Beyond that, events are distributed into event-time buckets (an hour by
default) and spilled to one temporary file as :mod:`marshal` blocks (the
fastest serialiser for such values); then each bucket, in time order, is read
back and sorted in memory. Every event is written and read once (no k-way
merge), and memory is bounded by the spill threshold plus the largest bucket.
A bucket larger than memory is merged from its sorted blocks instead.

The order is total — event time, then stream, then the record's id, then
for records equal in all three (one id seen with other content) the content
(:mod:`lianwatch.models.content`) — so the same records give the same order
whatever order the files held them in.

>>> evs = [{"t": 7200.0, "_s": "gps", "_id": "B"}, {"t": 1.0, "_s": "fuel", "_id": "X"},
...        {"t": 7200.0, "_s": "gps", "_id": "A"}, {"t": 3.0, "_s": "gps", "_id": "C"}]
>>> s = ExternalSorter(max_in_memory=2)
>>> [e["_id"] for e in s.sorted(evs)], s.runs_spilled > 0
(['X', 'C', 'A', 'B'], True)
"""

from __future__ import annotations

import heapq
import marshal
from bisect import bisect_left
from itertools import islice
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from lianwatch.models.content import settle_ties, settled, sort_key

__all__ = ["ExternalSorter", "sort_key"]

_PIECE = 8192  # events per marshal piece of a spilled run


class ExternalSorter:
    def __init__(self, max_in_memory: int = 1_000_000, bucket_seconds: float = 3600.0,
                 tmpdir: str | None = None) -> None:
        self.max_in_memory = max(1, max_in_memory)
        self.bucket_seconds = bucket_seconds
        self.tmpdir = tmpdir
        self.runs_spilled = 0  # blocks written to disk

    def sorted(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        it = iter(events)
        buf: list[dict[str, Any]] = []
        limit = self.max_in_memory
        for ev in it:
            buf.append(ev)
            if len(buf) >= limit:
                break
        else:
            buf.sort(key=sort_key)
            settle_ties(buf)
            yield from buf
            return
        yield from self._spilled(buf, it)

    # ------------------------------------------------------------------ spilling
    def _spilled(self, buf: list[dict[str, Any]], rest: Iterator[dict[str, Any]]):
        width = self.bucket_seconds
        chunk = max(1, self.max_in_memory // 2)
        index: dict[int, list[tuple[int, list[tuple[int, int]]]]] = {}  # bucket → [(count, pieces)]
        with tempfile.TemporaryFile(prefix="lianwatch-sort-", dir=self.tmpdir) as f:
            self._flush(f, buf, index, width)
            del buf
            while True:
                part = list(islice(rest, chunk))
                if not part:
                    break
                self._flush(f, part, index, width)
                del part
            for b in sorted(index):
                yield from self._bucket(f, index.pop(b))

    def _flush(self, f: BinaryIO, part: list[dict[str, Any]],
               index: dict[int, list[tuple[int, list[tuple[int, int]]]]], width: float) -> None:
        """Sort a chunk (in C), cut it at bucket boundaries, write each slice as a block."""
        part.sort(key=sort_key)
        times = [ev["t"] for ev in part]
        f.seek(0, 2)
        i, n = 0, len(part)
        while i < n:
            b = int(times[i] // width)
            j = bisect_left(times, (b + 1) * width, i, n)
            pieces = []  # a run is written in pieces, so a huge bucket merges lazily
            for k in range(i, j, _PIECE):
                data = marshal.dumps(part[k:min(j, k + _PIECE)])
                pieces.append((f.tell(), len(data)))
                f.write(data)
            index.setdefault(b, []).append((j - i, pieces))
            self.runs_spilled += 1
            i = j

    def _bucket(self, f: BinaryIO, runs: list[tuple[int, list[tuple[int, int]]]]
                ) -> Iterator[dict[str, Any]]:
        def load(off: int, size: int) -> list[dict[str, Any]]:
            f.seek(off)
            return marshal.loads(f.read(size))

        def run_iter(pieces: list[tuple[int, int]]) -> Iterator[dict[str, Any]]:
            for off, size in pieces:
                yield from load(off, size)

        if sum(c for c, _ in runs) <= self.max_in_memory:
            evs: list[dict[str, Any]] = []
            for _, pieces in runs:
                for off, size in pieces:
                    evs.extend(load(off, size))
            evs.sort(key=sort_key)  # sorted runs: Timsort merges them
            settle_ties(evs)
            yield from evs
        else:  # a bucket larger than memory: merge its runs a piece at a time
            yield from settled(heapq.merge(*(run_iter(pieces) for _, pieces in runs), key=sort_key))
