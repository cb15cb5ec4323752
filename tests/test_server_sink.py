"""The ClickHouse server sink against the REAL server (scripts/clickhouse.sh, Debian's
18.16) and chDB side by side: the same writes read back the same, timestamps exact
to the millisecond, migrations, ``lianwatch db``, no password in sight, and the
writer riding out a server stop (buffer → spill → replay, exactly once, in order)."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from lianwatch.models.alert import Alert, alert_id
from lianwatch.models.clock import format_ts, parse_ts
from lianwatch.settings import ClickHouseSettings
from lianwatch.sinks.base import StoreError
from lianwatch.sinks.schema import (
    SCHEMA_VERSION, Capabilities, column_names, render_all, ts_ms_sql,
)
from lianwatch.sinks.store import AlertStore
from lianwatch.sinks.writer import Writer

ROOT = Path(__file__).resolve().parents[1]
CH = ROOT / "scripts" / "clickhouse.sh"
T0 = 1772409600.0  # 2026-03-02 08:00:00+08:00
RUN = f"{os.getpid()}_{secrets.token_hex(3)}"



def _ch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(CH), *args], capture_output=True, text=True, check=check,
                          timeout=120)


@pytest.fixture(scope="session")
def ch_env() -> dict[str, str]:
    """The running test server's connection variables (skip, or fail under
    LIANWATCH_REQUIRE_SERVICES=1, when it is not running)."""
    if _ch("status", check=False).returncode != 0:
        if os.environ.get("LIANWATCH_REQUIRE_SERVICES") == "1":
            pytest.fail("the ClickHouse server is required (LIANWATCH_REQUIRE_SERVICES=1) but "
                        "`scripts/clickhouse.sh status` says it is not running")
        pytest.skip("ClickHouse server not running (scripts/clickhouse.sh start)")
    env = {}
    for line in _ch("env").stdout.splitlines():
        k, _, v = line.partition("=")
        env[k] = v
    return env


def settings_for(env: dict[str, str], database: str, **kw) -> ClickHouseSettings:
    return ClickHouseSettings(host=env["CH_HOST"], port=int(env["CH_TCP_PORT"]),
                              user=env["CH_USER"], password=SecretStr(env["CH_PASSWORD"]),
                              database=database, send_receive_timeout=10.0, **kw)


def server_store(env: dict[str, str], database: str) -> AlertStore:
    from lianwatch.sinks.server import ServerBackend

    return AlertStore(ServerBackend(settings_for(env, database)), database=database)


@pytest.fixture(scope="module")
def srv(ch_env):
    db = f"lw_test_{RUN}"
    s = server_store(ch_env, db)
    s.backend.execute(f"DROP DATABASE IF EXISTS {db}")
    s.migrate()
    yield s
    try:
        s.backend.execute(f"DROP DATABASE IF EXISTS {db}")
    finally:
        s.close()


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    from lianwatch.sinks.chdb_backend import ChdbBackend, current_path

    db = "lw_test_server_cmp"
    path = current_path() or tmp_path_factory.mktemp("cmp") / "store"
    s = AlertStore(ChdbBackend(path), database=db)
    s.backend.execute(f"DROP DATABASE IF EXISTS {db}")
    s.migrate()
    yield s
    s.backend.execute(f"DROP DATABASE IF EXISTS {db}")


@pytest.fixture
def both(srv, emb):
    srv.truncate_all()
    emb.truncate_all()
    return srv, emb


def ms_ts(t: float) -> str:
    whole = int(t // 1)
    s = format_ts(whole)
    return f"{s[:19]}.{round((t - whole) * 1000):03d}{s[19:]}"


def mk(n: int, version: int = 1, ms: int = 0) -> Alert:
    pid = f"T{n:05d}"
    t = T0 + n * 3600.25 + ms / 1000.0
    return Alert(alert_id=alert_id("fuel.not_at_station", "vehicle", f"V{n % 5}", [pid]),
                 rule="fuel.not_at_station", level="red" if version > 1 else "yellow",
                 subject_type="vehicle", subject_id=f"V{n % 5}", unit_id="U03",
                 event_ts=ms_ts(t), detected_at=ms_ts(t + 60.5 + version),
                 title=f"加油时车辆不在加油站 {n} v{version}\t'q' \\ \n",
                 evidence={"distance_m": 6812 + n, "vehicle_state": "parked",
                           "vehicle_position": {"lat": 30.27 + n / 1e4, "lon": 120.15}},
                 source_event_ids=[pid], title_en=f"away {n}", version=version)


# ------------------------------------------------------------------ schema on the server

@pytest.mark.chserver
def test_server_capabilities_and_rendering(srv):
    caps = srv.caps
    assert caps == Capabilities.for_version(srv.backend.version)
    assert srv.backend.version_text == srv.backend.server_version()
    cols = {r["name"]: r["type"] for r in srv.query(
        f"SELECT name, type FROM system.columns WHERE database = '{srv.db}' AND table = 'alerts'")}
    assert list(cols) == column_names("alerts", caps)
    if not caps.datetime64:  # 18.16
        assert cols["event_time"] == "DateTime('Asia/Shanghai')"
        assert cols["event_time_ms"] == "UInt16" and cols["rule"] == "String"
    rep = srv.check()
    assert rep["ok"], rep["problems"]
    assert rep["schema_version"] == SCHEMA_VERSION and rep["server_version"]


@pytest.mark.chserver
def test_migrate_v1_server_schema_twice(ch_env):
    db = f"lw_test_v1_{RUN}"
    st = server_store(ch_env, db)
    try:
        st.backend.execute(f"DROP DATABASE IF EXISTS {db}")
        for stmt in render_all(st.caps, db, upto=1):
            st.backend.execute(stmt)
        st.insert_rows("schema_version", [(1, round(T0 * 1000))])
        assert st.schema_version() == 1
        rep = st.check()
        assert "column alerts.lat is missing" in rep["problems"]
        assert "table ref_projects is missing" in rep["problems"]

        st.migrate()
        cols = [r["name"] for r in st.query(f"SELECT name FROM system.columns WHERE database = "
                                            f"'{db}' AND table = 'alerts'")]
        assert cols == column_names("alerts", st.caps)  # lat/lon added, in place
        assert st.schema_version() == SCHEMA_VERSION and st.check()["ok"]
        st.migrate()
        assert st.last_migration == [] and st.plan_migration() == []
        assert st.query(f"SELECT count() AS n FROM {db}.schema_version")[0]["n"] == 2
    finally:
        st.backend.execute(f"DROP DATABASE IF EXISTS {db}")
        st.close()


@pytest.mark.chserver
def test_db_command_check_and_migrate(ch_env, monkeypatch, capsys):
    from lianwatch.cli import main

    db = f"lw_test_cli_{RUN}"
    for k, v in {"LIANWATCH_STORE": "clickhouse", "LIANWATCH_CH_HOST": ch_env["CH_HOST"],
                 "LIANWATCH_CH_PORT": ch_env["CH_TCP_PORT"], "LIANWATCH_CH_USER": ch_env["CH_USER"],
                 "LIANWATCH_CH_PASSWORD": ch_env["CH_PASSWORD"],
                 "LIANWATCH_CH_DATABASE": db}.items():
        monkeypatch.setenv(k, v)
    try:
        assert main(["db", "check", "--strict"]) == 1
        out = capsys.readouterr().out
        assert "server version: 18." in out or "server version: " in out
        assert f"PROBLEM: database {db} is missing" in out
        assert main(["db", "migrate"]) == 0
        assert f"schema version 0 → {SCHEMA_VERSION}" in capsys.readouterr().out
        assert main(["db", "migrate"]) == 0
        assert "nothing to do" in capsys.readouterr().out
        assert main(["db", "check", "--strict"]) == 0
        out = capsys.readouterr().out
        assert f"schema version: {SCHEMA_VERSION} (current {SCHEMA_VERSION})" in out
        assert "alerts_current" in out and out.rstrip().endswith("ok")
        assert ch_env["CH_PASSWORD"] not in out
        monkeypatch.setenv("LIANWATCH_CH_PORT", "1")  # nothing listens there
        assert main(["db", "check"]) == 1
        err = capsys.readouterr().err
        assert "cannot reach the alert store" in err and ch_env["CH_PASSWORD"] not in err
    finally:
        st = server_store(ch_env, db)
        st.backend.execute(f"DROP DATABASE IF EXISTS {db}")
        st.close()


# ------------------------------------------------------------------ same data, both backends

@pytest.mark.chserver
def test_same_alerts_read_back_the_same_through_either_backend(both):
    srv, emb = both
    ms = [0, 1, 99, 500, 998, 999, 250, 7]
    first = [mk(i, 1, ms[i % len(ms)]) for i in range(24)]
    later = [mk(i, 2, ms[(i + 3) % len(ms)]) for i in range(0, 24, 3)]
    for st in both:
        st.write_alerts(first)
        st.write_alerts(later)
        st.write_alerts(first[:5])  # old versions re-sent late: they lose
    key = lambda a: a.alert_id  # noqa: E731
    want = {a.alert_id: a for a in first} | {a.alert_id: a for a in later}
    got_s, got_e = sorted(srv.alerts(), key=key), sorted(emb.alerts(), key=key)
    assert got_s == got_e == sorted(want.values(), key=key)
    assert srv.alerts() == emb.alerts()  # same order too (event time desc, id)
    for aid, a in want.items():
        assert srv.get_alert(aid) == emb.get_alert(aid) == a
    # filters, to the millisecond
    cut = first[10].event_ts
    assert srv.alerts(since=cut) == emb.alerts(since=cut) != []
    assert srv.alerts(until=cut, subject="V0") == emb.alerts(until=cut, subject="V0")
    assert srv.alerts(level="red") == emb.alerts(level="red") != []
    assert srv.counts()["alerts_current"] == emb.counts()["alerts_current"] == len(want)
    # the timestamp columns themselves hold the exact milliseconds on both
    exact = {aid: (round(parse_ts(a.event_ts) * 1000), round(parse_ts(a.detected_at) * 1000))
             for aid, a in want.items()}
    for st in both:
        rows = st.query(f"SELECT alert_id, {ts_ms_sql(st.caps, 'event_time')} AS e, "
                        f"{ts_ms_sql(st.caps, 'detected_time')} AS d "
                        f"FROM {st.current_alerts_sql()}")
        assert {r["alert_id"]: (int(r["e"]), int(r["d"])) for r in rows} == exact
        n = st.query(f"SELECT count() AS n FROM {st.db}.alerts_current")[0]["n"]
        assert int(n) == len(want)


@pytest.mark.chserver
def test_archive_reference_and_deadletters_match(both):
    from tests.helpers import ref_with, vehicle

    srv, emb = both
    recs = [({"vehicle_id": f"V{i % 3}", "t": T0 + i * 0.001 + (i // 10) * 86400 * 20},
             f'{{"vehicle_id":"V{i % 3}","n":{i},"s":"中\\t\\\\"}}'.encode()) for i in range(60)]
    fuel = [({"txn_id": f"T{i}", "card_id": "C1", "t": T0 + i + 0.999}, f'{{"txn_id":"T{i}"}}'
             .encode()) for i in range(5)]
    ref = ref_with(vehicle("V1"), vehicle("V2", cards=("C2",)))
    for st in both:
        assert st.archive("gps", recs) == 60
        st.archive("fuel", fuel, subject_of=lambda ev: "V9")
        st.write_reference(ref)
        st.write_deadletters([{"stream": "fuel", "reason": "bad", "raw": "{\t",
                               "received_t": time.time()}])
    a_s, a_e = srv.archived("gps"), emb.archived("gps")
    assert a_s == a_e
    assert sorted((round(t * 1000), r) for t, r in a_s) == sorted(
        (round(ev["t"] * 1000), raw) for ev, raw in recs)
    lo, hi = T0 + 0.003, T0 + 0.009
    assert srv.archived("gps", subject="V0", start=lo, end=hi) == emb.archived(
        "gps", subject="V0", start=lo, end=hi) == [
        (t, r) for t, r in a_e if r.startswith(b'{"vehicle_id":"V0"') and lo <= t <= hi]
    assert len(srv.archived("gps", subject="V0", start=lo, end=hi)) == 3  # ms 3, 6, 9: inclusive
    assert srv.archived("fuel", subject="V9") == emb.archived("fuel", subject="V9")
    assert [round(t * 1000) % 1000 for t, _ in srv.archived("fuel")] == [999] * 5
    assert srv.reference_rows("vehicles") == emb.reference_rows("vehicles") != []
    cs, ce = srv.counts(), emb.counts()
    for t in ("events_gps", "events_fuel", "ref_vehicles", "deadletters"):
        assert cs[t] == ce[t] > 0
    parts = srv.query(f"SELECT uniqExact(partition) AS n FROM system.parts WHERE database = "
                      f"'{srv.db}' AND table = 'events_gps' AND active")
    assert int(parts[0]["n"]) >= 2  # by month


@pytest.mark.chserver
def test_early_and_late_timestamps_round_trip(both):
    """Before 2001 a unix time has fewer than 10 digits (chDB's text parser would read
    "0.000" as a date): such times still come back exact, on both backends."""
    times = [0.0, 0.001, 86399.999, 631152000.5, 999999999.999, 1000000000.0, T0 + 0.123,
             4102444799.999]  # 1970 … 2099
    for st in both:
        st.insert_dicts("alert_history", [
            {"alert_id": f"a{i}", "seq": 1, "at_time": t, "action": "open", "state": "open",
             "by": "system"} for i, t in enumerate(times)])
        rows = st.query(f"SELECT alert_id, {ts_ms_sql(st.caps, 'at_time')} AS ms FROM "
                        f"{st.db}.alert_history ORDER BY ms")
        assert [int(r["ms"]) for r in rows] == [round(t * 1000) for t in times], st


# ------------------------------------------------------------------ settings, secrets

@pytest.mark.chserver
def test_password_never_printed(ch_env, caplog):
    from lianwatch.sinks.server import ServerBackend

    pw = ch_env["CH_PASSWORD"]
    caplog.set_level(logging.DEBUG)
    s = settings_for(ch_env, f"lw_test_pw_{RUN}")
    be = ServerBackend(s)
    st = AlertStore(be, database=s.database)
    st.query("SELECT 1 AS x")
    seen = [repr(s), str(s), repr(be), str(be), be.describe(), repr(st), str(be.connection_info()),
            repr(Writer(st, background=False)),
            repr(be._client.connection), repr(s.model_dump()), s.model_dump_json()]
    bad = settings_for(ch_env, "x").model_copy(update={"password": SecretStr(pw + "-wrong")})
    with pytest.raises(StoreError) as ei:
        ServerBackend(bad)
    seen += [str(ei.value), repr(ei.value), caplog.text]
    for text in seen:
        assert pw not in text, text
    assert be.connection_info()["password"] == "set"
    be.close()


def test_tls_timeouts_and_compression_settings():
    from lianwatch.sinks.server import ServerBackend, pick_compression

    s = ClickHouseSettings(host="ch.example", port=9440, user="u", password=SecretStr("s3cr3t!"),
                           database="d", secure=True, verify=False, ca_certs="/etc/ca.pem",
                           compression="none", connect_timeout=2, send_receive_timeout=7)
    be = ServerBackend(s, connect=False)
    kw = be._client_kwargs()
    assert (kw["secure"], kw["verify"], kw["ca_certs"], kw["compression"]) == (
        True, False, "/etc/ca.pem", False)
    assert (kw["connect_timeout"], kw["send_receive_timeout"]) == (2.0, 7.0)
    assert kw["database"] == "default"  # ours may not exist before migrate
    assert "s3cr3t!" not in repr(be) and "clickhouses://u@ch.example:9440/d" in repr(be)
    try:
        import clickhouse_cityhash  # noqa: F401
        import lz4  # noqa: F401
        have = True
    except ImportError:
        have = False
    assert pick_compression(None) == ("lz4" if have else False)
    # columns as sent: 18.16 splits a timestamp in seconds + ms, a modern server takes ms
    from lianwatch.sinks.schema import TABLES, canonical_row

    row = canonical_row("alert_history", {"alert_id": "a", "seq": 1, "at_time": T0 + 0.123})
    be.caps = Capabilities.for_version((18, 16, 1))
    names, data = be.columns_of(TABLES["alert_history"], [row])
    assert names[2:4] == ["at_time", "at_time_ms"] and [d[0] for d in data[2:4]] == [
        int(T0), 123]
    be.caps = Capabilities.for_version((24, 3))
    names, data = be.columns_of(TABLES["alert_history"], [row])
    assert "at_time_ms" not in names and data[2] == [round(T0 * 1000) + 123]
    assert pick_compression("none") is False
    assert pick_compression("lz4") == ("lz4" if have else False)


# ------------------------------------------------------------------ the outage

def kill_server() -> None:
    """Crash the test server (SIGKILL to the pid `clickhouse.sh status` reports): a graceful
    stop would wait for our open connection, and a crash is the harder case anyway."""
    import re
    import signal

    m = re.search(r"pid=(\d+)", _ch("status").stdout)
    assert m, "no server pid"
    os.kill(int(m.group(1)), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _ch("status", check=False).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.05)

@pytest.mark.chserver
def test_writer_rides_out_a_server_stop_exactly_once_in_order(ch_env, srv, tmp_path, caplog):
    """Stop the server mid-stream, keep writing (memory fills, the rest spills to
    disk), start it again: every alert arrives once in the current view, newest
    version, and the writer delivered them in the order they were written."""
    caplog.set_level(logging.WARNING, logger="lianwatch.sinks")
    srv.truncate_all()
    n_ids, n_versions = 40, 25
    seq = [mk(i, v, (i * 7 + v) % 1000) for v in range(1, n_versions + 1) for i in range(n_ids)]
    spill = tmp_path / "spill"
    w = Writer(srv, spill_dir=spill, max_rows=20, max_delay=0.02, max_batch_rows=100,
               max_buffer_rows=150, retry_initial=0.05, retry_max=0.3, block_timeout=0.2)
    delivered: list[tuple[str, int]] = []
    w.on_sent = lambda table, rows: delivered.extend((r[0], r[1]) for r in rows)
    stop_at, start_at = len(seq) // 4, 3 * len(seq) // 4
    saw_spill, failures, killed = False, 0, 0.0
    try:
        for k, a in enumerate(seq):
            if k == stop_at:
                kill_server()
                killed = time.monotonic()
            if k == start_at:
                time.sleep(max(0.0, 2.0 - (time.monotonic() - killed)))  # a 2 s outage at least
                saw_spill = any(spill.glob("seg-*.lws"))
                failures = w.stats["send_failures"]
                _ch("start")
            w.write_alerts([a])
            if k % 20 == 0:
                time.sleep(0.005)  # a stream, not one burst
        assert w.flush(60), w.last_error
    finally:
        if _ch("status", check=False).returncode != 0:
            _ch("start", check=False)  # the server runs again, whatever happened
        w.close(timeout=10)
    assert saw_spill and w.stats["rows_spilled"] > 0, w.stats
    assert failures >= 4 and w.stats["rows_replayed"] == w.stats["rows_spilled"]
    assert "store write failed" in caplog.text
    # delivered exactly once each, in the order written
    assert delivered == [(a.alert_id, a.version) for a in seq]
    # the current view: each alert once, at its newest version, equal to what was written
    rows = srv.query(f"SELECT alert_id, version FROM {srv.current_alerts_sql()}")
    assert len(rows) == n_ids and {int(r["version"]) for r in rows} == {n_versions}
    assert srv.query(f"SELECT alert_id, count() AS n FROM {srv.db}.alerts FINAL "
                     f"GROUP BY alert_id HAVING n > 1") == []
    last = {a.alert_id: a for a in seq}
    assert sorted(srv.alerts(), key=lambda a: a.alert_id) == sorted(
        last.values(), key=lambda a: a.alert_id)
    assert list(spill.glob("seg-*.lws")) == []
