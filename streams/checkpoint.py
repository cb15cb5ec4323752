"""The at-least-once commit of one family, in numbered steps (quix-streams style).

Messages are processed in batches; a batch's effects are durable only after a
checkpoint, and its input is acknowledged only at the end of one::

    1. alerts and dead letters durable   (on the output topics, and accepted by
                                          the store or in the writer's spill)
    2. archive rows durable              (the same)
    3. states                            (each changed state, once, into the table)
    4. clocks                            (watermark, frontiers, end-of-data ticks and
                                          the offsets processed, as of the acks below)
    5. acks                              (the messages whose effects are all above)

A crash between any two steps leaves the input unacknowledged from the last
finished checkpoint on: it is delivered again, the clocks of step 4 say which
of it was processed already (skipped), the detectors drop records they have
seen, and alert ids are deterministic — so the store ends with every alert
once. A crash inside step 3 may leave a partition's states newer than its
clocks: its messages come again and find their records already seen.

The seams are injected: :class:`Outputs` (the sinks), the processor's
:class:`~lianwatch.streams.state.StateBackend`, and a :class:`Committer` (the
offset acks). ``on_step`` is told the number of every finished step (tracing;
tests stop the worker between steps with it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .batch import InMsg

__all__ = ["Checkpoint", "Outputs", "Committer", "STEPS"]

#: step number → what is durable once it is done
STEPS = {1: "alerts and dead letters", 2: "archive rows", 3: "states", 4: "clocks", 5: "acks"}


class Outputs(Protocol):
    """The sinks, as a checkpoint sees them."""

    async def outputs_durable(self) -> None:
        """Step 1: every alert and dead letter written so far is durable."""
        ...

    async def archive_durable(self) -> None:
        """Step 2: every archive row written so far is durable."""
        ...


class Committer(Protocol):
    """Acknowledges consumed messages (Faust's stream acks, or the bulk input's commits)."""

    async def ack(self, msgs: Sequence[InMsg]) -> None: ...


class Checkpoint:
    """One checkpoint of one family (``proc`` None: a stage without state, the re-keying).

    ``stale()`` is asked before the states are written: when the partitions may
    have moved (a rebalance) the processor forgets them (they are rebuilt from
    the table) and nothing is persisted or acked.
    """

    def __init__(self, sinks: Outputs, committer: Committer, proc: Any = None, *,
                 stale: Callable[[], bool] = lambda: False,
                 on_step: Callable[[int], None] | None = None) -> None:
        self.sinks = sinks
        self.committer = committer
        self.proc = proc
        self.stale = stale
        self.on_step = on_step

    def _done(self, step: int) -> None:
        if self.on_step is not None:
            self.on_step(step)

    async def commit(self, msgs: Sequence[InMsg] = ()) -> list[InMsg] | None:
        """Run the steps; return the messages acked (``msgs``: a stateless stage's batch),
        or None when the batch was dropped (its partitions may have moved)."""
        await self.sinks.outputs_durable()
        self._done(1)
        await self.sinks.archive_durable()
        self._done(2)
        if self.stale():
            if self.proc is not None:
                self.proc.reset()
            return None
        acks = list(msgs)
        if self.proc is not None:
            self.proc.write_states()
            self._done(3)
            acks = self.proc.write_clocks()
            self._done(4)
        await self.committer.ack(acks)
        self._done(5)
        return acks
