"""The lifecycle's event log in the store (table ``alert_history``) and the service on it.

The log is append-only: an event is written once with the next ``seq`` of its
alert and never changed. Current states are folds of it
(:func:`lianwatch.lifecycle.machine.fold`).

Writers: the ``alerts`` commands (an officer's rectify/verify/dismiss/reopen,
wall time) and the notifier (open, raise and escalate, by the system, at the
clock it is given). Two writers appending to the same alert in the same
instant could pick the same ``seq``; the table keeps one of them. Officers act
on an alert minutes apart, so this is accepted rather than locked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import tzinfo
from typing import Any

from lianwatch.lifecycle.config import LifecyclePolicy
from lianwatch.lifecycle.machine import (
    SYSTEM, AlertState, HistoryEvent, LifecycleError, apply_event, due_escalations, fold,
    make_event,
)
from lianwatch.models.alert import LEVEL_RANK, Alert, keep_newest
from lianwatch.models.clock import DEFAULT_TZ, format_ts, parse_ts
from lianwatch.sinks.schema import ts_ms_sql
from lianwatch.sinks.sql import in_list, quote_str

__all__ = ["HistoryLog", "Lifecycle", "load_history", "ts_expr", "resolve_alert_id"]

_IN_LIMIT = 2000  # ids per IN (…) list; more → read everything and filter


def ts_expr(store: Any, col: str) -> str:
    """SQL for a timestamp column as epoch milliseconds (DateTime64, or DateTime + _ms)."""
    return ts_ms_sql(store.caps, col)


class HistoryLog:
    """Read and append ``alert_history`` rows."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.table = f"{store.db}.alert_history"

    def events(self, alert_ids: Iterable[str] | None = None) -> dict[str, list[HistoryEvent]]:
        """Events per alert in ``seq`` order (all alerts when ``alert_ids`` is None)."""
        ids = None if alert_ids is None else sorted(set(alert_ids))
        if ids is not None and not ids:
            return {}
        where = ""
        if ids is not None and len(ids) <= _IN_LIMIT:
            where = f" WHERE alert_id IN {in_list(ids)}"
        rows = self.store.query(
            f"SELECT alert_id, seq, {ts_expr(self.store, 'at_time')} AS at_ms, action, state, "
            f"`by`, note, evidence_ref FROM {self.table} FINAL{where} ORDER BY alert_id, seq")
        want = None if ids is None or where else set(ids)
        out: dict[str, list[HistoryEvent]] = {}
        for r in rows:
            if want is not None and r["alert_id"] not in want:
                continue
            out.setdefault(r["alert_id"], []).append(HistoryEvent(
                alert_id=r["alert_id"], seq=int(r["seq"]), at=int(r["at_ms"]) / 1000.0,
                action=r["action"], state=r["state"], by=r["by"], note=r["note"],
                evidence_ref=r["evidence_ref"]))
        return out

    def append(self, events: Sequence[HistoryEvent]) -> None:
        if not events:
            return
        self.store.insert_dicts("alert_history", [
            {"alert_id": e.alert_id, "seq": e.seq, "at_time": e.at, "action": e.action,
             "state": e.state, "by": e.by, "note": e.note, "evidence_ref": e.evidence_ref}
            for e in events])


def load_history(store: Any, alert_id: str, tz: tzinfo = DEFAULT_TZ) -> list[dict[str, Any]]:
    """One alert's history for ``alerts show``: dicts with at/action/state/by/note/…
    (times in ``tz``)."""
    evs = HistoryLog(store).events([alert_id]).get(alert_id, [])
    out = []
    s = AlertState(alert_id=alert_id)
    for e in evs:
        s = apply_event(s, e)
        out.append({"seq": e.seq, "at": format_ts(e.at, tz), "action": e.action,
                     "state": e.state, "by": e.by, "note": e.note,
                     "evidence_ref": e.evidence_ref, "escalation": s.escalation,
                     "display_level": s.display_level})
    return out


def resolve_alert_id(store: Any, text: str) -> str:
    """A full alert id from an id or its first characters (the SMS reference code)."""
    text = text.strip().lower()
    if len(text) < 6:
        raise LifecycleError(f"alert id {text!r} is too short: give at least 6 characters")
    rows = store.query(
        f"SELECT DISTINCT alert_id FROM {store.db}.alerts "
        f"WHERE substring(alert_id, 1, {len(text)}) = {quote_str(text)} LIMIT 3")
    ids = [r["alert_id"] for r in rows]
    if not ids:
        raise LifecycleError(f"no alert {text!r} in the store")
    if len(ids) > 1:
        raise LifecycleError(f"alert id {text!r} is ambiguous ({', '.join(ids)}…): give more "
                             "characters")
    return ids[0]


class Lifecycle:
    """The lifecycle over the store: states by folding, actions by appending."""

    def __init__(self, store: Any, policy: LifecyclePolicy | None = None) -> None:
        self.log = HistoryLog(store)
        self.policy = policy or LifecyclePolicy()

    # ------------------------------------------------------------------ reads
    def state(self, alert_id: str) -> AlertState:
        return fold(self.log.events([alert_id]).get(alert_id, []), alert_id)

    def states(self, alert_ids: Iterable[str] | None = None) -> dict[str, AlertState]:
        """Folded states (only alerts with a history)."""
        return {aid: fold(evs, aid) for aid, evs in self.log.events(alert_ids).items()}

    def active_ids(self, now: float, recent_s: float = 30 * 86400.0) -> list[str]:
        """Alerts still open or rectifying, or changed within ``recent_s`` before ``now``
        (what a tick needs to look at; closed history stays in the store)."""
        t = ts_expr(self.log.store, "at_time")
        rows = self.log.store.query(
            f"SELECT alert_id FROM {self.log.table} FINAL GROUP BY alert_id "
            f"HAVING argMax(state, seq) IN ('open', 'rectifying') "
            f"OR max({t}) >= {int((now - recent_s) * 1000)}")
        return [r["alert_id"] for r in rows]

    # ------------------------------------------------------------------ writes
    def act(self, alert_id: str, action: str, *, at: float, by: str, note: str = "",
            evidence_ref: str = "") -> tuple[HistoryEvent, AlertState]:
        """An officer's action (rectify, verify, dismiss, reopen); LifecycleError if refused."""
        s = self.state(alert_id)
        e = make_event(s, action, at=at, by=by, note=note, evidence_ref=evidence_ref,
                       alert_id=alert_id)
        self.log.append([e])
        return e, apply_event(s, e)

    def observe(self, alerts: Iterable[Alert], now: float,
                states: dict[str, AlertState] | None = None) -> list[HistoryEvent]:
        """Register alerts: ``open`` for new ones, ``raise`` when the level went up.

        The event's time is the alert's ``detected_at`` (not later than ``now``), so
        deadlines run from detection, in event time during a replay.
        """
        latest: dict[str, Alert] = {}
        keep_newest(latest, alerts)
        if states is None:
            states = self.states(latest)
        events = []
        for aid, a in latest.items():
            s = states.get(aid) or AlertState(alert_id=aid)
            at = _detected(a, now)
            if s.state is None:
                e = make_event(s, "open", at=at, by=SYSTEM, level=a.level, alert_id=aid)
            elif s.level and LEVEL_RANK.get(a.level, 0) > LEVEL_RANK.get(s.level, 0):
                e = make_event(s, "raise", at=max(at, s.last_at or at), by=SYSTEM,
                               level=a.level)
            else:
                continue
            events.append(e)
            states[aid] = apply_event(s, e)
        self.log.append(events)
        return events

    def escalate_due(self, alerts: Mapping[str, Alert], now: float,
                     states: dict[str, AlertState]) -> list[HistoryEvent]:
        """Append the escalations due by ``now``; ``states`` is updated in place."""
        events = []
        for aid, s in list(states.items()):
            a = alerts.get(aid)
            if a is None or not s.can_escalate:
                continue
            due = due_escalations(s, self.policy.days(a.rule, s.level or a.level), now)
            for e in due:
                s = apply_event(s, e)
            if due:
                states[aid] = s
                events.extend(due)
        self.log.append(events)
        return events


def _detected(a: Alert, now: float) -> float:
    try:
        t = parse_ts(a.detected_at)
    except (ValueError, TypeError):
        return now
    return min(t, now)
