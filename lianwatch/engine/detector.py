"""The detector framework: typed, pure state machines over events and event time.

A detector is keyed by a subject (a vehicle, a village, a project) and generic
over the state it keeps per subject (``Detector[S]``, ``S`` a dataclass or a
slotted class that pickles). Like bytewax's ``StatefulLogic``, each hook is
given the subject's state and returns one :class:`Step`: the new state (or
None: discard the subject), the alerts it raises and the records it sets
aside with their reasons. Nothing is appended to a side list; the engine
applies the step: it writes the state back by reassignment (a Faust table
writes its changelog on set) or deletes it, indexes the timer the state asks
for (``state.wake``) and passes alerts and set-asides on.

A detector does no I/O and reads no clock: time comes from the :class:`Ctx`
the engine passes in, and the engine owns it. Two clocks: ``ctx.watermark``
(how far event time has surely progressed: windows that end before it are
complete) and ``ctx.now`` (the time that time-based rules are judged against:
the wall clock in production, the watermark in replay and ``--clock event``).
A detector says which one its timers follow with ``timer_clock``. Every state
has a ``wake`` attribute: when (in that clock) it wants ``on_timer``, or None.

Redelivery (at-least-once input): a record whose id a subject has already
taken is compared by content (:func:`~lianwatch.models.content.fingerprint`)
by :func:`redelivery`: an equal copy is a silent no-op; a copy with other
content is set aside, and the first one taken stays.

The suite every detector must pass: :mod:`lianwatch.detectors.checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from lianwatch.models.content import fingerprint
from lianwatch.models.alert import Alert, alert_id
from lianwatch.models.clock import DEFAULT_TZ, format_ts
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

__all__ = ["Detector", "Step", "Ctx", "Store", "DictStore", "SetAside", "Event",
           "redelivery", "forget_before"]

S = TypeVar("S")
Event = dict[str, Any]
_NEG_INF = float("-inf")


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


class Step(NamedTuple, Generic[S]):
    """What one hook call did: the subject's new state (None: discard it), the
    alerts raised, the records set aside."""

    state: S | None
    alerts: Sequence[Alert] = ()
    set_aside: Sequence[SetAside] = ()


@dataclass
class Ctx:
    """What a detector may know about the world besides its own state.

    The engine owns it and moves its clocks; a detector only reads it."""

    rules: RuleSet
    ref: Reference
    tz: tzinfo = DEFAULT_TZ
    watermark: float = _NEG_INF
    now: float = _NEG_INF

    def ts(self, t: float) -> str:
        return format_ts(t, self.tz)

    def detected_at(self) -> str:
        t = self.now if self.now != _NEG_INF else self.watermark
        return format_ts(t, self.tz) if t not in (float("inf"), _NEG_INF) else ""

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


class Detector(Generic[S]):
    """Base class. Subclasses set ``name``, ``streams`` and implement the hooks."""

    name: ClassVar[str] = "detector"
    #: event streams this detector takes
    streams: ClassVar[tuple[str, ...]] = ()
    #: the catalogue rules (``lianwatch.rules.RULES`` ids) this detector raises
    rules: ClassVar[tuple[str, ...]] = ()
    #: which clock this detector's timers follow: "watermark" or "now"
    timer_clock: ClassVar[str] = "watermark"
    #: alert fields and evidence keys that say *when* an alert was judged (they follow
    #: the clock, not the input; ``detected_at`` always is one): the conformance
    #: suite's order check leaves them out
    clock_fields: ClassVar[frozenset[str]] = frozenset()

    def key(self, ev: Event, ctx: Ctx) -> str | None:
        """The subject an event belongs to; None: it cannot be placed (set aside)."""
        raise NotImplementedError

    def unplaced_reason(self, ev: Event) -> str:
        return f"{self.name}: cannot tell which subject this record belongs to"

    def new_state(self, key: str, ctx: Ctx) -> S:
        raise NotImplementedError

    def on_event(self, state: S, ev: Event, ctx: Ctx) -> Step[S]:
        raise NotImplementedError

    def on_timer(self, state: S, key: str, ctx: Ctx) -> Step[S]:
        """Called when the clock has passed ``state.wake``."""
        return Step(state)

    def on_flush(self, state: S, key: str, ctx: Ctx) -> Step[S]:
        """End of input: judge whatever still waits for data that will not come."""
        return Step(state)

    def initial_subjects(self, ctx: Ctx) -> Iterator[str]:
        """Subjects that exist before any event (e.g. projects that never report)."""
        return iter(())

    def affected(self, kind: str, key: str, changed: Any, ctx: Ctx) -> Iterable[str]:
        """A reference record of ``kind`` with id ``key`` was added, replaced or removed
        (``ctx.ref`` already holds the new state). The subjects this detector must judge
        again (late register facts, CONTRACT §6); ``changed`` is what
        :meth:`lianwatch.reference.Reference.add` said changed (a
        :class:`lianwatch.ties.Changed` for officials and companies, else None).
        Default: none."""
        return ()

    def on_reference(self, state: S | None, key: str, ctx: Ctx) -> Step[S]:
        """Judge subject ``key`` again after a reference change (see :meth:`affected`).
        ``state`` is None when the subject has none yet (a contract just published):
        return ``Step(None)`` to leave it so. Alerts keep their ids (a new version)."""
        return Step(state)

    def hot(self, stream: str) -> Callable[..., SetAside | None] | None:
        """Optional: a direct entry for the events of ``stream`` that only add to
        a subject's state (no alerts, no timers, no new wake time):
        ``add(state, t, *values, ctx)`` with the values named by :attr:`hot_fields`;
        the same effect as :meth:`on_event` on the event. It returns None, or the
        :class:`SetAside` :meth:`on_event` would have set aside (a conflicting
        copy). For replay's bulk (GPS pings): no dict per event, one call.
        None: no such entry."""
        return None

    #: per stream, the event fields ``hot(...)``'s entry takes after ``t``
    hot_fields: ClassVar[dict[str, tuple[str, ...]]] = {}


# ----------------------------------------------------------------- redelivery
def redelivery(seen: dict[str, Any], ev: Event, ctx: Ctx,
               id_field: str) -> tuple[int, tuple[SetAside, ...] | None]:
    """Has the subject taken the record ``ev[id_field]`` before? ``seen`` maps the
    ids taken to ``(t, fingerprint, …)``. Returns the record's fingerprint and:

    None: a new id (the caller records ``seen[id] = (t, fingerprint)`` if it takes it).
    ``()``: the same content again, a redelivery: nothing to do. Else the one
    :class:`SetAside` of a copy with other content: the first one taken stays.
    (A state written before fingerprints were kept holds a bare time: the same.)
    """
    rid = ev[id_field]
    fp = fingerprint(ev)
    prev = seen.get(rid)
    if prev is None:
        return fp, None
    if prev.__class__ is float or prev[1] == fp:
        return fp, ()
    return fp, (SetAside(ev["_s"], ev, f"conflicts with {id_field} {rid} seen with other content; "
                                       f"kept the first seen (at {ctx.ts(prev[0])})"),)


def forget_before(seen: dict[str, Any], horizon: float,
                  keep: Iterable[str] = ()) -> dict[str, Any]:
    """``seen`` without the ids older than ``horizon`` (except those in ``keep``)."""
    keep = set(keep)
    return {k: v for k, v in seen.items()
            if (v if v.__class__ is float else v[0]) >= horizon or k in keep}
