"""The detector framework: pure state machines over events and event time.

A detector is keyed by a subject (a vehicle, a village, a project). For each
event it is given the subject's state and returns the new state and the
alerts it raises; when the clock passes a time the state asked to be woken at
(``wake``), it is called again. It does no I/O and reads no clock: time comes
from the :class:`Ctx` the engine passes in. State lives in a :class:`Store`
(a dict in replay, a Faust table in streaming) and is written back by
reassignment after every call.

Two clocks: ``ctx.watermark`` (how far event time has surely progressed:
windows that end before it are complete) and ``ctx.now`` (the time that
time-based rules are judged against: the wall clock in production, the
watermark in replay and ``--clock event``). A detector says which one its
timers follow with ``timer_clock``. Every state object has a ``wake``
attribute: when (in that clock) it wants ``on_timer``, or None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, ClassVar, Protocol

from lianwatch.models.alert import Alert, alert_id
from lianwatch.models.clock import DEFAULT_TZ, format_ts
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

__all__ = ["Detector", "Ctx", "Store", "DictStore", "SetAside"]


class Store(Protocol):
    """Where a detector's per-subject state lives."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...
    def __delitem__(self, key: str) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def items(self) -> Iterable[tuple[str, Any]]: ...


class DictStore(dict):
    """The in-memory store (replay, tests)."""


@dataclass(frozen=True)
class SetAside:
    """A record a detector could not judge (e.g. too late), with the reason."""

    stream: str
    record: dict[str, Any]
    reason: str


@dataclass
class Ctx:
    """What a detector may know about the world besides its own state."""

    rules: RuleSet
    ref: Reference
    tz: tzinfo = DEFAULT_TZ
    watermark: float = float("-inf")
    now: float = float("-inf")
    set_aside: list[SetAside] = field(default_factory=list)

    def ts(self, t: float) -> str:
        return format_ts(t, self.tz)

    def detected_at(self) -> str:
        t = self.now if self.now != float("-inf") else self.watermark
        return format_ts(t, self.tz) if t not in (float("inf"), float("-inf")) else ""

    def alert(
        self,
        rule: str,
        level: str,
        subject_type: str,
        subject_id: str,
        anchor_ids: Iterable[str],
        event_t: float,
        title: tuple[str, str],
        evidence: dict[str, Any],
        source_event_ids: list[str],
        unit_id: str | None = None,
        village_id: str | None = None,
        version: int = 1,
        detected_t: float | None = None,
    ) -> Alert:
        """Build an alert with its deterministic id. ``title`` is (Chinese, English)."""
        if detected_t is None:
            detected = self.detected_at()
        else:
            detected = format_ts(detected_t, self.tz)
        return Alert(
            alert_id=alert_id(rule, subject_type, subject_id, anchor_ids),
            rule=rule,
            level=level,  # type: ignore[arg-type]
            subject_type=subject_type,  # type: ignore[arg-type]
            subject_id=subject_id,
            unit_id=unit_id,
            village_id=village_id,
            event_ts=format_ts(event_t, self.tz),
            detected_at=detected or format_ts(event_t, self.tz),
            title=title[0],
            title_en=title[1],
            evidence=evidence,
            source_event_ids=list(source_event_ids),
            version=version,
        )


class Detector:
    """Base class. Subclasses set ``name``, ``streams`` and implement the hooks."""

    name: ClassVar[str] = "detector"
    #: event streams this detector takes
    streams: ClassVar[tuple[str, ...]] = ()
    #: which clock this detector's timers follow: "watermark" or "now"
    timer_clock: ClassVar[str] = "watermark"

    def key(self, ev: dict[str, Any], ctx: Ctx) -> str | None:
        """The subject an event belongs to; None: it cannot be placed (set aside)."""
        raise NotImplementedError

    def unplaced_reason(self, ev: dict[str, Any]) -> str:
        return f"{self.name}: cannot tell which subject this record belongs to"

    def new_state(self, key: str, ctx: Ctx) -> Any:
        raise NotImplementedError

    def on_event(self, state: Any, ev: dict[str, Any], ctx: Ctx) -> tuple[Any, list[Alert]]:
        raise NotImplementedError

    def on_timer(self, state: Any, key: str, ctx: Ctx) -> tuple[Any, list[Alert]]:
        """Called when the clock has passed ``state.wake``."""
        return state, []

    def on_flush(self, state: Any, key: str, ctx: Ctx) -> tuple[Any, list[Alert]]:
        """End of input: judge whatever still waits for data that will not come."""
        return state, []

    def initial_subjects(self, ctx: Ctx) -> Iterator[str]:
        """Subjects that exist before any event (e.g. projects that never report)."""
        return iter(())

    def hot(self, stream: str) -> Callable[..., None] | None:
        """Optional: a direct entry for the events of ``stream`` that only add to
        a subject's state (no alerts, no timers, no new wake time):
        ``add(state, t, *values, ctx)`` with the values named by :attr:`hot_fields`;
        the same effect as :meth:`on_event` on the event. For replay's bulk (GPS
        pings): no dict per event, one call. None: no such entry."""
        return None

    #: per stream, the event fields ``hot(...)``'s entry takes after ``t``
    hot_fields: ClassVar[dict[str, tuple[str, ...]]] = {}
