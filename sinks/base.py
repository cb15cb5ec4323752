"""Sinks: where alerts, dead letters and archived events go.

A sink takes batches and must be idempotent: writing the same alert version
twice leaves one current row (at-least-once delivery never shows a duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from lianwatch.errors import StoreError
from lianwatch.models.alert import Alert, keep_newest

__all__ = ["AlertSink", "ListSink", "StoreError"]


class AlertSink(Protocol):
    def write_alerts(self, alerts: Sequence[Alert]) -> None: ...
    def close(self) -> None: ...


class ListSink:
    """A testing sink: keeps what it is given (latest version per id in ``current``)."""

    def __init__(self) -> None:
        self.written: list[Alert] = []
        self.current: dict[str, Alert] = {}

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        self.written.extend(alerts)
        keep_newest(self.current, alerts)

    def close(self) -> None:
        pass

    def rows(self) -> list[dict[str, Any]]:
        return [a.to_json_dict() for a in self.current.values()]
