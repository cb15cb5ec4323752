"""At-least-once without a broker: the worker's batch loop and checkpoint over small fakes.

The worker's own code runs here — :class:`~lianwatch.streams.pipeline.BatchRunner`,
:class:`~lianwatch.streams.checkpoint.Checkpoint`, the family processors and the
re-keying stage, :class:`~lianwatch.streams.sinks.WorkerSinks` over the real
retrying :class:`~lianwatch.sinks.writer.Writer` — with its seams faked: topic
logs in memory (the producer's own message plan), a dict state backend, an
offset committer that remembers, and an alert store that keeps rows in memory
(and can be "down"). A *crash* drops every in-memory part of the worker; what
survives is what a real crash leaves: the topic logs, the persisted states and
clocks, the committed offsets, the store's rows and the writer's spill directory.
The next "process" resumes where the persisted clocks (else the committed
offsets) say, and the input is delivered again from there.

Each run is compared with ``lianwatch replay`` on the same directory: the
store's current alerts must be exactly replay's (nothing lost, nothing doubled,
no false ``payment.duplicate`` from a redelivered record).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from lianwatch.errors import StoreError
from lianwatch.sinks.schema import Capabilities
from tests.test_streaming import plan_messages, replay_alerts, small_county


class Crash(BaseException):
    """The worker process dies here (nothing of it survives but what is persisted)."""


class FakeStoreBackend:
    """Keeps inserted rows; ``down`` fails inserts like an unreachable server."""

    kind = "fake"
    caps = Capabilities.modern()

    def __init__(self) -> None:
        self.down = False
        self.rows: list[tuple[str, tuple]] = []
        self.lock = threading.Lock()

    def insert(self, db: str, table: Any, rows: Any) -> None:
        with self.lock:
            if self.down:
                raise StoreError("Connection refused (127.0.0.1:19000)", transient=True)
            self.rows.extend((table.name, r) for r in rows)

    def close(self) -> None:
        pass

    def alert_rows(self) -> list[tuple]:
        return [r for t, r in self.rows if t == "alerts"]

    def current(self) -> dict[str, tuple[str, str, int]]:
        cur: dict[str, tuple[str, str, int]] = {}
        for r in self.alert_rows():
            aid, version, rule, level = r[0], int(r[1]), r[2], r[3]
            if aid not in cur or version >= cur[aid][2]:
                cur[aid] = (rule, level, version)
        return cur


class World:
    """What outlives a worker process: topics, state, offsets, store, spill directory."""

    def __init__(self, county: Path, tmp: Path) -> None:
        from lianwatch.sinks.store import AlertStore
        from lianwatch.streams.state import DictBackend
        from lianwatch.streams.topics import FAMILIES, Topics

        self.topics = Topics(prefix="x.", partitions=4)
        self.logs, self.ref = plan_messages(county, self.topics)
        self.logs = defaultdict(list, self.logs)
        self.backends = {name: DictBackend() for name in FAMILIES}
        self.committed: dict[tuple[str, int], int] = {}
        self.store_backend = FakeStoreBackend()
        self.store = AlertStore(self.store_backend, database="x")
        self.spill = tmp / "spill"
        self.published: list[tuple[str, int]] = []  # (alert id, version) sent to lw.alerts
        self.clock = itertools.count(1)


class FakePublisher:
    """The output topics: re-keyed fuel is appended to its log (delivered at once)."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def send(self, topic: str, key: bytes | None, value: bytes, *,
                   partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Any:
        from lianwatch.streams.batch import InMsg

        w = self.world
        if topic == w.topics.fuel_by_vehicle:
            log = w.logs[(topic, partition)]
            log.append(InMsg(topic, partition, len(log), key, value, dict(headers or ())))
        elif topic == w.topics.alerts:
            a = orjson.loads(value)
            w.published.append((a["alert_id"], a["version"]))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class CheckingCommitter:
    """Remembers committed offsets, and checks at every ack that nothing acked is volatile."""

    def __init__(self, world: World, worker: "Worker") -> None:
        self.world = world
        self.worker = worker
        self.acks = 0

    async def ack(self, msgs: Any) -> None:
        from lianwatch.sinks.spill import read_segment
        from lianwatch.streams.state import resume_offset

        w, wk = self.world, self.worker
        for m in msgs:
            proc = wk.topic_proc.get(m.topic)
            if proc is not None:
                # the clocks persisted before the ack cover the message ...
                meta = w.backends[proc.family.name].load_meta(m.partition)
                assert (resume_offset(meta, m.topic, m.partition) or 0) >= m.offset + 1
                # ... and no state changed by it waits to be written
                rt = proc.runtimes[m.partition]
                assert not any(st.dirty for st in rt.stores.values())
        # every alert published so far is in the store or in the writer's spill
        durable = {(r[0], int(r[1])) for r in w.store_backend.alert_rows()}
        for seg in sorted(w.spill.glob("seg-*.lws")):
            durable |= {(r[0], int(r[1])) for t, r in read_segment(seg) if t == "alerts"}
        assert set(w.published) <= durable
        for m in msgs:
            tp = (m.topic, m.partition)
            w.committed[tp] = max(w.committed.get(tp, 0), m.offset + 1)
        self.acks += len(msgs)


class Worker:
    """One worker process over the world: everything here is lost in a crash."""

    def __init__(self, world: World, *, on_step: Any = None, state_interval: float = 3.0,
                 stale: Any = None) -> None:
        from lianwatch.detectors import default_detectors
        from lianwatch.rules import RuleSet
        from lianwatch.sinks.writer import Writer
        from lianwatch.streams.family import FamilyProcessor
        from lianwatch.streams.pipeline import BatchRunner
        from lianwatch.streams.rekey import FuelRekeyer
        from lianwatch.streams.resume import ResumePoints
        from lianwatch.streams.sinks import WorkerSinks
        from lianwatch.streams.topics import FAMILIES
        from lianwatch.streams.worker_state import WorkerState

        t = world.topics
        self.world = world
        self.procs = {name: FamilyProcessor(fam, t, rules=RuleSet(), ref=world.ref,
                                            backend=world.backends[name],
                                            make_detectors=default_detectors)
                      for name, fam in FAMILIES.items()}
        self.topic_proc = {tp: p for p in self.procs.values() for tp in p.topic_names}
        self.writer = Writer(world.store, spill_dir=world.spill, background=False, max_rows=50,
                             clock=lambda: float(next(world.clock)))
        self.sinks = WorkerSinks(FakePublisher(world), t, self.writer)
        self.state = WorkerState.for_families(FAMILIES)
        self.resume = ResumePoints(lambda topic, part: self.topic_proc[topic].backend.load_meta(part)
                                   if topic in self.topic_proc else None)
        self.runner = BatchRunner(self.procs, FuelRekeyer(t, world.ref), self.sinks, self.state,
                                  state_interval=state_interval, resume=self.resume,
                                  on_step=on_step, stale=stale or (lambda g: False),
                                  clock=lambda: float(next(world.clock)))
        self.committer = CheckingCommitter(world, self)
        self.pos: dict[tuple[str, int], int] = {}

    def position(self, tp: tuple[str, int]) -> int:
        """Where this process reads ``tp``: the persisted clocks, else the committed offset."""
        if tp not in self.pos:
            p = self.resume.point(tp)
            self.pos[tp] = p if p is not None else self.world.committed.get(tp, 0)
        return self.pos[tp]

    async def batch(self, rnd: random.Random, generation: int = 0) -> bool:
        """One random batch of one family (or of the re-keying); False: all input read."""
        w = self.world
        live = [tp for tp in list(w.logs) if self.position(tp) < len(w.logs[tp])]
        if not live:
            return False
        first = rnd.choice(live)
        proc = self.topic_proc.get(first[0])
        same = [tp for tp in live if self.topic_proc.get(tp[0]) is proc]
        msgs = []
        for tp in rnd.sample(same, rnd.randint(1, len(same))):
            log = w.logs[tp]
            k = rnd.randint(1, 300)
            msgs += log[self.pos[tp]:self.pos[tp] + k]
            self.pos[tp] = min(self.pos[tp] + k, len(log))
        if proc is None:
            await self.runner.rekey_batch(msgs, generation, self.committer)
        else:
            await self.runner.family_batch(proc, msgs, generation, self.committer)
        return True

    async def drain(self, rnd: random.Random) -> None:
        while await self.batch(rnd) or self.state.unflushed():
            for name in self.state.unflushed():
                await self.runner.family_batch(self.procs[name], [], 0, self.committer)
            self.writer.poll()


def flushed(writer: Any) -> bool:
    """Send everything (a writer in backoff waits for its retry time: the clock ticks per call)."""
    return any(writer.flush() for _ in range(100))


def run_with_crashes(county: Path, tmp: Path, seed: int, crash: Any, *,
                     store_down: tuple[int, int] | None = None) -> tuple[World, int]:
    """Run the county through workers that crash when ``crash(checkpoint, step)`` says so.
    ``store_down``: the store is unreachable from that batch to that batch."""
    world = World(county, tmp)
    rnd = random.Random(seed)
    n_checkpoint = 0
    crashes = 0

    def on_step(step: int) -> None:
        nonlocal n_checkpoint
        if step == 1:
            n_checkpoint += 1
        if crash(n_checkpoint, step):
            raise Crash(f"after step {step} of checkpoint {n_checkpoint}")

    async def main() -> None:
        nonlocal crashes
        worker = Worker(world, on_step=on_step)
        n = 0
        while True:
            n += 1
            if store_down is not None:
                world.store_backend.down = store_down[0] <= n < store_down[1]
            try:
                if not await worker.batch(rnd):
                    break
                worker.writer.poll()
            except Crash:
                crashes += 1
                worker = Worker(world, on_step=on_step)  # a new process: memory is gone
        world.store_backend.down = False
        worker.runner.on_step = None
        await worker.drain(rnd)
        assert flushed(worker.writer), "the store took everything in the end"
        assert all(not rt.heap for p in worker.procs.values() for rt in p.runtimes.values())

    asyncio.run(main())
    return world, crashes


@pytest.fixture(scope="module")
def county(tmp_path_factory) -> Path:
    return small_county(tmp_path_factory.mktemp("checkpoint") / "county", seed=12,
                        vehicles=8, villages=6, projects=10)


@pytest.fixture(scope="module")
def expected(county) -> dict[str, tuple[str, str, int]]:
    exp = replay_alerts(county)
    assert {r.split(".")[0] for r, _, _ in exp.values()} == {"fuel", "payment", "project"}
    return exp


def test_without_crashes_the_store_holds_what_replay_gives(county, expected, tmp_path):
    world, crashes = run_with_crashes(county, tmp_path, seed=1, crash=lambda c, s: False)
    assert crashes == 0
    assert world.store_backend.current() == expected


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5])
def test_a_crash_after_any_checkpoint_step_loses_and_doubles_nothing(county, expected, tmp_path,
                                                                    step):
    """Every 5th checkpoint dies right after ``step``; the input comes again from the
    persisted clocks (else the committed offsets)."""
    world, crashes = run_with_crashes(county, tmp_path, seed=10 + step,
                                      crash=lambda c, s: s == step and c % 5 == 0)
    assert crashes >= 5
    assert world.store_backend.current() == expected


def test_a_crash_while_states_are_written_loses_and_doubles_nothing(county, expected, tmp_path,
                                                                    monkeypatch):
    """Step 3 cut short: some states of a checkpoint are written, others and the clocks
    are not. The partition's records come again and find themselves seen."""
    from lianwatch.streams.state import DictBackend

    puts = itertools.count()
    real_put = DictBackend.put

    def put(self: Any, *a: Any) -> None:
        if next(puts) % 31 == 30:
            raise Crash("in the middle of step 3")
        real_put(self, *a)

    monkeypatch.setattr(DictBackend, "put", put)
    world, crashes = run_with_crashes(county, tmp_path, seed=7, crash=lambda c, s: False)
    assert crashes >= 3
    assert world.store_backend.current() == expected


def test_a_store_outage_spills_and_a_crash_during_it_loses_nothing(county, expected, tmp_path):
    """The store is down for a stretch of batches: checkpoints go on (rows spill to disk),
    workers crash during the outage; once it is back everything arrives, once."""
    world, crashes = run_with_crashes(county, tmp_path, seed=3, crash=lambda c, s: c % 9 == 0
                                      and s == 4, store_down=(20, 120))
    assert crashes >= 2
    assert world.store_backend.current() == expected
    assert not list(world.spill.glob("seg-*.lws")), "the spill is sent and removed"


def test_a_rebalance_resets_the_partitions_and_drops_the_batch_in_flight(county, expected,
                                                                         tmp_path):
    """A batch whose partitions moved meanwhile (its generation is stale when it ends) is
    neither persisted nor acked, and its processor forgets its partitions; after the
    rebalance every partition is rebuilt from the backend and read from its resume point."""
    world = World(county, tmp_path)
    rnd = random.Random(5)
    gen = {"now": 0}

    async def main() -> None:
        worker = Worker(world, stale=lambda g: g != gen["now"])
        rebalances = 0
        for n in itertools.count(1):
            if n % 11:
                if not await worker.batch(rnd, generation=gen["now"]):
                    break
                continue
            # the group moves on while this batch runs
            before = ({k: (dict(b.meta), b.writes) for k, b in world.backends.items()},
                      dict(world.committed))
            old = gen["now"]
            gen["now"] += 1
            if not await worker.batch(rnd, generation=old):
                break
            assert ({k: (dict(b.meta), b.writes) for k, b in world.backends.items()},
                    dict(world.committed)) == before, "a stale batch persisted or acked"
            rebalances += 1
            # the rest of the rebalance, as the bulk input does it: every processor
            # forgets its partitions, every input is read again from its resume point
            for p in worker.procs.values():
                p.reset()
            worker.pos.clear()
        await worker.drain(rnd)
        assert flushed(worker.writer)
        assert rebalances >= 3

    asyncio.run(main())
    assert world.store_backend.current() == expected


def test_a_stale_family_batch_resets_its_processor(county, tmp_path):
    from lianwatch.streams.batch import InMsg

    world = World(county, tmp_path)
    worker = Worker(world, stale=lambda g: g != 1)
    tp = next(tp for tp in world.logs if tp[0] == world.topics.event_topics["payments"])
    msgs: list[InMsg] = world.logs[tp][:50]
    proc = worker.topic_proc[tp[0]]
    asyncio.run(worker.runner.family_batch(proc, msgs, 1, worker.committer))
    assert proc.runtimes and worker.committer.acks
    acks = worker.committer.acks
    asyncio.run(worker.runner.family_batch(proc, world.logs[tp][50:80], 0, worker.committer))
    assert not proc.runtimes, "a rebalance resets the family's partitions"
    assert worker.committer.acks == acks, "nothing of a stale batch is acked"


# ---------------------------------------------------------------------- the writer's persist
def _rows(n: int, start: int = 0) -> list[tuple]:
    return [(f"V{i % 3}", 1772409600000 + i, f"V{i % 3}@{i}", f"raw {i}")
            for i in range(start, start + n)]


@pytest.mark.parametrize("background", [False, True])
def test_persist_is_durable_whether_the_store_is_up_or_down(tmp_path, background):
    """``persist``: rows in the store (True), or, while it is down, on disk at once (False);
    a writer started later on the same directory sends them, and nothing is doubled."""
    from lianwatch.sinks.spill import read_segment
    from lianwatch.sinks.store import AlertStore
    from lianwatch.sinks.writer import Writer

    be = FakeStoreBackend()
    store = AlertStore(be, database="x")
    w = Writer(store, spill_dir=tmp_path, background=background, max_rows=10, retry_initial=60)
    w.put("events_gps", _rows(30))
    assert w.persist(timeout=5.0) is True
    assert len(be.rows) == 30
    be.down = True
    w.put("events_gps", _rows(40, start=30))
    assert w.persist(timeout=5.0) is False  # the store refuses: on disk now
    on_disk = [r for p in sorted(tmp_path.glob("seg-*.lws")) for _, r in read_segment(p)]
    assert sorted(r[2] for r in on_disk) == sorted(r[2] for r in _rows(40, start=30))
    w.put("events_gps", _rows(5, start=70))
    assert w.persist(timeout=5.0) is False  # in backoff: no waiting, straight to disk
    w.close(timeout=0.5)  # a crash or a stop: what is on disk stays there
    be.down = False
    w2 = Writer(store, spill_dir=tmp_path, background=False)
    assert flushed(w2)
    assert sorted(r[2] for _, r in be.rows) == sorted(r[2] for r in _rows(75))
    assert not list(tmp_path.glob("seg-*.lws"))
