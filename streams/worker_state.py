"""What the worker knows about itself: per-family progress, dirty flags, counters, status.

One :class:`WorkerState` per worker (instead of a dict of flags): each family
has a :class:`FamilyState` — whether a batch runs now (``busy``), whether it
processed messages since its last checkpoint (``unflushed``), counters of
events released and persisted, and where the time went. :func:`status` turns
it, with the processors' and sinks' counters, into the JSON the worker logs
and keeps in its status file (health checks, tests, the benchmark).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FamilyState", "WorkerState", "status"]


@dataclass
class FamilyState:
    """One family's progress on this worker."""

    #: a batch of this family runs now
    busy: bool = False
    #: messages processed since the family's last checkpoint (not persisted, not acked)
    unflushed: bool = False
    last_batch: float = 0.0
    last_checkpoint: float = 0.0
    #: events released to the engines, and of those, persisted by a checkpoint
    released: int = 0
    unpersisted: int = 0
    persisted: int = 0
    #: partitions this worker has worked on
    partitions: set[int] = field(default_factory=set)
    #: batches, messages, seconds in ingest / step / sinks / checkpoint
    prof: Counter[str] = field(default_factory=Counter)

    def checkpointed(self, now: float) -> None:
        self.unflushed = False
        self.last_checkpoint = now
        self.persisted += self.unpersisted
        self.unpersisted = 0


@dataclass
class WorkerState:
    """The worker's own state (nothing here is persisted)."""

    families: dict[str, FamilyState]
    started: float = field(default_factory=time.monotonic)
    #: the last time input arrived or a batch ran (idle exit)
    last_input: float = field(default_factory=time.monotonic)
    #: end-of-data ticks finished (one per partition engine and tick)
    finished: int = 0
    #: the consumer generation the input was last set up for
    generation: int = -1
    stopping: bool = False
    input_mode: str = "bulk"
    #: unreadable reference records waiting to go to the dead letters
    bad_reference: list[tuple[str, str, bytes, str]] = field(default_factory=list)

    @classmethod
    def for_families(cls, names: Iterable[str], **kw: Any) -> "WorkerState":
        return cls(families={n: FamilyState() for n in names}, **kw)

    def unflushed(self) -> list[str]:
        return [n for n, f in self.families.items() if f.unflushed]

    def touch(self) -> None:
        self.last_input = time.monotonic()


def _frontier(v: float) -> float | None:
    return None if v == float("-inf") else round(v, 3)


def status(state: WorkerState, processors: Mapping[str, Any], rekeyer: Any, sinks: Any,
           assigned: set[tuple[str, int]] | None = None) -> dict[str, Any]:
    """The worker's counters as JSON-ready data (the status file, the stop line)."""
    released: dict[str, int] = {}
    for name, fs in state.families.items():
        released[name] = fs.released
        released["persisted_" + name] = fs.persisted
    released["finished"] = state.finished
    out: dict[str, Any] = {"released": released, "sinks": sinks.stats()}
    for name, p in processors.items():
        out[name] = dict(p.counts)
        out[name + "_partitions"] = sorted(state.families[name].partitions)
        waiting = {str(pp): {"buffered": len(rt.heap),
                             "frontier": {k: _frontier(v) for k, v in rt.frontier.items()},
                             "eod_pending": {k: sorted(s) for k, (_, s) in rt.eod.items()}}
                   for pp, rt in p.runtimes.items() if rt.heap or rt.eod}
        if waiting:
            out[name + "_waiting"] = waiting
        if assigned is not None:
            out.setdefault("assigned", {})[name] = sorted(
                {pt for t, pt in assigned if t in p.topic_names})
    out["rekey"] = dict(rekeyer.counts)
    out["ticks_ignored"] = sum(p.counts.get("ticks_ignored", 0) for p in processors.values()) \
        + rekeyer.counts.get("ticks_ignored", 0)
    out["prof"] = {n: {k: round(v, 3) for k, v in fs.prof.items()}
                   for n, fs in state.families.items() if fs.prof}
    out["input_mode"] = state.input_mode
    return out
