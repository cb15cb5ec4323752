"""``lianwatch produce`` and broker outages, on the real broker (issue 13, fault 3).

The broker of ``scripts/kafka.sh`` (this run's ``KAFKA_PORT``) is stopped in the
middle of a publish and started again (its data kept): the producer retries
with backoff and resumes where it was, and every record arrives (consumers
dedupe by id: the distinct ids per topic are the directory's). A broker that
never comes back ends the publish with a :class:`~lianwatch.errors.BrokerError`
after the configured time; the command prints one line and exits 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.test_streaming import BOOTSTRAP, read_topic, run, small_county  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]


def kafka(cmd: str) -> None:
    """Stop or start THIS run's broker (the port of LIANWATCH_KAFKA_BOOTSTRAP), data kept."""
    port = BOOTSTRAP.rpartition(":")[2]
    env = dict(os.environ, KAFKA_PORT=port, KAFKA_KEEP_DATA="1")
    r = subprocess.run([str(ROOT / "scripts" / "kafka.sh"), cmd], env=env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.fixture(scope="module")
def feed(tmp_path_factory) -> Path:
    return small_county(tmp_path_factory.mktemp("produce") / "county", seed=21, vehicles=20,
                        days=3)


def planned_ids(d: Path, topics) -> dict[str, set[str]]:
    """topic → the distinct ids the directory's messages carry (refs: their keys)."""
    from lianwatch.streams.plan import plan_directory

    out: dict[str, set[str]] = defaultdict(set)
    for m in plan_directory(d, topics, tick_every=0):
        out[m.topic].update(_ids(m.topic, m.key, m.value, topics))
    return out


def _ids(topic: str, key: bytes | None, value: bytes, topics) -> set[str]:
    from lianwatch.models.streams import record_id
    from lianwatch.models.parse import parse_event

    streams = {v: k for k, v in topics.event_topics.items()}
    if topic in streams:
        if value.startswith(b'{"__lw_tick__"'):
            tick = json.loads(value)
            return {f"tick:{tick['kind']}"} if tick["kind"] == "eod" else set()
        ev, _ = parse_event(streams[topic], value)
        return {record_id(streams[topic], ev)} if ev is not None else set()
    if topic == topics.deadletter:
        return {value.decode("utf-8", "replace")}
    return {key.decode()} if key else set()


def topic_ids(topics, names) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for name in names:
        for m in read_topic(name, timeout=60):
            out[name].update(_ids(name, m.key, m.value, topics))
    return out


@pytest.mark.kafka
def test_a_broker_restart_during_a_publish_loses_nothing(run, feed):
    """The broker is down ~10 s in the middle of a publish (longer than the producer's
    request timeout, so batches fail and are sent again): every record arrives."""
    from lianwatch.streams.publisher import KafkaPublisher

    from lianwatch.streams.topics import ensure_topics

    ensure_topics(BOOTSTRAP, run.topics)
    want = planned_ids(feed, run.topics)
    restarted = threading.Event()
    state: dict[str, float] = {}

    def restart_later() -> None:
        time.sleep(8.0)
        kafka("start")
        state["up"] = time.monotonic()
        restarted.set()

    def progress(n: int, counts) -> None:
        if n >= 10_000 and "down" not in state:
            kafka("stop")  # in the middle of it: batches in flight, more to come
            state["down"] = time.monotonic()
            threading.Thread(target=restart_later, daemon=True).start()

    pub = KafkaPublisher(BOOTSTRAP, retry_for=120.0, request_timeout=4.0)
    try:
        res = run.produce(feed, progress=progress, publisher=pub)
        pub.flush()
    finally:
        restarted.wait(120)
        pub.close()
    assert "down" in state and restarted.is_set()
    assert res.outages >= 1 and res.resent > 0, res  # it did retry, and sent batches again
    got = topic_ids(run.topics, list(want))
    for topic, ids in want.items():
        assert got[topic] == ids, f"{topic}: {len(ids - got[topic])} missing"
    # the end of data reached every input partition
    for s, name in run.topics.event_topics.items():
        parts = {m.partition for m in read_topic(name) if m.value.startswith(b'{"__lw_tick__"')
                 and json.loads(m.value)["kind"] == "eod"}
        assert parts == set(range(run.topics.stream_n(s))), (name, parts)


@pytest.mark.kafka
def test_a_broker_that_never_comes_back_ends_the_publish_in_bounded_time(run, feed):
    from lianwatch.errors import BrokerError
    from lianwatch.streams.publisher import KafkaPublisher
    from lianwatch.streams.topics import ensure_topics

    ensure_topics(BOOTSTRAP, run.topics)
    state: dict[str, float] = {}

    def progress(n: int, counts) -> None:
        if n >= 10_000 and "down" not in state:
            kafka("stop")
            state["down"] = time.monotonic()

    pub = KafkaPublisher(BOOTSTRAP, retry_for=6.0, request_timeout=3.0)
    try:
        with pytest.raises(BrokerError) as ei:
            run.produce(feed, progress=progress, publisher=pub)
        took = time.monotonic() - state["down"]
        assert took < 6.0 + 3.0 + 20.0, took  # retry_for, one delivery timeout, slack
        assert "unreachable for 6 s" in str(ei.value) and "messages not delivered" in str(ei.value)
    finally:
        pub.close(flush=False)
        kafka("start")


@pytest.mark.kafka
def test_produce_command_with_no_broker_prints_one_line_and_exits_1(tmp_path, feed):
    # a port nothing listens on (the broker's controller port + 7 is ours to leave alone)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "lianwatch.cli", "produce", "--input", str(feed),
                        "--bootstrap", f"127.0.0.1:{port}", "--prefix", "nobroker.",
                        "--broker-timeout", "5", "--quiet"],
                       capture_output=True, text=True, timeout=180)
    took = time.monotonic() - t0
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lianwatch produce: "), r.stderr[-3000:]
    assert "Traceback" not in r.stderr and f"127.0.0.1:{port}" in lines[0]
    assert took < 60, took
