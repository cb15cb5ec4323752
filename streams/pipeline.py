"""One batch through a family, or through the re-keying stage (broker-independent).

:meth:`BatchRunner.family_batch`: ingest → step (the engines) → sinks, and,
when due (every ``state_interval``, at an end of data, on a flush tick, or
when archive rows pile up), a :class:`~lianwatch.streams.checkpoint.Checkpoint`.
:meth:`BatchRunner.rekey_batch`: re-key → sinks → its own checkpoint (the
forwards durable, then the acks). Both drop a batch whose partitions may have
moved meanwhile (``stale(generation)``): the processor forgets its
partitions, which are rebuilt from the table, and the input comes again.

Its seams come in through the constructor: the processors (with their state
backends), the sinks, the reference sync, the staleness test and the clock;
the committer comes with each batch (the input path it came from).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .batch import BatchOutput, InMsg
from .checkpoint import Checkpoint, Committer
from .family import FamilyProcessor
from .rekey import FuelRekeyer
from .resume import ResumePoints
from .worker_state import WorkerState

__all__ = ["BatchRunner", "ReferenceSync", "StaticReference"]

log = logging.getLogger("lianwatch.streams")


class ReferenceSync(Protocol):
    def apply(self) -> None:
        """Apply reference updates received meanwhile (between batches, never inside one)."""
        ...

    async def sync(self) -> None:
        """Catch up with the reference topics now (a record named an id not known yet)."""
        ...


class StaticReference:
    """A reference that does not change (tests, tools)."""

    def apply(self) -> None:
        pass

    async def sync(self) -> None:
        pass


class BatchRunner:
    """Runs batches of every family of this worker and checkpoints them."""

    def __init__(self, processors: Mapping[str, FamilyProcessor], rekeyer: FuelRekeyer,
                 sinks: Any, state: WorkerState, *, reference: ReferenceSync | None = None,
                 stale: Callable[[int], bool] = lambda generation: False,
                 state_interval: float = 1.0, max_archive_rows: int = 200_000,
                 resume: ResumePoints | None = None,
                 on_step: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.processors = processors
        self.rekeyer = rekeyer
        self.sinks = sinks
        self.state = state
        self.reference = reference or StaticReference()
        self.stale = stale
        self.state_interval = state_interval
        self.max_archive_rows = max_archive_rows
        self.resume = resume
        self.on_step = on_step
        self.clock = clock

    async def _checkpoint(self, committer: Committer, proc: FamilyProcessor | None,
                          generation: int, msgs: Sequence[InMsg] = ()) -> bool:
        acks = await Checkpoint(self.sinks, committer, proc, stale=lambda: self.stale(generation),
                                on_step=self.on_step).commit(msgs)
        if acks is None:
            return False
        if self.resume is not None:
            self.resume.acked(acks)
        return True

    def _due(self, proc: FamilyProcessor, out: BatchOutput, now: float) -> bool:
        fs = self.state.families[proc.family.name]
        return bool(now - fs.last_checkpoint >= self.state_interval or out.finished
                    or proc.flush_requested or self.sinks.pending_rows >= self.max_archive_rows)

    async def family_batch(self, proc: FamilyProcessor, msgs: Sequence[InMsg], generation: int,
                           committer: Committer) -> None:
        """ingest → step → sinks → checkpoint when due (``msgs`` may be empty: a due check)."""
        name = proc.family.name
        fs = self.state.families[name]
        prof = fs.prof
        t0 = self.clock()
        if msgs:
            prof["batches"] += 1
            prof["msgs"] += len(msgs)
            if self.resume is not None:
                self.resume.seen(msgs)
        fs.busy = True
        try:
            self.reference.apply()
            out = BatchOutput()
            if msgs and proc.ingest(msgs, out):
                await self.reference.sync()  # ids the reference does not know yet
            t1 = self.clock()
            proc.step(out)
            t2 = self.clock()
            await self.sinks.write(out)
            t3 = self.clock()
            prof["ingest_s"] += t1 - t0
            prof["step_s"] += t2 - t1
            prof["sink_s"] += t3 - t2
            if self.stale(generation):
                proc.reset()
                return
            fs.released += out.released
            fs.unpersisted += out.released
            for p, tid, as_of in out.finished:
                log.info("%s/%d: end of data %s (as of %s)", name, p, tid, as_of)
                self.state.finished += 1
            fs.partitions.update(proc.runtimes)
            if self._due(proc, out, t3):
                proc.flush_requested = False
                if await self._checkpoint(committer, proc, generation):
                    fs.checkpointed(t3)
            elif msgs or out.released:
                fs.unflushed = True
            prof["commit_s"] += self.clock() - t3
        finally:
            fs.busy = False
            fs.last_batch = self.clock()
            self.state.touch()

    async def rekey_batch(self, msgs: Sequence[InMsg], generation: int,
                          committer: Committer) -> None:
        """Re-key a batch of the raw fuel topic; ack it once its forwards are delivered."""
        if self.resume is not None:
            self.resume.seen(msgs)
        self.reference.apply()
        if self.rekeyer.unknown_cards(msgs):
            await self.reference.sync()
        out = BatchOutput()
        self.rekeyer.process(msgs, out)
        await self.sinks.write(out)
        if not self.stale(generation):
            await self._checkpoint(committer, None, generation, msgs)
        self.state.touch()
