"""The contract in code: record constraints, timestamps, datum conversions."""

from __future__ import annotations

import itertools

import pytest

from lianwatch.models.clock import format_ts, parse_ts
from lianwatch.models.geo import (
    bd09_to_gcj02, bd09_to_wgs84, gcj02_to_bd09, gcj02_to_wgs84, haversine_m, to_wgs84,
    wgs84_to_bd09, wgs84_to_gcj02,
)
from lianwatch.models.parse import parse_event, parse_reference

# --------------------------------------------------------------- datum conversions
# published pairs: googollee/eviltransform's tests (WGS-84 → GCJ-02, BD-09 → WGS-84)
# and wandergis/coordtransform's README (lon, lat order there; lat, lon here)
WGS_GCJ = [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),  # Shanghai
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),  # Shenzhen
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),  # Beijing
    ((39.915, 116.404), (39.91640428150164, 116.41024449916938)),  # coordtransform
]
BD_WGS = [
    ((29.199786, 120.019809), (29.196131605295484, 120.00877901149691)),
    ((29.210504, 120.036455), (29.206795749156136, 120.0253853970846)),
]
GCJ_BD = [((39.915, 116.404), (39.92133699351021, 116.41036949371029))]
BD_GCJ = [((39.915, 116.404), (39.90865673957631, 116.39762729119315))]


def close_m(a, b):
    return haversine_m(a[0], a[1], b[0], b[1])


@pytest.mark.parametrize("wgs,gcj", WGS_GCJ)
def test_wgs84_to_gcj02_published_pairs(wgs, gcj):
    assert close_m(wgs84_to_gcj02(*wgs), gcj) < 0.05  # 5 cm (libraries differ in R)
    assert close_m(gcj02_to_wgs84(*gcj), wgs) < 0.05


@pytest.mark.parametrize("bd,wgs", BD_WGS)
def test_bd09_to_wgs84_published_pairs(bd, wgs):
    # eviltransform's BD-09 pairs come from Baidu's own service, which the public
    # formula follows to within tens of metres: far inside the 500 m rule
    assert close_m(bd09_to_wgs84(*bd), wgs) < 50.0
    assert close_m(wgs84_to_bd09(*wgs), bd) < 50.0


@pytest.mark.parametrize("gcj,bd", GCJ_BD)
def test_gcj02_to_bd09_published(gcj, bd):
    assert close_m(gcj02_to_bd09(*gcj), bd) < 0.01


@pytest.mark.parametrize("bd,gcj", BD_GCJ)
def test_bd09_to_gcj02_published(bd, gcj):
    # coordtransform's inverse is the closed-form approximation; ours refines it
    assert close_m(bd09_to_gcj02(*bd), gcj) < 1.0


def test_round_trips_over_the_county_are_exact():
    for lat, lon in itertools.product([29.9, 30.1, 30.3, 30.5], [119.9, 120.2, 120.5]):
        assert close_m(gcj02_to_wgs84(*wgs84_to_gcj02(lat, lon)), (lat, lon)) < 1e-3
        assert close_m(bd09_to_wgs84(*wgs84_to_bd09(lat, lon)), (lat, lon)) < 1e-3
        assert 100 < close_m(wgs84_to_gcj02(lat, lon), (lat, lon)) < 1000


def test_outside_china_is_unshifted_and_unknown_datum_refused():
    assert wgs84_to_gcj02(48.85, 2.35) == (48.85, 2.35)
    with pytest.raises(ValueError):
        to_wgs84(30, 120, "utm")


def test_haversine_known_distance():
    # one degree of latitude on the mean sphere
    assert haversine_m(30, 120, 31, 120) == pytest.approx(111195.08, abs=0.1)


# --------------------------------------------------------------- timestamps
@pytest.mark.parametrize("text,expect", [
    ("2026-03-02T08:15:30+08:00", 1772410530.0),
    ("2026-03-02 08:15:30", 1772410530.0),
    ("2026-03-02T00:15:30Z", 1772410530.0),
    ("2026-03-02T00:15:30.5+00:00", 1772410530.5),
    ("2026-03-02T08:15:30.123456+08:00", 1772410530.123456),
    ("2026-03-02T08:15:30", 1772410530.0),
    ("2026-03-02", 1772380800.0),
])
def test_parse_ts(text, expect):
    assert parse_ts(text) == pytest.approx(expect, abs=1e-6)


@pytest.mark.parametrize("bad", ["2026-13-01 00:00:00", "2026-02-30T08:00:00+08:00",
                                 "2026-03-02T08:15:61+08:00", "yesterday", "2026-03-02T08:15:30+8"])
def test_bad_timestamps_are_refused(bad):
    with pytest.raises(ValueError):
        parse_ts(bad)


def test_parse_ts_fast_path_equals_fromisoformat():
    from datetime import datetime, timedelta, timezone

    base = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8)))
    for i in range(0, 400 * 86400, 7919):
        dt = base + timedelta(seconds=i)
        assert parse_ts(dt.isoformat()) == dt.timestamp()
        assert parse_ts(dt.strftime("%Y-%m-%d %H:%M:%S")) == dt.timestamp()
    assert format_ts(1772410530.25) == "2026-03-02T08:15:30.250+08:00"


# --------------------------------------------------------------- record constraints
GOOD = {
    "gps": {"vehicle_id": "V0007", "ts": "2026-03-02T08:15:30+08:00", "lat": 30.2741,
            "lon": 120.1551, "speed_kmh": 0.0, "ignition": False, "odometer_km": 48211.4},
    "fuel": {"txn_id": "T1", "card_id": "C0007", "vehicle_id": "V0007", "ts": "2026-03-02 09:02:11",
             "station_id": "S021", "station_name": "中石化钱江站", "station_lat": 30.2512,
             "station_lon": 120.2103, "station_coord": "gcj02", "liters": 52.3,
             "amount_yuan": 401.2, "fuel_type": "92"},
    "payments": {"payment_id": "PM1", "village_id": "VL012", "ts": "2026-03-05T10:11:00+08:00",
                 "amount_yuan": 18600.0, "channel": "transfer", "payee_id": "91330109MA2XXXXX1Q",
                 "payee_name": "杭州某建设有限公司", "category": "engineering", "purpose": "护栏油漆",
                 "approval_id": None},
    "progress": {"report_id": "PR1", "project_id": "PJ0042", "ts": "2026-04-30T17:00:00+08:00",
                 "stage": "started", "percent_complete": 5, "disbursed_yuan": 360000},
}

BAD = [
    ("gps", {"lat": 90.0001}, "lat"), ("gps", {"lat": -91}, "lat"), ("gps", {"lon": 180.5}, "lon"),
    ("gps", {"lon": "east"}, "lon"), ("gps", {"speed_kmh": -1}, "speed_kmh"),
    ("gps", {"vehicle_id": ""}, "vehicle_id"), ("gps", {"ts": "not a time at all"}, "ts"),
    ("gps", {"odometer_km": -5}, "odometer_km"), ("gps", {"lat": float("nan")}, "lat"),
    ("fuel", {"liters": -1}, "liters"), ("fuel", {"amount_yuan": -0.01}, "amount_yuan"),
    ("fuel", {"station_coord": "utm"}, "station_coord"), ("fuel", {"station_lat": 123.4}, "station_lat"),
    ("fuel", {"fuel_type": "91"}, "fuel_type"),
    ("payments", {"channel": "cheque"}, "channel"), ("payments", {"category": "gifts"}, "category"),
    ("payments", {"amount_yuan": -3}, "amount_yuan"),
    ("progress", {"stage": "done"}, "stage"), ("progress", {"percent_complete": 101}, "percent_complete"),
    ("progress", {"disbursed_yuan": -1}, "disbursed_yuan"),
]


@pytest.mark.parametrize("stream", list(GOOD))
def test_good_records_validate(stream):
    ev, why = parse_event(stream, GOOD[stream])
    assert why is None and ev["_s"] == stream and isinstance(ev["t"], float)


@pytest.mark.parametrize("stream,change,field", BAD)
def test_each_constraint_is_enforced(stream, change, field):
    rec = dict(GOOD[stream], **change)
    ev, why = parse_event(stream, rec)
    assert ev is None and why.startswith(field)


@pytest.mark.parametrize("stream", list(GOOD))
def test_every_required_field_is_required(stream):
    required = {"gps": ["vehicle_id", "ts", "lat", "lon"],
                "fuel": ["txn_id", "card_id", "ts", "station_id", "station_lat", "station_lon",
                         "liters", "amount_yuan"],
                "payments": ["payment_id", "village_id", "ts", "amount_yuan", "channel", "payee_id"],
                "progress": ["report_id", "project_id", "ts", "stage", "percent_complete"]}[stream]
    for f in required:
        rec = {k: v for k, v in GOOD[stream].items() if k != f}
        ev, why = parse_event(stream, rec)
        assert ev is None and f in why and "Field required" in why


def test_optional_fields_and_extras():
    rec = {k: v for k, v in GOOD["fuel"].items() if k not in ("vehicle_id", "station_coord", "fuel_type")}
    rec["loyalty_points"] = 12  # unknown fields are ignored
    ev, why = parse_event("fuel", rec)
    assert why is None and "loyalty_points" not in ev and ev.get("vehicle_id") is None


def test_fuel_grade_spellings_and_blank_approval():
    for spelling in ("92", 92, "92#", "92号"):
        ev, _ = parse_event("fuel", dict(GOOD["fuel"], fuel_type=spelling))
        assert ev["fuel_type"] == "92"
    ev, _ = parse_event("payments", dict(GOOD["payments"], approval_id="  "))
    assert ev["approval_id"] is None


def test_bad_json_reason():
    ev, why = parse_event("gps", b'{"vehicle_id": "V1", "ts": ')
    assert ev is None and why.startswith("bad JSON")
    ev, why = parse_event("gps", b'[1, 2]')
    assert ev is None


def test_reference_records():
    v, why = parse_reference("vehicles", {"vehicle_id": "V1", "unit_id": "U1", "tank_liters": 0})
    assert v is None and "tank_liters" in why
    vl, _ = parse_reference("villages", {"village_id": "VL1", "contacts": [
        {"role": "secretary", "name": "张三", "phone": "13800000012"}]})
    assert vl.approval_threshold_yuan == 50000
    bad, why = parse_reference("villages", {"village_id": "VL1", "contacts": [
        {"role": "mayor", "name": "x", "phone": "1"}]})
    assert bad is None and "role" in why
    p, why = parse_reference("projects", {"project_id": "PJ1", "budget_yuan": 10,
                                           "planned_start": "2026-03-01", "planned_end": "2026-02-30"})
    assert p is None and "planned_end" in why
