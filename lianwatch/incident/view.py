"""What one rule family brings to an incident (:class:`View`): which records its
alerts rest on (the *plan*), how its evidence reads (Chinese labels), and any
sections of its own on the case page.

A family's view lives in a module of its own (``lianwatch/incident/<family>.py``)
and is listed in :data:`lianwatch.incident.views.VIEWS` under the rule prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["View", "Plan"]

#: stream → (subject id or None, start, end) to fetch, and the as-of time to judge at
Plan = tuple[dict[str, tuple[str | None, float | None, float | None]], float | None]


@dataclass(frozen=True)
class View:
    #: ``plan(alert, source, rules)``: the records to fetch and when to judge
    plan: Callable[[Any, Any, Any], Plan]
    #: evidence key → label (Chinese first: ``"加油站距离"``)
    labels: Mapping[str, str] = field(default_factory=dict)
    #: ``sections(reconstruction, tz)``: extra ``(title, html)`` sections of the case page
    sections: Callable[[Any, Any], list[tuple[str, str]]] | None = None
