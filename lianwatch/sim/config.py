"""Generator configuration and run summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date


@dataclass(frozen=True)
class GenConfig:
    """Size and options of one synthetic county.

    ``days`` is the event window (GPS, fuel, current payments) starting at
    ``start`` (local midnight, Asia/Shanghai). Payments also reach back
    ``history_days`` before ``start`` (so 30-day rules and per-village models
    have history); progress reports reach back months (project life cycles).
    """

    vehicles: int = 50
    villages: int = 30
    projects: int = 40
    days: int = 14
    seed: int = 7
    start: date = date(2026, 3, 2)
    malformed: bool = True
    duplicates: bool = True
    gzip: bool = False
    history_days: int = 35
    dup_rate: float = 0.005

    def __post_init__(self) -> None:
        if self.vehicles < 1 or self.villages < 2 or self.projects < 0 or self.days < 2:
            raise ValueError("need vehicles >= 1, villages >= 2, projects >= 0, days >= 2")
        if self.history_days < 0:
            raise ValueError("history_days must be >= 0")


@dataclass
class Summary:
    """What :func:`lianwatch.sim.generate` wrote."""

    out_dir: str
    files: dict[str, str] = field(default_factory=dict)  # contract name -> path written
    lines: dict[str, int] = field(default_factory=dict)  # physical lines per file
    records: dict[str, int] = field(default_factory=dict)  # distinct good records per file
    duplicates: dict[str, int] = field(default_factory=dict)  # duplicated lines per event file
    malformed: dict[str, list[str]] = field(default_factory=dict)  # reasons per event file
    labels: dict[str, int] = field(default_factory=dict)  # expected alerts per rule
    lookalikes: dict[str, int] = field(default_factory=dict)
    time_range: dict[str, tuple[str, str]] = field(default_factory=dict)  # per event file
    first_event: str = ""
    last_event: str = ""  # the replay clock ("now") at the end of the input
    window: tuple[str, str] = ("", "")  # GPS / fuel window [start, end)
    fuel_max_delivery_delay_h: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def total_events(self) -> int:
        return sum(self.records.get(k, 0) for k in ("gps", "fuel", "payments", "progress"))
