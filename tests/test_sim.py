"""Tests of the synthetic county generator (lianwatch.sim)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tracemalloc
from bisect import bisect_left, bisect_right
from datetime import date, datetime

import orjson
import pytest

from lianwatch.models.geo import haversine_m, to_wgs84
from lianwatch.sim import GenConfig, generate
from lianwatch.sim import verify

EVENT_FILES = ("gps", "fuel", "payments", "progress")
REFERENCE_FILES = ("vehicles", "villages", "officials", "projects")
CATALOGUE = (
    "fuel.not_at_station", "fuel.gps_gap", "fuel.over_capacity", "fuel.no_distance", "fuel.type_mismatch",
    "payment.no_approval", "payment.split", "payment.conflict_of_interest", "payment.duplicate",
    "payment.cash", "payment.unusual",
    "project.overdue_start", "project.stalled", "project.overdue_completion", "project.disbursement_mismatch",
)
SMALL = dict(vehicles=6, villages=5, projects=12, days=4, seed=3, history_days=10)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("county")
    summary = generate(d, GenConfig())
    return str(d), summary


@pytest.fixture(scope="module")
def data(default_run):
    return verify.load(default_run[0])


def _lines(path: str) -> list[bytes]:
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        return [ln.rstrip(b"\n") for ln in f]


def _jsonl(d: str, name: str) -> list[dict]:
    return [orjson.loads(x) for x in _lines(os.path.join(d, name + ".jsonl"))]


def _digest(d: str) -> dict[str, str]:
    return {n: hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest() for n in sorted(os.listdir(d))}


# ---------------------------------------------------------------------------- determinism and files
def test_same_seed_same_bytes(tmp_path):
    for gz in (False, True):
        a, b = tmp_path / f"a{gz}", tmp_path / f"b{gz}"
        generate(a, GenConfig(**SMALL, gzip=gz))
        generate(b, GenConfig(**SMALL, gzip=gz))
        assert _digest(str(a)) == _digest(str(b))
    c = tmp_path / "c"
    generate(c, GenConfig(**{**SMALL, "seed": 4}))
    assert _digest(str(c))["gps.jsonl"] != _digest(str(tmp_path / "aFalse"))["gps.jsonl"]


def _ts_ok(s, naive_ok: bool) -> bool:
    if not isinstance(s, str):
        return False
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return False
    return naive_ok or dt.tzinfo is not None


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _valid(name: str, r: dict, ref: dict) -> bool:
    """The contract's fields and types (a generator-side check, stricter than the contract)."""
    if name == "gps":
        return (
            r.get("vehicle_id") in ref["vehicles"]
            and _ts_ok(r.get("ts"), naive_ok=False)
            and _num(r.get("lat")) and 29.9 < r["lat"] < 30.45
            and _num(r.get("lon")) and 120.0 < r["lon"] < 120.6
            and _num(r.get("speed_kmh")) and r["speed_kmh"] >= 0
            and isinstance(r.get("ignition", False), bool)
            and _num(r.get("odometer_km", 0.0))
        )
    if name == "fuel":
        vid = r.get("vehicle_id") or ref["cards"].get(r.get("card_id"))
        return (
            isinstance(r.get("txn_id"), str)
            and r.get("card_id") in ref["cards"]
            and vid == ref["cards"][r["card_id"]]
            and _ts_ok(r.get("ts"), naive_ok=True)
            and isinstance(r.get("station_id"), str) and isinstance(r.get("station_name"), str)
            and _num(r.get("station_lat")) and _num(r.get("station_lon"))
            and r.get("station_coord", "wgs84") in ("wgs84", "gcj02", "bd09")
            and _num(r.get("liters")) and r["liters"] > 0
            and _num(r.get("amount_yuan")) and r["amount_yuan"] > 0
            and r.get("fuel_type") in ("92", "95", "0")
        )
    if name == "payments":
        return (
            isinstance(r.get("payment_id"), str)
            and r.get("village_id") in ref["villages"]
            and _ts_ok(r.get("ts"), naive_ok=True)
            and _num(r.get("amount_yuan")) and r["amount_yuan"] > 0
            and r.get("channel") in ("card", "transfer", "cash")
            and isinstance(r.get("payee_id"), str) and isinstance(r.get("payee_name"), str)
            and r.get("category") in ("engineering", "procurement", "labor", "subsidy", "services", "travel",
                                      "reception", "office", "other")
            and isinstance(r.get("purpose"), str)
            and "approval_id" in r and (r["approval_id"] is None or isinstance(r["approval_id"], str))
        )
    if name == "progress":
        return (
            isinstance(r.get("report_id"), str)
            and r.get("project_id") in ref["projects"]
            and _ts_ok(r.get("ts"), naive_ok=False)
            and r.get("stage") in ("approved", "tendered", "contracted", "started", "in_progress", "completed",
                                   "suspended")
            and isinstance(r.get("percent_complete"), int) and 0 <= r["percent_complete"] <= 100
            and _num(r.get("disbursed_yuan")) and r["disbursed_yuan"] >= 0
        )
    raise AssertionError(name)


def test_files_present_and_records_valid(default_run):
    d, s = default_run
    names = set(os.listdir(d))
    for n in EVENT_FILES + REFERENCE_FILES:
        assert n + ".jsonl" in names
    assert {"labels.jsonl", "lookalikes.jsonl"} <= names
    vehicles = _jsonl(d, "vehicles")
    for v in vehicles:
        assert set(v) == {"vehicle_id", "plate", "unit_id", "unit_name", "tank_liters", "fuel_type", "depot",
                          "card_ids"}
        assert v["plate"].startswith("浙A·") and 50 <= v["tank_liters"] <= 80 and v["depot"]["radius_m"] == 150
    for v in _jsonl(d, "villages"):
        assert v["approval_threshold_yuan"] in (30000, 50000, 100000) and v["name"].endswith("村")
        assert {c["role"] for c in v["contacts"]} >= {"secretary", "town_discipline"}
    for o in _jsonl(d, "officials"):
        assert set(o) == {"person_id", "name", "village_id", "role", "related_payee_ids"}
    for p in _jsonl(d, "projects"):
        assert date.fromisoformat(p["planned_start"]) < date.fromisoformat(p["planned_end"])
        assert (p["village_id"] is None) != (p["unit_id"] is None)
    ref = {
        "vehicles": {v["vehicle_id"] for v in vehicles},
        "cards": {c: v["vehicle_id"] for v in vehicles for c in v["card_ids"]},
        "villages": {v["village_id"] for v in _jsonl(d, "villages")},
        "projects": {p["project_id"] for p in _jsonl(d, "projects")},
    }
    for name in EVENT_FILES:
        lines = _lines(os.path.join(d, name + ".jsonl"))
        assert len(lines) == s.lines[name]
        bad = 0
        for ln in set(lines):
            try:
                r = orjson.loads(ln)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            bad += not _valid(name, r, ref)
        assert bad == len(s.malformed[name]) >= 3, name
        assert len(lines) - len(set(lines)) == s.duplicates[name]
    assert s.duplicates["gps"] > 0.003 * s.records["gps"]
    assert s.last_event.startswith((GenConfig().start.replace(day=15)).isoformat())


def test_product_parser_agrees(tmp_path):
    """Where the project's own record parser exists, it accepts every good line and rejects the bad ones."""
    pytest.importorskip("pydantic")
    try:
        from lianwatch.models.parse import parse_event, parse_reference
    except ImportError:  # pragma: no cover - parser not there yet
        pytest.skip("lianwatch.models.parse not available")
    s = generate(tmp_path, GenConfig(**SMALL))
    for name in EVENT_FILES:
        rejected = sum(parse_event(name, ln)[1] is not None for ln in _lines(os.path.join(tmp_path, name + ".jsonl")))
        assert rejected == len(s.malformed[name]), name
    for kind in REFERENCE_FILES:
        for ln in _lines(os.path.join(tmp_path, kind + ".jsonl")):
            assert parse_reference(kind, ln)[1] is None


def test_options_gzip_no_malformed_no_duplicates(tmp_path):
    s = generate(tmp_path, GenConfig(**SMALL, gzip=True, malformed=False, duplicates=False))
    for n in EVENT_FILES + REFERENCE_FILES:
        p = os.path.join(tmp_path, n + ".jsonl.gz")
        assert os.path.exists(p) and not os.path.exists(p[:-3])
        lines = _lines(p)
        assert len(lines) == len(set(lines)) == s.records[n]
        for ln in lines:
            orjson.loads(ln)
    assert not any(s.malformed.values()) and not any(s.duplicates.values())


def test_cli(tmp_path, capsysbinary):
    from lianwatch.sim.__main__ import main

    assert main([str(tmp_path), "--vehicles", "3", "--villages", "3", "--projects", "5", "--days", "2",
                 "--seed", "9", "--no-malformed"]) == 0
    out = orjson.loads(capsysbinary.readouterr().out)
    assert out["records"]["vehicles"] == 3 and not any(out["malformed"].values())
    assert os.path.exists(tmp_path / "gps.jsonl")


# ---------------------------------------------------------------------------- labels
def test_labels_cover_catalogue(default_run):
    d, s = default_run
    labels = _jsonl(d, "labels")
    by_rule: dict[str, int] = {}
    for lb in labels:
        assert lb["rule"] in CATALOGUE
        assert lb["level"] in ("red", "yellow") and lb["source_event_ids"]
        assert lb["subject_type"] == {"fuel": "vehicle", "payment": "village", "project": "project"}[
            lb["rule"].split(".")[0]]
        by_rule[lb["rule"]] = by_rule.get(lb["rule"], 0) + 1
    assert set(by_rule) == set(CATALOGUE)
    assert min(by_rule.values()) >= 3, by_rule
    assert by_rule == s.labels
    levels = {lb["level"] for lb in labels if lb["rule"] == "project.overdue_start"}
    assert levels == {"red", "yellow"}
    look = _jsonl(d, "lookalikes")
    assert {x["rule"] for x in look} >= set(CATALOGUE) - {"fuel.type_mismatch", "payment.unusual"}


def test_label_ids_exist(default_run, data):
    d, _ = default_run
    ids = {f["txn_id"] for f in data["fuel"]} | {p["payment_id"] for p in data["payments"]}
    ids |= set(data["projects"]) | {r["report_id"] for r in data["progress"]}
    for lb in _jsonl(d, "labels") + _jsonl(d, "lookalikes"):
        assert set(lb["source_event_ids"]) <= ids, lb


def test_oracle_matches_labels_exactly(default_run, data):
    """Recompute every deterministic rule from the files: labels == alerts, both GPS-distance methods."""
    d, _ = default_run
    labels = _jsonl(d, "labels")
    for method in ("moving", "anchor"):
        alerts, margins = verify.expected(data, method)
        missing, extra = verify.compare(labels, alerts)
        assert not missing and not extra, (method, missing, extra)
    assert margins["not_at_station.normal_max_m"] < 30
    assert margins["not_at_station.alert_min_m"] > 2500
    assert margins["no_distance.normal_min_km"] > 12 and margins["no_distance.alert_max_km"] < 6
    assert margins["over_capacity.normal_max_window_ratio"] <= 0.9
    assert margins["over_capacity.normal_max_single_ratio"] <= 0.85 + 1e-9
    assert margins["overdue_start.normal_max_delay_days"] < 5


# ---------------------------------------------------------------------------- geometry
def _fuel_by_id(data):
    return {f["txn_id"]: f for f in data["fuel"]}


def test_not_at_station_geometry(default_run, data):
    d, _ = default_run
    fuel = _fuel_by_id(data)
    n = 0
    for lb in _jsonl(d, "labels"):
        if lb["rule"] != "fuel.not_at_station":
            continue
        f = fuel[lb["source_event_ids"][0]]
        g = data["gps"][lb["subject_id"]]
        pos = verify.interp_position(g, f["_t"])
        assert pos is not None
        assert haversine_m(pos[0], pos[1], f["_slat"], f["_slon"]) > 2000
        n += 1
    assert n >= 3


def test_datum_lookalikes(default_run, data):
    d, _ = default_run
    fuel = _fuel_by_id(data)
    seen = set()
    for la in _jsonl(d, "lookalikes"):
        if not la["kind"].startswith("datum_"):
            continue
        f = fuel[la["source_event_ids"][0]]
        pos = verify.interp_position(data["gps"][la["subject_id"]], f["_t"])
        raw = haversine_m(pos[0], pos[1], f["station_lat"], f["station_lon"])
        wlat, wlon = to_wgs84(f["station_lat"], f["station_lon"], f["station_coord"])
        assert raw > 300 and haversine_m(pos[0], pos[1], wlat, wlon) < 50
        seen.add(f["station_coord"])
    assert seen == {"gcj02", "bd09"}


def test_ping_density_around_fills(default_run, data):
    """Every fill that is not a GPS incident: all pings within ±10 min are within 30 m of the station,
    with one in the 5 minutes before and one in the 5 minutes after; gap incidents have none within ±40 min."""
    d, _ = default_run
    labels = _jsonl(d, "labels")
    gap = {i for lb in labels if lb["rule"] == "fuel.gps_gap" for i in lb["source_event_ids"]}
    away = {i for lb in labels if lb["rule"] == "fuel.not_at_station" for i in lb["source_event_ids"]}
    for f in data["fuel"]:
        ts, la, lo, _ = data["gps"][f["_vid"]]
        t = f["_t"]
        if f["txn_id"] in gap:
            assert bisect_left(ts, t - 2400) == bisect_right(ts, t + 2400)
            continue
        if f["txn_id"] in away:
            continue
        i0, i1 = bisect_left(ts, t - 600), bisect_right(ts, t + 600)
        assert i1 > i0
        for j in range(i0, i1):
            assert haversine_m(la[j], lo[j], f["_slat"], f["_slon"]) <= 30
        assert bisect_left(ts, t - 300) < bisect_left(ts, t)  # a ping in [t-5min, t)
        assert bisect_right(ts, t) < bisect_right(ts, t + 300)  # a ping in (t, t+5min]


def test_fuel_delivery_order(default_run):
    d, s = default_run
    lines = _lines(os.path.join(d, "fuel.jsonl"))
    recs = [orjson.loads(ln) for ln in lines if ln.startswith(b"{") and ln.endswith(b"}")]
    recs = [r for r in recs if isinstance(r.get("liters"), float) and r["liters"] > 0]  # not the malformed ones
    ts = [verify.parse_ts(r["ts"]) for r in recs]
    ts = [t for t in ts if t is not None]
    assert ts != sorted(ts), "fuel.jsonl should be in delivery order, not time order"
    hi = float("-inf")
    for t in ts:  # delivered after everything before it, at most 30 h after its own time
        assert t >= hi - 30 * 3600
        hi = max(hi, t)
    assert 2 < s.fuel_max_delivery_delay_h <= 30
    assert any("vehicle_id" not in r for r in recs) and any("T" in r["ts"] for r in recs)
    assert {r.get("station_coord", "wgs84") for r in recs} == {"wgs84", "gcj02", "bd09"}


# ---------------------------------------------------------------------------- memory
def _peak(path, **kw) -> int:
    shutil.rmtree(path, ignore_errors=True)
    tracemalloc.start()
    try:
        generate(path, GenConfig(**kw))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_bounded(tmp_path):
    base = dict(villages=4, projects=10, history_days=5, malformed=False)
    small = _peak(tmp_path / "s", vehicles=3, days=2, **base)
    big = _peak(tmp_path / "b", vehicles=12, days=9, **base)  # 18x the GPS volume
    assert big < 1.5 * small + 4_000_000, (small, big)
