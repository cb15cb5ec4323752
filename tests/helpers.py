"""Small builders shared by the tests (not fixtures: plain functions)."""

from __future__ import annotations

import math
from typing import Any

from lianwatch.engine import Engine
from lianwatch.models.parse import parse_event, parse_reference
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

T0 = 1772409600.0  # 2026-03-02 08:00:00+08:00
M_PER_DEG = 6371008.8 * math.pi / 180.0


def north(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return lat + metres / M_PER_DEG, lon


def east(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return lat, lon + metres / (M_PER_DEG * math.cos(math.radians(lat)))


def ts(t: float) -> str:
    from lianwatch.models.clock import format_ts

    return format_ts(t)


def ref_with(*records: tuple[str, dict[str, Any]]) -> Reference:
    ref = Reference()
    for kind, rec in records:
        model, why = parse_reference(kind, rec)
        assert model is not None, why
        ref.add(kind, model)
    return ref


def vehicle(vid="V1", tank=70, fuel="92", cards=("C1",), unit="U1", depot=(30.0, 120.0)):
    return ("vehicles", {"vehicle_id": vid, "plate": "浙A·0001X", "unit_id": unit,
                         "unit_name": "区政府办", "tank_liters": tank, "fuel_type": fuel,
                         "depot": {"lat": depot[0], "lon": depot[1], "radius_m": 150},
                         "card_ids": list(cards)})


def gps(t: float, lat: float, lon: float, vid="V1", speed=0.0) -> dict[str, Any]:
    ev, why = parse_event("gps", {"vehicle_id": vid, "ts": ts(t), "lat": lat, "lon": lon,
                                  "speed_kmh": speed})
    assert ev is not None, why
    return ev


def fuel(t: float, lat: float, lon: float, liters=40.0, txn="T1", vid: str | None = "V1",
         card="C1", coord="wgs84", fuel_type="92", ts_text: str | None = None) -> dict[str, Any]:
    rec = {"txn_id": txn, "card_id": card, "ts": ts_text or ts(t), "station_id": "S1",
           "station_name": "中石化测试站", "station_lat": lat, "station_lon": lon,
           "station_coord": coord, "liters": liters, "amount_yuan": liters * 7.7,
           "fuel_type": fuel_type}
    if vid is not None:
        rec["vehicle_id"] = vid
    ev, why = parse_event("fuel", rec)
    assert ev is not None, why
    return ev


def run_sorted(detectors, ref: Reference, events: list[dict[str, Any]], rules: RuleSet | None = None,
               as_of: float | None = None, lateness: float = 0.0, sort: bool = True):
    """Run events through an engine (in replay's order unless ``sort=False``);
    return (current alerts by id, engine)."""
    from lianwatch.models.content import settle_ties, sort_key

    eng = Engine(detectors, rules or RuleSet(), ref, lateness=lateness)
    eng.start()
    cur: dict[str, Any] = {}
    evs = sorted(events, key=sort_key) if sort else events
    if sort:
        settle_ties(evs)
    for ev in evs:
        for a in eng.process(ev):
            if a.alert_id not in cur or a.version >= cur[a.alert_id].version:
                cur[a.alert_id] = a
    for a in eng.finish(as_of):
        if a.alert_id not in cur or a.version >= cur[a.alert_id].version:
            cur[a.alert_id] = a
    return cur, eng


def parked(t0: float, t1: float, lat: float, lon: float, every: float = 240.0, vid="V1"):
    out = []
    t = t0
    while t <= t1:
        out.append(gps(t, lat, lon, vid))
        t += every
    return out


def drive(t0: float, start: tuple[float, float], metres: float, speed_kmh: float = 36.0,
          every: float = 30.0, vid="V1"):
    """Pings of a straight drive north; returns (pings, end time, end position)."""
    out = []
    step = speed_kmh / 3.6 * every
    n = max(1, int(metres // step))
    lat, lon = start
    t = t0
    for i in range(n + 1):
        out.append(gps(t, *north(start[0], start[1], min(i * step, metres)), vid=vid,
                       speed=speed_kmh))
        t += every
    end = north(start[0], start[1], metres)
    return out, t - every, end
