"""All partitions of one subject family on this worker (broker-independent).

A :class:`FamilyProcessor` runs one family of :data:`~lianwatch.streams.topics.FAMILIES`
(vehicles: ``gps`` + ``fuel.by-vehicle``; payments; projects). Messages come
in batches (:meth:`FamilyProcessor.ingest`); each belongs to one partition,
and each partition has its own :class:`~lianwatch.streams.partition.PartitionRuntime`.
A batch is parsed and buffered (:meth:`ingest`), released to the engines
(:meth:`step`), and at a checkpoint its changed states (:meth:`write_states`)
and clocks (:meth:`write_clocks`) are persisted before its messages are acked.

Every record is judged here: a null value, an unreadable record, a tick that
cannot be read or whose time is not plausible (:class:`~lianwatch.streams.ticks.TickWindow`)
goes to the dead letters with its reason and is counted; nothing in a
message stops the worker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import tzinfo
from typing import Any

from lianwatch.engine.detector import Detector
from lianwatch.models.clock import DEFAULT_TZ, EARLIEST, TimeWindow
from lianwatch.models.parse import parse_event
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

from .acks import mark_done
from .batch import BatchOutput, InMsg
from .partition import PartitionRuntime
from .state import StateBackend
from .ticks import TickWindow, decode_tick, is_tick
from .topics import FAMILIES, Family, Topics, partition_for

__all__ = ["FamilyProcessor", "family_detectors", "safe_parser", "Parser"]

log = logging.getLogger("lianwatch.streams")

#: ``(stream, raw bytes) → (event or None, reason)``: the contract's gate
Parser = Callable[[str, bytes], tuple[dict[str, Any] | None, str | None]]


def live_window(earliest: float = EARLIEST, ahead_s: float = 86400.0,
                clock: Callable[[], float] = time.time) -> Callable[[], TimeWindow]:
    """The records' accepted times for a live worker: ``earliest`` … the wall clock +
    ``ahead_s`` (CONTRACT §2: no record moves the clock years ahead), made again once
    a second of wall time."""
    last: list[Any] = [None, None]

    def window() -> TimeWindow:
        now = clock()
        if last[0] is None or now - last[0] >= 1.0:
            last[0], last[1] = now, TimeWindow.around(now, ahead_s=ahead_s, earliest=earliest)
        return last[1]
    return window


def safe_parser(tz: tzinfo = DEFAULT_TZ, parse: Callable[..., Any] = parse_event,
                window: Callable[[], TimeWindow] | None = None) -> Parser:
    """The record gate, made total: whatever a record holds, it gives an event or a reason.
    ``window()`` gives the times accepted now (default: :func:`live_window`)."""
    window = window or live_window()

    def parse_safely(stream: str, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return parse(stream, raw, tz=tz, window=window())
        except Exception as exc:  # noqa: BLE001 - a record never stops the worker
            return None, f"{stream}: unreadable record ({type(exc).__name__}: {exc})"[:500]
    return parse_safely


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


def _owned(subjects_of: Callable[..., Iterable[str]], partition: int,
           partitions: int) -> Callable[..., Iterable[str]]:
    """A detector's ``initial_subjects`` or ``affected`` (the subjects to create or judge
    again after a reference change) narrowed to this partition's keys."""
    def subjects(*args: Any) -> Iterable[str]:
        return (k for k in subjects_of(*args) if partition_for(k, partitions) == partition)
    return subjects


class FamilyProcessor:
    """All partitions of one family handled by this worker."""

    def __init__(self, family: Family | str, topics: Topics, *, rules: RuleSet, ref: Reference,
                 backend: StateBackend, make_detectors: Callable[[], Sequence[Detector]],
                 tz: tzinfo = DEFAULT_TZ, clock: str = "event", lateness: float | None = None,
                 max_buffer: int = 500_000, tick_window: TickWindow | None = None,
                 parse: Parser | None = None,
                 time_window: Callable[[], TimeWindow] | None = None) -> None:
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
        self.tick_window = tick_window or TickWindow()
        self.parse = parse or safe_parser(tz, window=time_window)
        self.partitions = topics.family_n(self.family.name)
        fam = self.family
        self.key_field = fam.key_field
        #: header carrying the key of a re-keyed record that lacks it (``lw-vehicle``)
        self.key_header = "lw-" + fam.key_field.removesuffix("_id")
        # topic name → the event stream it carries; input keys: one per input, and
        # one per source partition of a re-keyed stream ("fuel.by-vehicle/3")
        self.topic_stream: dict[str, str] = {}
        self.input_name: dict[str, str] = {}
        keys: list[str] = []
        for stream in fam.streams:
            self.topic_stream[topics.input_topic(fam.name, stream)] = stream
            self.input_name[stream] = fam.input_of(stream)
            if stream in fam.rekeyed:
                keys.extend(f"{fam.input_of(stream)}/{q}" for q in range(topics.stream_n(stream)))
            else:
                keys.append(fam.input_of(stream))
        self.input_keys = tuple(keys)
        self.runtimes: dict[int, PartitionRuntime] = {}
        self.counts: Counter[str] = Counter()
        self.flush_requested = False
        self._ignored_logged = 0

    @property
    def topic_names(self) -> list[str]:
        return list(self.topic_stream)

    def detectors_for(self, partition: int) -> list[Detector]:
        """Fresh detectors of this family for one partition (initial subjects: its keys)."""
        dets = family_detectors(self.family, self.make_detectors)
        for d in dets:
            d.initial_subjects = _owned(d.initial_subjects, partition,  # type: ignore[method-assign]
                                        self.partitions)
            d.affected = _owned(d.affected, partition, self.partitions)  # type: ignore[method-assign]
        return dets

    def reset(self) -> None:
        """Forget every partition (a rebalance): they are rebuilt from the backend."""
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
        subjects = getattr(self.ref, self.family.subject)
        subject = self.family.subject
        key_field = self.key_field
        rekeyed = self.family.rekeyed
        topic_stream = self.topic_stream
        parse = self.parse
        for msg in msgs:
            rt = self.runtime(msg.partition)
            stream = topic_stream[msg.topic]
            raw = msg.value
            if stream in rekeyed:
                input_key = f"{self.input_name[stream]}/{msg.header('lw-src')}"
                if input_key not in rt.frontier:
                    input_key = ""
            else:
                input_key = stream
            entry, fresh = rt.track(msg, input_key)
            if not fresh:
                continue
            if raw is None:
                self._dead(out, entry, stream, msg, "empty record (null value)", b"")
                continue
            if raw[:14] == b'{"__lw_tick__"' and is_tick(raw):
                self._tick(rt, stream, input_key, msg, entry, out)
                continue
            ev, why = parse(stream, raw)
            if ev is None:
                self._dead(out, entry, stream, msg, why or "invalid", raw)
                continue
            key = ev.get(key_field)
            if stream in rekeyed:
                given = msg.header(self.key_header)
                if given and not key:
                    ev[key_field] = key = given
            if key not in subjects:
                unknown.add(f"{subject}:{key}")
            rt.add_event(input_key, ev, entry)
            self.counts["events"] += 1
        return unknown

    def _dead(self, out: BatchOutput, entry: list[Any], stream: str, msg: InMsg, reason: str,
              raw: bytes) -> None:
        out.dead(stream, msg.source, reason, raw)
        mark_done(entry)
        self.counts["deadletter"] += 1

    def _tick(self, rt: PartitionRuntime, stream: str, input_key: str, msg: InMsg,
              entry: list[Any], out: BatchOutput) -> None:
        raw = msg.value or b""
        tick = decode_tick(raw)
        if tick is None:
            self._dead(out, entry, stream, msg, "unreadable tick record", raw)
            return
        why = self.tick_window.reason(tick)
        if why is not None:
            self.counts["ticks_ignored"] += 1
            if self._ignored_logged < 10:
                self._ignored_logged += 1
                log.warning("%s: %s (ignored)", msg.source, why)
            self._dead(out, entry, stream, msg, "tick ignored: " + why, raw)
            return
        self.counts["ticks"] += 1
        if not input_key:
            mark_done(entry)
            return
        kind = tick["kind"]
        t = None if kind == "flush" else self.tick_window.time_of(tick)
        rt.add_tick(input_key, kind, t, str(tick.get("id") or ""), entry)

    def step(self, out: BatchOutput) -> None:
        for rt in self.runtimes.values():
            rt.step(out)

    # ------------------------------------------------------------ persistence
    def write_states(self) -> int:
        """Checkpoint step 3: the changed states of every partition."""
        n = 0
        for rt in self.runtimes.values():
            n += rt.write_states(self.backend)
        self.counts["state_writes"] += n
        return n

    def write_clocks(self) -> list[InMsg]:
        """Checkpoint step 4: every partition's clocks; returns the messages now safe to ack."""
        acks: list[InMsg] = []
        for rt in self.runtimes.values():
            rt.write_clocks(self.backend, acks)
        return acks

    def run_batch(self, msgs: Sequence[InMsg]) -> tuple[BatchOutput, list[InMsg]]:
        """ingest + step + persist in one go (tests and tools without a broker)."""
        out = BatchOutput()
        self.ingest(msgs, out)
        self.step(out)
        self.write_states()
        return out, self.write_clocks()
