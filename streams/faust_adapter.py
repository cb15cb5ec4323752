"""Everything the worker needs of Faust beyond its documented API — in this module only.

Checked against faust-streaming 0.15.3 (mode-streaming 0.7.1, aiokafka 0.14).
No other module of :mod:`lianwatch.streams` touches a Faust internal; they
ask :class:`FaustGroup`, and tests give them a fake with the same methods.

Why each internal is used (Faust offers no public way):

``consumer._committed_offset``
    the bulk input reads partitions Faust assigned but does not read itself;
    where one resumes without persisted clocks is its committed offset, which
    Faust has just read (its seek after a rebalance). Faust keeps 0 as None.
``consumer._thread.commit(offsets)``
    offsets of partitions read by the bulk consumer can only be committed by
    the group member (the broker refuses commits from outside an active
    group), and Faust's public ``commit()`` commits only offsets acked through
    its own per-message path, contiguously. The producer is flushed first
    (public), as Faust's own commit does, so table changelogs are on the
    broker before the offsets that rely on them.
``faust.streams._current_event``
    a table write picks its changelog partition (and RocksDB picks its
    partition database) from "the current event" of the stream being
    iterated; the worker writes states from its batch loop, so it sets that
    context variable to a stand-in of one message of the partition.
``app.in_recovery``, ``app.tables.recovery.completed``
    "recovery is over" (tables restored, Faust's seek done): the bulk input
    takes over the assigned partitions only then. The public
    ``on_rebalance_complete`` signal fires earlier, before Faust resumes and
    seeks the partitions again, so it serves the stream path only.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .kafka_errors import broker_errors

__all__ = ["FaustGroup", "current_partition"]

log = logging.getLogger("lianwatch.streams")


class _AnchorMessage:
    __slots__ = ("topic", "partition")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


class _Anchor:
    """What a Faust table needs of "the current event": ``event.message.topic/partition``."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _AnchorMessage(topic, partition)


_anchors: dict[tuple[str, int], _Anchor] = {}


@contextmanager
def current_partition(topic: str, partition: int) -> Iterator[None]:
    """Table writes inside this block go to the changelog partition of ``partition``."""
    from faust.streams import _current_event  # faust-streaming 0.15: a ContextVar of a weakref

    anchor = _anchors.get((topic, partition))
    if anchor is None:
        anchor = _anchors[(topic, partition)] = _Anchor(topic, partition)
    token = _current_event.set(weakref.ref(anchor))
    try:
        yield
    finally:
        _current_event.reset(token)


class FaustGroup:
    """The consumer group as the worker sees it: assignment, generation, recovery, commits."""

    def __init__(self, app: Any) -> None:
        self.app = app

    # ------------------------------------------------------------ public Faust API
    def assigned(self) -> set[tuple[str, int]]:
        try:
            return {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        except Exception:  # noqa: BLE001 - the consumer is not started yet
            return set()

    @property
    def generation(self) -> int:
        return self.app.consumer_generation_id

    @property
    def rebalancing(self) -> bool:
        return bool(self.app.rebalancing)

    @property
    def stopping(self) -> bool:
        return bool(self.app.should_stop)

    def stale(self, generation: int) -> bool:
        """Partitions may have moved, or the worker is stopping (its last offset commit may
        already be behind us): a batch of ``generation`` is neither persisted nor acked."""
        return self.rebalancing or self.generation != generation or self.stopping

    def pause(self, tps: set[tuple[str, int]]) -> None:
        from faust.types import TP

        self.app.consumer.pause_partitions([TP(t, p) for t, p in tps])

    async def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        from faust.types import TP

        await self.app.consumer.seek_wait({TP(t, p): o for (t, p), o in offsets.items()})

    def on_rebalance_complete(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` when Faust has recovered the tables after a rebalance (before
        it seeks the partitions to their committed offsets and resumes fetching)."""
        async def handler(sender: Any = None, **kwargs: Any) -> None:
            await callback()
        self.app.on_rebalance_complete.connect(handler)

    # ------------------------------------------------------------ internals (see module doc)
    def recovered(self) -> bool:
        """Tables recovered and Faust's seek done for the current assignment."""
        app = self.app
        return (not self.rebalancing and not getattr(app, "in_recovery", False)
                and app.tables.recovery.completed.is_set())

    def committed(self) -> dict[tuple[str, int], int | None]:
        """The committed offsets Faust read at its last seek (None: none, or 0)."""
        return {(tp.topic, tp.partition): off
                for tp, off in self.app.consumer._committed_offset.items()}  # noqa: SLF001

    async def commit(self, offsets: dict[tuple[str, int], int], generation: int) -> bool:
        """Commit offsets of partitions this member owns (after flushing the producer).

        Nothing is committed while partitions may be moving; a failed commit is
        logged (the next one covers it; the persisted clocks say where to resume).
        """
        from faust.types import TP

        if not offsets or self.rebalancing or self.generation != generation:
            return False
        try:
            with broker_errors("committing offsets"):
                await self.app.producer.flush()
                return bool(await self.app.consumer._thread.commit(  # noqa: SLF001
                    {TP(t, p): off for (t, p), off in offsets.items()}))
        except Exception as exc:  # noqa: BLE001 - e.g. the group moved while committing
            (log.debug if self.stopping else log.warning)("offset commit: %s", exc)
            return False
