"""``fuel`` → ``fuel.by-vehicle``: key each transaction by its vehicle (broker-independent).

A transaction without ``vehicle_id`` gets its card's vehicle from the
reference; one whose card is unknown goes to the dead letter. Ticks are
forwarded to every partition, marked with the source partition (header
``lw-src``) so the vehicle engines can tell when every source has moved on; a
tick that cannot be read or whose time is not plausible is dead-lettered and
counted, not forwarded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import tzinfo

from lianwatch.models.clock import DEFAULT_TZ, TimeWindow
from lianwatch.reference import Reference

from .batch import BatchOutput, InMsg
from .family import Parser, safe_parser
from .ticks import TICK_KEY, TickWindow, decode_tick, is_tick
from .topics import Topics, partition_for

__all__ = ["FuelRekeyer"]


class FuelRekeyer:
    """Re-keys the ``fuel`` topic by vehicle into ``fuel.by-vehicle``."""

    stream = "fuel"

    def __init__(self, topics: Topics, ref: Reference, tz: tzinfo = DEFAULT_TZ, *,
                 tick_window: TickWindow | None = None, parse: Parser | None = None,
                 time_window: Callable[[], TimeWindow] | None = None) -> None:
        self.topics = topics
        self.ref = ref
        self.tz = tz
        self.n_out = topics.family_n("vehicles")
        self.tick_window = tick_window or TickWindow()
        self.parse = parse or safe_parser(tz, window=time_window)
        self.counts: Counter[str] = Counter()

    def unknown_cards(self, msgs: Iterable[InMsg]) -> bool:
        ref = self.ref
        for m in msgs:
            raw = m.value
            if raw is None or is_tick(raw):
                continue
            ev, _ = self.parse("fuel", raw)
            if ev is not None and ref.vehicle_of(ev) is None:
                return True
        return False

    def process(self, msgs: Iterable[InMsg], out: BatchOutput) -> None:
        ref = self.ref
        for m in msgs:
            raw = m.value
            src = str(m.partition).encode()
            if raw is None:
                out.dead("fuel", m.source, "empty record (null value)", b"")
                continue
            if is_tick(raw):
                self._tick(m, raw, src, out)
                continue
            ev, why = self.parse("fuel", raw)
            if ev is None:
                out.dead("fuel", m.source, why or "invalid", raw)
                self.counts["deadletter"] += 1
                continue
            vid = ref.vehicle_of(ev)
            if vid is None:
                out.dead("fuel", m.source, (
                    f"fuel: card {ev.get('card_id')!r} belongs to no known vehicle "
                    "(no vehicle_id and not in vehicles[].card_ids)"), raw)
                self.counts["unknown_card"] += 1
                continue
            key = vid.encode()
            out.forwards.append((partition_for(key, self.n_out), key, raw,
                                 {"lw-src": src, "lw-vehicle": key}))
            self.counts["forwarded"] += 1

    def _tick(self, m: InMsg, raw: bytes, src: bytes, out: BatchOutput) -> None:
        tick = decode_tick(raw)
        if tick is None:
            out.dead("fuel", m.source, "unreadable tick record", raw)
            return
        why = self.tick_window.reason(tick)
        if why is not None:
            out.dead("fuel", m.source, "tick ignored: " + why, raw)
            self.counts["ticks_ignored"] += 1
            return
        for p in range(self.n_out):
            out.forwards.append((p, TICK_KEY, raw, {"lw-src": src}))
        self.counts["ticks"] += 1
