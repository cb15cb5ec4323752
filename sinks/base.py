"""Sinks: where alerts, dead letters and archived events go.

A sink takes batches and must be idempotent: writing the same alert version
twice leaves one current row (at-least-once delivery never shows a duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from lianwatch.models.alert import Alert, keep_newest

__all__ = ["AlertSink", "ListSink", "StoreError"]


class StoreError(RuntimeError):
    """The alert store cannot be reached or refused a statement.

    ``transient``: retrying may succeed (server down, timeout, overloaded); False
    when the statement or its data is wrong (a retry would fail the same way).
    ``code``: the ClickHouse error code when there is one.
    """

    def __init__(self, message: str, *, transient: bool = True, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


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
