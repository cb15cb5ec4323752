"""The views of the rule families (:class:`~.view.View`), by rule prefix, and the
plans of the version 1 families:

* fuel: the vehicle's pings and transactions from the track retention (48 h)
  before the first transaction of the alert — and at least 6 h before the
  vehicle's previous fill, whose position anchors ``fuel.no_distance`` — to
  the gap window after the last one;
* payments: the village's payments up to the last payment of the alert (the
  village's anomaly model learns from all of them);
* projects: all reports of the project, judged at the alert's detection time.
"""

from __future__ import annotations

from typing import Any

from lianwatch.models.alert import Alert
from lianwatch.models.clock import parse_ts
from lianwatch.models.parse import parse_event
from lianwatch.rules import RuleSet

from .view import Plan, View

__all__ = ["VIEWS", "view_of"]

DAY = 86400.0


def _fuel_plan(alert: Alert, src: Any, rules: RuleSet) -> Plan:
    vid = alert.subject_id
    t_ev = parse_ts(alert.event_ts)
    r = rules.fuel_for(alert.unit_id)
    fills = src.records("fuel", vid, t_ev - 30 * DAY, t_ev + r.capacity_window_h * 3600 + DAY)
    ids = set(alert.source_event_ids)
    times = []
    prev_t = None
    for t, raw in fills:
        ev, _ = parse_event("fuel", raw)
        if ev is None:
            continue
        if ev["txn_id"] in ids:
            times.append(t)
    first = min(times) if times else t_ev
    last = max(times) if times else t_ev
    for t, raw in fills:
        if t < first:
            prev_t = t
    start = first - r.track_retention_h * 3600
    if prev_t is not None:
        start = min(start, prev_t - 6 * 3600)
    end = last + r.gap_window_min * 60 + 1
    return {"gps": (vid, start, end), "fuel": (vid, start, end)}, None


def _payment_plan(alert: Alert, src: Any, rules: RuleSet) -> Plan:
    vid = alert.subject_id
    t_ev = parse_ts(alert.event_ts)
    pays = src.records("payments", vid, None, t_ev + 60 * DAY)
    ids = set(alert.source_event_ids)
    times = [t for t, raw in pays if (parse_event("payments", raw)[0] or {}).get("payment_id") in ids]
    end = max(times) if times else t_ev
    return {"payments": (vid, None, end)}, end


def _project_plan(alert: Alert, src: Any, rules: RuleSet) -> Plan:
    return {"progress": (alert.subject_id, None, None)}, parse_ts(alert.detected_at)



#: rule prefix (``fuel`` of ``fuel.gps_gap``) → its family's view
VIEWS: dict[str, View] = {
    "fuel": View(_fuel_plan),
    "payment": View(_payment_plan),
    "project": View(_project_plan),
}


def view_of(rule: str) -> View:
    """The view of the family a rule id belongs to (KeyError: none yet)."""
    return VIEWS[rule.split(".", 1)[0]]
