"""Precision and recall of alerts against labelled, injected incidents.

An alert matches a label when the rule and the subject are the same and they
share at least one source event id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from lianwatch.models.alert import Alert
from lianwatch.rules import RULES

__all__ = ["Score", "score", "load_labels", "format_table"]


@dataclass
class Score:
    rule: str
    labels: int
    alerts: int
    true_pos: int  # alerts that match a label
    found: int  # labels matched by an alert

    @property
    def precision(self) -> float | None:
        return self.true_pos / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.found / self.labels if self.labels else None


def load_labels(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()]


def score(alerts: Iterable[Alert], labels: list[dict[str, Any]]) -> dict[str, Score]:
    by_rule_labels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lab in labels:
        by_rule_labels[lab["rule"]].append(lab)
    by_rule_alerts: dict[str, list[Alert]] = defaultdict(list)
    for a in alerts:
        by_rule_alerts[a.rule].append(a)
    out = {}
    for rule in RULES:
        labs = by_rule_labels.get(rule, [])
        als = by_rule_alerts.get(rule, [])
        index: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, lab in enumerate(labs):
            for sid in lab.get("source_event_ids", []):
                index[(lab["subject_id"], sid)].append(i)
        matched_labels: set[int] = set()
        tp = 0
        for a in als:
            hit = {i for sid in a.source_event_ids for i in index.get((a.subject_id, sid), ())}
            if hit:
                tp += 1
                matched_labels |= hit
        out[rule] = Score(rule, len(labs), len(als), tp, len(matched_labels))
    return out


def format_table(scores: dict[str, Score]) -> str:
    def f(x: float | None) -> str:
        return "   -" if x is None else f"{x:.2f}"

    lines = [f"{'rule':32} {'labels':>6} {'alerts':>6} {'precision':>9} {'recall':>6}"]
    for s in scores.values():
        if s.labels == 0 and s.alerts == 0:
            continue
        lines.append(f"{s.rule:32} {s.labels:6d} {s.alerts:6d} {f(s.precision):>9} {f(s.recall):>6}")
    return "\n".join(lines)
