"""The fuel.* rules at their boundaries, on the real engine loop."""

from __future__ import annotations

import random

import pytest

from lianwatch.detectors.fuel import FuelDetector
from lianwatch.models.geo import haversine_m, wgs84_to_bd09, wgs84_to_gcj02
from lianwatch.rules import RuleSet
from tests.helpers import T0, drive, east, fuel, gps, north, parked, ref_with, run_sorted, vehicle

DEPOT = (30.0, 120.0)
MIN = 60.0


def rules_of(alerts, rule):
    return [a for a in alerts.values() if a.rule == rule]


def run(events, rules=None, **kw):
    return run_sorted([FuelDetector()], ref_with(vehicle()), events, rules=rules, **kw)


@pytest.mark.parametrize("metres,fires", [(499, False), (501, True)])
def test_not_at_station_500m_boundary(metres, fires):
    st = north(*DEPOT, metres)
    evs = parked(T0 - 3600, T0 + 3600, *DEPOT) + [fuel(T0, *st)]
    alerts, _ = run(evs)
    hits = rules_of(alerts, "fuel.not_at_station")
    assert bool(hits) is fires
    if fires:
        a = hits[0]
        assert a.level == "red" and a.evidence["distance_m"] == 501
        assert a.evidence["vehicle_state"] == "parked" and a.evidence["at_depot"] is True
        assert "单位大院" in a.title and a.source_event_ids == ["T1"]


def test_moving_car_far_from_station_is_red_moving():
    pings, _, _ = drive(T0 - 15 * MIN, DEPOT, 15000, speed_kmh=36)
    far = east(*DEPOT, 6000)
    alerts, _ = run(pings + [fuel(T0, *far)])
    (a,) = rules_of(alerts, "fuel.not_at_station")
    assert a.evidence["vehicle_state"] == "moving" and "行驶" in a.title
    assert a.evidence["distance_m"] > 5000


@pytest.mark.parametrize("edge,judged", [(10 * MIN, True), (10 * MIN + 1, False)])
def test_position_window_edges(edge, judged):
    far = north(*DEPOT, 3000)
    evs = [gps(T0 - edge, *DEPOT), gps(T0 + edge, *DEPOT), fuel(T0, *far)]
    alerts, _ = run(evs)
    assert bool(rules_of(alerts, "fuel.not_at_station")) is judged
    assert not rules_of(alerts, "fuel.gps_gap")  # pings within ±30 min either way


def test_interpolated_position_between_pings():
    # car drives 2 km north in 4 minutes; the station is at the midpoint: at the station
    a_, b_ = DEPOT, north(*DEPOT, 2000)
    mid = north(*DEPOT, 1000)
    evs = [gps(T0 - 120, *a_), gps(T0 + 120, *b_), fuel(T0, *mid)]
    alerts, _ = run(evs)
    assert not rules_of(alerts, "fuel.not_at_station")


@pytest.mark.parametrize("edge,gap", [(30 * MIN, False), (30 * MIN + 1, True)])
def test_gps_gap_edges(edge, gap):
    evs = [gps(T0 - edge, *DEPOT), gps(T0 + edge, *DEPOT), fuel(T0, *DEPOT)]
    alerts, _ = run(evs)
    hits = rules_of(alerts, "fuel.gps_gap")
    assert bool(hits) is gap
    if gap:
        assert hits[0].level == "yellow"
        assert hits[0].evidence["last_ping_before"] == "2026-03-02T07:29:59+08:00"


@pytest.mark.parametrize("liters,fires", [(73.5, False), (73.51, True)])
def test_single_fill_over_capacity_boundary(liters, fires):
    evs = parked(T0 - 1800, T0 + 1800, *DEPOT) + [fuel(T0, *DEPOT, liters=liters)]
    alerts, _ = run(evs)
    assert bool(rules_of(alerts, "fuel.over_capacity")) is fires


@pytest.mark.parametrize("gap_h,fires", [(6.0, True), (6.0 + 1 / 3600, False)])
def test_cumulative_capacity_six_hour_window(gap_h, fires):
    t2 = T0 + gap_h * 3600
    evs = parked(T0 - 1800, t2 + 1800, *DEPOT) + [
        fuel(T0, *DEPOT, liters=40, txn="A"), fuel(t2, *DEPOT, liters=34, txn="B")]
    alerts, _ = run(evs, rules=RuleSet({"fuel": {"min_liters": 100}}))
    hits = rules_of(alerts, "fuel.over_capacity")
    assert bool(hits) is fires
    if fires:
        assert sorted(hits[0].source_event_ids) == ["A", "B"]


def test_later_fill_updates_the_same_capacity_alert():
    evs = parked(T0 - 1800, T0 + 5 * 3600, *DEPOT) + [
        fuel(T0, *DEPOT, liters=40, txn="A"), fuel(T0 + 3600, *DEPOT, liters=40, txn="B"),
        fuel(T0 + 7200, *DEPOT, liters=30, txn="C")]
    alerts, _ = run(evs, rules=RuleSet({"fuel": {"min_liters": 100}}))
    (a,) = rules_of(alerts, "fuel.over_capacity")
    assert a.source_event_ids == ["A", "B", "C"] and a.version == 2


def _two_fills_with_drive(metres: float, liters: float):
    pings = parked(T0 - 1800, T0 + 1800, *DEPOT)
    more, t_end, end = drive(T0 + 3600, DEPOT, metres)
    pings += more + parked(t_end + 60, t_end + 3600, *end)
    t2 = t_end + 1800
    return pings + [fuel(T0, *DEPOT, liters=30, txn="A"), fuel(t2, *end, liters=liters, txn="B")]


@pytest.mark.parametrize("metres,liters,fires", [
    (9_900, 30, True), (10_300, 30, False), (5_000, 20, False), (5_000, 20.1, True)])
def test_no_distance_boundaries(metres, liters, fires):
    alerts, _ = run(_two_fills_with_drive(metres, liters))
    hits = rules_of(alerts, "fuel.no_distance")
    assert bool(hits) is fires
    if fires:
        assert hits[0].source_event_ids == ["B"]
        assert hits[0].evidence["previous_txn_id"] == "A"


def test_parked_jitter_adds_no_distance():
    rng = random.Random(3)
    pings = []
    t = T0 - 3600
    while t < T0 + 2 * 86400:
        lat, lon = north(*DEPOT, rng.gauss(0, 8))
        lat, lon = east(lat, lon, rng.gauss(0, 8))
        if rng.random() < 0.02:
            lat, lon = north(lat, lon, 25)  # an occasional 25 m jump
        pings.append(gps(t, lat, lon))
        t += 180
    evs = pings + [fuel(T0, *DEPOT, liters=30, txn="A"),
                   fuel(T0 + 86400 * 1.5, *DEPOT, liters=30, txn="B")]
    alerts, eng = run(evs)
    (a,) = rules_of(alerts, "fuel.no_distance")
    assert a.evidence["distance_km"] < 0.5  # jitter alone over 1.5 days


@pytest.mark.parametrize("conv,datum", [(wgs84_to_gcj02, "gcj02"), (wgs84_to_bd09, "bd09")])
def test_station_in_chinese_datums_is_converted(conv, datum):
    st_true = east(*DEPOT, 3000)
    given = conv(*st_true)
    assert haversine_m(*st_true, *given) > 300  # the raw coordinates are far off
    evs = parked(T0 - 1800, T0 + 1800, *st_true) + [fuel(T0, *given, coord=datum)]
    alerts, _ = run(evs)
    assert not rules_of(alerts, "fuel.not_at_station")
    # and the same raw coordinates read as WGS-84 would have fired
    alerts2, _ = run(parked(T0 - 1800, T0 + 1800, *st_true) + [fuel(T0, *given)])
    assert rules_of(alerts2, "fuel.not_at_station")


def test_naive_local_time_is_shanghai_time():
    far = north(*DEPOT, 3000)
    # pings only around 08:00 local; the fill is written '2026-03-02 08:00:00' (naive local)
    evs = parked(T0 - 600, T0 + 600, *DEPOT) + [fuel(T0, *far, ts_text="2026-03-02 08:00:00")]
    alerts, _ = run(evs)
    (a,) = rules_of(alerts, "fuel.not_at_station")
    assert a.event_ts == "2026-03-02T08:00:00+08:00"


def test_card_only_transaction_is_resolved_through_the_card():
    far = north(*DEPOT, 3000)
    evs = parked(T0 - 600, T0 + 600, *DEPOT) + [fuel(T0, *far, vid=None, card="C1")]
    alerts, _ = run(evs)
    (a,) = rules_of(alerts, "fuel.not_at_station")
    assert a.subject_id == "V1"


def test_unknown_card_is_set_aside_with_reason():
    evs = parked(T0 - 600, T0 + 600, *DEPOT) + [fuel(T0, *DEPOT, vid=None, card="C404")]
    alerts, eng = run(evs)
    assert not alerts
    (sa,) = eng.drain_set_aside()
    assert "C404" in sa.reason


def test_duplicate_transaction_gives_one_alert():
    far = north(*DEPOT, 3000)
    f = fuel(T0, *far, liters=90)
    evs = parked(T0 - 600, T0 + 600, *DEPOT) + [f, dict(f), dict(f)]
    alerts, _ = run(evs)
    assert len(rules_of(alerts, "fuel.not_at_station")) == 1
    (cap,) = rules_of(alerts, "fuel.over_capacity")
    assert cap.source_event_ids == ["T1"]


def test_type_mismatch():
    evs = parked(T0 - 600, T0 + 600, *DEPOT) + [fuel(T0, *DEPOT, fuel_type="0", txn="X"),
                                               fuel(T0 + 60, *DEPOT, liters=5, fuel_type="92#",
                                                    txn="Y")]
    alerts, _ = run(evs)
    (a,) = rules_of(alerts, "fuel.type_mismatch")
    assert a.source_event_ids == ["X"] and "柴油" in a.title


def test_late_transaction_in_streaming_order_is_judged_like_replay():
    far = north(*DEPOT, 3000)
    pings = parked(T0 - 3600, T0 + 20 * 3600, *DEPOT)
    late = fuel(T0, *far, txn="LATE")
    replayed, _ = run(pings + [late])
    # streaming: the transaction arrives 20 h after its time, behind all the pings
    streamed, _ = run(pings + [late], sort=False, lateness=600.0)
    assert set(replayed) == set(streamed)
    assert rules_of(streamed, "fuel.not_at_station")


def test_too_late_transaction_is_set_aside_not_passed():
    pings = parked(T0 - 3600, T0 + 50 * 3600, *DEPOT)
    late = fuel(T0, *north(*DEPOT, 3000), txn="OLD")
    alerts, eng = run(pings + [late], sort=False, lateness=600.0)
    assert not alerts
    (sa,) = eng.drain_set_aside()
    assert sa.reason.startswith("too late to judge")


def test_out_of_order_pings_are_placed_in_time():
    pings = parked(T0 - 1800, T0 + 1800, *DEPOT, every=60)
    random.Random(1).shuffle(pings)
    far = north(*DEPOT, 3000)
    alerts, eng = run(pings + [fuel(T0, *far)], sort=False, lateness=3600.0)
    (a,) = rules_of(alerts, "fuel.not_at_station")
    assert a.evidence["pings_in_window"] == 21


def test_track_memory_is_bounded_by_retention():
    det = FuelDetector()
    pings = parked(T0, T0 + 6 * 86400, *DEPOT, every=60)
    _, eng = run_sorted([det], ref_with(vehicle()), pings)
    st = eng.stores["fuel"].get("V1")
    span_h = (st.t[-1] - st.t[0]) / 3600
    assert span_h <= 48 + 10  # retention plus the eviction batch


def test_direct_ping_entry_leaves_the_same_state_as_process():
    # replay feeds pings through Engine.hot (no dict per ping); it must equal process()
    import pickle

    from lianwatch.engine import Engine

    rnd = random.Random(3)
    pings, _, _ = drive(T0, DEPOT, 30000, speed_kmh=40)
    pings += parked(T0 + 3600, T0 + 7200, *DEPOT)
    pings += [dict(p) for p in rnd.sample(pings, 40)]  # redelivered
    late = pings[5:15]
    pings = pings[:5] + pings[15:] + late  # out of order
    general = Engine([FuelDetector()], RuleSet(), ref_with(vehicle()))
    direct = Engine([FuelDetector()], RuleSet(), ref_with(vehicle()))
    hot = direct.hot("gps")
    assert hot is not None and hot.fields == ("lat", "lon")
    for ev in pings:
        general.process(ev)
        direct.clock_to(ev["t"])
        st = hot.states.get(ev["vehicle_id"])
        if st is None:
            st = hot.states[ev["vehicle_id"]] = hot.new(ev["vehicle_id"])
        hot.add(st, ev["t"], ev["lat"], ev["lon"], direct.ctx)
    assert pickle.dumps(general.stores["fuel"]) == pickle.dumps(direct.stores["fuel"])
    assert len(general.stores["fuel"]["V1"].t) > 100


# ------------------------------------------------- same id, other content (fault 5)
@pytest.mark.parametrize("first,second", [(40.0, 80.0), (80.0, 40.0)])
def test_same_txn_id_with_other_content_is_set_aside_and_the_first_stays(first, second):
    pings = parked(T0 - 1800, T0 + 3600, *DEPOT)
    evs = pings[:10] + [fuel(T0, *DEPOT, liters=first), fuel(T0, *DEPOT, liters=second)] + pings[10:]
    alerts, eng = run(evs, sort=False)
    (sa,) = eng.drain_set_aside()
    assert sa.record["liters"] == second
    assert sa.reason.startswith("conflicts with txn_id T1 seen with other content; kept the first")
    assert bool(rules_of(alerts, "fuel.over_capacity")) is (first == 80.0)


def test_two_positions_in_one_second_keep_the_smaller_whatever_came_first():
    from lianwatch.engine import Engine

    a, b = gps(T0, *DEPOT), gps(T0, *north(*DEPOT, 50))
    before, after = gps(T0 - 60, *DEPOT), gps(T0 + 60, *north(*DEPOT, 400))
    states, asides = [], []
    for order in ([before, a, b, after], [before, b, a, after], [before, after, b, a, dict(a)]):
        alerts, eng = run(order, sort=False, lateness=3600.0)
        kept = eng.stores["fuel"]["V1"]
        states.append((kept.t.tobytes(), kept.d.tobytes()))
        (sa,) = eng.drain_set_aside()
        asides.append((sa.record["lat"], sa.reason))
        # the direct entry replay uses does the same
        direct = Engine([FuelDetector()], RuleSet(), ref_with(vehicle()), lateness=3600.0)
        hot = direct.hot("gps")
        st = hot.states["V1"] = hot.new("V1")
        got = [hot.add(st, ev["t"], ev["lat"], ev["lon"], direct.ctx) for ev in order]
        assert (st.t.tobytes(), st.d.tobytes()) == states[-1]
        assert [(x.record["lat"], x.reason) for x in got if x is not None] == [asides[-1]]
    assert states[0] == states[1] == states[2]
    assert asides[0] == asides[1] == asides[2]
    assert asides[0][0] == b["lat"] and "kept the one at (30.000000, 120.000000)" in asides[0][1]


def test_gap_evidence_does_not_depend_on_what_arrived_after_the_window():
    # the tracker is off from 07:00 to 08:40; fuel at 08:00
    evs = parked(T0 - 7200, T0 - 3600, *DEPOT) + parked(T0 + 2400, T0 + 7200, *DEPOT)
    evs.append(fuel(T0, *DEPOT))
    replayed, _ = run(evs)
    # streaming, 2 h of lateness: the pings after the gap are in before the window closes
    streamed, _ = run(sorted(evs, key=lambda e: e["t"]), sort=False, lateness=7200.0)
    (r,), (s,) = rules_of(replayed, "fuel.gps_gap"), rules_of(streamed, "fuel.gps_gap")
    assert r.evidence == s.evidence and r.evidence["first_ping_after"] is None
