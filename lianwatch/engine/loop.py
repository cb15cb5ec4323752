"""The one engine loop: events in, alerts out, in event time.

Replay calls it with events sorted by time; the Faust worker calls it with
events as they arrive on a partition. Both get the same alerts because the
detectors only see what the engine gives them: events, the watermark and the
clock. Each detector hook returns a :class:`~lianwatch.engine.detector.Step`;
the engine applies it: the state is written back by reassignment (or deleted
when the step discards it), its ``wake`` indexed as a timer, the alerts
returned, the set-aside records kept in :attr:`Engine.set_aside` until drained.

>>> from lianwatch.detectors import default_detectors
>>> from lianwatch.reference import Reference
>>> from lianwatch.rules import RuleSet
>>> eng = Engine(default_detectors(), RuleSet(), Reference())
>>> eng.process({"_s": "payments", "t": 0.0, "payment_id": "P1", "village_id": "VL1",
...              "amount_yuan": 80000.0, "channel": "transfer", "payee_id": "X",
...              "approval_id": None})[0].rule
'payment.no_approval'
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import tzinfo
from typing import Any, NamedTuple

from lianwatch.engine.detector import Ctx, Detector, DictStore, SetAside, Store
from lianwatch.models.alert import Alert, keep_newest
from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

__all__ = ["Engine", "HotEntry"]

_INF = float("inf")
_NO_ALERTS: list[Alert] = []  # returned when an event raised nothing: never modified


class HotEntry(NamedTuple):
    """How a caller feeds the bulk of a stream straight to its one detector:
    for an event at ``t`` with key ``k`` (what :meth:`Detector.key` would say),
    first :meth:`Engine.clock_to` ``(t)``, then ``st = states.get(k)`` (if None:
    ``st = states[k] = new(k)``) and ``add(st, t, *values, ctx)``, the values
    named by ``fields``; ``add`` returns None or a record to set aside (a
    :class:`SetAside`: a conflicting copy). The same effect as
    :meth:`Engine.process`, without a dict or a routing step per event."""

    states: dict[str, Any]
    new: Callable[[str], Any]
    add: Callable[..., SetAside | None]
    fields: tuple[str, ...]


class Engine:
    """Routes events to detectors, keeps the clocks, fires timers.

    ``clock="event"``: time-based rules are judged by the watermark (replay,
    ``worker --clock event``). ``clock="wall"``: by ``tick(now=…)`` calls.
    ``lateness``: how far behind the newest event time the watermark stays
    (0 for sorted replay input).
    """

    def __init__(
        self,
        detectors: Sequence[Detector],
        rules: RuleSet,
        ref: Reference,
        *,
        tz: tzinfo = DEFAULT_TZ,
        stores: dict[str, Store] | None = None,
        clock: str = "event",
        lateness: float = 0.0,
    ) -> None:
        if clock not in ("event", "wall"):
            raise ValueError("clock must be 'event' or 'wall'")
        self.detectors = list(detectors)
        self.ctx = Ctx(rules=rules, ref=ref, tz=tz)
        self.stores: dict[str, Store] = stores if stores is not None else {}
        for d in self.detectors:
            self.stores.setdefault(d.name, DictStore())
        self.clock = clock
        self.lateness = lateness
        self.max_t = -_INF
        #: records set aside by the detectors (or unplaced), until :meth:`drain_set_aside`
        self.set_aside: list[SetAside] = []
        self.counts: Counter[str] = Counter()  # set-aside records drained
        self._routes: dict[str, list[tuple[int, Detector, Store]]] = {}
        for i, d in enumerate(self.detectors):
            for s in d.streams:
                self._routes.setdefault(s, []).append((i, d, self.stores[d.name]))
        self._timers: dict[str, list[tuple[float, int, int, str]]] = {"watermark": [], "now": []}
        self._due = _INF  # the earliest timer of either clock (a cheap test per event)
        self._seq = 0
        self._started = False

    # ----------------------------------------------------------------- set-up
    def start(self) -> None:
        """Create the subjects that exist before any event; index existing timers.

        Call after reference data is loaded (and after a restart, when the
        stores come back from their changelog): idempotent.
        """
        for i, d in enumerate(self.detectors):
            store = self.stores[d.name]
            for key in d.initial_subjects(self.ctx):
                if key not in store:
                    store[key] = d.new_state(key, self.ctx)
            for heap in self._timers.values():
                heap[:] = [e for e in heap if e[2] != i]
                heapq.heapify(heap)
            for key, st in list(store.items()):
                self._push(i, d, key, st.wake)
        self._set_due()
        self._started = True

    # ----------------------------------------------------------------- events
    def process(self, ev: dict[str, Any]) -> list[Alert]:
        """One validated event (see :func:`lianwatch.models.parse.parse_event`).

        Returns the alerts it raised; the returned list must not be modified.
        """
        if not self._started:
            self.start()
        t = ev["t"]
        out = self.clock_to(t) if t > self.max_t else _NO_ALERTS
        ctx = self.ctx
        for i, det, store in self._routes.get(ev["_s"], ()):
            key = det.key(ev, ctx)
            if key is None:
                self._put_aside((SetAside(ev["_s"], ev, det.unplaced_reason(ev)),))
                continue
            st = store.get(key)
            if st is None:
                st = det.new_state(key, ctx)
            before = st.wake
            st, alerts, aside = det.on_event(st, ev, ctx)
            if st is None:
                if key in store:
                    del store[key]  # discarded: its timers go stale
            else:
                store[key] = st  # reassign: a Faust table writes its changelog on set
                after = st.wake
                if after is not None and after != before:
                    self._push(i, det, key, after)
            if aside:
                self._put_aside(aside)
            if alerts:
                if out is _NO_ALERTS:
                    out = []
                out.extend(alerts)
        return out

    def clock_to(self, t: float) -> list[Alert]:
        """An event at ``t`` was seen: move the watermark (and, on event time, the
        clock) and fire the timers it passed. Returns their alerts (do not modify)."""
        out: list[Alert] = _NO_ALERTS
        if t > self.max_t:
            self.max_t = t
            ctx = self.ctx
            wm = t - self.lateness
            if wm > ctx.watermark:
                ctx.watermark = wm
                if self.clock == "event":
                    ctx.now = wm
                if self._due < wm:
                    wh = self._timers["watermark"]
                    nh = self._timers["now"]
                    if (wh and wh[0][0] < wm) or (nh and nh[0][0] < ctx.now):
                        out = []
                        self._advance(wm, None, out, inclusive=False)
        return out

    def hot(self, stream: str) -> HotEntry | None:
        """A direct entry for the bulk of ``stream`` (replay's GPS pings), see
        :class:`HotEntry`. Only when exactly one detector takes the stream, offers
        an entry (:meth:`Detector.hot`) and keeps its state in a :class:`DictStore`;
        else None (use :meth:`process`)."""
        if not self._started:
            self.start()
        routes = self._routes.get(stream, ())
        if len(routes) != 1:
            return None
        _, det, store = routes[0]
        add = det.hot(stream)
        if add is None or type(store) is not DictStore:
            return None
        ctx = self.ctx
        return HotEntry(store, lambda key: det.new_state(key, ctx), add, det.hot_fields[stream])

    def tick(self, now: float | None = None, watermark: float | None = None) -> list[Alert]:
        """Advance the clocks without an event (wall-clock ticks, tick messages)."""
        if not self._started:
            self.start()
        out: list[Alert] = []
        wm = watermark if watermark is not None else self.ctx.watermark
        self._advance(max(wm, self.ctx.watermark), now, out, inclusive=True)
        return out

    def finish(self, as_of: float | None = None) -> list[Alert]:
        """End of input: the clock moves to ``as_of`` (default: the newest event
        time) and everything still waiting for data is judged with what there is."""
        if not self._started:
            self.start()
        out: list[Alert] = []
        end = as_of if as_of is not None else self.max_t
        if end == -_INF:
            return out
        self._advance(max(end, self.ctx.watermark), end, out, inclusive=True)
        for det in self.detectors:
            store = self.stores[det.name]
            for key, st in list(store.items()):
                self._apply(store, key, det.on_flush(st, key, self.ctx), out)
        return out

    def reference_changed(self, kind: str, key: str, changed: Any = None) -> list[Alert]:
        """A reference record was added, replaced or removed (streaming: read from its
        compacted topic, after ``ref`` was updated). Every detector judges again the
        subjects it names (:meth:`Detector.affected`) through
        :meth:`Detector.on_reference`, with the clocks where they are. Replay loads the
        final registers before any event and needs no call."""
        if not self._started:
            self.start()
        out: list[Alert] = []
        ctx = self.ctx
        for i, det in enumerate(self.detectors):
            store = self.stores[det.name]
            for subject in det.affected(kind, key, changed, ctx):
                st = store.get(subject)
                before = st.wake if st is not None else None
                step = det.on_reference(st, subject, ctx)
                if step.state is None and st is None:
                    out.extend(step.alerts)
                    if step.set_aside:
                        self._put_aside(step.set_aside)
                    continue
                new = self._apply(store, subject, step, out)
                if new is not None and new.wake is not None and new.wake != before:
                    self._push(i, det, subject, new.wake)
        return out

    def run(self, events: Iterable[dict[str, Any]], as_of: float | None = None,
            end: float | None = None) -> dict[str, Alert]:
        """Events in replay order through :meth:`process`, then :meth:`finish` at ``as_of``
        (else ``end``, else the newest event time); events after ``as_of`` are skipped.
        Returns each alert id's newest version (what a what-if or an incident replay
        compares). Records set aside stay in :attr:`set_aside`."""
        current: dict[str, Alert] = {}
        for ev in events:
            if as_of is not None and ev["t"] > as_of:
                continue
            keep_newest(current, self.process(ev))
        keep_newest(current, self.finish(as_of if as_of is not None else end))
        return current

    def drain_set_aside(self) -> list[SetAside]:
        """The records set aside since the last call (the list is emptied in place)."""
        items = self.set_aside[:]
        self.set_aside.clear()
        self.counts["set_aside"] += len(items)
        return items

    # ------------------------------------------------------------ steps
    def _apply(self, store: Store, key: str, step: Any, out: list[Alert]) -> Any:
        """Write a timer's or a flush's step back (always: a detector may have changed
        the state in place); returns the new state (None: discarded)."""
        st, alerts, aside = step
        if st is None:
            if key in store:
                del store[key]
        else:
            store[key] = st
        if alerts:
            out.extend(alerts)
        if aside:
            self._put_aside(aside)
        return st

    def _put_aside(self, items: Sequence[SetAside]) -> None:
        """Keep set-aside records; one record set aside for the same reason by two
        detectors (both take payments) is kept once."""
        out = self.set_aside
        for sa in items:
            j = len(out) - 1
            while j >= 0 and out[j].record is sa.record and out[j].reason != sa.reason:
                j -= 1
            if j < 0 or out[j].record is not sa.record:
                out.append(sa)

    # ----------------------------------------------------------------- timers
    def _push(self, i: int, det: Detector, key: str, wake: float | None) -> None:
        if wake is None:
            return
        self._seq += 1
        heapq.heappush(self._timers[det.timer_clock], (wake, self._seq, i, key))
        if wake < self._due:
            self._due = wake

    def _set_due(self) -> None:
        w, n = self._timers["watermark"], self._timers["now"]
        self._due = min(w[0][0] if w else _INF, n[0][0] if n else _INF)

    def _advance(self, wm: float, now: float | None, out: list[Alert], inclusive: bool) -> None:
        ctx = self.ctx
        if wm > ctx.watermark:
            ctx.watermark = wm
        if self.clock == "event":
            now = ctx.watermark if now is None else max(now, ctx.watermark)
        if now is not None and now > ctx.now:
            ctx.now = now
        self._fire("watermark", ctx.watermark, out, inclusive)
        self._fire("now", ctx.now, out, inclusive)
        self._set_due()

    def _fire(self, which: str, clock: float, out: list[Alert], inclusive: bool) -> None:
        heap = self._timers[which]
        while heap and (heap[0][0] < clock or (inclusive and heap[0][0] <= clock)):
            wake, _, i, key = heapq.heappop(heap)
            det = self.detectors[i]
            store = self.stores[det.name]
            st = store.get(key)
            if st is None or st.wake != wake:
                continue  # stale entry: the state has moved on
            st = self._apply(store, key, det.on_timer(st, key, self.ctx), out)
            if st is not None:
                nxt = st.wake
                if nxt is not None and nxt != wake:
                    self._push(i, det, key, nxt)
