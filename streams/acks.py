"""Acks in offset order, and the clocks that may be persisted with them.

Every message a partition runtime takes is queued here (one :class:`AckQueue`
per topic partition it reads). A message is *done* once it is processed (an
event released to the engine, a tick applied, a bad record dead-lettered);
it is *acked* only when every message before it on its topic partition is
done too — never out of order.

An entry is ``[done, msg, queue, input, frontier, eod]``: what the message
tells about its input's frontier (its event time, a tick's time) and an
end-of-data tick it carries, ``(id, as_of)``. Those count as durable only once
the message is acked (everything before it on its partition is processed): a
restart resumes from there, so the clocks it restores never run ahead of
records it will see again.

Faust commits the highest *contiguous* acked offset, but its gap check misses
a gap right at the committed offset (or before the first commit), so
messages are never acked out of order here.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from .batch import InMsg
from .ticks import is_tick

__all__ = ["AckQueue", "PartitionAcks", "mark_done"]

_INF = math.inf


class AckQueue:
    """Messages of one topic partition in arrival order; acked strictly in that order."""

    __slots__ = ("q", "ndone", "upto")

    def __init__(self, upto: int = -1) -> None:
        self.q: deque[list[Any]] = deque()
        self.ndone = 0  # done entries still queued (behind one that is not)
        self.upto = upto  # every offset below this one is processed (and persisted)

    def add(self, msg: InMsg, input_key: str) -> list[Any]:
        e = [False, msg, self, input_key, -_INF, None]
        self.q.append(e)
        return e

    def pop_done(self, out: list[InMsg], frontier: dict[str, float],
                 eod: dict[str, tuple[float, set[str]]]) -> bool:
        """Move the done head of the queue to ``out``; raise the durable clocks with it."""
        q = self.q
        moved = False
        while q and q[0][0]:
            e = q.popleft()
            m = e[1]
            out.append(m)
            self.ndone -= 1
            if m.offset >= self.upto:
                self.upto = m.offset + 1
            k = e[3]
            if k in frontier and e[4] > frontier[k]:
                frontier[k] = e[4]
            if e[5] is not None:
                tid, as_of = e[5]
                eod.setdefault(tid, (as_of, set()))[1].add(k)
            moved = True
        return moved

    def done_offsets(self) -> list[int]:
        """Offsets processed but not ackable yet (a message before them still waits)."""
        if not self.ndone:
            return []
        return [e[1].offset for e in self.q if e[0]]


def mark_done(entry: list[Any]) -> None:
    if not entry[0]:
        entry[0] = True
        entry[2].ndone += 1


class PartitionAcks:
    """The ack queues of one engine partition and the clocks as of its acked messages.

    ``acked_upto`` and ``skip`` come from the persisted clocks: per
    ``"topic:partition"`` the offset below which everything is processed, and
    offsets processed beyond it (a restart must not process them again).
    """

    def __init__(self, inputs: tuple[str, ...]) -> None:
        self.queues: dict[tuple[str, int], AckQueue] = {}
        self.acked_upto: dict[str, int] = {}
        self.skip: dict[tuple[str, int], set[int]] = {}
        #: the frontiers and pending end-of-data ticks as of the last acked message
        self.durable_frontier: dict[str, float] = {i: -_INF for i in inputs}
        self.durable_eod: dict[str, tuple[float, set[str]]] = {}

    def restore(self, acked: dict[str, int], skip: dict[str, list[int]],
                frontier: dict[str, float], eod: dict[str, tuple[float, list[str]]]) -> None:
        self.acked_upto = dict(acked)
        for k, offs in skip.items():
            topic, _, part = k.rpartition(":")
            self.skip[(topic, int(part))] = set(offs)
        for k, v in frontier.items():
            if k in self.durable_frontier:
                self.durable_frontier[k] = v
        self.durable_eod = {k: (a, set(s)) for k, (a, s) in eod.items()}

    def track(self, msg: InMsg, input_key: str) -> tuple[list[Any], bool]:
        """Queue a message for acking; ``False``: it was processed before a restart."""
        tp = (msg.topic, msg.partition)
        q = self.queues.get(tp)
        if q is None:
            # where this partition resumes: persisted, or (first contact) this message
            q = self.queues[tp] = AckQueue(self.acked_upto.get(f"{tp[0]}:{tp[1]}", msg.offset))
        e = q.add(msg, input_key)
        off = msg.offset
        if off < q.upto:
            mark_done(e)
            return e, False
        sk = self.skip.get(tp)
        if sk and off in sk and not is_tick(msg.value):  # ticks are re-applied (idempotent)
            sk.discard(off)
            mark_done(e)
            return e, False
        return e, True

    def collect(self, out: list[InMsg]) -> bool:
        """The messages now safe to ack, into ``out``; True when the clocks moved."""
        moved = False
        for q in self.queues.values():
            if q.pop_done(out, self.durable_frontier, self.durable_eod) or q.ndone:
                moved = True
        return moved

    def acked(self) -> dict[str, int]:
        acked = dict(self.acked_upto)
        acked.update({f"{t}:{p}": q.upto for (t, p), q in self.queues.items()})
        return acked

    def skips(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for tp in set(self.queues) | set(self.skip):
            q = self.queues.get(tp)
            upto = q.upto if q is not None else self.acked_upto.get(f"{tp[0]}:{tp[1]}", -1)
            offs = set(q.done_offsets()) if q is not None else set()
            offs.update(o for o in self.skip.get(tp, ()) if o >= upto)
            if offs:
                out[f"{tp[0]}:{tp[1]}"] = sorted(offs)
        return out
