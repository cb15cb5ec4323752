"""Tick records: how time reaches the worker, and which tick times are believed.

Tick records share the input topics. Each is a JSON object whose first key is
the reserved marker ``__lw_tick__``::

    {"__lw_tick__": 1, "kind": "wm",   "wm": 1772409600.0, "id": "…"}   # producer progress
    {"__lw_tick__": 1, "kind": "eod",  "as_of": 1772409600.0, "id": "…"}  # end of data
    {"__lw_tick__": 1, "kind": "wall", "now": 1772409600.0, "id": "…"}  # wall clock
    {"__lw_tick__": 1, "kind": "flush", "id": "…"}  # a worker wakes itself to persist

A tick moves clocks, so a forged or broken one could move them to the year
9999 and make every engine judge (and crash on) dates no calendar holds.
:class:`TickWindow` says which tick times are plausible: a finite epoch time,
not before 2000-01-01 and not more than a day past the wall clock. A tick
outside it is ignored (dead-lettered with the reason and counted), never applied.

>>> is_tick(encode_tick("wm", wm=1.0)), is_tick(b'{"vehicle_id": "V1"}')
(True, False)
>>> decode_tick(encode_tick("eod", as_of=5.0, id="x"))["as_of"]
5.0
>>> w = TickWindow(clock=lambda: 1772409600.0)
>>> w.reason(decode_tick(encode_tick("eod", as_of=1772409600.0))) is None
True
>>> w.reason(decode_tick(encode_tick("eod", as_of=253402300799)))
'eod tick: as_of 253402300799 is more than 1 day past the wall clock (2026-03-02T00:00:00Z)'
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

__all__ = ["TICK_MARKER", "TICK_KEY", "TICK_KINDS", "is_tick", "encode_tick", "decode_tick",
           "TickWindow", "EARLIEST"]

TICK_MARKER = b'{"__lw_tick__"'
#: the message key of every tick
TICK_KEY = b"__tick__"
#: tick kind → the field holding its time (None: a tick without a time)
TICK_KINDS: dict[str, str | None] = {"wm": "wm", "eod": "as_of", "wall": "now", "flush": None}
#: 2000-01-01T00:00:00Z: no tick (and no record of this contract) is older
EARLIEST = 946684800.0


def is_tick(raw: bytes | None) -> bool:
    return raw is not None and raw[:14] == TICK_MARKER


def encode_tick(kind: str, **fields: Any) -> bytes:
    rec: dict[str, Any] = {"__lw_tick__": 1, "kind": kind}
    rec.update(fields)
    rec.setdefault("id", uuid.uuid4().hex[:16])
    return orjson.dumps(rec)


def decode_tick(raw: bytes) -> dict[str, Any] | None:
    """The tick as a dict, or None when it is not a readable tick of a known kind."""
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict) or rec.get("kind") not in TICK_KINDS:
        return None
    return rec


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TickWindow:
    """Plausible tick times: ``earliest`` ≤ t ≤ ``clock()`` + ``ahead`` (epoch seconds)."""

    earliest: float = EARLIEST
    ahead: float = 86400.0
    #: the wall clock (injectable: tests)
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def reason(self, tick: dict[str, Any]) -> str | None:
        """Why this tick's time cannot be believed (None: it can, or it carries none)."""
        kind = tick["kind"]
        name = TICK_KINDS[kind]
        if name is None:
            return None
        v = tick.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{kind} tick: {name} {v!r} is not a finite number of epoch seconds"
        if v < self.earliest:
            return f"{kind} tick: {name} {v!r} is before {_utc(self.earliest)}"
        now = self.clock()
        if v > now + self.ahead:
            days = self.ahead / 86400.0
            return (f"{kind} tick: {name} {v!r} is more than {days:g} day"
                    f"{'' if days == 1 else 's'} past the wall clock ({_utc(now)})")
        return None

    def time_of(self, tick: dict[str, Any]) -> float:
        """The tick's time (call after :meth:`reason` said it is plausible)."""
        return float(tick[TICK_KINDS[tick["kind"]]])  # type: ignore[index]
