"""Where each input partition resumes after a rebalance.

After a rebalance Faust seeks every partition back to its committed offset,
but aiokafka skips partitions whose committed offset is None or 0: there the
consumer just goes on, and messages fetched but not yet acked (a merge buffer
holds some) would never come back. So after Faust's seek, every input
partition is moved to where this worker resumes it (:meth:`ResumePoints.reassign`):

1. the processed offset in the partition's persisted clocks (the engines);
2. else, for a partition kept through the rebalance, the first offset not
   acked in this process;
3. else None: the committed offset, else the beginning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .batch import InMsg
from .state import resume_offset

__all__ = ["ResumePoints"]

TP = tuple[str, int]


class ResumePoints:
    """Resume offsets: persisted clocks first, else what this process saw and acked."""

    def __init__(self, clocks_of: Callable[[str, int], bytes | None]) -> None:
        #: (topic, partition) → the persisted clocks of its engine partition (None: none)
        self.clocks_of = clocks_of
        self._here: dict[TP, int] = {}
        self._assigned: set[TP] = set()

    def seen(self, msgs: Sequence[InMsg]) -> None:
        here = self._here
        for m in msgs:
            here.setdefault((m.topic, m.partition), m.offset)

    def acked(self, msgs: Sequence[InMsg]) -> None:
        here = self._here
        for m in msgs:
            k = (m.topic, m.partition)
            if m.offset + 1 > here.get(k, -1):
                here[k] = m.offset + 1

    def point(self, tp: TP) -> int | None:
        pos = resume_offset(self.clocks_of(*tp), *tp)
        if pos is None and tp in self._assigned:
            pos = self._here.get(tp)
        return pos if pos is not None and pos >= 0 else None

    def reassign(self, assigned: Iterable[TP], inputs: set[str]) -> dict[TP, int | None]:
        """A new assignment: the resume point of each of its input partitions."""
        now = set(assigned)
        points = {tp: self.point(tp) for tp in now if tp[0] in inputs}
        for tp in list(self._here):
            if tp not in now:
                del self._here[tp]
        self._assigned = now
        return points
