"""Live streaming (issue 5): produce → Kafka → Faust worker → lw.alerts + the alert store.

The ``kafka`` tests run against the real broker of ``scripts/kafka.sh`` (skipped
when it is not running, failed under ``LIANWATCH_REQUIRE_SERVICES=1``). Each
uses its own topic prefix and app id, runs workers as subprocesses (so SIGKILL
is real) and compares the alert set (id, rule, level, version) with
``lianwatch replay`` on the same directory. The first tests need no broker:
they drive the broker-independent core (:mod:`lianwatch.streams.runtime`) with
the producer's own message plan, in shuffled interleavings and with restarts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import port_open, require

BOOTSTRAP = os.environ.get("LIANWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
WORKER_TIMEOUT = 120


# ---------------------------------------------------------------------- data
def small_county(out: Path, seed: int = 11, **kw: Any) -> Path:
    from lianwatch.sim import GenConfig, generate

    cfg = dict(vehicles=12, villages=8, projects=16, days=3, seed=seed, start=date(2026, 3, 2))
    cfg.update(kw)
    generate(out, GenConfig(**cfg))
    return out


def replay_alerts(d: Path) -> dict[str, tuple[str, str, int]]:
    from lianwatch.replay.run import replay_dir

    res = replay_dir(d, progress=False)
    return {a.alert_id: (a.rule, a.level, a.version) for a in res.alerts}


def plan_messages(d: Path, topics: Any, parts: list[dict[str, Any]] | None = None):
    """The producer's messages, per topic partition, with the reference they carry
    (``parts``: publish the directory in pieces, e.g. ``[{"as_of": t}, {"after": t}]``)."""
    from lianwatch.models.parse import parse_reference
    from lianwatch.reference import Reference
    from lianwatch.streams.batch import InMsg
    from lianwatch.streams.plan import plan_directory

    tps: dict[tuple[str, int], list] = defaultdict(list)
    ref = Reference()
    kinds = {t: k for k, t in topics.ref_topics.items()}
    for part in parts or [{}]:
        for m in plan_directory(d, topics, **part):
            if m.kind == "ref":
                ref.add(kinds[m.topic], parse_reference(kinds[m.topic], m.value)[0])
            elif m.kind in ("event", "tick"):
                tp = (m.topic, m.partition)
                tps[tp].append(InMsg(m.topic, m.partition, len(tps[tp]), m.key, m.value, {}))
    return tps, ref


def run_offline(d: Path, seed: int, restart_every: int | None = None,
                parts: list[dict[str, Any]] | None = None) -> dict[str, tuple]:
    """Re-key fuel, then feed each family's processor random slices of random
    partitions (as a consumer interleaves them); ``restart_every`` batches, drop
    the processor and resume from the acked offsets with the persisted state."""
    from lianwatch.detectors import default_detectors
    from lianwatch.rules import RuleSet
    from lianwatch.streams.batch import BatchOutput, InMsg
    from lianwatch.streams.family import FamilyProcessor
    from lianwatch.streams.rekey import FuelRekeyer
    from lianwatch.streams.state import DictBackend
    from lianwatch.streams.topics import FAMILIES, Topics

    rnd = random.Random(seed)
    topics = Topics(prefix="x.", partitions=4)
    tps, ref = plan_messages(d, topics, parts)
    rk = FuelRekeyer(topics, ref)
    for q in range(topics.partitions):
        msgs = tps.pop((topics.name("fuel"), q), [])
        i = 0
        while i < len(msgs):
            k = rnd.randint(1, 20)
            out = BatchOutput()
            rk.process(msgs[i:i + k], out)
            for p, key, val, hdr in out.forwards:
                tp = (topics.fuel_by_vehicle, p)
                tps[tp].append(InMsg(tp[0], p, len(tps[tp]), key, val, hdr))
            i += k
    alerts: dict[str, tuple] = {}
    for fam in FAMILIES.values():
        be = DictBackend()

        def new() -> FamilyProcessor:
            return FamilyProcessor(fam, topics, rules=RuleSet(), ref=ref, backend=be,
                                   make_detectors=default_detectors)
        proc = new()
        mine = [tp for tp in tps if tp[0] in proc.topic_names]
        pos = dict.fromkeys(mine, 0)
        committed = dict.fromkeys(mine, 0)
        n = 0
        while True:
            live = [tp for tp in mine if pos[tp] < len(tps[tp])]
            if not live:
                break
            batch = []
            for tp in rnd.sample(live, rnd.randint(1, len(live))):
                k = rnd.randint(1, 400)
                batch += tps[tp][pos[tp]:pos[tp] + k]
                pos[tp] += k
            out, acks = proc.run_batch(batch)
            for m in acks:
                committed[(m.topic, m.partition)] = m.offset + 1
            for a in out.alerts.values():
                if a.alert_id not in alerts or a.version >= alerts[a.alert_id][2]:
                    alerts[a.alert_id] = (a.rule, a.level, a.version)
            n += 1
            if restart_every and n % restart_every == 0:
                proc = new()
                pos = dict(committed)  # what was not acked is delivered again
        assert all(not rt.heap for rt in proc.runtimes.values()), "events left in the buffer"
    return alerts


def distinct_pings(d: Path) -> set[tuple[str, float]]:
    from lianwatch.models.parse import parse_event

    out = set()
    for line in (d / "gps.jsonl").read_bytes().splitlines():
        ev, _ = parse_event("gps", line)
        if ev is not None:
            out.add((ev["vehicle_id"], ev["t"]))
    return out


def valid_lines(d: Path, stream: str) -> int:
    from lianwatch.models.parse import parse_event

    return sum(parse_event(stream, line)[0] is not None
               for line in (d / f"{stream}.jsonl").read_bytes().splitlines() if line.strip())


@pytest.fixture(scope="module")
def county(tmp_path_factory) -> Path:
    return small_county(tmp_path_factory.mktemp("streaming") / "county")


@pytest.fixture(scope="module")
def expected(county) -> dict[str, tuple[str, str, int]]:
    exp = replay_alerts(county)
    assert len(exp) >= 10 and {r.split(".")[0] for r, _, _ in exp.values()} == {
        "fuel", "payment", "project"}
    return exp


# ------------------------------------------------------------ no broker needed
@pytest.mark.parametrize("seed", [1, 2])
def test_runtime_matches_replay_in_any_interleaving(county, expected, seed):
    assert run_offline(county, seed) == expected


@pytest.mark.parametrize("seed,every", [(3, 2), (4, 5)])
def test_runtime_restarts_lose_and_double_nothing(county, expected, seed, every):
    assert run_offline(county, seed, restart_every=every) == expected


def test_end_of_data_then_more_data(county, expected):
    """The feed published in two parts, each ending with an end-of-data tick: the
    first flush (engine.finish) does not spoil what comes after it."""
    ts = sorted(t for _, t in distinct_pings(county))
    mid = ts[len(ts) // 2]
    assert run_offline(county, 5, parts=[{"as_of": mid}, {"after": mid}]) == expected


def test_wall_clock_ticks_drive_time_based_rules():
    """``clock="wall"``: a project that never reports is judged when a wall tick says
    the deadline has passed; an end-of-data tick does not flush a live worker."""
    from lianwatch.detectors import default_detectors
    from lianwatch.models.clock import parse_ts
    from lianwatch.models.parse import parse_reference
    from lianwatch.reference import Reference
    from lianwatch.rules import RuleSet
    from lianwatch.streams.batch import InMsg
    from lianwatch.streams.family import FamilyProcessor
    from lianwatch.streams.state import DictBackend
    from lianwatch.streams.ticks import encode_tick
    from lianwatch.streams.topics import Topics, partition_for

    ref = Reference()
    ref.add("projects", parse_reference("projects", {
        "project_id": "PJ1", "name": "道路硬化", "village_id": "VL1", "unit_id": None,
        "budget_yuan": 1_000_000, "planned_start": "2026-03-01",
        "planned_end": "2026-09-30"})[0])
    topics = Topics(prefix="w.", partitions=4)
    p = partition_for("PJ1", 4)
    proc = FamilyProcessor("projects", topics, rules=RuleSet(), ref=ref, backend=DictBackend(),
                           make_detectors=default_detectors, clock="wall")

    def tick(off: int, kind: str, **kw: Any) -> InMsg:
        return InMsg("w.progress", p, off, b"__tick__", encode_tick(kind, **kw))

    out, _ = proc.run_batch([tick(0, "eod", as_of=parse_ts("2026-03-02 00:00:00"))])
    assert not out.alerts and not out.finished  # live: the end of a feed is no end of time
    out, _ = proc.run_batch([tick(1, "wall", now=parse_ts("2026-03-05 12:00:00"))])
    assert not out.alerts  # the 7-day grace has not run out
    out, acks = proc.run_batch([tick(2, "wall", now=parse_ts("2026-03-09 12:00:00"))])
    assert [(a.rule, a.level) for a in out.alerts.values()] == [("project.overdue_start", "yellow")]
    assert [m.offset for m in acks] == [2]


def test_records_outside_the_time_window_are_dead_letters_and_move_no_clock():
    """Issue 13 fault 1 on the worker: a payment at 9999-12-31 (and one before 2000) is set
    aside with the reason; the partition's clock stays where the good records put it."""
    from lianwatch.detectors import default_detectors
    from lianwatch.models.clock import parse_ts
    from lianwatch.reference import Reference
    from lianwatch.rules import RuleSet
    from lianwatch.streams.batch import InMsg
    from lianwatch.streams.family import FamilyProcessor, live_window
    from lianwatch.streams.state import DictBackend
    from lianwatch.streams.topics import Topics, partition_for

    topics = Topics(prefix="w.", partitions=4)
    now = parse_ts("2026-03-10 12:00:00")
    proc = FamilyProcessor("payments", topics, rules=RuleSet(), ref=Reference(),
                           backend=DictBackend(), make_detectors=default_detectors,
                           time_window=live_window(clock=lambda: now))
    p = partition_for("VL1", 4)

    def pay(off: int, ts: str) -> InMsg:
        raw = json.dumps({"payment_id": f"P{off}", "village_id": "VL1", "ts": ts,
                          "amount_yuan": 6000.0, "channel": "cash", "payee_id": "X"}).encode()
        return InMsg("w.payments", p, off, b"VL1", raw)

    out, _ = proc.run_batch([pay(0, "2026-03-09T10:00:00+08:00"), pay(1, "9999-12-31T20:00:00-05:00"),
                             pay(2, "1999-12-31T23:00:00+08:00"), pay(3, "2026-03-11T13:00:00+08:00")])
    reasons = sorted(d.reason for d in out.deadletters)
    assert len(reasons) == 3 and all("accepted time" in r for r in reasons), reasons
    rt = proc.runtimes[p]
    assert rt.engine.max_t <= parse_ts("2026-03-10 12:00:00") + 86400


def test_ticks_and_partitions():
    from lianwatch.streams.ticks import decode_tick, encode_tick, is_tick
    from lianwatch.streams.topics import Topics, partition_for

    assert partition_for("V0007", 4) == partition_for(b"V0007", 4)
    assert is_tick(encode_tick("eod", as_of=1.0)) and not is_tick(b'{"ts": 1}')
    assert decode_tick(b'{"__lw_tick__": 1, "kind": "nope"}') is None
    t = Topics(prefix="p.", app_id="other")
    assert t.fuel_by_vehicle == "p.fuel.by-vehicle.other"
    assert Topics().fuel_by_vehicle == "lw.fuel.by-vehicle"


# ------------------------------------------------------------ the real broker
def _broker() -> None:
    host, _, port = BOOTSTRAP.rpartition(":")
    if not port_open(host or "127.0.0.1", int(port)):
        require(f"the Kafka broker at {BOOTSTRAP} (scripts/kafka.sh start)")


class Run:
    """One test's namespace on the broker: prefix, app id, data dirs, workers."""

    def __init__(self, tmp: Path, partitions: int = 4) -> None:
        from lianwatch.streams.topics import Topics

        tag = uuid.uuid4().hex[:8]
        self.prefix = f"t{tag}."
        self.app_id = f"lwtest-{tag}"
        self.tmp = tmp
        self.topics = Topics(prefix=self.prefix, partitions=partitions, app_id=self.app_id)
        self.procs: list[subprocess.Popen] = []

    def produce(self, d: Path, **kw: Any):
        from lianwatch.streams.producer import publish_directory
        from lianwatch.streams.topics import ensure_topics

        ensure_topics(BOOTSTRAP, self.topics)
        return publish_directory(d, self.topics, BOOTSTRAP, **kw)

    def worker(self, name: str, *args: str, store: bool = True,
               env: dict[str, str] | None = None) -> subprocess.Popen:
        """A worker subprocess (``env``: settings on top of the embedded store's)."""
        base = dict(os.environ, LIANWATCH_DATA_DIR=str(self.tmp / f"data-{name}"),
                    PYTHONUNBUFFERED="1")
        base.pop("LIANWATCH_STORE", None)
        env = {**base, **(env or {})}
        cmd = [sys.executable, "-m", "lianwatch.cli", "worker", "--bootstrap", BOOTSTRAP,
               "--prefix", self.prefix, "--app-id", self.app_id, "--partitions",
               str(self.topics.partitions), "--session-timeout", "6", "--commit-interval", "0.5",
               "--state-dir", str(self.tmp / f"state-{name}"), *args]
        if not store:
            cmd.append("--no-store")
        log = open(self.tmp / f"worker-{name}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        p.log_path = self.tmp / f"worker-{name}.log"  # type: ignore[attr-defined]
        self.procs.append(p)
        return p

    def wait(self, p: subprocess.Popen, timeout: float = WORKER_TIMEOUT) -> dict[str, Any]:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail(f"worker did not finish in {timeout} s:\n{self.tail(p)}")
        assert rc == 0, f"worker exit {rc}:\n{self.tail(p)}"
        return worker_stats(p)

    def tail(self, p: subprocess.Popen, n: int = 4000) -> str:
        return Path(p.log_path).read_text(errors="replace")[-n:]  # type: ignore[attr-defined]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def worker_stats(p: subprocess.Popen) -> dict[str, Any]:
    text = Path(p.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
    tag = "worker stopped: "
    lines = [ln[ln.index(tag) + len(tag):] for ln in text.splitlines() if tag in ln]
    return json.loads(lines[-1]) if lines else {}


@pytest.fixture
def run(tmp_path):
    _broker()
    r = Run(tmp_path)
    yield r
    r.close()


def read_topic(topic: str, timeout: float = 10.0) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, group_id=None)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=200).values():
                out.extend(msgs)
        return out
    finally:
        c.close()


def topic_alerts(topic: str) -> tuple[dict[str, tuple[str, str, int]], int]:
    """Current alerts on the topic (newest version per id) and the message count."""
    cur: dict[str, tuple[str, str, int]] = {}
    msgs = read_topic(topic)
    for m in msgs:
        a = json.loads(m.value)
        assert m.key.decode() == a["alert_id"]
        if a["alert_id"] not in cur or a["version"] >= cur[a["alert_id"]][2]:
            cur[a["alert_id"]] = (a["rule"], a["level"], a["version"])
    return cur, len(msgs)


_STORE_READER = r"""
import json, sys
from pathlib import Path
from lianwatch.sinks.store import open_store
st = open_store(path=Path(sys.argv[1]) / "store")
rows = st.query("SELECT alert_id, rule, level, version FROM lianwatch.alerts FINAL")
dups = st.query("SELECT alert_id, count() AS n FROM (SELECT alert_id FROM lianwatch.alerts FINAL) "
                "GROUP BY alert_id HAVING n > 1")
dead = st.query("SELECT stream, reason FROM lianwatch.deadletters")
arch = {s: st.query(f"SELECT count() AS n FROM lianwatch.events_{s}")[0]["n"]
        for s in ("gps", "fuel", "payments", "progress")}
print(json.dumps({"alerts": rows, "dups": dups, "dead": dead, "archive": arch}))
"""


def store_contents(data_dir: Path) -> dict[str, Any]:
    """Read a worker's chDB store in a subprocess (chDB is one data dir per process)."""
    env = dict(os.environ)
    env.pop("LIANWATCH_STORE", None)
    r = subprocess.run([sys.executable, "-c", _STORE_READER, str(data_dir)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["current"] = {x["alert_id"]: (x["rule"], x["level"], int(x["version"]))
                      for x in out["alerts"]}
    return out


def wait_for(pred, timeout: float, what: str, step: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    pytest.fail(f"timed out waiting for {what}")


# 1 ------------------------------------------------------------------ end to end
@pytest.mark.kafka
@pytest.mark.parametrize("input_mode", ["bulk", "stream"])
def test_end_to_end_event_clock_equals_replay(run, county, expected, input_mode):
    res = run.produce(county)
    assert res.counts["dead"] > 0  # the generator's malformed lines, published as dead letters
    w = run.worker("a", "--clock", "event", "--state", "memory", "--idle-exit", "3",
                   "--input", input_mode)
    stats = run.wait(w)
    got, _ = topic_alerts(run.topics.alerts)
    assert got == expected
    store = store_contents(run.tmp / "data-a")
    assert store["current"] == expected
    assert store["dups"] == []
    assert store["archive"]["gps"] == len(distinct_pings(county))  # duplicates collapse
    assert stats["released"]["finished"] == 3 * run.topics.partitions  # every engine saw the end
    dead = read_topic(run.topics.deadletter)
    assert len(dead) == res.counts["dead"]
    assert all(dict(m.headers).get("lw-reason") for m in dead)


# 2 ------------------------------------------------------------------- restart
@pytest.mark.kafka
def test_sigkill_and_restart_equals_replay(run, tmp_path, expected, county):
    ts = sorted(t for _, t in distinct_pings(county))
    mid = ts[len(ts) // 2]
    run.produce(county, as_of=mid, eod=False)  # the first half of the feed
    status_file = run.tmp / "status-a.json"
    # small batches and flushes: caught with some state persisted, likely more in flight
    w = run.worker("a", "--clock", "event", "--state", "rocksdb", "--batch", "100",
                   "--state-interval", "0.3", "--idle-exit", "3",
                   "--status-file", str(status_file))

    def persisted() -> bool:
        try:
            r = json.loads(status_file.read_bytes()).get("released", {})
        except (OSError, ValueError):
            return False
        return r.get("persisted_vehicles", 0) >= len(ts) // 10

    wait_for(persisted, 60, "the worker to persist some state", step=0.05)
    w.send_signal(signal.SIGKILL)  # in the middle of it: state, offsets, acks in flight
    w.wait()
    run.produce(county, after=mid)  # the rest, and the end of data
    w2 = run.worker("a", "--clock", "event", "--state", "rocksdb", "--idle-exit", "3")
    stats = run.wait(w2)
    got, _ = topic_alerts(run.topics.alerts)
    assert got == expected
    store = store_contents(run.tmp / "data-a")
    assert store["current"] == expected
    assert store["dups"] == []
    # the second run resumed from the persisted state: it did not process everything
    n_vehicle = valid_lines(county, "gps") + valid_lines(county, "fuel")
    assert stats["released"].get("vehicles", 0) < n_vehicle, stats


# 3 ------------------------------------------------------------- two workers
def status(run: Run, name: str) -> dict[str, Any]:
    try:
        return json.loads((run.tmp / f"status-{name}.json").read_bytes())
    except (OSError, ValueError):
        return {}


@pytest.mark.kafka
def test_two_workers_split_and_hand_over(run, expected, county):
    n = run.topics.partitions
    every = set(range(n))
    ts = sorted(t for _, t in distinct_pings(county))
    mid = ts[len(ts) // 2]

    def start(name: str) -> subprocess.Popen:
        return run.worker(name, "--clock", "event", "--state", "memory", "--idle-exit", "3",
                          "--status-file", str(run.tmp / f"status-{name}.json"), store=False)

    def assigned(name: str, fam: str = "vehicles") -> set[int]:
        return set(status(run, name).get("assigned", {}).get(fam, []))

    def released(name: str) -> int:
        return sum(status(run, name).get("released", {}).get(f, 0)
                   for f in ("vehicles", "payments", "projects"))

    def worked(name: str) -> set[int]:
        return set(status(run, name).get("vehicles_partitions", []))

    from lianwatch.streams.topics import ensure_topics

    ensure_topics(BOOTSTRAP, run.topics)
    a, b = start("a"), start("b")
    # both in the group, the partitions split between them
    wait_for(lambda: assigned("a") and assigned("b") and assigned("a") | assigned("b") == every
             and not assigned("a") & assigned("b"), 60, "the group to split the partitions")
    split = (assigned("a"), assigned("b"))
    run.produce(county, as_of=mid, eod=False)  # the first half of the feed
    wait_for(lambda: released("a") > 0 and released("b") > 0, 60, "both workers to process")
    # pings pass a re-keying stage first: stop a only once it has worked on all its share
    wait_for(lambda: worked("a") == split[0] and worked("b") == split[1], 60,
             "each worker to work on its vehicle partitions")
    a.send_signal(signal.SIGTERM)  # a clean stop: its partitions and their state move to b
    sa = run.wait(a)
    wait_for(lambda: assigned("b") == every, 60, "b to take over every partition")
    run.produce(county, after=mid)  # the rest, and the end of data
    sb = run.wait(b)
    got, _ = topic_alerts(run.topics.alerts)
    assert got == expected
    assert split[0] and split[1], split
    assert set(sa["vehicles_partitions"]) == split[0], (sa, split)  # a worked on its share
    assert set(sb["vehicles_partitions"]) == every, sb  # b ended with all of them
    assert sb["released"]["finished"] == 3 * n, sb


# 4 ------------------------------------------------------------- bad records
@pytest.mark.kafka
def test_bad_records_go_to_the_dead_letter_and_the_worker_goes_on(run, tmp_path):
    from lianwatch.streams.plan import Planned
    from lianwatch.streams.publisher import KafkaPublisher
    from lianwatch.streams.topics import partition_for

    d = small_county(tmp_path / "tiny", vehicles=3, villages=3, projects=4, days=2,
                     malformed=False, duplicates=False)
    run.produce(d, eod=False)
    t = run.topics
    ev = t.event_topics
    bad: list[tuple[str, bytes, bytes | None]] = [
        (ev["gps"], b"V0001", b'{"vehicle_id": "V0001", "ts": "2026-03-02T08:00:00+08:00"'),
        (ev["gps"], b"V0001", b'{"vehicle_id": "V0001", "ts": "2026-03-02T08:00:00+08:00", '
                              b'"lat": 123.4, "lon": 120.1}'),
        (ev["gps"], b"V0002", b"\xff\xfe not utf-8 at all"),
        (ev["fuel"], b"C0001", b'{"txn_id": "TX-BAD-1", "card_id": "C0001"}'),
        (ev["fuel"], b"C9999", b'{"txn_id": "TX-BAD-2", "card_id": "C9999", "ts": '
                               b'"2026-03-03 12:00:00", "station_id": "S1", "station_lat": 30.2, '
                               b'"station_lon": 120.2, "liters": 30, "amount_yuan": 230}'),
        (ev["payments"], b"VL001", b"[1, 2, 3]"),
        (ev["payments"], b"VL001", b'{"payment_id": "PM-BAD-1", "village_id": "VL001", "ts": '
                                   b'"2026-03-03T10:00:00+08:00", "amount_yuan": -5, '
                                   b'"channel": "cash", "payee_id": "X"}'),
        (ev["progress"], b"PJ0001", b'{"report_id": "PR-BAD-1", "project_id": "PJ0001"}'),
        (ev["progress"], b"PJ9999", b'{"report_id": "PR-BAD-2", "project_id": "PJ9999", "ts": '
                                   b'"2026-03-03T17:00:00+08:00", "stage": "started", '
                                   b'"percent_complete": 5}'),
        (ev["payments"], b"VL001", None),
    ]
    # after the bad records: one good payment that must still raise its alert
    good = (b'{"payment_id": "PM-GOOD-1", "village_id": "VL001", "ts": '
            b'"2026-03-04T10:00:00+08:00", "amount_yuan": 8000, "channel": "cash", '
            b'"payee_id": "P-GOOD", "payee_name": "x", "category": "other", '
            b'"approval_id": "A1"}')
    pub = KafkaPublisher(BOOTSTRAP)
    try:
        for topic, key, value in bad:
            n = t.stream_n(next(s for s, name in ev.items() if name == topic))
            pub.send(Planned("bad", topic, partition_for(key, n), key, value or b""))
        pub.flush()
        if any(v is None for _, _, v in bad):  # a null value (tombstone) needs the raw client
            from kafka import KafkaProducer

            kp = KafkaProducer(bootstrap_servers=BOOTSTRAP)
            for topic, key, value in bad:
                if value is None:
                    kp.send(topic, key=key, value=None,
                            partition=partition_for(key, t.stream_n("payments")))
            kp.flush()
            kp.close()
        pub.send(Planned("event", ev["payments"], partition_for(b"VL001", t.stream_n("payments")),
                         b"VL001", good))
        from lianwatch.streams.plan import ticks

        for tk in ticks(t, "eod", as_of=1772589600.0, id="bad-eod"):
            pub.send(tk)
        pub.flush()
    finally:
        pub.close()
    w = run.worker("a", "--clock", "event", "--state", "memory", "--idle-exit", "3")
    run.wait(w)
    dead = read_topic(t.deadletter)
    by_raw = {m.value: dict(m.headers) for m in dead}
    for topic, _, value in bad:
        raw = value if value is not None else b""
        assert raw in by_raw, f"{topic}: {raw!r} not on the dead letter topic"
        h = by_raw[raw]
        assert h["lw-reason"] and h["lw-source"].decode().startswith(topic)
    reasons = {m.value: dict(m.headers)["lw-reason"].decode() for m in dead}
    assert "belongs to no known vehicle" in reasons[bad[4][2]]
    assert "unknown project" in reasons[bad[8][2]]
    got, _ = topic_alerts(t.alerts)
    assert any(r == "payment.cash" for r, _, _ in got.values())
    store = store_contents(run.tmp / "data-a")
    assert len(store["dead"]) >= len(bad)
