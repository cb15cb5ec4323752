"""One input partition of a family: its engine, its event-time merge, its clocks.

Event-time merge. The inputs of one partition (the ``gps`` partition and the
re-keyed fuel arriving from every ``fuel`` partition) are separate Kafka
partitions; the consumer interleaves them in no particular order, and a
sparse input (fuel) can run hours of event time ahead of a dense one (gps) or
behind it. So events wait in a heap and are released in event-time order —
the replay order ``(t, stream, id)`` — once every input's *frontier* has
passed them. An input's frontier is the newest event time seen on it, raised
by tick records: a producer's progress tick (``wm``: nothing earlier
follows), an end-of-data tick (``eod``: everything up to ``as_of`` has been
sent) and, with ``clock="wall"``, a wall-clock tick (``now − lateness``).
Released events go through :meth:`Engine.process` in order, so a historical
feed gives what replay gives; the engine keeps its own watermark (newest
released time − allowed lateness) for the window rules.

End of data. When every input of a partition has delivered the same ``eod``
tick, the engine (``clock="event"``) runs :meth:`Engine.finish` at its
``as_of`` — once per tick id. Frontiers stay at ``as_of`` afterwards, so data
that follows is merged as before.

No record and no tick stops the partition: an event the engine fails on is
dead-lettered with the error, a clock step that fails is logged and counted.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson

from lianwatch.engine import Engine
from lianwatch.models.alert import Alert

from .acks import PartitionAcks, mark_done
from .batch import BatchOutput, InMsg
from .state import StateBackend, decode_clocks, encode_clocks, load_stores, write_states

if TYPE_CHECKING:
    from .family import FamilyProcessor

__all__ = ["PartitionRuntime"]

log = logging.getLogger("lianwatch.streams")

_INF = math.inf
#: engine failures logged with their traceback (then only counted)
_LOGGED_FAILURES = 20


class PartitionRuntime:
    """One input partition of a family: engine, merge buffer, clocks."""

    def __init__(self, proc: "FamilyProcessor", partition: int) -> None:
        self.proc = proc
        self.partition = partition
        dets = proc.detectors_for(partition)
        raw_states, raw_meta = proc.backend.load(partition)
        self.stores = load_stores(raw_states, (d.name for d in dets))
        self.engine = Engine(dets, proc.rules, proc.ref, tz=proc.tz,  # type: ignore[arg-type]
                             stores=self.stores, clock=proc.clock, lateness=proc.lateness)
        self.inputs: tuple[str, ...] = proc.input_keys
        self.frontier: dict[str, float] = {i: -_INF for i in self.inputs}
        self.eod: dict[str, tuple[float, set[str]]] = {}
        self.eod_done: list[str] = []
        self.acks = PartitionAcks(self.inputs)
        self.pending_now: float | None = None
        self.clock_dirty = False
        self.single = len(self.inputs) == 1
        self.heap: list[tuple[float, str, str, int, dict[str, Any], list[Any]]] = []
        self.seq = 0
        self.anchor: Any = None
        self.meta_dirty = False
        self.counts: Counter[str] = Counter()
        self._overflow_warned = False
        if raw_meta is not None:
            self._restore(decode_clocks(raw_meta))
        self.engine.start()

    # ------------------------------------------------------------ clocks
    def _restore(self, m: dict[str, Any]) -> None:
        eng = self.engine
        eng.max_t = m["max_t"]
        eng.ctx.watermark = m["watermark"]
        eng.ctx.now = m["now"]
        for k, v in m["frontier"].items():
            if k in self.frontier:
                self.frontier[k] = v
        self.acks.restore(m["acked"], m["skip"], m["frontier"], m["eod"])
        self.eod = {k: (a, set(s)) for k, (a, s) in self.acks.durable_eod.items()}
        self.eod_done = m["eod_done"]

    def clocks(self) -> bytes:
        eng = self.engine
        acks = self.acks
        return encode_clocks(
            max_t=eng.max_t, watermark=eng.ctx.watermark, now=eng.ctx.now,
            frontier=dict(acks.durable_frontier),
            eod={k: (a, sorted(s)) for k, (a, s) in acks.durable_eod.items()
                 if k not in self.eod_done},
            eod_done=self.eod_done, acked=acks.acked(), skip=acks.skips())

    @property
    def release_point(self) -> float:
        return min(self.frontier.values()) if self.frontier else _INF

    # ------------------------------------------------------------ ingest
    def track(self, msg: InMsg, input_key: str) -> tuple[list[Any], bool]:
        """Queue a message for acking; ``False``: it was processed before a restart."""
        self.anchor = msg
        e, fresh = self.acks.track(msg, input_key)
        if not fresh:
            self.proc.counts["redelivered"] += 1
        return e, fresh

    def add_event(self, input_key: str, ev: dict[str, Any], entry: list[Any]) -> None:
        t = ev["t"]
        self.seq += 1
        # the replay order: event time, stream, record id (lianwatch.models.order.sort_key)
        heapq.heappush(self.heap, (t, ev["_s"], ev["_id"], self.seq, ev, entry))
        entry[4] = t
        if input_key and t > self.frontier[input_key]:  # "": not from a known source
            self.frontier[input_key] = t
            self.meta_dirty = True

    def add_tick(self, input_key: str, kind: str, t: float | None, tid: str,
                 entry: list[Any]) -> None:
        """Apply a tick whose time (``t``) was found plausible."""
        f = self.frontier
        if kind == "wm":
            entry[4] = t
            if t > f[input_key]:  # type: ignore[operator]
                f[input_key] = t  # type: ignore[assignment]
                self.clock_dirty = True
        elif kind == "eod":
            nxt = math.nextafter(t, _INF)  # type: ignore[arg-type]
            entry[4] = nxt
            if nxt > f[input_key]:
                f[input_key] = nxt
                self.clock_dirty = True
            if tid not in self.eod_done:
                entry[5] = (tid, t)
                a, seen = self.eod.get(tid, (t, set()))
                seen.add(input_key)
                self.eod[tid] = (a, seen)  # type: ignore[assignment]
        elif kind == "flush":
            self.proc.flush_requested = True
        elif kind == "wall" and self.proc.clock == "wall":
            self.pending_now = t if self.pending_now is None else max(self.pending_now, t)  # type: ignore[type-var]
            entry[4] = t
            if t > f[input_key]:  # type: ignore[operator]
                f[input_key] = t  # type: ignore[assignment]
            self.clock_dirty = True
        self.meta_dirty = True
        mark_done(entry)  # a tick is done once applied; acked in order after what precedes it

    # ------------------------------------------------------------ processing
    def step(self, out: BatchOutput) -> None:
        """Release what the frontiers allow, apply clock ticks, finish ended feeds."""
        eng = self.engine
        alerts: list[Alert] = []
        released = self._release(out, alerts)
        if released:
            self.meta_dirty = True
            out.released += len(released)
            self.counts["released"] += len(released)
        if eng.set_aside:
            self._set_aside(released, out)
        archive = out.archive
        for ev, entry in released:
            mark_done(entry)
            archive.setdefault(ev["_s"], []).append((ev, entry[1].value))
        if self.clock_dirty:
            self._advance_clocks(alerts, out)
        self._finish_ended(alerts, out)
        if alerts:
            out.add_alerts(alerts)

    def _release(self, out: BatchOutput, alerts: list[Alert]) -> list[tuple[dict[str, Any], list[Any]]]:
        heap = self.heap
        limit = self.release_point
        process = self.engine.process
        overflow = len(heap) - self.proc.max_buffer
        if overflow > 0 and not self._overflow_warned:
            log.warning("partition %s/%d: %d events wait for a silent input (frontiers %s); "
                        "releasing the oldest", self.proc.family.name, self.partition,
                        len(heap), self.frontier)
            self._overflow_warned = True
        released = []
        single = self.single
        while heap and (heap[0][0] < limit or overflow > 0 or (single and heap[0][0] <= limit)):
            _, _, _, _, ev, entry = heapq.heappop(heap)
            overflow -= 1
            try:
                res = process(ev)
            except Exception as exc:  # noqa: BLE001 - a record never stops the partition
                self._failed_event(ev, entry, exc, out)
                continue
            if res:
                alerts.extend(res)
            released.append((ev, entry))
        return released

    def _advance_clocks(self, alerts: list[Alert], out: BatchOutput) -> None:
        # a tick moved a frontier: the clocks may move without an event. Every
        # event still to come is at or after the release point R, so timers
        # before R (less the lateness) can fire as replay would fire them.
        eng = self.engine
        self.clock_dirty = False
        r = self.release_point
        w = (math.nextafter(r, -_INF) - self.proc.lateness) if math.isfinite(r) else None
        if w is not None and w <= eng.ctx.watermark:
            w = None
        try:
            if self.proc.clock == "wall" and self.pending_now is not None:
                alerts.extend(eng.tick(now=self.pending_now, watermark=w))
            elif w is not None:
                alerts.extend(eng.tick(watermark=w))
        except Exception as exc:  # noqa: BLE001 - a clock step never stops the partition
            self._failed_clock("tick", exc)
        self.pending_now = None
        self.meta_dirty = True
        if eng.set_aside:
            self._set_aside([], out)

    def _finish_ended(self, alerts: list[Alert], out: BatchOutput) -> None:
        """End of data: every input delivered the same eod tick (once per tick id)."""
        eng = self.engine
        for tid, (as_of, seen) in list(self.eod.items()):
            if not seen.issuperset(self.inputs):
                continue
            if self.heap and self.heap[0][0] <= as_of:
                continue  # cannot happen (the eod frontier releases them); be safe
            del self.eod[tid]
            self.acks.durable_eod.pop(tid, None)
            self.eod_done.append(tid)
            self.meta_dirty = True
            if self.proc.clock == "event":
                try:
                    alerts.extend(eng.finish(as_of))
                except Exception as exc:  # noqa: BLE001
                    self._failed_clock("end of data", exc)
                for st in self.stores.values():
                    st.mark_all_dirty()  # on_flush may change a state in place
                out.finished.append((self.partition, tid, as_of))
                self.counts["finished"] += 1
            if eng.set_aside:
                self._set_aside([], out)

    def _failed_event(self, ev: dict[str, Any], entry: list[Any], exc: Exception,
                      out: BatchOutput) -> None:
        msg = entry[1]
        reason = f"the engine failed on this record: {type(exc).__name__}: {exc}"[:500]
        self._log_failure("%s/%d: %s (%s)", self.proc.family.name, self.partition, reason,
                          msg.source, exc=exc)
        out.dead(ev["_s"], msg.source, reason, msg.value or b"")
        self.proc.counts["engine_errors"] += 1
        mark_done(entry)

    def _failed_clock(self, what: str, exc: Exception) -> None:
        self._log_failure("%s/%d: the engine failed on a clock step (%s): %r",
                          self.proc.family.name, self.partition, what, exc, exc=exc)
        self.proc.counts["engine_errors"] += 1

    def _log_failure(self, fmt: str, *args: Any, exc: Exception) -> None:
        if self.proc.counts["engine_errors"] < _LOGGED_FAILURES:
            log.error(fmt, *args, exc_info=exc)

    def _set_aside(self, released: list[tuple[dict[str, Any], list[Any]]], out: BatchOutput) -> None:
        raw_of = {id(ev): entry[1] for ev, entry in released}
        for sa in self.engine.drain_set_aside():
            msg = raw_of.get(id(sa.record))
            if msg is not None and msg.value is not None:
                out.dead(sa.stream, msg.source, sa.reason, msg.value)
            else:
                rec = {k: v for k, v in sa.record.items() if k not in ("_s",)}
                out.dead(sa.stream, "engine", sa.reason, orjson.dumps(rec, default=str))
            self.counts["set_aside"] += 1

    # ------------------------------------------------------------ persistence
    def write_states(self, backend: StateBackend) -> int:
        """Checkpoint step 3: every state changed since the last checkpoint."""
        return write_states(backend, self.partition, self.anchor, self.stores)

    def write_clocks(self, backend: StateBackend, acks: list[InMsg]) -> None:
        """Checkpoint step 4: the clocks, as of the messages now safe to ack (into ``acks``)."""
        if self.acks.collect(acks) or self.meta_dirty:
            backend.put_meta(self.partition, self.anchor, self.clocks())
            self.meta_dirty = False
