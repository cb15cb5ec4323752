"""The alert lifecycle: a pure state machine over an append-only event log.

States::

    open        red or yellow (the alert's level): needs verification and rectification
    rectifying  rectification reported; a red alert shows yellow until verified
    closed      green: the rectification was verified
    dismissed   a false positive, with the reason

Actions (each one event ``{alert_id, seq, at, action, state, by, note, evidence_ref}``)::

    open      (system)  first sighting of the alert            → open
    raise     (system)  the detector raised its level          state unchanged, deadline restarts
    rectify   open → rectifying                                 note required (what was done)
    verify    rectifying → closed
    dismiss   open | rectifying → dismissed                     reason required
    reopen    closed | dismissed | rectifying → open            deadline restarts
    escalate  (system)  open → open, escalation + 1             when the deadline has passed

The current state is never stored: it is :func:`fold` of the history. Nothing
here reads a clock: the time of every event and the "now" of
:func:`due_escalations` are passed in.

Escalation walks the contact chain ``secretary → town_discipline →
county_discipline``. A yellow alert starts at the secretary, a red one at the
town discipline inspector (it goes to the secretary and the town at once), so
a yellow alert can be escalated twice and a red one once.

>>> s = fold([])
>>> e1 = make_event(s, "open", alert_id="a1", at=0.0, by=SYSTEM, level="red")
>>> s = apply_event(s, e1); s.state, s.level, s.top_role
('open', 'red', 'town_discipline')
>>> s = apply_event(s, make_event(s, "rectify", at=60.0, by="张三", note="已退回油款"))
>>> s.state, s.display_level
('rectifying', 'yellow')
>>> try:
...     make_event(s, "escalate", at=120.0, by=SYSTEM)
... except LifecycleError as exc:
...     print(exc)
cannot escalate alert a1: it is rectifying (整改中); escalate needs open
"""

from __future__ import annotations

from lianwatch.errors import LifecycleError  # noqa: F401 (re-exported)

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "STATES", "ACTIONS", "USER_ACTIONS", "CHAIN", "SYSTEM", "LifecycleError", "HistoryEvent",
    "AlertState", "make_event", "apply_event", "fold", "roles_for", "deadline_of",
    "due_escalations", "STATE_ZH", "ACTION_ZH", "ROLE_ZH",
]

STATES = ("open", "rectifying", "closed", "dismissed")
SYSTEM = "system"
CHAIN = ("secretary", "town_discipline", "county_discipline")
#: where on the chain an alert of each level starts
BASE_RANK = {"yellow": 0, "red": 1}
TOP_RANK = len(CHAIN) - 1

#: action → (states it applies to, state it leads to; None = unchanged)
TRANSITIONS: dict[str, tuple[frozenset[str | None], str | None]] = {
    "open": (frozenset({None}), "open"),
    "raise": (frozenset(STATES), None),
    "rectify": (frozenset({"open"}), "rectifying"),
    "verify": (frozenset({"rectifying"}), "closed"),
    "dismiss": (frozenset({"open", "rectifying"}), "dismissed"),
    "reopen": (frozenset({"closed", "dismissed", "rectifying"}), "open"),
    "escalate": (frozenset({"open"}), "open"),
}
ACTIONS = tuple(TRANSITIONS)
USER_ACTIONS = ("rectify", "verify", "dismiss", "reopen")
_SYSTEM_ONLY = frozenset({"open", "raise", "escalate"})

STATE_ZH = {"open": "待处置", "rectifying": "整改中", "closed": "已办结", "dismissed": "已核销",
            None: "未登记"}
ACTION_ZH = {"open": "登记", "raise": "升级为红色", "rectify": "报告整改", "verify": "核实办结",
             "dismiss": "核销", "reopen": "重新打开", "escalate": "逾期上报"}
ROLE_ZH = {"secretary": "村党组织书记", "director": "村委会主任", "accountant": "报账员",
           "supervisor": "村务监督委员会主任", "town_discipline": "镇纪委",
           "county_discipline": "县纪委"}

_LEVEL_NOTE = re.compile(r"\blevel=(red|yellow)\b")


@dataclass(frozen=True)
class HistoryEvent:
    """One change of one alert; ``at`` is epoch seconds."""

    alert_id: str
    seq: int
    at: float
    action: str
    state: str
    by: str = SYSTEM
    note: str = ""
    evidence_ref: str = ""

    def level(self) -> str | None:
        """The level an ``open``/``raise`` event records (``level=red`` in its note)."""
        m = _LEVEL_NOTE.search(self.note)
        return m.group(1) if m else None


@dataclass(frozen=True)
class AlertState:
    """The fold of one alert's history."""

    alert_id: str = ""
    state: str | None = None  # None: no history yet
    level: str | None = None  # the alert's level as last recorded (open / raise)
    escalation: int = 0
    seq: int = 0  # the last event's seq
    last_action: str | None = None
    last_at: float | None = None
    #: the deadline runs from here: open, raise, reopen and escalate restart it
    clock_from: float | None = None
    opened_at: float | None = None
    history: tuple[HistoryEvent, ...] = field(default=(), compare=False, repr=False)

    @property
    def rank(self) -> int:
        """Position on the contact chain of the highest level now responsible."""
        return min(BASE_RANK.get(self.level or "yellow", 0) + self.escalation, TOP_RANK)

    @property
    def top_role(self) -> str:
        return CHAIN[self.rank]

    @property
    def can_escalate(self) -> bool:
        return self.state == "open" and BASE_RANK.get(self.level or "yellow", 0) + self.escalation < TOP_RANK

    @property
    def display_level(self) -> str | None:
        """What the duty officer sees: red/yellow while open, yellow while rectifying,
        green once closed, grey when dismissed."""
        return {"open": self.level, "rectifying": "yellow", "closed": "green",
                "dismissed": "grey"}.get(self.state or "")


def roles_for(level: str, escalation: int = 0) -> list[str]:
    """The roles an alert goes to: the secretary and the chain up to its rank.

    >>> roles_for("yellow"), roles_for("red"), roles_for("red", 1), roles_for("yellow", 5)
    (['secretary'], ['secretary', 'town_discipline'], ['secretary', 'town_discipline', 'county_discipline'], ['secretary', 'town_discipline', 'county_discipline'])
    """
    rank = min(BASE_RANK.get(level, 0) + escalation, TOP_RANK)
    return list(CHAIN[: rank + 1])


def make_event(state: AlertState, action: str, *, at: float, by: str, note: str = "",
               evidence_ref: str = "", alert_id: str | None = None,
               level: str | None = None) -> HistoryEvent:
    """The event ``action`` would append to this history; LifecycleError if not allowed."""
    aid = alert_id or state.alert_id
    code = aid[:8]
    if action not in TRANSITIONS:
        raise LifecycleError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    allowed, to = TRANSITIONS[action]
    if state.state not in allowed:
        if state.state is None:
            raise LifecycleError(f"cannot {action} alert {code}: it has no history yet")
        need = " or ".join(sorted(s for s in allowed if s)) or "no history"
        raise LifecycleError(f"cannot {action} alert {code}: it is {state.state} "
                             f"({STATE_ZH[state.state]}); {action} needs {need}")
    by = (by or "").strip()
    note = (note or "").strip()
    if action in _SYSTEM_ONLY and by != SYSTEM:
        raise LifecycleError(f"{action} is done by the system, not by {by or 'nobody'}")
    if action not in _SYSTEM_ONLY and not by:
        raise LifecycleError(f"{action} needs who did it (--by)")
    if action == "dismiss" and not note:
        raise LifecycleError(f"cannot dismiss alert {code} without a reason (--reason)")
    if action == "rectify" and not note:
        raise LifecycleError(f"cannot record a rectification of alert {code} without a note "
                             "saying what was done (--note)")
    if action in ("open", "raise"):
        if level not in ("red", "yellow"):
            raise LifecycleError(f"{action} needs the alert's level (red or yellow)")
        if action == "raise" and level == state.level:
            raise LifecycleError(f"alert {code} is already {level}")
        note = (note + " " if note else "") + f"level={level}"
    if action == "escalate":
        if not state.can_escalate:
            raise LifecycleError(f"cannot escalate alert {code}: it is already with "
                                 f"{state.top_role} ({ROLE_ZH[state.top_role]}), the top "
                                 "of the chain")
        nxt = CHAIN[min(state.rank + 1, TOP_RANK)]
        note = note or f"escalation={state.escalation + 1} → {nxt}"
    # milliseconds: what the store keeps, so a rebuilt history equals the live one
    return HistoryEvent(alert_id=aid, seq=state.seq + 1, at=round(float(at), 3), action=action,
                        state=to if to is not None else state.state,  # type: ignore[arg-type]
                        by=by, note=note, evidence_ref=(evidence_ref or "").strip())


def apply_event(state: AlertState, e: HistoryEvent) -> AlertState:
    """The state after ``e``. Trusts the event (the log is the truth): no checks."""
    kw: dict[str, Any] = {"alert_id": e.alert_id, "state": e.state, "seq": e.seq,
                          "last_action": e.action, "last_at": e.at,
                          "history": state.history + (e,)}
    if e.action in ("open", "raise"):
        kw["level"] = e.level() or state.level
    if e.action == "open" and state.opened_at is None:
        kw["opened_at"] = e.at
    if e.action == "escalate":
        kw["escalation"] = state.escalation + 1
    if e.action in ("open", "raise", "reopen", "escalate"):
        kw["clock_from"] = e.at
    return replace(state, **kw)


def fold(events: Iterable[HistoryEvent], alert_id: str = "") -> AlertState:
    """The current state: the history folded in ``seq`` order."""
    s = AlertState(alert_id=alert_id)
    for e in sorted(events, key=lambda e: e.seq):
        s = apply_event(s, e)
    return s


def deadline_of(state: AlertState, days: float) -> float | None:
    """When the open alert's next escalation falls due (None: not open or at the top)."""
    if not state.can_escalate or state.clock_from is None:
        return None
    return state.clock_from + days * 86400.0


def due_escalations(state: AlertState, days: float, now: float) -> list[HistoryEvent]:
    """The escalations due by ``now``, each at the instant its deadline passed.

    A deadline restarts at each escalation, so an alert left alone for two
    periods climbs two steps (as far as the top of the chain).
    """
    out = []
    s = state
    while True:
        d = deadline_of(s, days)
        if d is None or d > now:
            return out
        e = make_event(s, "escalate", at=d, by=SYSTEM,
                       note=f"逾期未整改 overdue ({days:g} d): escalation={s.escalation + 1} → "
                            f"{CHAIN[min(s.rank + 1, TOP_RANK)]}")
        out.append(e)
        s = apply_event(s, e)
