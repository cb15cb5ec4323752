"""The Faust app: topics, tables, agents and timers wired around the worker's parts.

Topology (``P`` = topic prefix, ``N`` = partitions of a family)::

    P.fuel ──[rekey-fuel]──▶ P.fuel.by-vehicle (key vehicle_id; ticks to every partition)
    P.gps + P.fuel.by-vehicle ──[engine-vehicles]──▶ table state-vehicles
    P.payments ──[engine-payments]──▶ table state-payments   (payments + unusual)
    P.progress ──[engine-projects]──▶ table state-projects
    every engine ──▶ P.alerts (key alert_id), P.deadletter, the alert store (its writer)
    P.ref.* ──[reference follower thread, no group]──▶ the Reference of every engine
    [timer, wall clock only, leader only] ──▶ a wall tick to every input partition

Each engine-family agent (``concurrency=1``) owns the co-partitioned input
partitions Faust assigns it, with one engine per partition
(:mod:`~lianwatch.streams.family`). Two input paths (``WorkerConfig.input_mode``):
``stream``, the agents read their topics through Faust (``noack_take``
batches, acks through the stream); ``bulk`` (default), Faust keeps the group,
the assignment and the tables, and :mod:`~lianwatch.streams.bulk` fetches the
input partitions. Both hand batches to the same
:class:`~lianwatch.streams.pipeline.BatchRunner`, which checkpoints them
(:mod:`~lianwatch.streams.checkpoint`). Faust internals are used only in
:mod:`~lianwatch.streams.faust_adapter`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .batch import InMsg
from .bulk import BulkInput
from .config import WorkerConfig
from .faust_adapter import FaustGroup
from .family import FamilyProcessor
from .housekeeping import Housekeeper
from .pipeline import BatchRunner
from .ref import FollowerSync, RefFollower
from .rekey import FuelRekeyer
from .resume import ResumePoints
from .sinks import WorkerSinks
from .tables import TableBackend
from .ticks import TICK_KEY, encode_tick
from .topics import FAMILIES
from .worker_state import WorkerState

__all__ = ["build_app", "StreamWorker", "FaustPublisher", "WorkerConfig"]

log = logging.getLogger("lianwatch.streams")


class FaustPublisher:
    """The sinks' :class:`~lianwatch.streams.sinks.Publisher` on Faust's producer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._topics: dict[str, Any] = {}

    def topic(self, *names: str, partitions: int | None = None) -> Any:
        key = names[0] if len(names) == 1 else "\x1f".join(names)
        t = self._topics.get(key)
        if t is None:
            t = self._topics[key] = self.app.topic(
                *names, key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw", partitions=partitions)
        return t

    async def send(self, topic: str, key: bytes | None, value: bytes, *,
                   partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Awaitable[Any]:
        return await self.topic(topic).send(key=key, value=value, partition=partition,
                                            headers=headers)


class StreamAcks:
    """The stream path's committer: Faust acks each event (in offset order)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    async def ack(self, msgs: Sequence[InMsg]) -> None:
        for m in msgs:
            await self.stream.ack(m.handle)


@dataclass
class StreamWorker:
    """The built worker: the Faust app and the parts the CLI reports on."""

    app: Any
    state: WorkerState
    processors: dict[str, FamilyProcessor]
    rekeyer: FuelRekeyer
    sinks: WorkerSinks
    housekeeper: Housekeeper

    def stats(self) -> dict[str, Any]:
        return self.housekeeper.status()


def _faust_app(cfg: WorkerConfig) -> Any:
    import faust

    return faust.App(
        cfg.app_id, broker=f"kafka://{cfg.bootstrap}", store=cfg.store_url, datadir=cfg.state_dir,
        key_serializer="raw", value_serializer="raw", topic_partitions=cfg.topics.partitions,
        topic_replication_factor=cfg.topics.replication,
        table_standby_replicas=cfg.standby_replicas, stream_wait_empty=False, web_enabled=False,
        broker_commit_interval=cfg.commit_interval, broker_commit_every=100_000,
        broker_session_timeout=cfg.session_timeout,
        broker_heartbeat_interval=max(0.5, cfg.session_timeout / 6),
        broker_rebalance_timeout=max(20.0, cfg.session_timeout * 2),
        stream_buffer_maxsize=max(8192, cfg.batch_max * 2), stream_recovery_delay=0.0,
        producer_linger=0.005, producer_max_batch_size=1 << 19,
        consumer_auto_offset_reset="earliest", table_cleanup_interval=3600.0)


def _processors(app: Any, cfg: WorkerConfig, follower: RefFollower) -> dict[str, FamilyProcessor]:
    import faust

    raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    rocks = cfg.store_url.startswith("rocksdb")
    out = {}
    for fam in FAMILIES.values():
        table = app.Table(f"state-{fam.name}", default=None, partitions=cfg.topics.family_n(fam.name),
                          key_type=bytes, value_type=bytes, schema=raw, recovery_buffer_size=10_000,
                          options={"driver": "rocksdict"} if rocks else None)
        out[fam.name] = FamilyProcessor(
            fam, cfg.topics, rules=cfg.rules, ref=follower.ref, backend=TableBackend(table),
            make_detectors=cfg.make_detectors, tz=cfg.tz, clock=cfg.clock, lateness=cfg.lateness,
            tick_window=cfg.tick_window, time_window=cfg.time_window)
    return out


def build_app(cfg: WorkerConfig, follower: RefFollower,
              request_stop: Callable[[], None] | None = None) -> StreamWorker:
    """The Faust app and its parts. ``request_stop``: how the worker stops itself (idle exit)."""
    cfg.make_detectors()  # import the detectors (river, scipy: seconds) before the first batch
    topics = cfg.topics
    app = _faust_app(cfg)
    group = FaustGroup(app)
    publisher = FaustPublisher(app)
    for name in (topics.alerts, topics.deadletter, *topics.event_topics.values()):
        publisher.topic(name)
    publisher.topic(topics.fuel_by_vehicle, partitions=topics.family_n("vehicles"))
    sinks = WorkerSinks(publisher, topics, cfg.writer, archive=cfg.archive, notifier=cfg.notifier,
                        latency_log=cfg.latency_log, persist_timeout=cfg.persist_timeout)
    state = WorkerState.for_families(FAMILIES, input_mode=cfg.input_mode)
    follower.on_bad = lambda kind, source, raw, reason: state.bad_reference.append(
        (kind, source, raw, reason))
    processors = _processors(app, cfg, follower)
    rekeyer = FuelRekeyer(topics, follower.ref, tz=cfg.tz, tick_window=cfg.tick_window,
                          time_window=cfg.time_window)
    topic_proc = {t: p for p in processors.values() for t in p.topic_names}
    resume = ResumePoints(lambda topic, part: topic_proc[topic].backend.load_meta(part)
                          if topic in topic_proc else None)
    runner = BatchRunner(
        processors, rekeyer, sinks, state, stale=group.stale, state_interval=cfg.state_interval,
        resume=resume, reference=FollowerSync(
            follower, lambda: [p.on_reference_change() for p in processors.values()]))
    input_topics = set(topic_proc) | {topics.event_topics["fuel"]}
    bulk = cfg.input_mode == "bulk"

    def send_flush(topic: str, partition: int) -> Awaitable[Any]:
        return publisher.send(topic, TICK_KEY, encode_tick("flush"), partition=partition)

    housekeeper = Housekeeper(
        state, processors, rekeyer, sinks, group,
        request_stop=request_stop or (lambda: log.warning("idle: nothing asked to stop")),
        send_flush=None if bulk else send_flush, idle_exit=cfg.idle_exit,
        status_file=cfg.status_file, stats_interval=cfg.stats_interval,
        state_interval=cfg.state_interval)
    _agents(app, cfg, publisher, runner, group, bulk)
    if bulk:
        _bulk_reader(app, BulkInput(
            group, runner, resume, state, bootstrap=cfg.bootstrap, client_id=f"{cfg.app_id}-bulk",
            input_topics=input_topics, rekey_topic=topics.event_topics["fuel"],
            batch_max=cfg.batch_max, batch_within=cfg.batch_within,
            commit_interval=cfg.commit_interval))
    else:
        async def after_rebalance() -> None:
            # move every input partition to where this worker resumes it (resume.py)
            if state.generation == group.generation:
                return
            state.generation = group.generation
            points = resume.reassign(group.assigned(), input_topics)
            seeks = {tp: v for tp, v in points.items() if v is not None}
            if seeks:
                log.info("resuming %d partitions at their processed offsets", len(seeks))
                await group.seek(seeks)
        group.on_rebalance_complete(after_rebalance)
    _timers(app, cfg, publisher, sinks, housekeeper)
    return StreamWorker(app, state, processors, rekeyer, sinks, housekeeper)


def _agents(app: Any, cfg: WorkerConfig, publisher: FaustPublisher, runner: BatchRunner,
            group: FaustGroup, bulk: bool) -> None:
    """One agent per family and one re-keying agent. With the bulk input they only hold
    the subscription (Faust assigns what they subscribe to); the bulk reader reads."""
    topics = cfg.topics

    def to_msgs(events: Sequence[Any], gen: int) -> list[InMsg]:
        out = []
        mine = group.assigned()
        for ev in events:
            m = ev.message
            if m.generation_id is not None and m.generation_id != gen:
                continue  # fetched before a rebalance: it will be read again
            if (m.topic, m.partition) in mine:
                out.append(InMsg(m.topic, m.partition, m.offset, m.key, m.value,
                                 dict(m.headers or ()), ev))
        return out

    def make_agent(proc: FamilyProcessor | None) -> Callable[[Any], Any]:
        async def agent(stream: Any) -> None:
            gen = -1
            acks = StreamAcks(stream)
            async for events in stream.noack_take(cfg.batch_max, within=cfg.batch_within):
                if bulk:
                    continue  # the bulk reader has these partitions (paused here)
                if group.generation != gen:
                    if proc is not None:
                        proc.reset()  # a rebalance: every partition restarts from its table
                    gen = group.generation
                msgs = to_msgs(events, gen)
                if not msgs:
                    continue
                runner.state.touch()
                if proc is not None:
                    await runner.family_batch(proc, msgs, gen, acks)
                else:
                    await runner.rekey_batch(msgs, gen, acks)
        agent.__name__ = f"engine_{proc.family.name}" if proc else "rekey_fuel"
        return agent

    for name, proc in runner.processors.items():
        source = publisher.topic(*proc.topic_names, partitions=topics.family_n(name))
        app.agent(source, name=f"engine-{name}", concurrency=1)(make_agent(proc))
    fuel = publisher.topic(topics.event_topics["fuel"], partitions=topics.stream_n("fuel"))
    app.agent(fuel, name="rekey-fuel", concurrency=1)(make_agent(None))


def _bulk_reader(app: Any, bulk_in: BulkInput) -> None:
    @app.task
    async def bulk_reader() -> None:
        await bulk_in.start()
        try:
            await bulk_in.run()
        finally:
            await bulk_in.stop()


def _timers(app: Any, cfg: WorkerConfig, publisher: FaustPublisher, sinks: WorkerSinks,
            housekeeper: Housekeeper) -> None:
    topics = cfg.topics
    if cfg.clock == "wall":
        @app.timer(cfg.tick_interval, on_leader=True)
        async def wall_ticker() -> None:
            value = encode_tick("wall", now=time.time())
            futs = [await publisher.send(name, TICK_KEY, value, partition=p)
                    for s, name in topics.event_topics.items() for p in range(topics.stream_n(s))]
            await asyncio.gather(*futs)

        if cfg.notifier is not None:
            @app.timer(cfg.notify_interval, on_leader=True)
            async def notify_ticker() -> None:
                sinks.run_notifier(lambda: cfg.notifier.tick(time.time()), "notifier tick")

    @app.timer(min(0.25, cfg.state_interval))
    async def housekeeping() -> None:
        await housekeeper.run_once()
