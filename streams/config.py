"""What a worker is built from (the CLI fills it from its options and the settings)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from lianwatch.detectors import default_detectors
from lianwatch.engine.detector import Detector
from lianwatch.models.clock import DEFAULT_TZ, TimeWindow
from lianwatch.rules import RuleSet

from .ticks import TickWindow
from .topics import Topics

__all__ = ["WorkerConfig"]


@dataclass
class WorkerConfig:
    bootstrap: str = "127.0.0.1:9092"
    topics: Topics = field(default_factory=Topics)
    app_id: str = "lianwatch"
    #: ``memory://`` (tests) or ``rocksdb://`` (production; the rocksdict driver)
    store_url: str = "rocksdb://"
    state_dir: str = "./lianwatch-data/faust"
    clock: str = "event"
    #: engine lateness, seconds (None: the fuel rules' ``allowed_lateness_min``)
    lateness: float | None = None
    #: wall-clock ticks (``clock="wall"``): how often the leader publishes one
    tick_interval: float = 10.0
    batch_max: int = 5000
    batch_within: float = 0.05
    commit_interval: float = 1.0
    standby_replicas: int = 0
    session_timeout: float = 10.0
    rules: RuleSet = field(default_factory=RuleSet)
    tz: tzinfo = DEFAULT_TZ
    make_detectors: Callable[[], Sequence[Detector]] = default_detectors
    #: the alert store's :class:`~lianwatch.sinks.writer.Writer` (retries, spills), or None
    writer: Any = None
    archive: bool = True
    #: a checkpoint waits this long for the store before it spills what is left to disk
    persist_timeout: float = 1.0
    #: write changed states (and ack) at most this often; a partial interval is
    #: flushed by a flush tick the worker sends itself when its input goes quiet
    state_interval: float = 1.0
    #: stop (cleanly) once every owned partition has seen an end-of-data tick and no
    #: input came for this many seconds; None: run until stopped
    idle_exit: float | None = None
    #: append "alert_id<TAB>version<TAB>source ids<TAB>unix time stored" per alert
    latency_log: str | None = None
    #: a :class:`lianwatch.lifecycle.notify.Notifier` (or None): this worker's alerts are
    #: handed to it once stored; the leader ticks it (digests, repeats, escalation)
    notifier: Any = None
    notify_interval: float = 60.0
    #: rewrite this JSON file every second: assignment, counters, what waits (health checks)
    status_file: str | None = None
    #: ``stream``: Faust agents read the input topics message by message
    #: (``noack_take`` batches); ``bulk``: Faust keeps the group, the assignment and
    #: the tables, and the assigned input partitions are fetched in bulk by a
    #: plain consumer (Faust's per-message path costs ~80 µs a message)
    input_mode: str = "bulk"
    #: which tick times are believed (others are dead-lettered and counted)
    tick_window: TickWindow = field(default_factory=TickWindow)
    #: the records' accepted times now (default: 2000-01-01 … the wall clock + 1 day):
    #: a record outside is a dead letter and never moves a clock
    time_window: Callable[[], TimeWindow] | None = None
    stats_interval: float = 0.0
    loglevel: str = "WARNING"
