"""The alert record of CONTRACT.md §3, and how its id is made.

>>> a = Alert(alert_id=alert_id("payment.cash", "village", "VL1", ["PM-1"]),
...           rule="payment.cash", level="yellow", subject_type="village",
...           subject_id="VL1", event_ts="2026-03-05T10:11:00+08:00",
...           detected_at="2026-03-05T10:11:00+08:00", title="现金支付",
...           source_event_ids=["PM-1"])
>>> a.alert_id
'03c956c93c7ef945d8f4637f'
>>> sorted(a.to_json_dict())[:3]
['alert_id', 'detected_at', 'event_ts']
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Alert", "Level", "SubjectType", "alert_id", "keep_newest", "LEVEL_RANK"]

Level = Literal["red", "yellow"]
SubjectType = Literal["vehicle", "village", "project", "person", "tender", "company", "contract"]
LEVEL_RANK = {"yellow": 1, "red": 2}

#: the contract's fields, in the contract's order (the replay output's keys)
CONTRACT_FIELDS = (
    "alert_id", "rule", "level", "subject_type", "subject_id", "unit_id", "village_id",
    "event_ts", "detected_at", "title", "evidence", "source_event_ids",
)


def alert_id(rule: str, subject_type: str, subject_id: str, anchor_ids: Iterable[str]) -> str:
    """Deterministic id: the rule, the subject and the incident's anchoring source ids.

    The anchor is fixed when the incident is first seen (its first source ids),
    so an alert that later grows or is raised keeps its id.
    """
    key = "\x1f".join([rule, subject_type, subject_id, *sorted(anchor_ids)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


class Alert(BaseModel):
    """One incident. ``version`` grows each time the alert changes (extension)."""

    model_config = ConfigDict(extra="ignore")

    alert_id: str
    rule: str
    level: Level
    subject_type: SubjectType
    subject_id: str
    unit_id: str | None = None
    village_id: str | None = None
    event_ts: str
    detected_at: str
    title: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    source_event_ids: list[str] = Field(default_factory=list)
    # extensions beyond the contract
    title_en: str = ""
    version: int = 1

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form: the contract's fields first, then the extensions."""
        return self.model_dump(mode="json")

    def identity(self) -> tuple[str, str, str]:
        return (self.alert_id, self.rule, self.level)


def keep_newest(current: dict[str, Alert], alerts: Iterable[Alert]) -> None:
    """Fold ``alerts`` into ``current`` (alert id → alert), keeping each id's
    newest version; a redelivered equal version replaces its twin."""
    for a in alerts:
        cur = current.get(a.alert_id)
        if cur is None or a.version >= cur.version:
            current[a.alert_id] = a
