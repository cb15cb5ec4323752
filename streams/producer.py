"""Publishing a contract directory to the input topics (``lianwatch produce``).

Reference records go first, each keyed by its id on its compacted topic; then
the events of every file in event-time order (the replay order), each keyed by
its subject (:data:`~lianwatch.streams.topics.EVENT_KEY_FIELD`) on the
partition Kafka's default partitioner gives that key. Every ``tick_every``
events (and at least every ``tick_interval_s`` of wall time) a progress tick
(``wm``) goes to every partition of every input topic; at the end, an
end-of-data tick (``eod``) with the as-of time (the newest event time, unless
given). Lines that cannot be read go to the dead-letter topic with their
reason and their original bytes.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.parse import parse_event
from lianwatch.models.files import find_files, open_lines, reference_records
from lianwatch.models.order import ExternalSorter
from lianwatch.models.streams import EVENT_STREAMS

from .topics import EVENT_KEY_FIELD, REF_ID_FIELD, Topics, encode_tick, partition_for

__all__ = ["Planned", "plan_directory", "KafkaPublisher", "publish_directory", "PublishResult"]


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
            out.append(Planned("tick", name, p, b"__tick__", value))
    return out


def plan_directory(input_dir: str | Path, topics: Topics, *, tz: tzinfo = DEFAULT_TZ,
                   tick_every: int = 5000, eod: bool = True, as_of: float | None = None,
                   max_in_memory: int = 1_000_000, counts: Counter | None = None,
                   run_id: str | None = None, after: float | None = None) -> Iterator[Planned]:
    """Every message of a directory, in publishing order (no broker: testable)."""
    files = find_files(input_dir)
    counts = counts if counts is not None else Counter()
    run_id = run_id or uuid.uuid4().hex[:12]
    ref_topics = topics.ref_topics
    for kind, source, line, rec, why in reference_records(files):
        if rec is None:
            counts["dead"] += 1
            yield _dead(topics, kind, source, why or "invalid", line)
            continue
        counts[kind] += 1
        key = str(getattr(rec, REF_ID_FIELD[kind])).encode()
        yield Planned("ref", ref_topics[kind], None, key, line)

    dead: list[Planned] = []

    def events() -> Iterator[dict[str, Any]]:
        for stream in EVENT_STREAMS:
            p = files.get(stream)
            if p is None:
                continue
            key_field = EVENT_KEY_FIELD[stream]
            for lineno, line, _ in open_lines(p):
                ev, why = parse_event(stream, line, tz)
                if ev is None:
                    dead.append(_dead(topics, stream, f"{p.name}:{lineno}", why or "invalid", line))
                    continue
                key = ev.get(key_field) or (ev.get("card_id") if stream == "fuel" else None) or ""
                # only what ordering and keying need crosses the sorter
                yield {"t": ev["t"], "_s": stream, "_id": ev["_id"], "_k": key, "_raw": line}

    sorter = ExternalSorter(max_in_memory=max_in_memory)
    names = topics.event_topics
    n = 0
    newest = None
    for ev in sorter.sorted(events()):
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


@dataclass
class PublishResult:
    counts: Counter
    seconds: float
    messages: int

    @property
    def events(self) -> int:
        return sum(self.counts.get(s, 0) for s in EVENT_STREAMS)


class KafkaPublisher:
    """A batching producer for raw bytes (aiokafka's batch API, driven synchronously).

    Messages are appended to one record batch per topic partition (explicit
    partition, or Kafka's default partitioner on the key); a batch is sent when
    full, when it is older than ``linger_ms``, or on :meth:`flush`. Order is
    kept per partition. Roughly 5–10× the rate of a per-message ``send``.
    """

    def __init__(self, bootstrap: str, *, linger_ms: int = 20, batch_size: int = 1 << 19,
                 compression: str | None = None, acks: int | str = 1) -> None:
        import asyncio

        from aiokafka import AIOKafkaProducer

        self.loop = asyncio.new_event_loop()
        self.linger = linger_ms / 1000.0
        self.batch_size = batch_size

        async def start() -> AIOKafkaProducer:
            p = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="lianwatch-produce",
                                 linger_ms=linger_ms, max_batch_size=batch_size,
                                 max_request_size=max(batch_size * 2, 1 << 20),
                                 compression_type=compression, acks=acks)
            await p.start()
            return p

        self.p = self.loop.run_until_complete(start())
        self._batches: dict[tuple[str, int], Any] = {}
        self._born: dict[tuple[str, int], float] = {}
        self._futs: list[Any] = []
        self._nparts: dict[str, int] = {}
        self.sent = 0

    def _partitions(self, topic: str) -> int:
        n = self._nparts.get(topic)
        if n is None:
            async def meta() -> int:
                parts = await self.p.partitions_for(topic)
                return len(parts)
            n = self._nparts[topic] = self.loop.run_until_complete(meta())
        return n

    def send(self, m: Planned) -> None:
        part = m.partition
        if part is None:
            part = partition_for(m.key or b"", self._partitions(m.topic))
        tp = (m.topic, part)
        b = self._batches.get(tp)
        if b is None:
            b = self._batches[tp] = self.p.create_batch()
            self._born[tp] = time.monotonic()
        if b.append(key=m.key, value=m.value, timestamp=None, headers=m.headers) is None:
            self._ship(tp)
            b = self._batches[tp] = self.p.create_batch()
            self._born[tp] = time.monotonic()
            if b.append(key=m.key, value=m.value, timestamp=None, headers=m.headers) is None:
                raise ValueError(f"record too large for a batch ({len(m.value)} bytes)")
        self.sent += 1
        if self.sent % 512 == 0:
            self.poll()

    def _ship(self, tp: tuple[str, int]) -> None:
        b = self._batches.pop(tp)
        self._born.pop(tp, None)
        b.close()
        self._futs.append(self.loop.run_until_complete(self.p.send_batch(b, tp[0], partition=tp[1])))

    def poll(self) -> None:
        """Ship batches older than the linger time; let the client make progress."""
        now = time.monotonic()
        for tp in [tp for tp, t in self._born.items() if now - t >= self.linger]:
            self._ship(tp)
        self.sleep(0)
        if len(self._futs) > 256:
            self._reap()

    def _reap(self) -> None:
        done = [f for f in self._futs if f.done()]
        for f in done:
            f.result()  # raise delivery errors
        self._futs = [f for f in self._futs if not f.done()]

    def sleep(self, seconds: float) -> None:
        import asyncio

        self.loop.run_until_complete(asyncio.sleep(seconds))

    def flush(self, timeout: float | None = 60) -> None:
        import asyncio

        for tp in list(self._batches):
            self._ship(tp)
        if self._futs:
            self.loop.run_until_complete(asyncio.wait_for(asyncio.gather(*self._futs), timeout))
            self._futs = []

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.loop.run_until_complete(self.p.stop())
            self.loop.close()


def publish_directory(input_dir: str | Path, topics: Topics, bootstrap: str, *,
                      tz: tzinfo = DEFAULT_TZ, speed: float | None = None,
                      tick_every: int = 5000, tick_interval_s: float = 0.5, eod: bool = True,
                      as_of: float | None = None, compression: str | None = None,
                      linger_ms: int = 20, progress: Any = None, after: float | None = None,
                      publisher: KafkaPublisher | None = None) -> PublishResult:
    """Publish a directory. ``speed``: event time runs ``speed`` × faster than wall
    time (None: as fast as possible). ``as_of`` / ``after``: only events in
    ``(after, as_of]`` (a feed published in parts)."""
    counts: Counter[str] = Counter()
    pub = publisher or KafkaPublisher(bootstrap, linger_ms=linger_ms, compression=compression)
    run_id = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    last_tick = t0
    first_t: float | None = None
    last_t: float | None = None
    ref_done = False
    n = 0
    try:
        for m in plan_directory(input_dir, topics, tz=tz, tick_every=tick_every, eod=eod,
                                as_of=as_of, counts=counts, run_id=run_id, after=after):
            if m.kind == "event":
                if not ref_done:
                    pub.flush()  # reference data is on the broker before any event
                    ref_done = True
                if speed:
                    if first_t is None:
                        first_t = m.t
                        t0 = time.perf_counter()
                    due = (m.t - first_t) / speed  # type: ignore[operator]
                    lag = due - (time.perf_counter() - t0)
                    if lag > 0.002:
                        pub.sleep(lag)
                last_t = m.t
                now = time.perf_counter()
                if tick_interval_s and now - last_tick >= tick_interval_s and last_t is not None:
                    for tk in ticks(topics, "wm", wm=last_t, id=f"{run_id}-w{n}"):
                        pub.send(tk)
                    last_tick = now
            elif m.kind == "tick":
                last_tick = time.perf_counter()
            pub.send(m)
            n += 1
            if progress is not None and n % 10000 == 0:
                progress(n, counts)
        pub.flush()
    finally:
        if publisher is None:
            pub.close()
    return PublishResult(counts=counts, seconds=time.perf_counter() - t0, messages=n)
