"""Event-time ordering of inputs larger than memory: a bucketed distribution sort.

Events are validated dicts of JSON scalars. Input that fits in
``max_in_memory`` events is sorted in memory and never touches the disk.
Beyond that, events are distributed into event-time buckets (an hour by
default) and spilled to one temporary file as :mod:`marshal` blocks (the
fastest serialiser for such values); then each bucket, in time order, is read
back and sorted in memory. Every event is written and read once (no k-way
merge), and memory is bounded by the spill threshold plus the largest bucket.
A bucket larger than memory is merged from its sorted blocks instead.

The order is total — event time, then stream, then the record's id — so the
same records give the same order whatever order the files held them in.

>>> evs = [{"t": 7200.0, "_s": "gps", "_id": "B"}, {"t": 1.0, "_s": "fuel", "_id": "X"},
...        {"t": 7200.0, "_s": "gps", "_id": "A"}, {"t": 3.0, "_s": "gps", "_id": "C"}]
>>> s = ExternalSorter(max_in_memory=2)
>>> [e["_id"] for e in s.sorted(evs)], s.runs_spilled > 0
(['X', 'C', 'A', 'B'], True)
"""

from __future__ import annotations

import heapq
import marshal
import tempfile
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any, BinaryIO

__all__ = ["ExternalSorter", "sort_key"]

#: event time, stream name, the record's id (``_id``, set by ``parse_event``)
sort_key = itemgetter("t", "_s", "_id")


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
            yield from buf
            return
        yield from self._spilled(buf, it)

    # ------------------------------------------------------------------ spilling
    def _spilled(self, buf: list[dict[str, Any]], rest: Iterator[dict[str, Any]]):
        width = self.bucket_seconds
        flush_at = max(1, self.max_in_memory // 2)
        index: dict[int, list[tuple[int, int, int]]] = {}  # bucket → [(offset, size, count)]
        with tempfile.TemporaryFile(prefix="lianwatch-sort-", dir=self.tmpdir) as f:
            buckets: dict[int, list[dict[str, Any]]] = {}
            held = 0
            for ev in _chain(buf, rest):
                b = int(ev["t"] // width)
                lst = buckets.get(b)
                if lst is None:
                    buckets[b] = lst = []
                lst.append(ev)
                held += 1
                if held >= flush_at:
                    self._flush(f, buckets, index)
                    held = 0
            self._flush(f, buckets, index)
            del buf
            for b in sorted(index):
                yield from self._bucket(f, index.pop(b))

    def _flush(self, f: BinaryIO, buckets: dict[int, list[dict[str, Any]]],
               index: dict[int, list[tuple[int, int, int]]]) -> None:
        f.seek(0, 2)
        for b, lst in buckets.items():
            lst.sort(key=sort_key)
            data = marshal.dumps(lst)
            index.setdefault(b, []).append((f.tell(), len(data), len(lst)))
            f.write(data)
            self.runs_spilled += 1
        buckets.clear()

    def _bucket(self, f: BinaryIO, blocks: list[tuple[int, int, int]]) -> Iterator[dict[str, Any]]:
        def load(off: int, size: int) -> list[dict[str, Any]]:
            f.seek(off)
            return marshal.loads(f.read(size))

        if sum(c for _, _, c in blocks) <= self.max_in_memory:
            evs: list[dict[str, Any]] = []
            for off, size, _ in blocks:
                evs.extend(load(off, size))
            evs.sort(key=sort_key)  # runs of sorted blocks: Timsort merges them
            yield from evs
        else:  # a bucket larger than memory: merge its sorted blocks lazily
            yield from heapq.merge(*(_lazy(load, off, size) for off, size, _ in blocks),
                                   key=sort_key)


def _lazy(load, off: int, size: int) -> Iterator[dict[str, Any]]:
    yield from load(off, size)


def _chain(first: list[dict[str, Any]], rest: Iterator[dict[str, Any]]):
    yield from first
    yield from rest
