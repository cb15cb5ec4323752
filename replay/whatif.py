"""What-if replay: run a period again (from the archive or a directory), possibly with
other thresholds, and compare with the alerts in the store.

The difference is told per alert (new, vanished, level changed) and summed per
rule and per village / unit, so a rule change can be judged before it goes live.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from lianwatch.detectors import default_detectors
from lianwatch.engine import Engine
from lianwatch.models.alert import Alert
from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.order import ExternalSorter
from lianwatch.models.parse import parse_event
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

__all__ = ["AlertDiff", "diff_alerts", "replay_store", "format_diff", "SLICE_STREAMS"]

#: which streams a subject filter selects
SLICE_STREAMS = {"vehicle": ("gps", "fuel"), "village": ("payments",), "project": ("progress",)}


@dataclass
class AlertDiff:
    new: list[Alert] = field(default_factory=list)
    vanished: list[Alert] = field(default_factory=list)
    level_changed: list[tuple[Alert, Alert]] = field(default_factory=list)  # (stored, replayed)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.new or self.vanished or self.level_changed)

    def by_rule(self) -> dict[str, Counter]:
        out: dict[str, Counter] = {}
        for kind, items in (("new", self.new), ("vanished", self.vanished),
                            ("level_changed", [b for _, b in self.level_changed])):
            for a in items:
                out.setdefault(a.rule, Counter())[kind] += 1
        return out

    def by_place(self) -> dict[str, Counter]:
        out: dict[str, Counter] = {}
        for kind, items in (("new", self.new), ("vanished", self.vanished),
                            ("level_changed", [b for _, b in self.level_changed])):
            for a in items:
                place = (f"village {a.village_id}" if a.village_id else
                         f"unit {a.unit_id}" if a.unit_id else f"{a.subject_type} {a.subject_id}")
                out.setdefault(place, Counter())[kind] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "new": [a.to_json_dict() for a in self.new],
            "vanished": [a.to_json_dict() for a in self.vanished],
            "level_changed": [{"alert_id": s.alert_id, "rule": s.rule, "stored": s.level,
                               "replayed": r.level} for s, r in self.level_changed],
            "unchanged": self.unchanged,
            "by_rule": {k: dict(v) for k, v in self.by_rule().items()},
            "by_place": {k: dict(v) for k, v in self.by_place().items()},
        }


def diff_alerts(stored: Iterable[Alert], replayed: Iterable[Alert]) -> AlertDiff:
    s = {a.alert_id: a for a in stored}
    r = {a.alert_id: a for a in replayed}
    d = AlertDiff()
    for aid, a in r.items():
        if aid not in s:
            d.new.append(a)
        elif s[aid].level != a.level:
            d.level_changed.append((s[aid], a))
        else:
            d.unchanged += 1
    d.vanished = [a for aid, a in s.items() if aid not in r]
    for lst in (d.new, d.vanished):
        lst.sort(key=lambda a: (a.rule, a.event_ts, a.alert_id))
    return d


def replay_store(store: Any, *, rules: RuleSet | None = None, start: float | None = None,
                 end: float | None = None, subject_type: str | None = None,
                 subject_id: str | None = None, as_of: float | None = None,
                 tz: tzinfo = DEFAULT_TZ) -> list[Alert]:
    """Replay a slice of the archive through the detectors; the alerts in their final state."""
    ref = Reference.from_raw(store.reference_rows)
    streams = SLICE_STREAMS.get(subject_type or "", ("progress", "payments", "fuel", "gps"))
    eng = Engine(default_detectors(), rules or RuleSet(), ref, tz=tz)
    eng.start()

    def events():
        for s in streams:
            for t, raw in store.archived(s, subject=subject_id, start=start, end=end):
                ev, _ = parse_event(s, raw, tz)
                if ev is not None:
                    yield ev

    current = eng.run(ExternalSorter().sorted(events()), as_of, end)
    return sorted(current.values(), key=lambda a: (a.event_ts, a.rule, a.alert_id))


def stored_slice(store: Any, *, start: float | None, end: float | None,
                 subject_id: str | None = None, limit: int = 10_000_000) -> list[Alert]:
    from lianwatch.models.clock import format_ts

    return store.alerts(subject=subject_id, since=format_ts(start, tz=DEFAULT_TZ) if start else None,
                        until=format_ts(end + 0.001) if end else None, limit=limit)


def format_diff(d: AlertDiff, lang: str = "zh") -> str:
    lines = [f"{'新增 new':>10} {len(d.new):6d}   {'消失 vanished':>14} {len(d.vanished):6d}   "
             f"{'级别变化 level changed':>22} {len(d.level_changed):6d}   "
             f"{'未变 unchanged':>14} {d.unchanged:6d}"]
    if d.empty:
        lines.append("无差异 no difference")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'rule':32} {'new':>5} {'vanished':>8} {'level':>6}")
    for rule, c in sorted(d.by_rule().items()):
        lines.append(f"{rule:32} {c['new']:5d} {c['vanished']:8d} {c['level_changed']:6d}")
    lines.append("")
    lines.append(f"{'village / unit':32} {'new':>5} {'vanished':>8} {'level':>6}")
    for place, c in sorted(d.by_place().items()):
        lines.append(f"{place:32} {c['new']:5d} {c['vanished']:8d} {c['level_changed']:6d}")
    lines.append("")
    for tag, items in (("+", d.new), ("-", d.vanished)):
        for a in items[:50]:
            lines.append(f"{tag} {a.alert_id}  {a.rule:30} {a.subject_id:8} {a.title}")
    for s, r in d.level_changed[:50]:
        lines.append(f"~ {s.alert_id}  {s.rule:30} {s.subject_id:8} {s.level} → {r.level}")
    return "\n".join(lines)
