"""The Faust worker: agents, tables and sinks around :mod:`lianwatch.streams.runtime`.

Topology (``P`` = topic prefix, ``N`` = partitions of a family)::

    P.fuel ──[rekey-fuel]──▶ P.fuel.by-vehicle (key vehicle_id; ticks to every partition)
    P.gps + P.fuel.by-vehicle ──[engine-vehicles]──▶ table state-vehicles
    P.payments ──[engine-payments]──▶ table state-payments   (payments + unusual)
    P.progress ──[engine-projects]──▶ table state-projects
    every engine ──▶ P.alerts (key alert_id), P.deadletter, the alert store
    P.ref.* ──[reference follower thread, no group]──▶ the Reference of every engine
    [timer, wall clock only, leader only] ──▶ a wall tick to every input partition

Each engine-family agent (``concurrency=1``) owns the co-partitioned input
partitions Faust assigns it, with one :class:`~lianwatch.engine.Engine` per
partition. Two input paths (``WorkerConfig.input_mode``):

``stream``
    the agents read their topics through Faust (``stream.noack_take`` batches,
    manual acks in offset order). Faust's per-message path costs ~80 µs a
    message here, which caps a worker near 7–10 k events/s.
``bulk`` (default)
    Faust still holds the consumer group, the co-partitioned assignment, the
    tables and their recovery; once recovery is over the assigned input
    partitions are paused in Faust's consumer and fetched in bulk by a plain
    consumer (no group) that starts where the persisted clocks say; the same
    batch code runs; offsets are committed through Faust's group member.

Tables are Faust tables with raw keys and values:
``b"{partition}\x1f{detector}\x1f{subject}"`` → pickled state, and
``b"{partition}\x1f\x00meta"`` → the partition's clocks (engine watermark and
now, input frontiers, end-of-data ticks, processed offsets). Keys carry the
partition because a worker's table holds every partition it owns and an engine
loads only its own. Each changed state is written once per flush (at most every
``state_interval``), from the batch loop with the current event set to one of
the partition's messages, so it goes to the changelog partition of its input
partition — never from a timer. Order per flush: alerts and dead letters are
already durable (each batch), then the archive rows, the states, the clocks,
and only then the acks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import pickle
import signal
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

import orjson

from lianwatch.detectors import default_detectors
from lianwatch.engine.detector import Detector
from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.rules import RuleSet

from .ref import RefFollower
from .runtime import BatchOutput, FamilyProcessor, FuelRekeyer, InMsg
from .topics import FAMILIES, Topics, encode_tick

__all__ = ["WorkerConfig", "build_app", "TableBackend", "Sinks"]

log = logging.getLogger("lianwatch.streams")


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
    #: the alert store (an AlertStore) or None
    store: Any = None
    archive: bool = True
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
    stats_interval: float = 0.0
    loglevel: str = "WARNING"


class TableBackend:
    """A family's state in one Faust table (see the module doc for keys)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def load(self, partition: int):
        prefix = f"{partition}\x1f".encode()
        states: dict[str, dict[str, bytes]] = {}
        meta = None
        for k, v in list(self.table.items()):
            if not isinstance(k, bytes):
                k = str(k).encode()
            if not k.startswith(prefix) or v is None:
                continue
            rest = k[len(prefix):].decode("utf-8")
            if rest == "\x00meta":
                meta = v
                continue
            det, _, subj = rest.partition("\x1f")
            states.setdefault(det, {})[subj] = v
        return states, meta

    def load_meta(self, partition: int) -> bytes | None:
        return self.table.get(f"{partition}\x1f\x00meta".encode())

    def _with_event(self, anchor: Any, fn: Callable[[], None]) -> None:
        from faust.streams import _current_event

        event = anchor.handle if anchor is not None else None
        token = _current_event.set(weakref.ref(event) if event is not None else None)
        try:
            fn()
        finally:
            _current_event.reset(token)

    def put(self, partition: int, anchor: Any, detector: str, subject: str,
            value: bytes | None) -> None:
        key = f"{partition}\x1f{detector}\x1f{subject}".encode()
        t = self.table
        if value is None:
            def f() -> None:
                if key in t:
                    del t[key]
        else:
            def f() -> None:
                t[key] = value
        self._with_event(anchor, f)

    def put_meta(self, partition: int, anchor: Any, value: bytes) -> None:
        key = f"{partition}\x1f\x00meta".encode()

        def f() -> None:
            self.table[key] = value
        self._with_event(anchor, f)


class Sinks:
    """Alerts, dead letters and forwards to Kafka; alerts, dead letters, archive to the store.

    Alerts and dead letters are written at every batch (and awaited: they are
    durable before the state that produced them). Raw events for the archive
    are buffered and written in one insert per stream at each state flush
    (:meth:`flush_archive`), before the state and the acks.
    """

    def __init__(self, cfg: WorkerConfig, alerts_topic: Any, dead_topic: Any,
                 by_vehicle: Any) -> None:
        self.cfg = cfg
        self.alerts_topic = alerts_topic
        self.dead_topic = dead_topic
        self.by_vehicle = by_vehicle
        self.store = cfg.store
        self.ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lianwatch-store")
        self.counts: Counter[str] = Counter()
        self.pending_archive: dict[str, list] = {}
        self.pending_rows = 0
        self._lat = open(cfg.latency_log, "a", buffering=1) if cfg.latency_log else None  # noqa: SIM115

    async def write(self, out: BatchOutput) -> None:
        futs = []
        for a in out.alerts.values():
            futs.append(await self.alerts_topic.send(
                key=a.alert_id.encode(), value=orjson.dumps(a.to_json_dict())))
        for d in out.deadletters:
            futs.append(await self.dead_topic.send(
                key=d.stream.encode(), value=d.raw,
                headers=[("lw-stream", d.stream.encode()), ("lw-source", d.source.encode()),
                         ("lw-reason", d.reason.encode("utf-8"))]))
        for p, key, value, headers in out.forwards:
            futs.append(await self.by_vehicle.send(key=key, value=value, partition=p,
                                                   headers=list(headers.items())))
        if self.store is not None and self.cfg.archive:
            for stream, rows in out.archive.items():
                self.pending_archive.setdefault(stream, []).extend(rows)
                self.pending_rows += len(rows)
        store_job = None
        if self.store is not None and (out.alerts or out.deadletters):
            store_job = asyncio.get_running_loop().run_in_executor(
                self.ex, self._store_write, list(out.alerts.values()), out.deadletters)
        if futs:
            await asyncio.gather(*futs)
        if store_job is not None:
            await store_job
        self.counts["alerts"] += len(out.alerts)
        self.counts["deadletters"] += len(out.deadletters)
        self.counts["forwards"] += len(out.forwards)

    async def flush_archive(self) -> None:
        if not self.pending_rows:
            return
        pending, self.pending_archive, self.pending_rows = self.pending_archive, {}, 0
        await asyncio.get_running_loop().run_in_executor(self.ex, self._archive_write, pending)

    def _archive_write(self, pending: dict) -> None:
        for stream, rows in pending.items():
            if rows:
                self.store.archive(stream, rows)
                self.counts["archived"] += len(rows)

    def _store_write(self, alerts: list, dead: list) -> None:
        st = self.store
        if dead:
            now = time.time()
            st.write_deadletters({"received_t": now, "stream": d.stream, "source": d.source,
                                  "reason": d.reason, "raw": d.raw.decode("utf-8", "replace")}
                                 for d in dead)
        if alerts:
            st.write_alerts(alerts)
            if self.cfg.notifier is not None:
                try:  # a notification problem must never stop detection
                    self.cfg.notifier.on_alerts(alerts, time.time())
                except Exception:  # noqa: BLE001
                    log.exception("notifier failed on %d alerts (they stay in the store; "
                                  "the next tick retries)", len(alerts))
            if self._lat is not None:
                now = time.time()
                self._lat.write("".join(
                    f"{a.alert_id}\t{a.version}\t{','.join(a.source_event_ids)}\t{now:.6f}\n"
                    for a in alerts))

    def close(self) -> None:
        self.ex.shutdown(wait=True)
        if self._lat is not None:
            self._lat.close()


def _headers(m: Any) -> dict[str, bytes]:
    h = m.headers
    if not h:
        return {}
    if isinstance(h, dict):
        return {str(k): v for k, v in h.items()}
    return {str(k): v for k, v in h}


class _Anchor:
    """What a Faust table needs of "the current event" to pick the changelog partition."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _AnchorMessage(topic, partition)


class _AnchorMessage:
    __slots__ = ("topic", "partition")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


def build_app(cfg: WorkerConfig, follower: RefFollower) -> tuple[Any, dict[str, Any]]:
    """The Faust app and a dict of its parts (processors, sinks, stats)."""
    import faust

    topics = cfg.topics
    cfg.make_detectors()  # import the detectors (river, scipy: seconds) before the first batch
    app = faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store=cfg.store_url,
        datadir=cfg.state_dir,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=topics.partitions,
        topic_replication_factor=topics.replication,
        table_standby_replicas=cfg.standby_replicas,
        stream_wait_empty=False,
        web_enabled=False,
        broker_commit_interval=cfg.commit_interval,
        broker_commit_every=100_000,
        broker_session_timeout=cfg.session_timeout,
        broker_heartbeat_interval=max(0.5, cfg.session_timeout / 6),
        broker_rebalance_timeout=max(20.0, cfg.session_timeout * 2),
        stream_buffer_maxsize=max(8192, cfg.batch_max * 2),
        stream_recovery_delay=0.0,
        producer_linger=0.005,
        producer_max_batch_size=1 << 19,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=3600.0,
    )

    def raw_topic(*names: str, partitions: int | None = None) -> Any:
        return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=partitions)

    ev_topics = topics.event_topics
    raw_schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")
    rocks = cfg.store_url.startswith("rocksdb")
    bulk = cfg.input_mode == "bulk"
    tick_targets = [(raw_topic(name), topics.stream_n(s)) for s, name in ev_topics.items()]
    alerts_topic = raw_topic(topics.alerts)
    dead_topic = raw_topic(topics.deadletter)
    by_vehicle = raw_topic(topics.fuel_by_vehicle, partitions=topics.family_n("vehicles"))
    sinks = Sinks(cfg, alerts_topic, dead_topic, by_vehicle)
    ref = follower.ref
    state: dict[str, Any] = {"last_input": time.monotonic(), "processors": {}, "sinks": sinks,
                             "counts": Counter(), "started": time.monotonic(), "prof": {},
                             "seen": {}, "busy": {}, "unflushed": set(), "last_batch": {},
                             "input_mode": cfg.input_mode, "unpersisted": Counter()}

    def bad_ref(kind: str, source: str, raw: bytes, reason: str) -> None:
        state.setdefault("bad_ref", []).append((kind, source, raw, reason))
    follower.on_bad = bad_ref

    def apply_ref() -> None:
        if follower.apply_pending():
            for p in state["processors"].values():
                p.on_reference_change()

    async def ref_sync() -> None:
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, follower.sync):
            apply_ref()

    async def flush_bad_ref() -> None:
        bad = state.pop("bad_ref", None)
        if bad:
            from .runtime import DeadLetter

            out = BatchOutput()
            out.deadletters = [DeadLetter(k, s, r, raw) for k, s, raw, r in bad]
            await sinks.write(out)

    def assigned_tps() -> set[tuple[str, int]]:
        try:
            return {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
        except Exception:  # noqa: BLE001 - not started yet
            return set()

    def stale(gen: int) -> bool:
        """Partitions may have moved, or the worker is stopping (its last offset
        commit may already be behind us): then a batch is neither persisted nor acked."""
        return app.rebalancing or app.consumer_generation_id != gen or app.should_stop

    # ------------------------------------------------------------ processors
    topic_proc: dict[str, FamilyProcessor] = {}
    for fam in FAMILIES.values():
        n = topics.family_n(fam.name)
        table = app.Table(f"state-{fam.name}", default=None, partitions=n, key_type=bytes,
                          value_type=bytes, schema=raw_schema, recovery_buffer_size=10_000,
                          options={"driver": "rocksdict"} if rocks else None)
        proc = FamilyProcessor(fam, topics, rules=cfg.rules, ref=ref,
                               backend=TableBackend(table), make_detectors=cfg.make_detectors,
                               tz=cfg.tz, clock=cfg.clock, lateness=cfg.lateness)
        state["processors"][fam.name] = proc
        for t in proc.topic_names:
            topic_proc[t] = proc
    rekeyer = FuelRekeyer(topics, ref, tz=cfg.tz)
    state["rekeyer"] = rekeyer
    fuel_topic = ev_topics["fuel"]
    input_topics = set(topic_proc) | {fuel_topic}
    last_flush: dict[str, float] = {}

    # ------------------------------------------------------------ one batch
    async def family_batch(proc: FamilyProcessor, msgs: list[InMsg], gen: int,
                           ack: Callable[[list[InMsg]], Any]) -> None:
        """ingest → step → sinks (alerts first) → maybe flush states → ack."""
        fam_name = proc.family.name
        t_in = time.perf_counter()
        prof = state["prof"].setdefault(fam_name, Counter())
        if msgs:
            prof["batches"] += 1
            prof["msgs"] += len(msgs)
        state["busy"][fam_name] = True
        try:
            apply_ref()
            out = BatchOutput()
            unknown = proc.ingest(msgs, out) if msgs else set()
            if unknown:
                await ref_sync()
            t1 = time.perf_counter()
            proc.step(out)
            t2 = time.perf_counter()
            await sinks.write(out)
            t3 = time.perf_counter()
            prof["ingest_s"] += t1 - t_in
            prof["step_s"] += t2 - t1
            prof["sink_s"] += t3 - t2
            if stale(gen):
                proc.reset()
                return
            state["counts"][fam_name] += out.released
            state["unpersisted"][fam_name] += out.released
            for p, tid, as_of in out.finished:
                log.info("%s/%d: end of data %s (as of %s)", fam_name, p, tid, as_of)
                state["counts"]["finished"] += 1
            now = time.monotonic()
            if (now - last_flush.get(fam_name, 0.0) >= cfg.state_interval or out.finished
                    or proc.flush_requested or sinks.pending_rows >= 200_000):
                # a state flush: archive rows, then each changed state once, then
                # the acks (in offset order per partition)
                await sinks.flush_archive()
                if stale(gen):
                    proc.reset()
                    return
                acks: list[InMsg] = []
                proc.flush_requested = False
                proc.commit_state(acks)
                await ack(acks)
                note_acked(acks)
                last_flush[fam_name] = now
                state["unflushed"].discard(fam_name)
                state["counts"]["persisted_" + fam_name] += state["unpersisted"].pop(fam_name, 0)
            else:
                state["unflushed"].add(fam_name)
            prof["commit_s"] += time.perf_counter() - t3
            state["seen"].setdefault(fam_name, set()).update(proc.runtimes)
        finally:
            state["busy"][fam_name] = False
            state["last_batch"][fam_name] = state["last_input"] = time.monotonic()

    async def rekey_batch(msgs: list[InMsg], gen: int, ack: Callable[[list[InMsg]], Any]) -> None:
        apply_ref()
        if rekeyer.unknown_cards(msgs):
            await ref_sync()
        out = BatchOutput()
        rekeyer.process(msgs, out)
        await sinks.write(out)
        if stale(gen):
            return
        await ack(msgs)
        note_acked(msgs)
        state["last_input"] = time.monotonic()

    # ------------------------------------------------------------ resume points
    # After a rebalance Faust seeks every partition back to its committed offset,
    # but aiokafka skips partitions whose committed offset is None or 0: there the
    # consumer just goes on, and messages fetched but not yet acked (a merge
    # buffer holds some) would never come back. So after Faust's seek, every input
    # partition is moved to where this worker resumes it: the processed offset in
    # the partition's persisted clocks (engines), else (a partition kept through
    # the rebalance) the first offset not acked in this process, else the
    # committed offset, else the beginning.
    resume: dict[tuple[str, int], int] = {}
    prev_assigned: set[tuple[str, int]] = set()

    def note_seen(msgs: Sequence[InMsg]) -> None:
        for m in msgs:
            resume.setdefault((m.topic, m.partition), m.offset)

    def note_acked(msgs: Sequence[InMsg]) -> None:
        for m in msgs:
            k = (m.topic, m.partition)
            if m.offset + 1 > resume.get(k, -1):
                resume[k] = m.offset + 1

    def resume_point(key: tuple[str, int]) -> int | None:
        pos = None
        proc = topic_proc.get(key[0])
        if proc is not None:
            meta = proc.backend.load_meta(key[1])
            if meta is not None:
                pos = pickle.loads(meta).get("acked", {}).get(f"{key[0]}:{key[1]}")
        if (pos is None or pos < 0) and key in prev_assigned:
            pos = resume.get(key)
        return pos if pos is not None and pos >= 0 else None

    async def after_recovery() -> None:
        nonlocal prev_assigned
        consumer = app.consumer
        now = {(tp.topic, tp.partition): tp for tp in consumer.assignment()}
        mine = {k: tp for k, tp in now.items() if k[0] in input_topics}
        points = {k: resume_point(k) for k in mine}
        for key in list(resume):
            if key not in now:
                del resume[key]
        prev_assigned = set(now)
        if bulk:
            # Faust keeps the group, the assignment and the tables; the input
            # partitions are read in bulk by our own consumer (no per-message path)
            consumer.pause_partitions(list(mine.values()))
            await bulk_in.assign(mine, points)
        else:
            seeks = {mine[k]: v for k, v in points.items() if v is not None}
            if seeks:
                log.info("resuming %d partitions at their processed offsets", len(seeks))
                await consumer.seek_wait(seeks)

    @app.task
    async def install_seek() -> None:
        consumer = app.consumer
        faust_seek = consumer.perform_seek

        async def perform_seek() -> None:
            await faust_seek()
            # once per generation, when recovery is over (Faust also seeks from
            # inside its fetch loop while it reads changelogs: not then)
            gen = app.consumer_generation_id
            if not getattr(app, "in_recovery", False) and state.get("seek_gen") != gen:
                state["seek_gen"] = gen
                await after_recovery()
        consumer.perform_seek = perform_seek  # type: ignore[method-assign]

    # ------------------------------------------------------------ agents
    def to_msgs(events: Sequence[Any], gen: int) -> list[InMsg]:
        out = []
        mine = assigned_tps()
        for ev in events:
            m = ev.message
            if m.generation_id is not None and m.generation_id != gen:
                continue  # fetched before a rebalance: it will be read again
            if (m.topic, m.partition) not in mine:
                continue
            out.append(InMsg(m.topic, m.partition, m.offset, m.key, m.value, _headers(m), ev))
        return out

    def make_agent(proc: FamilyProcessor | None) -> Callable[[Any], Any]:
        async def agent(stream: Any) -> None:
            gen = -1

            async def ack(msgs: list[InMsg]) -> None:
                for m in msgs:
                    await stream.ack(m.handle)

            async for events in stream.noack_take(cfg.batch_max, within=cfg.batch_within):
                if bulk:
                    continue  # the bulk reader has these partitions (paused here)
                cur = app.consumer_generation_id
                if cur != gen:
                    if proc is not None:
                        proc.reset()  # a rebalance: every partition restarts from its table
                    gen = cur
                msgs = to_msgs(events, gen)
                if not msgs:
                    continue
                note_seen(msgs)
                state["last_input"] = time.monotonic()
                if proc is not None:
                    await family_batch(proc, msgs, gen, ack)
                else:
                    await rekey_batch(msgs, gen, ack)
        agent.__name__ = f"engine_{proc.family.name}" if proc else "rekey_fuel"
        return agent

    for fam_name, proc in state["processors"].items():
        source = raw_topic(*proc.topic_names, partitions=topics.family_n(fam_name))
        app.agent(source, name=f"engine-{fam_name}", concurrency=1)(make_agent(proc))
    app.agent(raw_topic(fuel_topic, partitions=topics.stream_n("fuel")), name="rekey-fuel",
              concurrency=1)(make_agent(None))

    # ------------------------------------------------------------ bulk input
    class BulkInput:
        """Our own consumer (no group) on the input partitions Faust assigned us."""

        def __init__(self) -> None:
            self.c: Any = None
            self.tps: dict[tuple[str, int], Any] = {}
            self.version = 0
            self.gen = -1
            self.acked: dict[Any, int] = {}
            self.last_commit = time.monotonic()

        async def start(self) -> None:
            from aiokafka import AIOKafkaConsumer

            if self.c is not None:
                return
            self.c = AIOKafkaConsumer(
                bootstrap_servers=cfg.bootstrap, group_id=None, enable_auto_commit=False,
                client_id=f"{cfg.app_id}-bulk", max_partition_fetch_bytes=4 << 20,
                fetch_max_bytes=32 << 20, fetch_max_wait_ms=int(cfg.batch_within * 1000),
                auto_offset_reset="earliest")
            await self.c.start()

        async def assign(self, mine: dict[tuple[str, int], Any],
                         points: dict[tuple[str, int], int | None]) -> None:
            from aiokafka import TopicPartition

            if self.c is None:
                await self.start()
            self.version += 1
            self.gen = app.consumer_generation_id
            for proc in state["processors"].values():
                proc.reset()
            tps = {k: TopicPartition(*k) for k in mine}
            self.tps = tps
            self.c.assign(list(tps.values()))
            # Faust's own seek just read the committed offsets (0 is stored as None)
            committed = {(tp.topic, tp.partition): off
                         for tp, off in app.consumer._committed_offset.items()}  # noqa: SLF001
            for k, tp in tps.items():
                pos = points.get(k)
                if pos is None:
                    pos = committed.get(k)
                if pos is not None and pos >= 0:
                    self.c.seek(tp, pos)
                else:
                    await self.c.seek_to_beginning(tp)
            log.info("bulk input: %d partitions", len(tps))

        async def ack(self, msgs: list[InMsg]) -> None:
            for m in msgs:
                k = (m.topic, m.partition)
                if m.offset + 1 > self.acked.get(k, -1):
                    self.acked[k] = m.offset + 1

        async def maybe_commit(self, force: bool = False) -> None:
            if not self.acked or (not force and time.monotonic() - self.last_commit
                                  < cfg.commit_interval):
                return
            from faust.types import TP

            offsets = {TP(t, p): off for (t, p), off in self.acked.items()
                       if (t, p) in self.tps}
            self.acked.clear()
            self.last_commit = time.monotonic()
            # acks follow persisted state: committing them is safe while the
            # partitions are still ours (also while the worker stops)
            if offsets and not app.rebalancing and app.consumer_generation_id == self.gen:
                try:
                    await app.consumer._thread.commit(offsets)  # noqa: SLF001
                except Exception as exc:  # noqa: BLE001 - the next commit covers it
                    # (stopping: the persisted clocks still say where to resume)
                    (log.debug if app.should_stop else log.warning)("offset commit: %r", exc)

        async def run(self) -> None:
            while not app.should_stop:
                gen_now = app.consumer_generation_id
                if (state.get("seek_gen") != gen_now and not app.rebalancing
                        and not getattr(app, "in_recovery", False)
                        and app.tables.recovery.completed.is_set() and assigned_tps()):
                    # the first assignment came before our hook was installed
                    state["seek_gen"] = gen_now
                    await after_recovery()
                if not self.tps or stale(self.gen):
                    await asyncio.sleep(0.05)
                    continue
                version, gen = self.version, self.gen
                try:
                    data = await self.c.getmany(timeout_ms=int(cfg.batch_within * 1000),
                                                max_records=cfg.batch_max)
                except Exception as exc:  # noqa: BLE001 - e.g. reassigned while fetching
                    log.debug("bulk fetch: %r", exc)
                    await asyncio.sleep(0.05)
                    continue
                if version != self.version or stale(gen):
                    continue  # fetched for an assignment that is gone
                per: dict[str, list[InMsg]] = {}
                for tp, recs in data.items():
                    lst = per.setdefault(tp.topic, [])
                    for r in recs:
                        lst.append(InMsg(tp.topic, tp.partition, r.offset, r.key, r.value,
                                         dict(r.headers) if r.headers else {},
                                         _Anchor(tp.topic, tp.partition)))
                if any(per.values()):
                    state["last_input"] = time.monotonic()
                fuel = per.pop(fuel_topic, None)
                if fuel:
                    note_seen(fuel)
                    await rekey_batch(fuel, gen, self.ack)
                for fam_name, proc in state["processors"].items():
                    msgs = [m for t in proc.topic_names for m in per.get(t, ())]
                    if msgs:
                        note_seen(msgs)
                    if msgs or fam_name in state["unflushed"]:
                        await family_batch(proc, msgs, gen, self.ack)
                await self.maybe_commit()

        async def stop(self) -> None:
            if self.c is not None:
                await self.maybe_commit(force=True)
                await self.c.stop()

    bulk_in = BulkInput()
    state["bulk"] = bulk_in
    if bulk:
        @app.task
        async def bulk_reader() -> None:
            await bulk_in.start()
            try:
                await bulk_in.run()
            finally:
                await bulk_in.stop()

    # ------------------------------------------------------------ wall clock
    if cfg.clock == "wall":
        @app.timer(cfg.tick_interval, on_leader=True)
        async def wall_ticker() -> None:
            value = encode_tick("wall", now=time.time())
            futs = []
            for topic, n in tick_targets:
                for p in range(n):
                    futs.append(await topic.send(key=b"__tick__", value=value, partition=p))
            await asyncio.gather(*futs)

    if cfg.notifier is not None and cfg.clock == "wall":
        @app.timer(cfg.notify_interval, on_leader=True)
        async def notify_ticker() -> None:
            def tick() -> None:
                try:
                    cfg.notifier.tick(time.time())
                except Exception:  # noqa: BLE001
                    log.exception("notifier tick failed")

            await asyncio.get_running_loop().run_in_executor(sinks.ex, tick)

    # ------------------------------------------------------------ housekeeping
    def at_end() -> bool:
        """Every partition this worker owns has been through an end-of-data tick."""
        mine = assigned_tps()
        if not mine:
            return False
        if app.rebalancing or getattr(app, "in_recovery", False):
            return False
        for proc in state["processors"].values():
            for p in {p for t, p in mine if t in proc.topic_names}:
                rt = proc.runtimes.get(p)
                if rt is not None:
                    if not rt.eod_done or rt.heap:
                        return False
                    continue
                # not touched since the last rebalance: read its persisted clocks
                meta = proc.backend.load_meta(p)
                if meta is None or not pickle.loads(meta).get("eod_done"):
                    return False
        return True

    flush_targets = {fam: (raw_topic(topics.name(FAMILIES[fam].inputs[0])), topics.family_n(fam))
                     for fam in FAMILIES}

    @app.timer(min(0.25, cfg.state_interval))
    async def housekeeping() -> None:
        await flush_bad_ref()
        if not bulk:
            # a family with unflushed state whose input went quiet: send it a flush
            # tick (through Kafka, like every clock: no table writes from timers).
            # The bulk reader flushes on its own when its fetch comes back empty.
            for fam in list(state["unflushed"]):
                quiet = time.monotonic() - state["last_batch"].get(fam, 0.0)
                if quiet >= cfg.state_interval and not state["busy"].get(fam):
                    topic, n = flush_targets[fam]
                    mine = {p for t, p in assigned_tps() if t == topic.get_topic_name()}
                    value = encode_tick("flush")
                    futs = [await topic.send(key=b"__tick__", value=value, partition=p)
                            for p in sorted(mine) if p < n]
                    if futs:
                        await asyncio.gather(*futs)
                    state["unflushed"].discard(fam)
        if cfg.idle_exit is not None and not state.get("stopping"):
            if time.monotonic() - state["last_input"] > cfg.idle_exit and at_end() \
                    and not state["unflushed"]:
                state["stopping"] = True
                log.warning("end of data and no input for %.0f s: stopping", cfg.idle_exit)
                os.kill(os.getpid(), signal.SIGTERM)
        if cfg.status_file:
            mine = assigned_tps()
            st = stats(state)
            st["assigned"] = {fam: sorted(p for t, p in mine if t in proc.topic_names)
                              for fam, proc in state["processors"].items()}
            st["time"] = time.time()
            tmp = cfg.status_file + ".tmp"
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(st))
            os.replace(tmp, cfg.status_file)
        if cfg.stats_interval and time.monotonic() - state.get("last_stats", 0) >= cfg.stats_interval:
            state["last_stats"] = time.monotonic()
            log.warning("stats %s", stats(state))

    return app, state


def stats(state: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"released": dict(state["counts"]),
                           "sinks": dict(state["sinks"].counts)}
    for name, p in state["processors"].items():
        out[name] = dict(p.counts)
        out[name + "_partitions"] = sorted(state["seen"].get(name, ()))
        waiting = {str(pp): {"buffered": len(rt.heap), "frontier": {k: (None if v == float("-inf")
                   else round(v, 3)) for k, v in rt.frontier.items()},
                   "eod_pending": {k: sorted(s) for k, (_, s) in rt.eod.items()}}
                   for pp, rt in p.runtimes.items() if rt.heap or rt.eod}
        if waiting:
            out[name + "_waiting"] = waiting
    out["rekey"] = dict(state["rekeyer"].counts)
    out["prof"] = {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in state["prof"].items()}
    return out
