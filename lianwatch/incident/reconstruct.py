"""Rebuild one alert from the records it rests on, with the same detectors.

Which records: the rule family's view decides (:mod:`.views`), from what the
detectors need to reach the same judgement (not only what a person wants to see):

* fuel: the vehicle's pings and transactions from the track retention (48 h)
  before the first transaction of the alert — and at least 6 h before the
  vehicle's previous fill, whose position anchors ``fuel.no_distance`` — to
  the gap window after the last one;
* payments: the village's payments up to the last payment of the alert (the
  village's anomaly model learns from all of them);
* projects: all reports of the project, judged at the alert's detection time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from lianwatch.detectors import default_detectors
from lianwatch.engine import Engine
from lianwatch.models.alert import Alert
from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.parse import parse_event
from lianwatch.models.content import settle_ties, sort_key
from lianwatch.rules import RULES, RuleSet

from .views import view_of

__all__ = ["reconstruct", "Reconstruction", "compare"]

DAY = 86400.0


@dataclass
class Reconstruction:
    alert: Alert
    replayed: Alert | None
    records: dict[str, list[tuple[float, bytes]]]
    window: tuple[float | None, float | None]
    as_of: float | None
    differences: list[str]
    notes: list[str] = field(default_factory=list)
    input_hash: str = ""
    rules_fingerprint: str = ""
    rule_settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def reproduced(self) -> bool:
        return self.replayed is not None and not self.differences

    @property
    def n_records(self) -> int:
        return sum(len(v) for v in self.records.values())


def compare(stored: Alert, replayed: Alert | None) -> list[str]:
    """What differs between the stored alert and the one rebuilt (empty: the same)."""
    if replayed is None:
        return ["the replay raised no alert with this id"]
    diffs = []
    for f in ("rule", "level", "subject_type", "subject_id", "event_ts"):
        a, b = getattr(stored, f), getattr(replayed, f)
        if a != b:
            diffs.append(f"{f}: stored {a!r}, replayed {b!r}")
    if sorted(stored.source_event_ids) != sorted(replayed.source_event_ids):
        diffs.append(f"source_event_ids: stored {stored.source_event_ids}, "
                     f"replayed {replayed.source_event_ids}")
    for k in sorted(set(stored.evidence) | set(replayed.evidence)):
        a, b = stored.evidence.get(k), replayed.evidence.get(k)
        if a != b:
            diffs.append(f"evidence.{k}: stored {a!r}, replayed {b!r}")
    return diffs


def reconstruct(alert: Alert, source: Any, rules: RuleSet | None = None, tz=DEFAULT_TZ
                ) -> Reconstruction:
    rules = rules or RuleSet()
    plan, as_of = view_of(alert.rule).plan(alert, source, rules)
    ref = source.reference()
    records: dict[str, list[tuple[float, bytes]]] = {}
    events = []
    h = hashlib.sha256()
    starts, ends = [], []
    for stream, (subject, start, end) in sorted(plan.items()):
        recs = source.records(stream, subject, start, end)
        records[stream] = recs
        starts.append(start)
        ends.append(end)
        for t, raw in recs:
            ev, _ = parse_event(stream, raw, tz)
            if ev is not None:
                events.append(ev)
            h.update(stream.encode() + b"\0" + raw + b"\n")
    for raw in sorted(source.reference_raw):
        h.update(b"ref\0" + raw + b"\n")
    eng = Engine(default_detectors(), rules, ref, tz=tz)
    eng.start()
    events.sort(key=sort_key)
    settle_ties(events)  # the replay order made total (same id, other content: CONTRACT §2)
    current = eng.run(events, as_of)
    replayed = current.get(alert.alert_id)
    diffs = compare(alert, replayed)
    notes = []
    if replayed is not None and replayed.detected_at != alert.detected_at:
        notes.append(f"detected_at differs (stored {alert.detected_at}, replayed "
                     f"{replayed.detected_at}): the stored run's clock moved with every "
                     "subject's events, the reconstruction's with this subject's only")
    settings = rules.get(RULES[alert.rule]["family"], village_id=alert.village_id,
                         unit_id=alert.unit_id)
    s = [x for x in starts if x is not None]
    e = [x for x in ends if x is not None]
    return Reconstruction(
        alert=alert, replayed=replayed, records=records,
        window=(min(s) if s else None, max(e) if e else None), as_of=as_of,
        differences=diffs, notes=notes, input_hash=h.hexdigest(),
        rules_fingerprint=rules.fingerprint(), rule_settings=settings.model_dump(),
        source=getattr(source, "name", "?"))
