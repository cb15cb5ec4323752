"""Timestamp parsing for the hot path: RFC 3339 or naive local text → epoch seconds.

The contract's timestamps are RFC 3339 (``2026-03-02T08:15:30+08:00``, ``…Z``,
fractions allowed) or naive local time (``2026-03-02 09:02:11``). Parsing goes
through :func:`datetime.fromisoformat`, which validates; the epoch of each
distinct minute (with its offset) is cached, so the millions of pings of a
replay cost a dict look-up each instead of a datetime round trip.

>>> parse_ts("2026-03-02T08:15:30+08:00")
1772410530.0
>>> parse_ts("2026-03-02 08:15:30")  # naive: Asia/Shanghai by default
1772410530.0
>>> parse_ts("2026-03-02T00:15:30.250Z")
1772410530.25
>>> parse_ts("2026-02-30T08:00:00+08:00")
Traceback (most recent call last):
...
ValueError: day is out of range for month
>>> format_ts(1772410530.0)
'2026-03-02T08:15:30+08:00'

Which times are plausible at all is the caller's to say, as a :class:`TimeWindow`
(library code reads no clock): the replay command and the worker accept what lies
between 2000-01-01 and a day past the wall clock; without one, the parser's
:data:`DEFAULT_WINDOW` still keeps every accepted time far from the edge of
what dates can hold (year 9999).

>>> w = TimeWindow.around(1772410530.0)  # a day ahead of "now", back to 2000-01-01
>>> w.reason(1772410530.0 + 86400) is None, w.reason(1772410530.0 + 86401)
(True, 'after the latest accepted time 2026-03-03T08:15:30+08:00')
>>> DEFAULT_WINDOW.reason(parse_ts("9999-12-31T23:59:59Z"))
'after the latest accepted time 2100-01-01T08:00:00+08:00'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo

__all__ = ["parse_ts", "format_ts", "to_datetime", "DEFAULT_TZ", "TimeWindow", "DEFAULT_WINDOW",
           "EARLIEST", "DAY"]

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
_MINUTES: dict[tuple[str, object], float] = {}
_OFFSET_MINUTES: dict[str, float] = {}  # 'YYYY-MM-DDTHH:MM:' + '±hh:mm' → epoch of that minute
_MAX_CACHE = 500_000


def _slow(s: str, tz: tzinfo) -> float:
    if len(s) > 10 and s[10] == "t":
        s = s[:10] + "T" + s[11:]
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


_SECONDS = {f"{i:02d}": float(i) for i in range(60)}


def parse_ts(s: str, tz: tzinfo = DEFAULT_TZ) -> float:
    """Epoch seconds of an RFC 3339 or naive-local timestamp; ValueError if invalid."""
    # fastest path: 'YYYY-MM-DDTHH:MM:SS±hh:mm' whose minute was seen before (the key
    # is the text without the seconds, so only that exact shape can match it)
    base = _OFFSET_MINUTES.get(s[:17] + s[19:])
    if base is not None:
        sec = _SECONDS.get(s[17:19])
        if sec is not None:
            return base + sec
    # fast path: 'YYYY-MM-DD?HH:MM:SS' + optional fraction + optional offset
    if len(s) >= 19 and s[16] == ":" and s[13] == ":" and s[10] in "T ":
        sec = s[17:19]
        rest = s[19:]
        frac = 0.0
        if rest[:1] == ".":
            i = 1
            while i < len(rest) and rest[i].isdigit():
                i += 1
            if i == 1:
                raise ValueError(f"invalid timestamp {s!r}")
            frac = float("0" + rest[:i])
            rest = rest[i:]
        if sec.isdigit() and int(sec) < 60 and (rest == "" or rest == "Z" or
                                                (len(rest) == 6 and rest[3] == ":")):
            key = (s[:17] + rest, tz if rest == "" else None)
            base = _MINUTES.get(key)
            if base is None:
                base = _slow(s[:17] + "00" + rest, tz)
                if len(_MINUTES) >= _MAX_CACHE:
                    _MINUTES.clear()
                    _OFFSET_MINUTES.clear()
                _MINUTES[key] = base
                if len(rest) == 6 and frac == 0.0:
                    _OFFSET_MINUTES[s[:17] + rest] = base
            return base + int(sec) + frac
    return _slow(s, tz)


def to_datetime(t: float, tz: tzinfo = DEFAULT_TZ) -> datetime:
    return datetime.fromtimestamp(t, tz)


def format_ts(t: float, tz: tzinfo = DEFAULT_TZ) -> str:
    """RFC 3339 in the local zone, seconds precision unless there is a fraction."""
    dt = datetime.fromtimestamp(t, tz)
    spec = "seconds" if dt.microsecond == 0 else "milliseconds"
    return dt.isoformat(timespec=spec)


UTC = timezone.utc

DAY = 86400.0
#: 2000-01-01T00:00:00Z: nothing the contract carries is older
EARLIEST = 946684800.0
#: 2100-01-01T00:00:00Z: the latest time any window may accept (dates, offsets and every
#: deadline a rule adds stay far inside what datetime can hold)
LATEST = 4102444800.0


@dataclass(frozen=True)
class TimeWindow:
    """The event times a gate accepts: ``earliest <= t <= latest`` (epoch seconds).

    A record whose time lies outside is set aside with :meth:`reason`; so no record
    can move the event-time clock before 2000 or past ``latest``. The bounds are
    clamped to [1970-01-01, :data:`LATEST`], whatever is asked.
    """

    earliest: float = EARLIEST
    latest: float = LATEST

    def __post_init__(self) -> None:
        for name in ("earliest", "latest"):
            v = float(getattr(self, name))
            if math.isnan(v):
                raise ValueError(f"TimeWindow.{name} is NaN")
            object.__setattr__(self, name, min(max(v, 0.0), LATEST))
        if self.earliest > self.latest:
            raise ValueError(f"TimeWindow: earliest {format_ts(self.earliest)} is after "
                             f"latest {format_ts(self.latest)}")

    @classmethod
    def around(cls, now: float, *, ahead_s: float = DAY, earliest: float = EARLIEST) -> "TimeWindow":
        """From ``earliest`` to ``ahead_s`` past ``now`` (the caller's wall clock): a
        feed's clock may run a little fast; a record a year ahead is a bad record."""
        return cls(earliest, now + ahead_s)

    def __contains__(self, t: float) -> bool:
        return self.earliest <= t <= self.latest

    def reason(self, t: float, tz: tzinfo = DEFAULT_TZ) -> str | None:
        """None when ``t`` is accepted, else why not (for the dead letter)."""
        if t > self.latest:
            return f"after the latest accepted time {format_ts(self.latest, tz)}"
        if t < self.earliest:
            return f"before the earliest accepted time {format_ts(self.earliest, tz)}"
        if t != t:  # NaN
            return "not a time"
        return None


#: what the parser accepts when the caller gives no window: 2000-01-01 to 2100-01-01 (UTC)
DEFAULT_WINDOW = TimeWindow()
