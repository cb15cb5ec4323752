"""The alert store on chDB (schema, migrations, exact timestamps) and the writer
(batching by size and time, backoff, spill to disk and replay in order, damaged
spill files, refused rows), driven by an injected clock."""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import pytest

from lianwatch.models.alert import Alert, alert_id
from lianwatch.models.clock import format_ts
from lianwatch.sinks.base import StoreError
from lianwatch.sinks.schema import (
    SCHEMA_VERSION, TABLES, Capabilities, column_names, render_all, ts_ms_sql,
)
from lianwatch.sinks.spill import SpillQueue, SpillStats, encode_record, read_segment
from lianwatch.sinks.store import AlertStore
from lianwatch.sinks.writer import Writer

T0 = 1772409600.0  # 2026-03-02 08:00:00+08:00
DB = "lw_test_store"


def mk_alert(n: int, version: int = 1, ms: int = 0, level: str = "yellow") -> Alert:
    pid = f"PM-{n:05d}"
    t = T0 + n * 61 + ms / 1000.0
    return Alert(alert_id=alert_id("payment.cash", "village", "VL1", [pid]), rule="payment.cash",
                 level=level, subject_type="village", subject_id=f"VL{n % 7}",
                 village_id=f"VL{n % 7}", event_ts=format_ts(t),
                 detected_at=format_ts(t + 0.999), title=f"现金支付 {n}\t'引号' \\ \n新行",
                 evidence={"amount_yuan": 6000.5 + n, "station": {"lat": 30.1, "lon": 120.2},
                           "nested": {"k": [1, 2, "三"]}},
                 source_event_ids=[pid, "a'b\\c"], title_en=f"cash {n}", version=version)


def ms_ts(t: float) -> str:
    """An RFC 3339 text with milliseconds (format_ts drops them)."""
    s = format_ts(math.floor(t))
    ms = int(round((t - math.floor(t)) * 1000))
    return f"{s[:19]}.{ms:03d}{s[19:]}"


def mk_ms_alert(n: int, ms: int, version: int = 1) -> Alert:
    a = mk_alert(n, version)
    t = T0 + n * 61 + ms / 1000.0
    return a.model_copy(update={"event_ts": ms_ts(t), "detected_at": ms_ts(t + 0.001 * (n % 3))})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from lianwatch.sinks.chdb_backend import ChdbBackend, current_path

    # chDB has one data directory per process: share the open one (own database)
    path = current_path() or tmp_path_factory.mktemp("store") / "store"
    s = AlertStore(ChdbBackend(path), database=DB)
    s.backend.execute(f"DROP DATABASE IF EXISTS {DB}")
    s.migrate()
    yield s
    s.backend.execute(f"DROP DATABASE IF EXISTS {DB}")


@pytest.fixture
def clean(store):
    store.truncate_all()
    return store


# ------------------------------------------------------------------ schema

def test_server_rendering_differs_only_where_1816_lacks_features():
    old, new = Capabilities.for_version((18, 16, 1)), Capabilities.modern()
    for name in TABLES:
        o, n = column_names(name, old), column_names(name, new)
        assert [c for c in o if not c.endswith("_ms")] == n
    sql_old = "\n".join(render_all(old, "x"))
    assert "DateTime64" not in sql_old and "LowCardinality" not in sql_old
    assert "TTL" not in sql_old and "IF NOT EXISTS `" not in sql_old
    sql_new = "\n".join(render_all(new, "x"))
    assert "DateTime64(3, 'Asia/Shanghai')" in sql_new and "TTL" in sql_new
    assert "ORDER BY (subject_id, event_time, event_time_ms, event_id)" in sql_old


def test_chdb_tables_keep_their_columns(store):
    """Dashboards rely on these names and types on chDB."""
    cols = {r["name"]: r["type"] for r in store.query(
        f"SELECT name, type FROM system.columns WHERE database = '{DB}' AND table = 'alerts'")}
    assert cols["event_time"] == "DateTime64(3, 'Asia/Shanghai')"
    assert cols["rule"] == "LowCardinality(String)"
    assert cols["source_event_ids"] == "Array(String)"
    assert store.query(f"SELECT count() AS n FROM {DB}.alerts_current")[0]["n"] == 0


def test_migrate_brings_v1_up_and_twice_is_a_noop(store):
    db = "lw_test_v1"
    st = AlertStore(store.backend, database=db)
    st.backend.execute(f"DROP DATABASE IF EXISTS {db}")
    try:
        for stmt in render_all(st.caps, db, upto=1):
            st.backend.execute(stmt)
        st.insert_rows("schema_version", [(1, 0)])
        cols = lambda: {r["name"] for r in st.query(  # noqa: E731
            f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'alerts'")}
        assert "lat" not in cols()
        rep = st.check()
        assert not rep["ok"]
        assert "column alerts.lat is missing" in rep["problems"]
        assert "table notifications is missing" in rep["problems"]
        assert any("schema version 1" in p for p in rep["problems"])

        assert st.migrate() == SCHEMA_VERSION
        assert st.last_migration
        assert {"lat", "lon"} <= cols()
        assert st.schema_version() == SCHEMA_VERSION
        assert st.check()["ok"], st.check()["problems"]
        # new columns sit where a fresh table has them
        order = [r["name"] for r in st.query(
            f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'alerts'")]
        assert order == column_names("alerts", st.caps)
        n_versions = st.query(f"SELECT count() AS n FROM {db}.schema_version")[0]["n"]

        assert st.migrate() == SCHEMA_VERSION
        assert st.last_migration == []
        assert st.plan_migration() == []
        assert st.query(f"SELECT count() AS n FROM {db}.schema_version")[0]["n"] == n_versions
        # the old table still takes rows and reads them back
        st.write_alerts([mk_alert(1)])
        assert st.alerts() == [mk_alert(1)]
    finally:
        st.backend.execute(f"DROP DATABASE IF EXISTS {db}")


# ------------------------------------------------------------------ round trips

def test_alerts_round_trip_with_versions(clean):
    a1, a2 = mk_alert(1), mk_alert(2)
    a1v2 = a1.model_copy(update={"version": 2, "level": "red", "title": "raised"})
    clean.write_alerts([a1, a2])
    clean.write_alerts([a1v2, a1])  # an older version arriving late loses
    clean.write_alerts([a1v2])  # an exact re-send is folded away
    got = clean.alerts()
    assert sorted(got, key=lambda a: a.alert_id) == sorted([a1v2, a2], key=lambda a: a.alert_id)
    assert clean.get_alert(a1.alert_id) == a1v2
    assert clean.get_alert("nope") is None
    assert clean.counts()["alerts_current"] == 2
    assert clean.query(f"SELECT count() AS n FROM {DB}.alerts_current")[0]["n"] == 2


def test_timestamps_round_trip_to_the_millisecond(clean):
    edge = [0, 1, 7, 123, 499, 500, 501, 998, 999]
    alerts = [mk_ms_alert(i, ms) for i, ms in enumerate(edge)]
    clean.write_alerts(alerts)
    assert sorted(clean.alerts(), key=lambda a: a.alert_id) == sorted(
        alerts, key=lambda a: a.alert_id)
    rows = clean.query(f"SELECT alert_id, {ts_ms_sql(clean.caps, 'event_time')} AS e, "
                       f"{ts_ms_sql(clean.caps, 'detected_time')} AS d FROM {DB}.alerts")
    from lianwatch.models.clock import parse_ts

    want = {a.alert_id: (round(parse_ts(a.event_ts) * 1000), round(parse_ts(a.detected_at) * 1000))
            for a in alerts}
    assert {r["alert_id"]: (int(r["e"]), int(r["d"])) for r in rows} == want
    # since/until are exact to the millisecond too
    a = alerts[3]
    got = clean.alerts(since=a.event_ts, until=ms_ts(T0 + 3 * 61 + 0.124))
    assert got == [a]

    # the archive: (t, raw bytes) back as they went in, whatever the bytes hold
    raws = [b'{"a":"tab\\there"}', '{"n":"中文\\\\"}'.encode(), b'{"x":"\t raw tab"}',
            b'{"q":"it\'s"}', b'{"nl":"line\\nbreak"}', b'{"r":"\r"}']
    recs = [({"vehicle_id": "V1", "t": T0 + ms / 1000.0}, raws[i % len(raws)])
            for i, ms in enumerate(edge + [1000 * 86400 * 40 + 5])]
    assert clean.archive("gps", recs) == len(recs)
    back = clean.archived("gps")
    assert [(round(t * 1000), r) for t, r in back] == [
        (round(ev["t"] * 1000), raw) for ev, raw in recs]
    mid = clean.archived("gps", start=T0 + 0.123, end=T0 + 0.5)
    assert [round(t * 1000) - round(T0 * 1000) for t, _ in mid] == [123, 499, 500]
    # partitions by month
    parts = clean.query(f"SELECT DISTINCT partition FROM system.parts WHERE database = '{DB}' "
                        f"AND table = 'events_gps' AND active")
    assert len(parts) == 2


def test_row_dicts_and_defaults(clean):
    """``insert_dicts`` (used by the lifecycle and the notifier): seconds in, milliseconds kept."""
    clean.insert_dicts("alert_history", [{"alert_id": "x", "seq": 1, "at_time": T0 + 0.007,
                                     "action": "open", "state": "open", "by": "system"}])
    r = clean.query(f"SELECT {ts_ms_sql(clean.caps, 'at_time')} AS ms, note FROM "
                    f"{DB}.alert_history")[0]
    assert int(r["ms"]) == round(T0 * 1000) + 7 and r["note"] == ""
    # (dead letters live 180 days by TTL after received_time: use a recent one)
    clean.write_deadletters([{"stream": "gps", "reason": "bad json", "raw": "{",
                              "received_t": time.time()}])
    assert clean.counts()["deadletters"] == 1


def test_tsv_escapes_every_awkward_value(clean):
    from lianwatch.sinks.schema import canonical_row

    weird = "tab\there nl\nthere cr\rback\\slash quote' nul\0 中文"
    clean.insert_dicts("ref_officials", [{"person_id": "P1", "name": weird, "village_id": "VL1",
                                     "role": "director", "related_payee_ids": [weird, "]", "'"],
                                     "raw": weird}])
    r = clean.query(f"SELECT name, related_payee_ids, raw FROM {DB}.ref_officials")[0]
    assert r["name"] == weird and r["raw"] == weird
    assert r["related_payee_ids"] == [weird, "]", "'"]
    assert canonical_row("ref_vehicles", {"vehicle_id": "V"})[6] != 0.0  # NaN default


# ------------------------------------------------------------------ writer (fake store)

class FakeBackend:
    """Records inserts; ``down`` makes it fail like an unreachable server."""

    kind = "fake"
    caps = Capabilities.modern()

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.got: list[tuple[str, tuple]] = []
        self.refuse: str | None = None  # a row holding this text is refused as bad data
        self.lock = threading.Lock()

    def insert(self, db, table, rows) -> None:
        with self.lock:
            self.calls += 1
            if self.down:
                raise StoreError("Connection refused (127.0.0.1:19000)", transient=True)
            if self.refuse and any(self.refuse in str(r) for r in rows):
                raise StoreError("Code: 53. type mismatch", transient=False, code=53)
            self.got.extend((table.name, r) for r in rows)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fake_writer(tmp_path: Path | None = None, **kw):
    be = FakeBackend()
    clock = Clock()
    st = AlertStore(be, database="x")
    w = Writer(st, spill_dir=tmp_path, clock=clock, background=False, **kw)
    return w, be, clock


def rows(n: int, start: int = 0, table: str = "events_gps") -> list[tuple]:
    return [(f"V{i % 3}", 1772409600000 + i, f"e{i}", f"raw {i}") for i in range(start, start + n)]


def test_writer_batches_by_size_and_by_time():
    w, be, clock = fake_writer(max_rows=3, max_delay=0.25)
    w.put("events_gps", rows(2))
    assert w.poll() == 0 and be.calls == 0  # not full, not old
    clock.t += 0.1
    assert w.poll() == 0
    w.put("events_gps", rows(1, 2))
    assert w.poll() == 3 and be.calls == 1  # full
    w.put("events_gps", rows(1, 3))
    clock.t += 0.125
    assert w.poll() == 0
    clock.t += 0.125
    assert w.poll() == 1  # old enough (binary-exact steps: no float fuzz)
    assert [r[2] for _, r in be.got] == ["e0", "e1", "e2", "e3"]


def test_writer_backs_off_exponentially_and_keeps_order():
    w, be, clock = fake_writer(max_rows=1, retry_initial=0.1, retry_max=0.5)
    be.down = True
    w.put("events_gps", rows(5))
    waits = []
    for _ in range(6):
        assert w.poll() == 0
        calls = be.calls
        t0 = clock.t
        while w.poll() == 0 and be.calls == calls:  # nothing is tried before the backoff ends
            clock.t += 0.01
        waits.append(round(clock.t - t0, 2))
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5], abs=0.011)
    be.down = False
    clock.t += 1
    assert w.flush()
    assert [r[2] for _, r in be.got] == [f"e{i}" for i in range(5)]
    assert w.stats["send_failures"] == 7 and w._failures == 0


def test_writer_spills_and_replays_in_order(tmp_path):
    w, be, clock = fake_writer(tmp_path, max_rows=10, max_batch_rows=10, max_buffer_rows=20,
                               retry_initial=0.05, retry_max=0.05, segment_bytes=600)
    be.down = True
    sent = []
    for i in range(0, 200, 7):  # a long outage: memory fills, the rest goes to disk
        w.put("events_gps", rows(min(7, 200 - i), i))
        sent += [f"e{j}" for j in range(i, min(i + 7, 200))]
        clock.t += 0.06
        w.poll()
    assert w.stats["rows_spilled"] > 100
    assert len(list(tmp_path.glob("seg-*.lws"))) > 3  # rotated segments
    assert be.got == []
    be.down = False
    clock.t += 1
    # new rows while the backlog drains go behind it
    w.put("events_gps", rows(5, 200))
    sent += [f"e{j}" for j in range(200, 205)]
    for _ in range(100):
        clock.t += 0.06
        w.poll()
    assert [r[2] for _, r in be.got] == sent
    assert w.pending() == 0
    assert list(tmp_path.glob("seg-*.lws")) == []
    assert w.stats["rows_replayed"] == w.stats["rows_spilled"]


def test_writer_close_keeps_unsent_rows_in_order_for_the_next(tmp_path):
    w, be, clock = fake_writer(tmp_path, max_rows=5, max_buffer_rows=10, max_batch_rows=10)
    be.down = True
    w.put("events_gps", rows(8))        # memory
    w.put("events_gps", rows(6, 8))     # no room: disk
    w.put("events_gps", rows(3, 14))    # disk (behind the others)
    assert not w.close()
    # a fresh writer on the same directory: the disk first, then what comes next
    be.down = False
    w2 = Writer(w.store, spill_dir=tmp_path, clock=clock, background=False, max_rows=5)
    w2.put("events_gps", rows(2, 17))
    assert w2.flush()
    assert [r[2] for _, r in be.got] == [f"e{i}" for i in range(19)]
    assert list(tmp_path.glob("seg-*.lws")) == []

    # rows that came in memory between two segments stay between them
    be.down = True
    be.got.clear()
    w3 = Writer(w.store, spill_dir=tmp_path, clock=clock, background=False, max_rows=1,
                max_buffer_rows=10, max_batch_rows=10)
    w3.put("events_gps", rows(4, 100))   # memory
    w3.put("events_gps", rows(8, 104))   # no room: disk (segment A)
    assert not w3.close()                # memory → a segment before A
    w4 = Writer(w.store, spill_dir=tmp_path, clock=clock, background=False, max_rows=1,
                max_buffer_rows=20, max_batch_rows=4)
    assert w4.poll() == 0                # loads the first segment, the send fails
    w4.put("events_gps", rows(2, 112))   # behind what was loaded: memory
    w4.put("events_gps", rows(30, 114))  # no room: disk (segment B)
    assert not w4.close()                # 112-113 → a segment between A and B
    be.down = False
    w5 = Writer(w.store, spill_dir=tmp_path, clock=clock, background=False)
    assert w5.flush()
    assert [r[2] for _, r in be.got] == [f"e{i}" for i in range(100, 144)]
    assert list(tmp_path.glob("seg-*.lws")) == []


def test_damaged_spill_files_are_reported_and_skipped_record_by_record(tmp_path, caplog):
    seg = tmp_path / f"seg-{1:020d}.lws"
    recs = [encode_record("events_gps", r) for r in rows(10)]
    blob = bytearray(b"".join(recs))
    # flip a byte inside record 3's payload (CRC catches it)
    off3 = sum(len(r) for r in recs[:3])
    blob[off3 + 15] ^= 0xFF
    # garbage between records 5 and 6
    off6 = sum(len(r) for r in recs[:6])
    blob[off6:off6] = b"\x00garbage\xff"
    # cut record 9 (the last) short
    blob = blob[:-7]
    seg.write_bytes(bytes(blob))
    # a second, clean segment after it
    (tmp_path / f"seg-{10_000:020d}.lws").write_bytes(
        b"".join(encode_record("events_gps", r) for r in rows(2, 10)))
    # and a file that is nothing but noise
    (tmp_path / f"seg-{20_000:020d}.lws").write_bytes(b"LWR1\xff\xff\xff\x7fnoise")

    stats = SpillStats()
    got = read_segment(seg, stats)
    assert [r[2] for _, r in got] == ["e0", "e1", "e2", "e4", "e5", "e6", "e7", "e8"]
    assert stats.corrupt_records == 2 and stats.truncated_records == 1

    caplog.set_level(logging.WARNING, logger="lianwatch.sinks.spill")
    w, be, clock = fake_writer(tmp_path)
    assert w.flush()
    assert [r[2] for _, r in be.got] == ["e0", "e1", "e2", "e4", "e5", "e6", "e7", "e8",
                                         "e10", "e11"]
    st = w.spill.stats
    assert st.corrupt_records == 3 and st.truncated_records == 1
    assert len(st.files_with_errors) == 2
    assert "truncated" in caplog.text and "damaged record" in caplog.text
    assert list(tmp_path.glob("seg-*.lws")) == []


def test_refused_rows_are_isolated_and_set_aside(tmp_path):
    w, be, clock = fake_writer(tmp_path, max_rows=1)
    be.refuse = "raw 13"
    w.put("events_gps", rows(20))
    w.put("events_fuel", rows(2, 50))
    assert w.flush()
    assert [r[2] for _, r in be.got if r[2] != "e13"] == [r[2] for _, r in be.got]
    assert len(be.got) == 21 and w.stats["rows_rejected"] == 1
    rejected = list(tmp_path.glob("rejected-*.lws"))
    assert len(rejected) == 1 and read_segment(rejected[0])[0][1][2] == "e13"


def test_a_table_accepted_in_a_failed_batch_is_not_sent_again():
    w, be, clock = fake_writer(max_rows=1)
    w.put("events_gps", rows(2))
    w.put("events_fuel", rows(2, 2))
    orig = be.insert

    def flaky(db, table, rs):
        if table.name == "events_fuel" and not getattr(flaky, "failed", False):
            flaky.failed = True
            raise StoreError("timeout", transient=True)
        orig(db, table, rs)

    be.insert = flaky
    assert w.poll() == 2  # gps went, fuel failed
    clock.t += 1
    assert w.flush()
    assert [(t, r[2]) for t, r in be.got] == [("events_gps", "e0"), ("events_gps", "e1"),
                                             ("events_fuel", "e2"), ("events_fuel", "e3")]


def test_background_writer_sends_alerts_within_a_fraction_of_a_second():
    be = FakeBackend()
    st = AlertStore(be, database="x")
    w = Writer(st)  # defaults: 500 rows or 200 ms, real clock, a thread
    try:
        t0 = time.monotonic()
        w.write_alerts([mk_alert(1)])
        while not be.got and time.monotonic() - t0 < 3:
            time.sleep(0.01)
        assert be.got and time.monotonic() - t0 < 1.0
        assert be.got[0][1][0] == mk_alert(1).alert_id
        w.write_alerts([mk_alert(i) for i in range(2, 1200)])
        assert w.flush(5)
        assert len(be.got) == 1199
    finally:
        assert w.close()


# ------------------------------------------------------------------ writer on chDB

def test_writer_into_chdb(clean, tmp_path):
    w = Writer(clean, spill_dir=tmp_path / "spill", max_delay=0.05)
    try:
        alerts = [mk_ms_alert(i, i * 37 % 1000) for i in range(50)]
        w.write_alerts(alerts)
        w.write_alerts([alerts[0].model_copy(update={"version": 3, "level": "red"})])
        w.archive("fuel", [({"txn_id": f"T{i}", "vehicle_id": "V1", "t": T0 + i / 1000},
                            f'{{"txn_id":"T{i}"}}'.encode()) for i in range(10)])
        assert w.flush(10)
    finally:
        w.close()
    got = {a.alert_id: a for a in clean.alerts()}
    assert len(got) == 50 and got[alerts[0].alert_id].version == 3
    assert got[alerts[7].alert_id] == alerts[7]
    back = clean.archived("fuel")
    assert [round(t * 1000) - round(T0 * 1000) for t, _ in back] == list(range(10))


def test_spill_queue_sequence_survives_restart(tmp_path):
    q = SpillQueue(tmp_path, segment_bytes=100)
    q.append(5, [("events_gps", r) for r in rows(10)])
    q.close()
    q2 = SpillQueue(tmp_path)
    assert q2.next_seq() > 15 and len(q2) == len(list(tmp_path.glob("seg-*.lws")))
    got = []
    while (x := q2.load_next()) is not None:
        got += [r[2] for _, r in x[2]]
        q2.remove(x[0])
    assert got == [f"e{i}" for i in range(10)]


def test_large_batches_are_pipelined_and_complete(clean, monkeypatch):
    from lianwatch.sinks.chdb_backend import ChdbBackend

    monkeypatch.setattr(ChdbBackend, "PIPELINE_ROWS", 10)
    recs = [({"txn_id": f"T{i:03d}", "vehicle_id": "V1", "t": T0 + i + 0.001 * i},
             f'{{"txn_id":"T{i:03d}"}}'.encode()) for i in range(35)]
    assert clean.archive("fuel", recs) == 35
    back = clean.archived("fuel")
    assert [(round(t * 1000), r) for t, r in back] == [
        (round(ev["t"] * 1000), raw) for ev, raw in recs]


def test_a_chdb_store_survives_another_data_directory(store, tmp_path):
    """chDB runs one data directory per process: a store whose session another path
    closed opens its own again (tests and tools open several stores)."""
    from lianwatch.sinks.chdb_backend import ChdbBackend, current_path

    mine = current_path()
    other = AlertStore(ChdbBackend(tmp_path / "other"), database="lw_other")
    other.migrate()
    assert current_path() != mine
    store.truncate_all()
    store.write_alerts([mk_alert(5)])
    assert store.alerts() == [mk_alert(5)] and current_path() == mine
    assert other.alerts() == []


def test_db_command_on_chdb(store, tmp_path, monkeypatch, capsys):
    from lianwatch.cli import main

    monkeypatch.setenv("LIANWATCH_STORE", "chdb")
    monkeypatch.setenv("LIANWATCH_DATA_DIR", str(tmp_path))
    assert main(["db", "check", "--strict"]) == 1
    assert "PROBLEM: database lianwatch is missing" in capsys.readouterr().out
    assert main(["db", "migrate", "--dry-run"]) == 0
    assert "CREATE TABLE IF NOT EXISTS lianwatch.alerts" in capsys.readouterr().out
    assert main(["db", "migrate"]) == 0
    assert f"→ {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["db", "migrate"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["db", "check", "--json"]) == 0
    import orjson

    rep = orjson.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["schema_version"] == SCHEMA_VERSION and rep["backend"] == "chdb"
    assert rep["counts"]["alerts"] == 0
