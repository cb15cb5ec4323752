"""The worker's faults on the real components (issue 13, faults 1 and 2).

- A ClickHouse outage (the real server, stopped with ``scripts/clickhouse.sh stop``
  while the worker runs on the real broker): the worker never exits, goes on
  consuming, spills to its data directory and, once the server is back, every
  alert is in the store exactly once (current rows) — the alerts replay gives.
- Forged and broken tick records (an end of data "as of" 9999-12-31, a time that
  is no number, one before 2000): ignored, dead-lettered with the reason and
  counted; the worker never crashes, and its alerts are replay's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.test_server_sink import ch_env, server_store  # noqa: F401 - fixture
from tests.test_streaming import (  # noqa: F401 - fixtures
    BOOTSTRAP, county, distinct_pings, expected, read_topic, run, status, topic_alerts,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
CH = ROOT / "scripts" / "clickhouse.sh"


def _ch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    # a graceful stop waits for open connections: the worker holds one, so do not wait long
    env = dict(os.environ, CH_STOP_TIMEOUT=os.environ.get("CH_STOP_TIMEOUT", "5"))
    return subprocess.run([str(CH), *args], capture_output=True, text=True, check=check,
                          timeout=180, env=env)


@pytest.fixture
def ch_server(ch_env) -> dict[str, str]:
    """The test server's connection variables; it runs again after the test, whatever happened."""
    yield ch_env
    if _ch("status", check=False).returncode != 0:
        _ch("start", check=False)


def _current(store: Any) -> tuple[dict[str, tuple[str, str, int]], int]:
    """The store's current alerts, and how many alert rows the current view holds."""
    from lianwatch.errors import StoreError

    try:
        rows = store.query(f"SELECT alert_id, rule, level, version FROM {store.db}.alerts FINAL")
    except StoreError:  # not created yet, or the server is starting
        return {}, 0
    return ({r["alert_id"]: (r["rule"], r["level"], int(r["version"])) for r in rows}, len(rows))


def _released(st: dict[str, Any]) -> int:
    r = st.get("released", {})
    return sum(r.get(f, 0) for f in ("vehicles", "payments", "projects"))


# 2 ------------------------------------------------------------ a ClickHouse outage
@pytest.mark.kafka
@pytest.mark.chserver
def test_a_clickhouse_outage_does_not_stop_the_worker(run, county, expected, ch_server):
    db = f"lw_outage_{uuid.uuid4().hex[:8]}"
    env = {"LIANWATCH_STORE": "clickhouse", "LIANWATCH_CH_HOST": ch_server["CH_HOST"],
           "LIANWATCH_CH_PORT": ch_server["CH_TCP_PORT"], "LIANWATCH_CH_USER": ch_server["CH_USER"],
           "LIANWATCH_CH_PASSWORD": ch_server["CH_PASSWORD"], "LIANWATCH_CH_DATABASE": db}
    store = server_store(ch_server, db)
    ts = sorted(t for _, t in distinct_pings(county))
    mid = ts[len(ts) // 3]
    run.produce(county, as_of=mid, eod=False)  # the first third of the feed
    status_file = run.tmp / "status-a.json"
    w = run.worker("a", "--clock", "event", "--state", "rocksdb", "--state-interval", "0.3",
                   "--status-file", str(status_file), env=env)
    try:
        wait_for(lambda: w.poll() is not None or _released(status(run, "a")) > 0, 90,
                 "the worker to process")
        wait_for(lambda: w.poll() is not None or _current(store)[0], 60,
                 "the first alerts in the store")
        assert w.poll() is None, run.tail(w)
        _ch("stop")  # the server goes away while the worker runs
        assert _ch("status", check=False).returncode != 0
        run.produce(county, after=mid)  # the rest of the feed, and its end, during the outage
        # the worker keeps consuming: it reaches the end of data with the server down
        wait_for(lambda: w.poll() is not None or status(run, "a").get("released", {}).get(
            "finished", 0) >= 3 * run.topics.partitions, 120, "the worker to reach the end of data")
        time.sleep(2.0)
        st = status(run, "a")
        assert w.poll() is None, f"the worker exited during the outage:\n{run.tail(w)}"
        sink = st["sinks"]["store"]
        assert sink["failing"] and sink["send_failures"] > 0 and sink["rows_spilled"] > 0, sink
        spill = run.tmp / "data-a" / "spill"
        assert any(spill.rglob("seg-*.lws")), "rows wait on disk, under the worker's data dir"
        _ch("start")  # the server is back: the worker catches up
        wait_for(lambda: w.poll() is not None or _current(store)[0] == expected, 120,
                 "every alert in the store")
        assert w.poll() is None, run.tail(w)
        wait_for(lambda: not status(run, "a")["sinks"]["store"]["pending"], 60,
                 "the writer to send everything")
        w.send_signal(signal.SIGTERM)
        stats = run.wait(w)
        current, n_rows = _current(store)
        assert current == expected
        assert n_rows == len(expected)  # one current row per alert: nothing doubled
        arch = store.query(f"SELECT count() AS n FROM {db}.events_gps FINAL")[0]["n"]
        assert int(arch) == len(distinct_pings(county))  # every ping archived, once
        assert stats["sinks"]["store"]["pending"] == 0
        assert not any(spill.rglob("seg-*.lws")), "the spill is sent and removed"
    finally:
        if w.poll() is None:
            w.kill()
        if _ch("status", check=False).returncode != 0:
            _ch("start", check=False)
        try:
            store.backend.execute(f"DROP DATABASE IF EXISTS {db}")
        except Exception:  # noqa: BLE001 - best effort
            pass


# 1 ------------------------------------------------------------ forged ticks
@pytest.mark.kafka
def test_forged_ticks_are_ignored_counted_and_never_crash_the_worker(run, county, expected):
    from lianwatch.streams.plan import Planned, ticks
    from lianwatch.streams.publisher import KafkaPublisher

    ts = sorted(t for _, t in distinct_pings(county))
    mid = ts[len(ts) // 2]
    run.produce(county, as_of=mid, eod=False)
    t = run.topics
    forged = [*ticks(t, "eod", as_of=253402300799, id="forged-eod-9999"),  # 9999-12-31
              *ticks(t, "wm", wm=1e20, id="forged-wm"),
              *ticks(t, "eod", as_of="soon", id="forged-eod-text"),
              *ticks(t, "wall", now=946684799.0, id="forged-wall-1999")]
    pub = KafkaPublisher(BOOTSTRAP)
    try:
        for m in forged:
            pub.send(m)
        # and a tick the worker cannot read at all
        pub.send(Planned("tick", t.event_topics["payments"], 0, b"__tick__",
                         b'{"__lw_tick__": 1, "kind": "eod", "as_of": '))
    finally:
        pub.close()
    run.produce(county, after=mid)  # the rest of the feed and the real end of data
    w = run.worker("a", "--clock", "event", "--state", "rocksdb", "--idle-exit", "3")
    stats = run.wait(w)
    got, _ = topic_alerts(t.alerts)
    assert got == expected
    # every forged tick was seen and ignored: on each input partition, and in the re-keying
    # for the fuel partitions (they never reach the vehicle engines)
    n_inputs = sum(t.stream_n(s) for s in t.event_topics)
    assert stats["ticks_ignored"] == len(forged) == 4 * n_inputs, stats
    reasons = [dict(m.headers)["lw-reason"].decode() for m in read_topic(t.deadletter)]
    ignored = [r for r in reasons if r.startswith("tick ignored")]
    assert len(ignored) == len(forged)
    assert any("253402300799 is more than 1 day past the wall clock" in r for r in ignored)
    assert any("'soon' is not a finite number" in r for r in ignored)
    assert any("946684799.0 is before 2000-01-01" in r for r in ignored)
    assert "unreadable tick record" in reasons
    # a restart on the same state and offsets: nothing to do, and no crash
    w2 = run.worker("a", "--clock", "event", "--state", "rocksdb", "--idle-exit", "3")
    run.wait(w2)
    assert json.dumps(topic_alerts(t.alerts)[0], sort_keys=True) == json.dumps(expected,
                                                                               sort_keys=True)
