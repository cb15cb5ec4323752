"""The broker-independent core of the worker: one engine per input partition.

A :class:`FamilyProcessor` runs one subject family (vehicles: ``gps`` +
``fuel.by-vehicle``; payments; projects). Messages are handed to it in
batches (:meth:`FamilyProcessor.ingest`); each belongs to one partition, and
each partition has its own :class:`PartitionRuntime`: an
:class:`~lianwatch.engine.Engine`, its detector state (one
:class:`PartitionStore` per detector) and a small event-time merge buffer.

Event-time merge. The inputs of one partition (the ``gps`` partition and the
re-keyed fuel arriving from every ``fuel`` partition) are separate Kafka
partitions; the consumer interleaves them in no particular order, and a
sparse input (fuel) can run hours of event time ahead of a dense one (gps) or
behind it. So events wait in a heap and are released in event-time order —
the replay order ``(t, stream, id)`` — once every input's *frontier*
has passed them. An input's frontier is the newest event time seen on it,
raised by tick records: a producer's progress tick (``wm``: nothing earlier
follows), an end-of-data tick (``eod``: everything up to ``as_of`` has been
sent) and, with ``clock="wall"``, a wall-clock tick (``now − lateness``).
Released events go through :meth:`Engine.process` in order, so a historical
feed gives what replay gives; the engine keeps its own watermark (newest
released time − allowed lateness) for the window rules.

End of data. When every input of a partition has delivered the same ``eod``
tick, the engine (``clock="event"``) runs :meth:`Engine.finish` at its
``as_of`` — once per tick id. Frontiers stay at ``as_of`` afterwards, so data
that follows is merged as before.

Durability (at-least-once). After a batch: alerts, dead letters and the
archive are written by the caller; then :meth:`FamilyProcessor.commit_state`
writes each state changed in the batch once (pickled, by reassignment into
the backing table) plus the partition's clocks; only then are the messages
handed back for acking, in offset order per topic partition. A crash replays
from the last committed offset; the detectors drop records they have seen
and alert ids are deterministic, so nothing is lost or doubled.
"""

from __future__ import annotations

import heapq
import logging
import math
import pickle
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Protocol

import orjson

from lianwatch.engine.detector import Detector
from lianwatch.engine import Engine
from lianwatch.models.alert import Alert, keep_newest
from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.parse import parse_event
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

from .topics import FAMILIES, Family, Topics, decode_tick, is_tick, partition_for

__all__ = [
    "InMsg", "PartitionStore", "PartitionRuntime", "FamilyProcessor", "FuelRekeyer",
    "StateBackend", "DictBackend", "BatchOutput", "DeadLetter", "family_detectors",
]

log = logging.getLogger("lianwatch.streams")

_INF = math.inf
_PICKLE = pickle.HIGHEST_PROTOCOL
META_VERSION = 1


@dataclass(slots=True)
class InMsg:
    """One consumed message: where it came from, its bytes, and the caller's ack handle."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    handle: Any = None

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(slots=True)
class DeadLetter:
    stream: str
    source: str
    reason: str
    raw: bytes


@dataclass
class BatchOutput:
    alerts: dict[str, Alert] = field(default_factory=dict)  # newest version per id
    deadletters: list[DeadLetter] = field(default_factory=list)
    archive: dict[str, list[tuple[dict[str, Any], bytes]]] = field(default_factory=dict)
    forwards: list[tuple[int, bytes, bytes, dict[str, bytes]]] = field(default_factory=list)
    finished: list[tuple[int, str, float]] = field(default_factory=list)  # (partition, eod id, as_of)
    released: int = 0

    def add_alerts(self, alerts: Iterable[Alert]) -> None:
        keep_newest(self.alerts, alerts)

    def merge(self, other: "BatchOutput") -> None:
        self.add_alerts(other.alerts.values())
        self.deadletters.extend(other.deadletters)
        for s, rows in other.archive.items():
            self.archive.setdefault(s, []).extend(rows)
        self.forwards.extend(other.forwards)
        self.finished.extend(other.finished)
        self.released += other.released


# ---------------------------------------------------------------------- state
class StateBackend(Protocol):
    """Where a family's partition state is persisted (a Faust table in the worker)."""

    def load(self, partition: int) -> tuple[dict[str, dict[str, bytes]], bytes | None]:
        """``({detector: {subject: pickled state}}, pickled meta or None)`` of a partition."""
        ...

    def put(self, partition: int, anchor: Any, detector: str, subject: str,
            value: bytes | None) -> None:
        """Write (or, with ``None``, delete) one subject's state."""
        ...

    def put_meta(self, partition: int, anchor: Any, value: bytes) -> None: ...


class DictBackend:
    """An in-memory backend (tests, and to see what the worker would persist)."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, dict[str, bytes]]] = {}
        self.meta: dict[int, bytes] = {}
        self.writes = 0

    def load(self, partition: int):
        return ({d: dict(v) for d, v in self.data.get(partition, {}).items()},
                self.meta.get(partition))

    def put(self, partition: int, anchor: Any, detector: str, subject: str,
            value: bytes | None) -> None:
        self.writes += 1
        d = self.data.setdefault(partition, {}).setdefault(detector, {})
        if value is None:
            d.pop(subject, None)
        else:
            d[subject] = value

    def put_meta(self, partition: int, anchor: Any, value: bytes) -> None:
        self.meta[partition] = value


class PartitionStore(dict):
    """A detector's states of one partition: a dict that remembers which keys changed.

    The engine writes a state back by reassignment after every call
    (``store[key] = st``); the key is then dirty, and the state is pickled and
    written to the backing table once per batch, whatever the number of events.
    """

    __slots__ = ("dirty",)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.dirty: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self.dirty.add(key)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key)
        self.dirty.add(key)

    def mark_all_dirty(self) -> None:
        self.dirty.update(self.keys())


class _Owned:
    """A detector that creates initial subjects only for keys of its own partition."""

    def __init__(self, det: Detector, partition: int, partitions: int) -> None:
        self.inner = det
        self.name = det.name
        self.streams = det.streams
        self.timer_clock = det.timer_clock
        self.key = det.key
        self.unplaced_reason = det.unplaced_reason
        self.new_state = det.new_state
        self.on_event = det.on_event
        self.on_timer = det.on_timer
        self.on_flush = det.on_flush
        self.on_reference = det.on_reference
        self._p = partition
        self._n = partitions

    def initial_subjects(self, ctx: Any):
        p, n = self._p, self._n
        return (k for k in self.inner.initial_subjects(ctx) if partition_for(k, n) == p)

    def affected(self, kind: str, key: str, changed: Any, ctx: Any):
        p, n = self._p, self._n
        return (k for k in self.inner.affected(kind, key, changed, ctx) if partition_for(k, n) == p)


def family_detectors(family: Family, make: Callable[[], Sequence[Detector]]) -> list[Detector]:
    """The detectors of ``make()`` that read this family's streams (each reads one family)."""
    out = []
    for d in make():
        inside = set(d.streams) & set(family.streams)
        if inside and inside != set(d.streams):
            raise ValueError(f"detector {d.name} reads streams of two families: {d.streams}")
        if inside:
            out.append(d)
    return out


# ---------------------------------------------------------------------- acks
class AckQueue:
    """Messages of one topic partition in arrival order; acked strictly in that order.

    Faust commits the highest *contiguous* acked offset, but its gap check
    misses a gap right at the committed offset (or before the first commit),
    so messages are never acked out of order here.

    An entry is ``[done, msg, queue, input, frontier, eod]``: what the message
    tells about its input's frontier (its event time, a tick's time) and an
    end-of-data tick it carries, ``(id, as_of)``. Those count as durable only
    once the message is acked (everything before it on its partition is
    processed): a restart resumes from there, so the clocks it restores never
    run ahead of records it will see again.
    """

    __slots__ = ("q", "ndone", "upto")

    def __init__(self, upto: int = -1) -> None:
        self.q: deque[list[Any]] = deque()
        self.ndone = 0  # done entries still queued (behind one that is not)
        self.upto = upto  # every offset below this one is processed (and persisted)

    def add(self, msg: InMsg, input_key: str) -> list[Any]:
        e = [False, msg, self, input_key, -_INF, None]
        self.q.append(e)
        return e

    def pop_done(self, out: list[InMsg], frontier: dict[str, float],
                 eod: dict[str, tuple[float, set[str]]]) -> bool:
        q = self.q
        moved = False
        while q and q[0][0]:
            e = q.popleft()
            m = e[1]
            out.append(m)
            self.ndone -= 1
            if m.offset >= self.upto:
                self.upto = m.offset + 1
            k = e[3]
            if k in frontier and e[4] > frontier[k]:
                frontier[k] = e[4]
            if e[5] is not None:
                tid, as_of = e[5]
                eod.setdefault(tid, (as_of, set()))[1].add(k)
            moved = True
        return moved

    def done_offsets(self) -> list[int]:
        """Offsets processed but not ackable yet (a message before them still waits)."""
        if not self.ndone:
            return []
        return [e[1].offset for e in self.q if e[0]]


def done(entry: list[Any]) -> None:
    if not entry[0]:
        entry[0] = True
        entry[2].ndone += 1


# ------------------------------------------------------------------ partition
class PartitionRuntime:
    """One input partition of a family: engine, merge buffer, clocks."""

    def __init__(self, proc: "FamilyProcessor", partition: int) -> None:
        self.proc = proc
        self.partition = partition
        fam = proc.family
        dets = [_Owned(d, partition, proc.partitions) for d in family_detectors(fam, proc.make_detectors)]
        raw_states, raw_meta = proc.backend.load(partition)
        self.stores: dict[str, PartitionStore] = {}
        for d in dets:
            st = PartitionStore()
            for k, v in (raw_states.get(d.name) or {}).items():
                dict.__setitem__(st, k, pickle.loads(v))
            self.stores[d.name] = st
        self.engine = Engine(dets, proc.rules, proc.ref, tz=proc.tz,  # type: ignore[arg-type]
                             stores=self.stores, clock=proc.clock, lateness=proc.lateness)
        self.inputs: tuple[str, ...] = proc.input_keys
        self.frontier: dict[str, float] = {i: -_INF for i in self.inputs}
        self.eod: dict[str, tuple[float, set[str]]] = {}
        # the same clocks as of the last acked message of each input (persisted)
        self.durable_frontier: dict[str, float] = dict(self.frontier)
        self.durable_eod: dict[str, tuple[float, set[str]]] = {}
        self.eod_done: list[str] = []
        self.pending_now: float | None = None
        self.clock_dirty = False
        self.single = len(self.inputs) == 1
        self.heap: list[tuple[float, str, str, int, dict[str, Any], list[Any]]] = []
        self.seq = 0
        self.acks: dict[tuple[str, int], AckQueue] = {}
        # restored from the meta: per "topic:partition", the offset below which
        # everything is processed, and offsets processed beyond it
        self.acked_upto: dict[str, int] = {}
        self.skip: dict[tuple[str, int], set[int]] = {}
        self.anchor: Any = None
        self.meta_dirty = False
        self.counts: Counter[str] = Counter()
        self._overflow_warned = False
        if raw_meta is not None:
            self._restore(pickle.loads(raw_meta))
        self.engine.start()

    # ------------------------------------------------------------ clocks, meta
    def _restore(self, m: dict[str, Any]) -> None:
        eng = self.engine
        eng.max_t = m.get("max_t", -_INF)
        eng.ctx.watermark = m.get("watermark", -_INF)
        eng.ctx.now = m.get("now", -_INF)
        for k, v in (m.get("frontier") or {}).items():
            if k in self.frontier:
                self.frontier[k] = self.durable_frontier[k] = v
        self.durable_eod = {k: (a, set(s)) for k, (a, s) in (m.get("eod") or {}).items()}
        self.eod = {k: (a, set(s)) for k, (a, s) in self.durable_eod.items()}
        self.eod_done = list(m.get("eod_done") or [])
        self.acked_upto = dict(m.get("acked") or {})
        for k, offs in (m.get("skip") or {}).items():
            topic, _, part = k.rpartition(":")
            self.skip[(topic, int(part))] = set(offs)

    def meta(self) -> dict[str, Any]:
        eng = self.engine
        return {"v": META_VERSION, "max_t": eng.max_t, "watermark": eng.ctx.watermark,
                "now": eng.ctx.now, "frontier": dict(self.durable_frontier),
                "eod": {k: (a, sorted(s)) for k, (a, s) in self.durable_eod.items()
                        if k not in self.eod_done},
                "eod_done": self.eod_done[-50:],
                "acked": self._acked(),
                "skip": self._skips()}

    def _skips(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for tp in set(self.acks) | set(self.skip):
            q = self.acks.get(tp)
            upto = q.upto if q is not None else self.acked_upto.get(f"{tp[0]}:{tp[1]}", -1)
            offs = set(q.done_offsets()) if q is not None else set()
            offs.update(o for o in self.skip.get(tp, ()) if o >= upto)
            if offs:
                out[f"{tp[0]}:{tp[1]}"] = sorted(offs)
        return out

    def _acked(self) -> dict[str, int]:
        acked = dict(self.acked_upto)
        acked.update({f"{t}:{p}": q.upto for (t, p), q in self.acks.items()})
        return acked

    @property
    def release_point(self) -> float:
        return min(self.frontier.values()) if self.frontier else _INF

    # ------------------------------------------------------------ ingest
    def track(self, msg: InMsg, input_key: str) -> tuple[list[Any], bool]:
        """Queue a message for acking; ``False``: it was processed before a restart."""
        tp = (msg.topic, msg.partition)
        q = self.acks.get(tp)
        if q is None:
            # where this partition resumes: persisted, or (first contact) this message
            q = self.acks[tp] = AckQueue(self.acked_upto.get(f"{tp[0]}:{tp[1]}", msg.offset))
        self.anchor = msg
        e = q.add(msg, input_key)
        off = msg.offset
        if off < q.upto:
            done(e)
            self.proc.counts["redelivered"] += 1
            return e, False
        sk = self.skip.get(tp)
        if sk and off in sk and not is_tick(msg.value):  # ticks are re-applied (idempotent)
            sk.discard(off)
            done(e)
            self.proc.counts["redelivered"] += 1
            return e, False
        return e, True

    def add_event(self, input_key: str, ev: dict[str, Any], entry: list[Any]) -> None:
        t = ev["t"]
        self.seq += 1
        # the replay order: event time, stream, record id (lianwatch.models.order.sort_key)
        heapq.heappush(self.heap, (t, ev["_s"], ev["_id"], self.seq, ev, entry))
        entry[4] = t
        if input_key and t > self.frontier[input_key]:  # "": not from a known source
            self.frontier[input_key] = t
            self.meta_dirty = True

    def add_tick(self, input_key: str, tick: dict[str, Any], entry: list[Any]) -> None:
        kind = tick["kind"]
        f = self.frontier
        if kind == "wm":
            wm = _num(tick.get("wm"))
            if wm is not None:
                entry[4] = wm
                if wm > f[input_key]:
                    f[input_key] = wm
                    self.clock_dirty = True
        elif kind == "eod":
            as_of = _num(tick.get("as_of"))
            if as_of is not None:
                nxt = math.nextafter(as_of, _INF)
                entry[4] = nxt
                if nxt > f[input_key]:
                    f[input_key] = nxt
                    self.clock_dirty = True
                tid = str(tick.get("id") or "")
                if tid not in self.eod_done:
                    entry[5] = (tid, as_of)
                    a, seen = self.eod.get(tid, (as_of, set()))
                    seen.add(input_key)
                    self.eod[tid] = (a, seen)
        elif kind == "flush":
            self.proc.flush_requested = True
        elif kind == "wall" and self.proc.clock == "wall":
            now = _num(tick.get("now"))
            if now is not None:
                self.pending_now = now if self.pending_now is None else max(self.pending_now, now)
                entry[4] = now
                if now > f[input_key]:
                    f[input_key] = now
                self.clock_dirty = True
        self.meta_dirty = True
        done(entry)  # a tick is done once applied; acked in order after what precedes it

    # ------------------------------------------------------------ processing
    def step(self, out: BatchOutput) -> None:
        """Release what the frontiers allow, apply clock ticks, finish ended feeds."""
        eng = self.engine
        heap = self.heap
        limit = self.release_point
        process = eng.process
        archive = out.archive
        alerts: list[Alert] = []
        overflow = len(heap) - self.proc.max_buffer
        if overflow > 0 and not self._overflow_warned:
            log.warning("partition %s/%d: %d events wait for a silent input (frontiers %s); "
                        "releasing the oldest", self.proc.family.name, self.partition,
                        len(heap), self.frontier)
            self._overflow_warned = True
        released = []
        n = 0
        single = self.single
        while heap and (heap[0][0] < limit or overflow > 0 or (single and heap[0][0] <= limit)):
            t, _, _, _, ev, entry = heapq.heappop(heap)
            overflow -= 1
            res = process(ev)
            if res:
                alerts.extend(res)
            released.append((ev, entry))
            n += 1
        if n:
            self.meta_dirty = True
            out.released += n
            self.counts["released"] += n
        if eng.set_aside:
            self._set_aside(released, out)
        for ev, entry in released:
            done(entry)
            archive.setdefault(ev["_s"], []).append((ev, entry[1].value))
        if self.clock_dirty:
            # a tick moved a frontier: the clocks may move without an event. Every
            # event still to come is at or after the release point R, so timers
            # before R (less the lateness) can fire as replay would fire them.
            self.clock_dirty = False
            r = self.release_point
            w = (math.nextafter(r, -_INF) - self.proc.lateness) if math.isfinite(r) else None
            if w is not None and w <= eng.ctx.watermark:
                w = None
            if self.proc.clock == "wall" and self.pending_now is not None:
                alerts.extend(eng.tick(now=self.pending_now, watermark=w))
            elif w is not None:
                alerts.extend(eng.tick(watermark=w))
            self.pending_now = None
            self.meta_dirty = True
            if eng.set_aside:
                self._set_aside([], out)
        for tid, (as_of, seen) in list(self.eod.items()):
            if not seen.issuperset(self.inputs):
                continue
            if heap and heap[0][0] <= as_of:
                continue  # cannot happen (the eod frontier releases them); be safe
            del self.eod[tid]
            self.durable_eod.pop(tid, None)
            self.eod_done.append(tid)
            self.meta_dirty = True
            if self.proc.clock == "event":
                alerts.extend(eng.finish(as_of))
                for st in self.stores.values():
                    st.mark_all_dirty()  # on_flush may change a state in place
                out.finished.append((self.partition, tid, as_of))
                self.counts["finished"] += 1
            if eng.set_aside:
                self._set_aside([], out)
        if alerts:
            out.add_alerts(alerts)

    def _set_aside(self, released: list[tuple[dict[str, Any], list[Any]]], out: BatchOutput) -> None:
        raw_of = {id(ev): entry[1] for ev, entry in released}
        for sa in self.engine.drain_set_aside():
            msg = raw_of.get(id(sa.record))
            if msg is not None and msg.value is not None:
                out.deadletters.append(DeadLetter(sa.stream, msg.source, sa.reason, msg.value))
            else:
                rec = {k: v for k, v in sa.record.items() if k not in ("_s",)}
                out.deadletters.append(DeadLetter(sa.stream, "engine", sa.reason,
                                                  orjson.dumps(rec, default=str)))
            self.counts["set_aside"] += 1

    def commit(self, backend: StateBackend, acks: list[InMsg]) -> int:
        """Write changed states and the clocks; collect the messages now safe to ack."""
        p = self.partition
        anchor = self.anchor
        n = 0
        for name, st in self.stores.items():
            if not st.dirty:
                continue
            for k in st.dirty:
                v = st.get(k)
                backend.put(p, anchor, name, k, None if v is None and k not in st
                            else pickle.dumps(v, _PICKLE))
                n += 1
            st.dirty.clear()
        moved = False
        for q in self.acks.values():
            if q.pop_done(acks, self.durable_frontier, self.durable_eod) or q.ndone:
                moved = True
        if moved or self.meta_dirty:
            backend.put_meta(p, anchor, pickle.dumps(self.meta(), _PICKLE))
            self.meta_dirty = False
        return n


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _header_str(headers: dict[str, bytes], name: str) -> str | None:
    v = headers.get(name)
    return v.decode("utf-8", "replace") if v is not None else None


# ------------------------------------------------------------------- families
class FamilyProcessor:
    """All partitions of one family handled by this worker."""

    def __init__(self, family: Family | str, topics: Topics, *, rules: RuleSet, ref: Reference,
                 backend: StateBackend, make_detectors: Callable[[], Sequence[Detector]],
                 tz: tzinfo = DEFAULT_TZ, clock: str = "event", lateness: float | None = None,
                 max_buffer: int = 500_000) -> None:
        self.family = FAMILIES[family] if isinstance(family, str) else family
        self.topics = topics
        self.rules = rules
        self.ref = ref
        self.backend = backend
        self.make_detectors = make_detectors
        self.tz = tz
        if clock not in ("event", "wall"):
            raise ValueError("clock must be 'event' or 'wall'")
        self.clock = clock
        self.lateness = (rules.fuel.allowed_lateness_min * 60.0) if lateness is None else lateness
        self.max_buffer = max_buffer
        self.partitions = topics.family_n(self.family.name)
        # topic name → the event stream it carries
        self.topic_stream: dict[str, str] = {}
        keys: list[str] = []
        for logical in self.family.inputs:
            if logical == "fuel.by-vehicle":
                self.topic_stream[topics.fuel_by_vehicle] = "fuel"
                keys.extend(f"{logical}/{q}" for q in range(topics.stream_n("fuel")))
            else:
                self.topic_stream[topics.name(logical)] = logical
                keys.append(logical)
        self.input_keys = tuple(keys)
        self.runtimes: dict[int, PartitionRuntime] = {}
        self.counts: Counter[str] = Counter()
        self.flush_requested = False

    @property
    def topic_names(self) -> list[str]:
        return list(self.topic_stream)

    def reset(self) -> None:
        """Forget every partition (a rebalance): they are rebuilt from the tables."""
        self.runtimes.clear()

    def runtime(self, partition: int) -> PartitionRuntime:
        rt = self.runtimes.get(partition)
        if rt is None:
            rt = self.runtimes[partition] = PartitionRuntime(self, partition)
        return rt

    def on_reference_change(self) -> None:
        """New reference records: subjects may have appeared (projects); re-index timers."""
        for rt in self.runtimes.values():
            rt.engine.start()

    # ------------------------------------------------------------ one batch
    def ingest(self, msgs: Iterable[InMsg], out: BatchOutput) -> set[str]:
        """Parse and buffer a batch; return ids the reference does not know (for a sync)."""
        unknown: set[str] = set()
        ref = self.ref
        fam = self.family.name
        tz = self.tz
        topic_stream = self.topic_stream
        for msg in msgs:
            rt = self.runtime(msg.partition)
            stream = topic_stream[msg.topic]
            raw = msg.value
            if stream == "fuel":
                src = _header_str(msg.headers, "lw-src")
                input_key = f"fuel.by-vehicle/{src}"
                if input_key not in rt.frontier:
                    input_key = ""
            else:
                input_key = stream
            entry, fresh = rt.track(msg, input_key)
            if not fresh:
                continue
            if raw is None:
                out.deadletters.append(DeadLetter(stream, msg.source, "empty record (null value)", b""))
                done(entry)
                self.counts["deadletter"] += 1
                continue
            if raw[:14] == b'{"__lw_tick__"' and is_tick(raw):
                tick = decode_tick(raw)
                if tick is None:
                    out.deadletters.append(DeadLetter(stream, msg.source, "unreadable tick record", raw))
                    done(entry)
                    continue
                if input_key:
                    rt.add_tick(input_key, tick, entry)
                else:
                    done(entry)
                self.counts["ticks"] += 1
                continue
            ev, why = parse_event(stream, raw, tz)
            if ev is None:
                out.deadletters.append(DeadLetter(stream, msg.source, why or "invalid", raw))
                done(entry)
                self.counts["deadletter"] += 1
                continue
            if stream == "fuel":
                vid = _header_str(msg.headers, "lw-vehicle")
                if vid and not ev.get("vehicle_id"):
                    ev["vehicle_id"] = vid
                if ev.get("vehicle_id") not in ref.vehicles:
                    unknown.add(f"vehicle:{ev.get('vehicle_id')}")
            elif fam == "vehicles":
                if ev["vehicle_id"] not in ref.vehicles:
                    unknown.add(f"vehicle:{ev['vehicle_id']}")
            elif fam == "payments":
                if ev["village_id"] not in ref.villages:
                    unknown.add(f"village:{ev['village_id']}")
            elif fam == "projects":
                if ev["project_id"] not in ref.projects:
                    unknown.add(f"project:{ev['project_id']}")
            rt.add_event(input_key, ev, entry)
            self.counts["events"] += 1
        return unknown

    def step(self, out: BatchOutput) -> None:
        for rt in self.runtimes.values():
            rt.step(out)

    def commit_state(self, acks: list[InMsg]) -> int:
        n = 0
        for rt in self.runtimes.values():
            n += rt.commit(self.backend, acks)
        self.counts["state_writes"] += n
        return n

    def run_batch(self, msgs: Sequence[InMsg]) -> tuple[BatchOutput, list[InMsg]]:
        """ingest + step + commit in one go (tests and tools without a broker)."""
        out = BatchOutput()
        self.ingest(msgs, out)
        self.step(out)
        acks: list[InMsg] = []
        self.commit_state(acks)
        return out, acks


class FuelRekeyer:
    """``fuel`` → ``fuel.by-vehicle``: key each transaction by its vehicle.

    A transaction without ``vehicle_id`` gets its card's vehicle from the
    reference; one whose card is unknown goes to the dead letter. Ticks are
    forwarded to every partition, marked with the source partition (header
    ``lw-src``) so the vehicle engines can tell when every source has moved on.
    """

    def __init__(self, topics: Topics, ref: Reference, tz: tzinfo = DEFAULT_TZ) -> None:
        self.topics = topics
        self.ref = ref
        self.tz = tz
        self.n_out = topics.family_n("vehicles")
        self.counts: Counter[str] = Counter()

    def unknown_cards(self, msgs: Iterable[InMsg]) -> bool:
        ref = self.ref
        for m in msgs:
            raw = m.value
            if raw is None or is_tick(raw):
                continue
            ev, _ = parse_event("fuel", raw, self.tz)
            if ev is not None and ref.vehicle_of(ev) is None:
                return True
        return False

    def process(self, msgs: Iterable[InMsg], out: BatchOutput) -> None:
        ref = self.ref
        for m in msgs:
            raw = m.value
            src = str(m.partition).encode()
            if raw is None:
                out.deadletters.append(DeadLetter("fuel", m.source, "empty record (null value)", b""))
                continue
            if is_tick(raw):
                if decode_tick(raw) is None:
                    out.deadletters.append(DeadLetter("fuel", m.source, "unreadable tick record", raw))
                    continue
                for p in range(self.n_out):
                    out.forwards.append((p, b"__tick__", raw, {"lw-src": src}))
                self.counts["ticks"] += 1
                continue
            ev, why = parse_event("fuel", raw, self.tz)
            if ev is None:
                out.deadletters.append(DeadLetter("fuel", m.source, why or "invalid", raw))
                self.counts["deadletter"] += 1
                continue
            vid = ref.vehicle_of(ev)
            if vid is None:
                out.deadletters.append(DeadLetter("fuel", m.source, (
                    f"fuel: card {ev.get('card_id')!r} belongs to no known vehicle "
                    "(no vehicle_id and not in vehicles[].card_ids)"), raw))
                self.counts["unknown_card"] += 1
                continue
            key = vid.encode()
            out.forwards.append((partition_for(key, self.n_out), key, raw,
                                 {"lw-src": src, "lw-vehicle": key}))
            self.counts["forwarded"] += 1
