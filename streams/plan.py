"""What ``lianwatch produce`` sends, in order, without a broker (testable).

Reference records go first, each keyed by its id
(:data:`~lianwatch.models.streams.SPECS`) on its compacted topic; then the
events of every file in event-time order (the replay order), each keyed by
its subject (:func:`~lianwatch.streams.topics.topic_key`) on the partition
Kafka's default partitioner gives that key. Every ``tick_every`` events a
progress tick (``wm``) goes to every partition of every input topic; at the
end, an end-of-data tick (``eod``) with the as-of time (the newest event
time, unless given). Lines that cannot be read go to the dead-letter topic
with their reason and their original bytes. Streams the worker does not run
(files of later contract versions) are counted and left out.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.parse import parse_event
from lianwatch.models.streams import SPECS
from lianwatch.models.files import find_files, open_lines, reference_records
from lianwatch.models.order import ExternalSorter

from .ticks import TICK_KEY, encode_tick
from .topics import Topics, partition_for, topic_key

__all__ = ["Planned", "plan_directory", "ticks"]


@dataclass(slots=True)
class Planned:
    """One message to send. ``kind``: ref, event, tick, dead."""

    kind: str
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    t: float | None = None  # event time (events)


def _dead(topics: Topics, stream: str, source: str, reason: str, raw: bytes) -> Planned:
    return Planned("dead", topics.deadletter, None, stream.encode(), raw,
                   [("lw-stream", stream.encode()), ("lw-source", source.encode()),
                    ("lw-reason", reason.encode("utf-8"))])


def ticks(topics: Topics, kind: str, **fields: Any) -> list[Planned]:
    """One tick record for every partition of every input topic."""
    value = encode_tick(kind, **fields)
    out = []
    for s, name in topics.event_topics.items():
        for p in range(topics.stream_n(s)):
            out.append(Planned("tick", name, p, TICK_KEY, value))
    return out


def _references(files: dict[str, Path], topics: Topics, counts: Counter) -> Iterator[Planned]:
    ref_topics = topics.ref_topics
    for kind, source, line, rec, why in reference_records(files):
        if kind not in ref_topics:
            counts["not_streamed"] += 1
            continue
        if rec is None:
            counts["dead"] += 1
            yield _dead(topics, kind, source, why or "invalid", line)
            continue
        counts[kind] += 1
        yield Planned("ref", ref_topics[kind], None,
                      str(getattr(rec, SPECS[kind].id_field)).encode(), line)


def plan_directory(input_dir: str | Path, topics: Topics, *, tz: tzinfo = DEFAULT_TZ,
                   tick_every: int = 5000, eod: bool = True, as_of: float | None = None,
                   max_in_memory: int = 1_000_000, counts: Counter | None = None,
                   run_id: str | None = None, after: float | None = None) -> Iterator[Planned]:
    """Every message of a directory, in publishing order."""
    files = find_files(input_dir)
    counts = counts if counts is not None else Counter()
    run_id = run_id or uuid.uuid4().hex[:12]
    yield from _references(files, topics, counts)
    names = topics.event_topics
    dead: list[Planned] = []

    def events() -> Iterator[dict[str, Any]]:
        for stream in names:
            p = files.get(stream)
            if p is None:
                continue
            for lineno, line, _ in open_lines(p):
                ev, why = parse_event(stream, line, tz)
                if ev is None:
                    dead.append(_dead(topics, stream, f"{p.name}:{lineno}", why or "invalid", line))
                    continue
                # only what ordering and keying need crosses the sorter
                yield {"t": ev["t"], "_s": stream, "_id": ev["_id"], "_k": topic_key(stream, ev),
                       "_raw": line}

    n = 0
    newest = None
    for ev in ExternalSorter(max_in_memory=max_in_memory).sorted(events()):
        for d in dead:
            counts["dead"] += 1
            yield d
        dead.clear()
        s = ev["_s"]
        key = ev["_k"].encode()
        t = ev["t"]
        if as_of is not None and t > as_of:
            counts["after_as_of"] += 1
            continue
        if after is not None and t <= after:
            counts["before_after"] += 1
            continue
        yield Planned("event", names[s], partition_for(key, topics.stream_n(s)), key, ev["_raw"],
                      t=t)
        counts[s] += 1
        n += 1
        newest = t
        if tick_every and n % tick_every == 0:
            yield from ticks(topics, "wm", wm=t, id=f"{run_id}-{n}")
    for d in dead:
        counts["dead"] += 1
        yield d
    if eod:
        end = as_of if as_of is not None else newest
        if end is not None:
            yield from ticks(topics, "eod", as_of=end, id=f"{run_id}-eod")
