"""The bulk input: our own consumer on the input partitions Faust assigned us.

Faust's per-message path costs ~80 µs a message here, which caps a worker near
7–10 k events/s. So by default Faust keeps the consumer group, the
co-partitioned assignment, the tables and their recovery, and once recovery
is over (:meth:`FaustGroup.recovered`) the assigned input partitions are
paused in Faust's consumer and fetched in bulk by a plain aiokafka consumer
(no group) that starts where the persisted clocks say
(:class:`~lianwatch.streams.resume.ResumePoints`), else at the committed
offset. The same batch code runs (:class:`~lianwatch.streams.pipeline.BatchRunner`);
acks are gathered here and committed through Faust's group member every
``commit_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lianwatch.errors import BrokerError

from .batch import InMsg
from .kafka_errors import broker_errors
from .pipeline import BatchRunner
from .resume import ResumePoints
from .worker_state import WorkerState

__all__ = ["BulkInput"]

log = logging.getLogger("lianwatch.streams")


class BulkInput:
    """Fetches the assigned input partitions in bulk and runs their batches."""

    def __init__(self, group: Any, runner: BatchRunner, resume: ResumePoints,
                 state: WorkerState, *, bootstrap: str, client_id: str, input_topics: set[str],
                 rekey_topic: str, batch_max: int = 5000, batch_within: float = 0.05,
                 commit_interval: float = 1.0) -> None:
        self.group = group
        self.runner = runner
        self.resume = resume
        self.state = state
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.input_topics = input_topics
        self.rekey_topic = rekey_topic
        self.batch_max = batch_max
        self.batch_within = batch_within
        self.commit_interval = commit_interval
        self.c: Any = None
        self.tps: dict[tuple[str, int], Any] = {}
        self.version = 0
        self.gen = -1
        self.acked: dict[tuple[str, int], int] = {}
        self.last_commit = time.monotonic()

    async def start(self) -> None:
        if self.c is not None:
            return
        from aiokafka import AIOKafkaConsumer

        with broker_errors("starting the bulk input"):
            self.c = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                client_id=self.client_id, max_partition_fetch_bytes=4 << 20,
                fetch_max_bytes=32 << 20, fetch_max_wait_ms=int(self.batch_within * 1000),
                auto_offset_reset="earliest")
            await self.c.start()

    # ------------------------------------------------------------ assignment
    async def take_over(self) -> None:
        """Recovery is over for a new generation: pause Faust's copies, read them ourselves."""
        group = self.group
        assigned = group.assigned()
        mine = {tp for tp in assigned if tp[0] in self.input_topics}
        points = self.resume.reassign(assigned, self.input_topics)
        group.pause(mine)
        await self.assign(mine, points)

    async def assign(self, mine: set[tuple[str, int]], points: dict[tuple[str, int], int | None]) -> None:
        from aiokafka import TopicPartition

        await self.start()
        self.version += 1
        self.gen = self.group.generation
        for proc in self.runner.processors.values():
            proc.reset()
        tps = {k: TopicPartition(*k) for k in mine}
        self.tps = tps
        with broker_errors("assigning the bulk input"):
            self.c.assign(list(tps.values()))
            committed = self.group.committed()
            for k, tp in tps.items():
                pos = points.get(k)
                if pos is None:
                    pos = committed.get(k)
                if pos is not None and pos >= 0:
                    self.c.seek(tp, pos)
                else:
                    await self.c.seek_to_beginning(tp)
        log.info("bulk input: %d partitions", len(tps))

    # ------------------------------------------------------------ acks (the Committer)
    async def ack(self, msgs: list[InMsg]) -> None:
        acked = self.acked
        for m in msgs:
            k = (m.topic, m.partition)
            if m.offset + 1 > acked.get(k, -1):
                acked[k] = m.offset + 1

    async def maybe_commit(self, force: bool = False) -> None:
        if not self.acked or (not force and time.monotonic() - self.last_commit
                              < self.commit_interval):
            return
        offsets = {tp: off for tp, off in self.acked.items() if tp in self.tps}
        self.acked.clear()
        self.last_commit = time.monotonic()
        # acks follow persisted state: committing them is safe while the
        # partitions are still ours (also while the worker stops)
        await self.group.commit(offsets, self.gen)

    # ------------------------------------------------------------ the loop
    async def run(self) -> None:
        group = self.group
        while not group.stopping:
            gen_now = group.generation
            if self.state.generation != gen_now and group.recovered() and group.assigned():
                self.state.generation = gen_now
                await self.take_over()
            if not self.tps or group.stale(self.gen):
                await asyncio.sleep(0.05)
                continue
            per = await self._fetch()
            if per is None:
                continue
            await self._dispatch(per, self.gen)
            await self.maybe_commit()

    async def _fetch(self) -> dict[str, list[InMsg]] | None:
        """One fetch, by topic (None: nothing usable, the assignment changed meanwhile)."""
        version, gen = self.version, self.gen
        try:
            with broker_errors("fetching input"):
                data = await self.c.getmany(timeout_ms=int(self.batch_within * 1000),
                                            max_records=self.batch_max)
        except BrokerError as exc:  # e.g. reassigned while fetching; the broker went away
            log.debug("bulk fetch: %s", exc)
            await asyncio.sleep(0.05)
            return None
        if version != self.version or self.group.stale(gen):
            return None  # fetched for an assignment that is gone
        per: dict[str, list[InMsg]] = {}
        for tp, recs in data.items():
            lst = per.setdefault(tp.topic, [])
            topic, part = tp.topic, tp.partition
            for r in recs:
                lst.append(InMsg(topic, part, r.offset, r.key, r.value,
                                 dict(r.headers) if r.headers else {}))
        if any(per.values()):
            self.state.touch()
        return per

    async def _dispatch(self, per: dict[str, list[InMsg]], gen: int) -> None:
        runner = self.runner
        fuel = per.pop(self.rekey_topic, None)
        if fuel:
            await runner.rekey_batch(fuel, gen, self)
        for name, proc in runner.processors.items():
            msgs = [m for t in proc.topic_names for m in per.get(t, ())]
            if msgs or self.state.families[name].unflushed:
                await runner.family_batch(proc, msgs, gen, self)

    async def stop(self) -> None:
        if self.c is not None:
            await self.maybe_commit(force=True)
            try:
                with broker_errors("stopping the bulk input"):
                    await self.c.stop()
            except BrokerError as exc:
                log.debug("bulk input stop: %s", exc)
