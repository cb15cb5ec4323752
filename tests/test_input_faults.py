"""The input-side faults of the fault audit, on the real reader, chDB and the CLI.

1. a time past 9999 was fatal (replay crashed; a year-9999 record moved the as-of);
4. unreadable input was skipped without a word, a cut-off ``.gz`` gave a traceback;
6. types were coerced (``"lat": true`` → 1.0, ``"liters": true`` → 1 L, which alerted);
7. a UTF-8 byte-order mark cost the first record of every file;
8. chDB's sort spill stayed in ``$TMPDIR`` after SIGKILL, and no run removed it.

Each test fails on the code before the fix (checked on 71282bc).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import orjson
import pytest

from lianwatch.models.clock import format_ts
from lianwatch.models.parse import parse_event, parse_reference
from lianwatch.replay.run import deadletter_path, replay_dir

FILES = ("vehicles", "villages", "officials", "projects", "gps", "fuel", "payments", "progress")


def copy_dir(src: Path, dst: Path, *, gz: tuple[str, ...] = (), bom: bool = False) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        data = (src / f"{name}.jsonl").read_bytes()
        if bom:
            data = b"\xef\xbb\xbf" + data
        if name in gz:
            (dst / f"{name}.jsonl.gz").write_bytes(gzip.compress(data, compresslevel=1))
        else:
            (dst / f"{name}.jsonl").write_bytes(data)
    return dst


def append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(line + b"\n" for line in lines))


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lianwatch.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


def alert_ids(path: Path) -> set[tuple[str, str, str]]:
    return {(a["alert_id"], a["rule"], a["level"])
            for a in map(json.loads, path.read_text().splitlines())}


def dead_letters(out: Path) -> list[dict]:
    return [orjson.loads(x) for x in deadletter_path(out).read_bytes().splitlines()]


@pytest.fixture(scope="module")
def demo_ids(demo) -> set[tuple[str, str, str]]:
    return {(a.alert_id, a.rule, a.level) for a in demo.result.alerts}


# ------------------------------------------------------------------- fault 1: times past 9999
PING_9999 = b'{"vehicle_id":"V0001","ts":"9999-12-31T23:59:59Z","lat":30.2,"lon":120.3}'
PAYMENT = ('{"payment_id":"PM-LATE-1","village_id":"VL001","ts":"%s","amount_yuan":70000.0,'
           '"channel":"cash","payee_id":"X1"}')


@pytest.mark.parametrize("stream,line", [
    ("gps", PING_9999),  # was: OverflowError, rc 1, no alerts
    ("payments", (PAYMENT % "9999-12-31T20:00-05:00").encode()),  # was: year 10000 is out of range
    ("payments", (PAYMENT % "9999-12-31T08:00:00+08:00").encode()),  # was: as-of 9999, +55 alerts
    ("gps", PING_9999.replace(b"Z", b"+08:00")),
])
def test_fault1_a_time_past_the_window_is_a_dead_letter_not_a_crash(demo, demo_ids, tmp_path,
                                                                    stream, line):
    d = copy_dir(demo.input, tmp_path / "in")
    append(d / f"{stream}.jsonl", line)
    out = tmp_path / "alerts.jsonl"
    r = run_cli("replay", "--input", d, "--output", out)
    assert r.returncode == 0, r.stderr
    assert alert_ids(out) == demo_ids  # the clock did not move: nothing more, nothing less
    assert f"as of: {format_ts(demo.result.as_of)}" in r.stderr
    why = [x["reason"] for x in dead_letters(out) if x["raw"] == line.decode()]
    assert len(why) == 1 and why[0].startswith("ts: 9999-12-31") and \
        "is after the latest accepted time" in why[0], why


def test_fault1_the_window_follows_the_wall_clock_and_the_options(demo, tmp_path):
    """The command accepts a day past its clock (--max-ahead-hours, --not-before change it)."""
    d = copy_dir(demo.input, tmp_path / "in")
    now = time.time()
    soon, later = format_ts(round(now) + 3 * 3600), format_ts(round(now) + 3 * 86400)
    append(d / "payments.jsonl", (PAYMENT % soon).replace("LATE-1", "SOON").encode(),
           (PAYMENT % later).replace("LATE-1", "LATER").encode(),
           (PAYMENT % "2001-01-01T08:00:00+08:00").replace("LATE-1", "OLD").encode())
    out = tmp_path / "a.jsonl"
    assert run_cli("replay", "--input", d, "--output", out).returncode == 0
    dead = {orjson.loads(x["raw"])["payment_id"] for x in dead_letters(out) if x["stream"] == "payments"
            and "accepted time" in x["reason"]}
    assert dead == {"PM-LATER"}
    r = run_cli("replay", "--input", d, "--output", out, "--max-ahead-hours", "1",
                "--not-before", "2010-01-01")
    assert r.returncode == 0, r.stderr
    dead = {orjson.loads(x["raw"])["payment_id"] for x in dead_letters(out) if x["stream"] == "payments"
            and "accepted time" in x["reason"]}
    assert dead == {"PM-SOON", "PM-LATER", "PM-OLD"}


@pytest.mark.parametrize("sql_pings", [True, False])
def test_fault1_both_ping_paths_set_aside_the_same_times(demo, tmp_path, sql_pings):
    from lianwatch.models.clock import TimeWindow, parse_ts

    d = copy_dir(demo.input, tmp_path / "in")
    last = parse_ts("2026-03-15T23:59:59+08:00")
    ok = b'{"vehicle_id":"V0001","ts":"2026-03-16T00:00:00+08:00","lat":30.2,"lon":120.3}'
    late = b'{"vehicle_id":"V0001","ts":"2026-03-16T00:00:01+08:00","lat":30.2,"lon":120.3}'
    append(d / "gps.jsonl", PING_9999, ok, late)
    out = tmp_path / "a.jsonl"
    res = replay_dir(d, out, progress=False, sql_pings=sql_pings,
                     window=TimeWindow.around(last, ahead_s=1.0))
    assert res.as_of == last + 1  # the ping at the window's edge counts, the next does not
    raws = {x["raw"] for x in dead_letters(out) if "accepted time" in x["reason"]}
    assert raws == {PING_9999.decode(), late.decode()}
    assert res.read["gps"] == demo.result.read["gps"] + 1


# ------------------------------------------------------------------- fault 4: unreadable input
@pytest.mark.parametrize("how", ["a directory", "a broken link"])
def test_fault4_an_unreadable_file_stops_the_run_naming_it(demo, tmp_path, how):
    d = copy_dir(demo.input, tmp_path / "in")
    (d / "payments.jsonl").unlink()
    if how == "a directory":
        (d / "payments.jsonl").mkdir()
    else:
        (d / "payments.jsonl").symlink_to(tmp_path / "gone.jsonl")
    out = tmp_path / "a.jsonl"
    r = run_cli("replay", "--input", d, "--output", out)
    assert r.returncode == 1  # was: 0, in silence, 25 of 57 alerts missing
    assert "payments.jsonl" in r.stderr and "Traceback" not in r.stderr
    assert ("directory" if how == "a directory" else "broken link") in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def _damage(path: Path, how: str) -> int:
    """Damage a .gz in place; the number of whole lines still readable before the damage."""
    data = path.read_bytes()
    if how == "cut":
        data = data[: len(data) // 2]
    else:  # zeroed bytes a third of the way in
        k = len(data) // 3
        data = data[:k] + bytes(256) + data[k + 256:]
    path.write_bytes(data)
    d, good = zlib.decompressobj(31), []
    for i in range(len(data)):  # a byte at a time: everything zlib gives before the damage
        try:
            good.append(d.decompress(data[i:i + 1]))
        except zlib.error:
            break
    return b"".join(good).count(b"\n")


@pytest.mark.parametrize("how", ["cut", "corrupt"])
def test_fault4_a_damaged_gz_is_read_up_to_the_damage(demo, tmp_path, how):
    d = copy_dir(demo.input, tmp_path / "in", gz=("payments", "vehicles"))
    whole = _damage(d / "payments.jsonl.gz", how)
    out = tmp_path / "a.jsonl"
    r = run_cli("replay", "--input", d, "--output", out)
    assert r.returncode == 0, r.stderr  # was: a raw traceback, rc 1, no output
    assert "Traceback" not in r.stderr
    lost = [x for x in dead_letters(out) if x["source"].startswith("payments.jsonl.gz")
            and "compressed data" in x["reason"]]
    assert len(lost) == 1
    assert lost[0]["source"] == f"payments.jsonl.gz:{whole + 1}"
    assert ("cut off" if how == "cut" else "damaged") in lost[0]["reason"]
    assert f"line {whole + 1} and after are lost" in lost[0]["reason"]
    assert out.exists()


@pytest.mark.parametrize("how", ["cut", "corrupt"])
def test_fault4_a_damaged_gps_gz_gives_the_same_on_both_ping_paths(demo, tmp_path, how):
    d = copy_dir(demo.input, tmp_path / "in", gz=("gps",))
    whole = _damage(d / "gps.jsonl.gz", how)
    results = []
    for sql in (True, False):
        out = tmp_path / f"a-{sql}.jsonl"
        res = replay_dir(d, out, progress=False, sql_pings=sql)
        lost = [x for x in dead_letters(out) if "compressed data" in x["reason"]]
        assert len(lost) == 1 and lost[0]["source"] == f"gps.jsonl.gz:{whole + 1}"
        results.append((res.read, res.set_aside, out.read_bytes()))
    assert results[0] == results[1]
    assert 0 < results[0][0]["gps"] < demo.result.read["gps"]


def test_fault4_a_damaged_reference_gz_is_set_aside_too(demo, tmp_path):
    d = copy_dir(demo.input, tmp_path / "in", gz=("vehicles",))
    data = (d / "vehicles.jsonl.gz").read_bytes()
    (d / "vehicles.jsonl.gz").write_bytes(data[:-12])  # the trailer (and a little more) cut off
    out = tmp_path / "a.jsonl"
    replay_dir(d, out, progress=False)
    lost = [x for x in dead_letters(out) if x["stream"] == "vehicles"]
    assert len(lost) == 1 and "cut off" in lost[0]["reason"]


# ------------------------------------------------------------------- fault 6: coerced types
FUEL = {"txn_id": "T1", "card_id": "C0007", "vehicle_id": "V0007", "ts": "2026-03-02 09:02:11",
        "station_id": "S021", "station_lat": 30.2512, "station_lon": 120.2103, "liters": 52.3,
        "amount_yuan": 401.2, "fuel_type": "92"}
GPS = {"vehicle_id": "V0007", "ts": "2026-03-02T08:15:30+08:00", "lat": 30.2741, "lon": 120.1551}
PROGRESS = {"report_id": "PR1", "project_id": "PJ0042", "ts": "2026-04-30T17:00:00+08:00",
            "stage": "started", "percent_complete": 5}


@pytest.mark.parametrize("stream,base,field,value", [
    ("gps", GPS, "lat", True), ("gps", GPS, "lat", "30.2"), ("gps", GPS, "lon", False),
    ("gps", GPS, "ignition", 1), ("gps", GPS, "speed_kmh", "5"),
    ("fuel", FUEL, "liters", True), ("fuel", FUEL, "amount_yuan", "401.2"),
    ("fuel", FUEL, "station_lat", "30.25"),
    ("progress", PROGRESS, "percent_complete", "50"), ("progress", PROGRESS, "disbursed_yuan", True),
])
def test_fault6_a_number_is_a_json_number_and_a_flag_a_flag(stream, base, field, value):
    for raw in (dict(base, **{field: value}), orjson.dumps(dict(base, **{field: value}))):
        ev, why = parse_event(stream, raw)
        assert ev is None and why.startswith(f"{field}: Input should be a valid"), why


def test_fault6_what_the_contract_allows_stays_accepted():
    for grade in (92, "92", "92#", "92号"):
        ev, why = parse_event("fuel", orjson.dumps(dict(FUEL, fuel_type=grade)))
        assert why is None and ev["fuel_type"] == "92"
    ev, why = parse_event("fuel", orjson.dumps(dict(FUEL, liters=52, amount_yuan=401)))
    assert why is None and ev["liters"] == 52.0 and type(ev["liters"]) is float
    ev, why = parse_event("gps", orjson.dumps(dict(GPS, ts="2026-03-02 08:15:30", ignition=None)))
    assert why is None and ev["t"] == 1772410530.0


@pytest.mark.parametrize("kind,rec,field", [
    ("vehicles", {"vehicle_id": "V1", "unit_id": "U1", "tank_liters": "70"}, "tank_liters"),
    ("vehicles", {"vehicle_id": "V1", "unit_id": "U1", "tank_liters": True}, "tank_liters"),
    ("villages", {"village_id": "VL1", "approval_threshold_yuan": "50000"}, "approval_threshold_yuan"),
    ("projects", {"project_id": "PJ1", "budget_yuan": "100", "planned_start": "2026-03-01",
                  "planned_end": "2026-04-01"}, "budget_yuan"),
    ("projects", {"project_id": "PJ1", "budget_yuan": 100, "planned_start": 20260301,
                  "planned_end": "2026-04-01"}, "planned_start"),
    ("officials", {"person_id": 31, "village_id": "VL1"}, "person_id"),
])
def test_fault6_reference_records_are_strict_too(kind, rec, field):
    got, why = parse_reference(kind, orjson.dumps(rec))
    assert got is None and why.startswith(field), why


def test_fault6_liters_true_no_longer_alerts(demo, demo_ids, tmp_path):
    d = copy_dir(demo.input, tmp_path / "in")
    first = orjson.loads((d / "fuel.jsonl").read_bytes().splitlines()[0])
    bad = dict(first, txn_id="T-BOOL-LITERS", liters=True, station_lat=first["station_lat"] + 0.2)
    append(d / "fuel.jsonl", orjson.dumps(bad))
    out = tmp_path / "a.jsonl"
    res = replay_dir(d, out, progress=False)
    assert not [a for a in res.alerts if "T-BOOL-LITERS" in a.source_event_ids]  # was: an alert
    assert alert_ids(out) == demo_ids
    assert [x["reason"] for x in dead_letters(out) if "T-BOOL-LITERS" in x["raw"]] == [
        "liters: Input should be a valid number"]


# ------------------------------------------------------------------- fault 7: byte-order mark
@pytest.mark.parametrize("gz", [(), FILES], ids=["jsonl", "jsonl.gz"])
@pytest.mark.parametrize("sql_pings", [True, False])
def test_fault7_a_byte_order_mark_costs_nothing(demo, demo_ids, tmp_path, gz, sql_pings):
    d = copy_dir(demo.input, tmp_path / "in", gz=gz, bom=True)
    out = tmp_path / "a.jsonl"
    res = replay_dir(d, out, progress=False, sql_pings=sql_pings)
    assert res.set_aside == demo.result.set_aside  # was: one more per file (its first line)
    assert res.read == demo.result.read
    assert alert_ids(out) == demo_ids


# ------------------------------------------------------------------- fault 8: spill after a kill
def _spill_files(root: Path) -> list[Path]:
    """Files in the ``tmp/`` of a chDB session's directory (where its sort spills)."""
    out = []
    for p in root.rglob("*"):
        try:
            if not (p.is_file() and p.stat().st_size > 0):
                continue
        except FileNotFoundError:  # removed meanwhile
            continue
        parts = p.relative_to(root).parts
        if any(part == "tmp" and i and (parts[i - 1] == "chdb" or
                                        parts[i - 1].startswith("clickhouse-embedded"))
               for i, part in enumerate(parts[:-1])):
            out.append(p)
    return out


@pytest.mark.slow
def test_fault8_a_killed_runs_spill_is_under_the_data_dir_and_removed_by_the_next(demo, tmp_path):
    d = copy_dir(demo.input, tmp_path / "in")
    gps = (d / "gps.jsonl").read_bytes()
    (d / "gps.jsonl").write_bytes(gps * 3)  # sorting takes a while: time to catch it
    data, tmpdir = tmp_path / "data", tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(os.environ, LIANWATCH_DATA_DIR=str(data), TMPDIR=str(tmpdir))
    out = tmp_path / "a.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "lianwatch.cli", "replay", "--input", str(d),
                             "--output", str(out), "--memory-events", "1000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not _spill_files(tmp_path / "data") and not _spill_files(tmpdir):
            assert proc.poll() is None, "the run ended before it spilled: " + \
                proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no spill seen"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(tmpdir.iterdir())  # was: clickhouse-embedded-…/tmp, hundreds of MB
    left = _spill_files(data)
    assert left and all(".lianwatch-run-" in str(p) for p in left)
    # the next run (a small one) removes what the killed one left, and its own
    (d / "gps.jsonl").write_bytes(gps)
    r = run_cli("replay", "--input", d, "--output", out, env=env)
    assert r.returncode == 0, r.stderr
    assert not list((data / "tmp").iterdir())


def test_fault8_a_live_runs_scratch_is_left_alone_and_a_dead_ones_removed(tmp_path):
    from lianwatch.replay.scratch import PREFIX, ScratchDir, sweep

    dead = tmp_path / f"{PREFIX}1-dead"  # a lock nobody holds: its run has died
    (dead / "chdb" / "tmp").mkdir(parents=True)
    (dead / "chdb" / "tmp" / "sort.bin").write_bytes(b"x" * 1000)
    Path(str(dead) + ".lock").write_text("1\n")
    orphan = tmp_path / f"{PREFIX}2-orphan"  # half removed: no lock left
    orphan.mkdir()
    other = ScratchDir(tmp_path)
    with ScratchDir(tmp_path) as live:
        assert live.swept == 2 and not dead.exists() and not orphan.exists()
        assert sweep(tmp_path) == 0 and live.path.is_dir()
        other.open()  # a second run beside it leaves the first alone
        assert other.swept == 0 and other.path.is_dir() and live.path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.path.name,
                                                           other.path.name + ".lock"]
    other.close()
    assert not list(tmp_path.iterdir())
