"""The contract in code: record constraints, timestamps, datum conversions."""

from __future__ import annotations

import itertools
import json

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


# --------------------------------------------------------------- contract version 2
GOOD_V2 = {
    "subsidies": {"payout_id": "SB-202603-000123", "person_id": "R330109000031",
                  "village_id": "VL012", "programme": "dibao", "period": "2026-03",
                  "ts": "2026-03-05T09:00:00+08:00", "amount_yuan": 1050.0},
    "labor": {"work_id": "LB-VL012-000045", "person_id": "R330109000031", "village_id": "VL012",
              "date": "2026-03-05", "days": 1.0, "task": "道路护栏油漆", "project_id": "PJ0042",
              "pay_yuan": 200.0, "ts": "2026-03-06T18:00:00+08:00"},
    "tenders": {"tender_id": "TD-2026-0031", "project_id": "PJ0042", "village_id": "VL012",
                "unit_id": None, "method": "open", "notice_ts": "2026-02-01T09:00:00+08:00",
                "deadline_ts": "2026-02-25T09:00:00+08:00", "ts": "2026-03-01T10:00:00+08:00",
                "estimate_yuan": 1200000,
                "bids": [{"company_id": "91330109MA2XXXXX1Q", "price_yuan": 1180000.0},
                         {"company_id": "91330109MA2ZZZZZ3K", "price_yuan": 1196000.0}],
                "winner_company_id": "91330109MA2XXXXX1Q", "award_yuan": 1180000.0},
    "receipts": {"receipt_id": "RC-VL012-000031", "village_id": "VL012",
                 "contract_id": "CT-VL012-0007", "ts": "2026-02-03T10:00:00+08:00",
                 "amount_yuan": 90000.0},
    "mileage": {"claim_id": "MC-V0007-202603", "vehicle_id": "V0007", "driver_id": "D013",
                "month": "2026-03", "km_claimed": 2400.0, "ts": "2026-04-02T10:00:00+08:00"},
}
GOOD_REF_V2 = {
    "persons": {"person_id": "R330109000031", "name": "陈某某", "village_id": "VL012",
                "birth_date": "1958-04-02", "death_date": None},
    "companies": {"company_id": "91330109MA2XXXXX1Q", "name": "杭州某建设有限公司",
                  "legal_rep_id": "R330109000077",
                  "shareholder_ids": ["R330109000077", "R330109000102"],
                  "address": "萧山区益农镇兴裕村8组12号", "phone": "0571-82000000"},
    "contracts": {"contract_id": "CT-VL012-0007", "village_id": "VL012", "asset": "集体厂房A栋",
                  "kind": "lease", "counterparty_id": "91330109MA2YYYYY2R",
                  "counterparty_name": "杭州某机械有限公司", "signed_date": "2015-12-20",
                  "start": "2016-01-01", "end": "2025-12-31",
                  "schedule": [{"due": "2025-01-31", "amount_yuan": 180000},
                               {"due": "2025-12-31", "amount_yuan": 180000}]},
}
ID_FIELDS_V2 = {"subsidies": "payout_id", "labor": "work_id", "tenders": "tender_id",
                "receipts": "receipt_id", "mileage": "claim_id"}


@pytest.mark.parametrize("stream", list(GOOD_V2))
def test_v2_events_validate_from_json_and_dicts(stream):
    for raw in (GOOD_V2[stream], json.dumps(GOOD_V2[stream]).encode()):
        ev, why = parse_event(stream, raw)
        assert why is None, why
        assert ev["_s"] == stream and ev["_id"] == GOOD_V2[stream][ID_FIELDS_V2[stream]]
        assert isinstance(ev["t"], float)
    assert all(isinstance(v, (str, float, int, bool, list, type(None))) for v in ev.values())


@pytest.mark.parametrize("kind", list(GOOD_REF_V2))
def test_v2_reference_records_validate(kind):
    rec, why = parse_reference(kind, json.dumps(GOOD_REF_V2[kind]).encode())
    assert why is None and rec.key == GOOD_REF_V2[kind][f"{kind[:-1] if kind != 'companies' else 'company'}_id"]


BAD_V2 = [
    ("subsidies", {"programme": "bonus"}, "programme: Input should be"),
    ("subsidies", {"period": "2026-13"}, "period: a month is text YYYY-MM"),
    ("subsidies", {"period": "2026-3"}, "period: a month is text YYYY-MM"),
    ("subsidies", {"period": 202603}, "period: Input should be a valid string"),
    ("subsidies", {"amount_yuan": -0.01}, "amount_yuan: Input should be greater than or equal to 0"),
    ("subsidies", {"amount_yuan": "1050"}, "amount_yuan: Input should be a valid number"),
    ("subsidies", {"person_id": 330109000031}, "person_id: Input should be a valid string"),
    ("subsidies", {"payout_id": 123}, "payout_id: Input should be a valid string"),
    ("labor", {"days": 0}, "days: Input should be greater than 0"),
    ("labor", {"days": 1.01}, "days: Input should be less than or equal to 1"),
    ("labor", {"days": True}, "days: Input should be a valid number"),
    ("labor", {"date": "2026-02-29"}, "date: not a real date"),
    ("labor", {"date": "2026/03/05"}, "date: a date is text YYYY-MM-DD"),
    ("labor", {"date": "1850-03-05"}, "date: date 1850-03-05 is outside"),
    ("labor", {"pay_yuan": -200}, "pay_yuan: Input should be greater than or equal to 0"),
    ("labor", {"work_id": 45}, "work_id: Input should be a valid string"),
    ("tenders", {"method": "auction"}, "method: Input should be"),
    ("tenders", {"deadline_ts": "2026-01-31T09:00:00+08:00"}, "deadline_ts: before notice_ts"),
    ("tenders", {"notice_ts": "2026-02-30T09:00:00+08:00"}, "notice_ts: not an RFC 3339"),
    ("tenders", {"notice_ts": "9999-01-01T09:00:00+08:00"},
     "notice_ts: 9999-01-01T09:00:00+08:00 is after the latest accepted time"),
    ("tenders", {"bids": [{"company_id": "A", "price_yuan": 1.0}, {"company_id": "B", "price_yuan": 2.0},
                          {"company_id": "A", "price_yuan": 3.0}], "winner_company_id": "A"},
     "bids.2.company_id: A bids twice in one tender"),
    ("tenders", {"winner_company_id": "91330109MA2NOBODY"},
     "winner_company_id: 91330109MA2NOBODY is not among the bidders"),
    ("tenders", {"winner_company_id": None}, "award_yuan: given without a winner"),
    ("tenders", {"award_yuan": None}, "award_yuan: missing for the winner"),
    ("tenders", {"bids": [{"company_id": "91330109MA2XXXXX1Q", "price_yuan": -1}]},
     "bids.0.price_yuan: Input should be greater than or equal to 0"),
    ("tenders", {"estimate_yuan": -5}, "estimate_yuan: Input should be greater than or equal to 0"),
    ("tenders", {"tender_id": 31}, "tender_id: Input should be a valid string"),
    ("receipts", {"amount_yuan": -1}, "amount_yuan: Input should be greater than or equal to 0"),
    ("receipts", {"contract_id": 7}, "contract_id: Input should be a valid string"),
    ("mileage", {"month": "2026-00"}, "month: a month is text YYYY-MM"),
    ("mileage", {"km_claimed": -1}, "km_claimed: Input should be greater than or equal to 0"),
    ("mileage", {"km_claimed": "2400"}, "km_claimed: Input should be a valid number"),
    ("mileage", {"claim_id": 1}, "claim_id: Input should be a valid string"),
]


@pytest.mark.parametrize("stream,change,reason", BAD_V2)
def test_v2_event_constraints(stream, change, reason):
    ev, why = parse_event(stream, json.dumps(dict(GOOD_V2[stream], **change)).encode())
    assert ev is None and why.startswith(reason), why


@pytest.mark.parametrize("stream", list(GOOD_V2))
def test_v2_required_fields(stream):
    required = {"subsidies": ["payout_id", "person_id", "village_id", "programme", "period", "ts",
                              "amount_yuan"],
                "labor": ["work_id", "person_id", "village_id", "date", "days", "ts"],
                "tenders": ["tender_id", "method", "notice_ts", "deadline_ts", "ts", "bids"],
                "receipts": ["receipt_id", "village_id", "contract_id", "ts", "amount_yuan"],
                "mileage": ["claim_id", "vehicle_id", "driver_id", "month", "km_claimed",
                            "ts"]}[stream]
    for f in GOOD_V2[stream]:
        if f in ("winner_company_id", "award_yuan"):
            continue  # one without the other: see the tender checks
        ev, why = parse_event(stream, {k: v for k, v in GOOD_V2[stream].items() if k != f})
        if f in required:
            assert ev is None and why == f"{f}: Field required", (f, why)
        else:
            assert why is None, (f, why)


def test_v2_tender_without_award_and_optional_fields():
    rec = dict(GOOD_V2["tenders"], winner_company_id=None, award_yuan=None, bids=[],
               project_id=None, village_id=None, unit_id="U03")
    ev, why = parse_event("tenders", rec)
    assert why is None and ev["bids"] == [] and ev["winner_company_id"] is None
    ev, _ = parse_event("tenders", GOOD_V2["tenders"])
    assert ev["deadline_t"] - ev["notice_t"] == 24 * 86400
    # a deadline equal to the notice is allowed (not before it)
    same = dict(GOOD_V2["tenders"], deadline_ts=GOOD_V2["tenders"]["notice_ts"])
    assert parse_event("tenders", same)[1] is None


BAD_REF_V2 = [
    ("persons", {"birth_date": "1958-02-29"}, "birth_date: not a real date"),
    ("persons", {"death_date": "1950-01-01"}, "death_date: before birth_date"),
    ("persons", {"person_id": 330109000031}, "person_id: Input should be a valid string"),
    ("companies", {"shareholder_ids": ["R1", 2]}, "shareholder_ids.1: Input should be a valid string"),
    ("companies", {"company_id": 91330109}, "company_id: Input should be a valid string"),
    ("contracts", {"kind": "sale"}, "kind: Input should be 'lease' or 'contracting'"),
    ("contracts", {"start": "2026-01-01"}, "end: before start"),
    ("contracts", {"signed_date": "2026-01-01"}, "signed_date: after end"),
    ("contracts", {"schedule": [{"due": "2014-12-19", "amount_yuan": 1}]},
     "schedule.0.due: 2014-12-19 is not within a year of the term (2014-12-20 … 2026-12-31)"),
    ("contracts", {"schedule": [{"due": "2027-01-01", "amount_yuan": 1}]},
     "schedule.0.due: 2027-01-01 is not within a year of the term"),
    ("contracts", {"schedule": [{"due": "2025-01-31", "amount_yuan": -1}]},
     "schedule.0.amount_yuan: Input should be greater than or equal to 0"),
    ("contracts", {"schedule": [{"due": "2025-01-31", "amount_yuan": 1},
                                {"due": "2025-01-31", "amount_yuan": 2}]},
     "schedule.1.due: a second instalment due 2025-01-31"),
    ("contracts", {"end": "2025-02-30"}, "end: not a real date"),
]


@pytest.mark.parametrize("kind,change,reason", BAD_REF_V2)
def test_v2_reference_constraints(kind, change, reason):
    rec, why = parse_reference(kind, json.dumps(dict(GOOD_REF_V2[kind], **change)).encode())
    assert rec is None and why.startswith(reason), why


def test_v2_contract_schedule_edges():
    # a year either side of the term, signed a year before the start: allowed
    c = dict(GOOD_REF_V2["contracts"], signed_date="2015-01-01",
             schedule=[{"due": "2014-01-01", "amount_yuan": 1}, {"due": "2026-12-31", "amount_yuan": 1}])
    rec, why = parse_reference("contracts", c)
    assert why is None and [i.due.isoformat() for i in rec.schedule] == ["2014-01-01", "2026-12-31"]
    rec, why = parse_reference("contracts", {k: v for k, v in c.items() if k != "signed_date"})
    assert rec is None and "schedule.0.due" in why  # without a signing date the start counts


def test_v2_fields_on_version_1_records():
    v, _ = parse_reference("vehicles", {"vehicle_id": "V1", "unit_id": "U1", "tank_liters": 70,
                                        "norm_l_per_100km": 9.5})
    assert v.norm_l_per_100km == 9.5
    v, _ = parse_reference("vehicles", {"vehicle_id": "V1", "unit_id": "U1", "tank_liters": 70})
    assert v.norm_l_per_100km is None
    assert "norm_l_per_100km" in parse_reference("vehicles", {
        "vehicle_id": "V1", "unit_id": "U1", "tank_liters": 70, "norm_l_per_100km": 0})[1]
    vl, _ = parse_reference("villages", {"village_id": "VL1"})
    assert vl.tender_threshold_yuan == 400000 and vl.approval_threshold_yuan == 50000
    vl, _ = parse_reference("villages", {"village_id": "VL1", "tender_threshold_yuan": 1000000})
    assert vl.tender_threshold_yuan == 1000000
    o, why = parse_reference("officials", {"person_id": "P1", "village_id": None, "town": "益农镇",
                                           "scope_village_ids": ["VL012", "VL013"],
                                           "related_person_ids": ["R330109000077"]})
    assert why is None and o.scope == ("VL012", "VL013") and o.related_person_ids == ["R330109000077"]
    o, _ = parse_reference("officials", {"person_id": "P1", "village_id": "VL1"})
    assert o.scope == ("VL1",) and o.related_person_ids == [] and o.town == ""
    ev, why = parse_event("fuel", dict(GOOD["fuel"], driver_id="D013"))
    assert why is None and ev["driver_id"] == "D013"
    assert parse_event("fuel", dict(GOOD["fuel"], driver_id=13))[1].startswith("driver_id")
