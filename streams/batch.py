"""What goes into a batch and what comes out of it (no broker, no Faust).

:class:`InMsg` is one consumed message; :class:`BatchOutput` collects what a
batch produced: alerts (newest version per id), dead letters, archive rows,
re-keyed forwards and the end-of-data ticks it finished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lianwatch.models.alert import Alert, keep_newest

__all__ = ["InMsg", "DeadLetter", "BatchOutput"]


@dataclass(slots=True)
class InMsg:
    """One consumed message: where it came from, its bytes, and the caller's ack handle."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    handle: Any = None

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        v = self.headers.get(name)
        return v.decode("utf-8", "replace") if v is not None else None


@dataclass(slots=True)
class DeadLetter:
    """A record set aside: its stream, where it came from, why, and its original bytes."""

    stream: str
    source: str
    reason: str
    raw: bytes


@dataclass
class BatchOutput:
    alerts: dict[str, Alert] = field(default_factory=dict)  # newest version per id
    deadletters: list[DeadLetter] = field(default_factory=list)
    archive: dict[str, list[tuple[dict[str, Any], bytes]]] = field(default_factory=dict)
    #: (partition, key, value, headers) for the re-keyed topic
    forwards: list[tuple[int, bytes, bytes, dict[str, bytes]]] = field(default_factory=list)
    finished: list[tuple[int, str, float]] = field(default_factory=list)  # (partition, eod id, as_of)
    released: int = 0

    def add_alerts(self, alerts: Iterable[Alert]) -> None:
        keep_newest(self.alerts, alerts)

    def dead(self, stream: str, source: str, reason: str, raw: bytes) -> None:
        self.deadletters.append(DeadLetter(stream, source, reason, raw))

    def merge(self, other: "BatchOutput") -> None:
        self.add_alerts(other.alerts.values())
        self.deadletters.extend(other.deadletters)
        for s, rows in other.archive.items():
            self.archive.setdefault(s, []).extend(rows)
        self.forwards.extend(other.forwards)
        self.finished.extend(other.finished)
        self.released += other.released
