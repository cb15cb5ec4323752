"""A small, deterministic county written straight into a store: reference
data, archived events, alerts of every family and some handling history.

For the dashboard tests (every panel must return rows) and for a report
before a real replay exists. It uses the store's own write paths
(``write_reference``, ``archive``, ``write_alerts``) so the rows look as a
replay leaves them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import orjson

from lianwatch.models.alert import Alert, alert_id
from lianwatch.models.clock import format_ts
from lianwatch.models.parse import parse_event, parse_reference
from lianwatch.reference import Reference

__all__ = ["fill_sample_store", "SampleInfo", "T0", "DAYS"]

T0 = 1772380800.0  # 2026-03-02 00:00:00+08:00
DAYS = 14
M_PER_DEG = 6371008.8 * math.pi / 180.0
TOWNS = ["益农镇", "党湾镇", "瓜沥镇"]
VILLAGE_NAMES = ["兴裕村", "东沙村", "新港村", "梅西村", "长沙村", "坎山村", "大园村", "航民村"]
UNITS = [("U01", "区政府办", 30.1800, 120.2640), ("U02", "区农业农村局", 30.1650, 120.2900),
         ("U03", "区交通运输局", 30.1550, 120.2500)]


@dataclass
class SampleInfo:
    time_from: float
    time_to: float
    alert_ids: dict[str, str]  # rule → one alert id of that rule
    away_vehicle: str


def _off(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (lat + north_m / M_PER_DEG,
            lon + east_m / (M_PER_DEG * math.cos(math.radians(lat))))


def _ev(stream: str, rec: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    raw = orjson.dumps(rec)
    ev, why = parse_event(stream, raw)
    assert ev is not None, why
    return ev, raw


def fill_sample_store(store: Any, seed: int = 7) -> SampleInfo:
    """Write the sample county into ``store`` (an :class:`AlertStore`); return its time range."""
    rng = random.Random(seed)
    ref = Reference()

    def add_ref(kind: str, rec: dict) -> None:
        model, why = parse_reference(kind, rec)
        assert model is not None, why
        ref.add(kind, model)

    # ------------------------------------------------------------- reference
    villages = []
    for i, name in enumerate(VILLAGE_NAMES):
        vid = f"VL{i + 1:03d}"
        town = TOWNS[i % len(TOWNS)]
        lat, lon = _off(30.17, 120.28, rng.uniform(-6000, 6000), rng.uniform(-8000, 8000))
        villages.append((vid, name, town, lat, lon))
        add_ref("villages", {"village_id": vid, "name": name, "town": town, "county": "萧山区",
                             "approval_threshold_yuan": 50000,
                             "contacts": [{"role": "secretary", "name": f"书记{i}", "phone": f"1380000{i:04d}"}]})
    vehicles = []
    for i in range(8):
        uid, uname, dlat, dlon = UNITS[i % len(UNITS)]
        vid = f"V{i + 1:04d}"
        plate = f"浙A·{10 + i:02d}{'ABCDEFGH'[i]}X"
        vehicles.append((vid, plate, uid, dlat, dlon, f"C{i + 1:04d}", 60 if i % 2 else 70))
        add_ref("vehicles", {"vehicle_id": vid, "plate": plate, "unit_id": uid, "unit_name": uname,
                             "tank_liters": 60 if i % 2 else 70, "fuel_type": "92",
                             "depot": {"lat": dlat, "lon": dlon, "radius_m": 150},
                             "card_ids": [f"C{i + 1:04d}"]})
    related = "91330109MA2REL001Q"
    for i, (vid, *_rest) in enumerate(villages):
        add_ref("officials", {"person_id": f"P{i + 1:04d}", "name": f"王{'一二三四五六七八'[i]}",
                              "village_id": vid, "role": "director",
                              "related_payee_ids": [related] if i == 0 else []})
    projects = []
    for i in range(8):
        vid = villages[i][0]
        start = T0 - (90 - i * 10) * 86400
        pj = f"PJ{i + 1:04d}"
        projects.append((pj, vid, start))
        add_ref("projects", {"project_id": pj, "name": f"{villages[i][1]}道路硬化{i + 1}期", "village_id": vid,
                             "unit_id": None, "budget_yuan": 1_000_000 + 100_000 * i,
                             "planned_start": format_ts(start)[:10],
                             "planned_end": format_ts(start + 200 * 86400)[:10]})
    store.write_reference(ref)

    # ------------------------------------------------------------- events
    gps: list = []
    fuel: list = []
    alerts: list[Alert] = []
    ids: dict[str, str] = {}
    stations = [("S01", "中石化钱江站", *_off(30.17, 120.28, 1500, 2500)),
                ("S02", "中石油益农站", *_off(30.17, 120.28, -3000, -2000)),
                ("S03", "中石化党湾站", *_off(30.17, 120.28, 4000, -5000))]

    def new_alert(rule: str, level: str, stype: str, sid: str, t: float, title: str, title_en: str,
                  evidence: dict, sources: list[str], unit: str | None = None,
                  village: str | None = None, detected: float | None = None) -> Alert:
        a = Alert(alert_id=alert_id(rule, stype, sid, sources), rule=rule, level=level,
                  subject_type=stype, subject_id=sid, unit_id=unit, village_id=village,
                  event_ts=format_ts(t), detected_at=format_ts(detected if detected else t + 600.0), title=title,
                  title_en=title_en, evidence=evidence, source_event_ids=sources)
        alerts.append(a)
        ids.setdefault(rule, a.alert_id)
        return a

    txn = 0
    for vi, (vid, plate, uid, dlat, dlon, card, tank) in enumerate(vehicles):
        for k in range(4):
            txn += 1
            t = T0 + (k * 3 + 1 + vi % 3) * 86400 + 9 * 3600 + vi * 600.0
            sid, sname, slat, slon = stations[(vi + k) % len(stations)]
            away = (vi in (0, 3) and k in (1, 2)) or (vi == 5 and k == 3)
            tid = f"T20260302-{txn:06d}"
            liters = 75.0 if (vi == 2 and k == 0) else round(rng.uniform(25, 50), 1)
            if away:  # the car stays parked at its depot while its card is used
                for s in range(-40 * 60, 40 * 60 + 1, 180):
                    gps.append(_ev("gps", {"vehicle_id": vid, "ts": format_ts(t + s), "lat": dlat,
                                           "lon": dlon, "speed_kmh": 0.0}))
            elif not (vi == 6 and k == 1):  # vi 6 / k 1: no GPS at all (gps_gap)
                for s in range(-40 * 60, 40 * 60 + 1, 30):
                    frac = min(1.0, abs(s) / 1800.0)
                    if abs(s) <= 300:
                        frac = 0.0
                    lat = slat + (dlat - slat) * frac + rng.uniform(-1e-5, 1e-5)
                    lon = slon + (dlon - slon) * frac + rng.uniform(-1e-5, 1e-5)
                    gps.append(_ev("gps", {"vehicle_id": vid, "ts": format_ts(t + s), "lat": lat, "lon": lon,
                                           "speed_kmh": 0.0 if frac == 0 else 36.0}))
            rec = {"txn_id": tid, "card_id": card, "ts": format_ts(t), "station_id": sid, "station_name": sname,
                   "station_lat": slat, "station_lon": slon, "liters": liters,
                   "amount_yuan": round(liters * 7.8, 2), "fuel_type": "92"}
            if vi != 7:  # vehicle 8's card company leaves vehicle_id out (found through the card)
                rec["vehicle_id"] = vid
            fuel.append(_ev("fuel", rec))
            if away:
                dist = 111_000 * math.hypot(slat - dlat, (slon - dlon) * math.cos(math.radians(dlat)))
                new_alert("fuel.not_at_station", "red", "vehicle", vid, t,
                          f"加油时车辆不在加油站：距加油站 {dist / 1000:.1f} 公里，车辆停放在单位大院",
                          f"Vehicle {dist / 1000:.1f} km from the station, parked at its depot",
                          {"distance_m": round(dist), "vehicle_state": "parked", "at_depot": True,
                           "station_id": sid, "station_name": sname,
                           "station": {"lat": round(slat, 6), "lon": round(slon, 6), "coord_given": "wgs84",
                                       "lat_given": slat, "lon_given": slon},
                           "vehicle_position": {"lat": round(dlat, 6), "lon": round(dlon, 6)},
                           "movement_m": 0, "pings_in_window": 7, "liters": liters, "card_id": card},
                          [tid], unit=uid)
            if vi == 6 and k == 1:
                new_alert("fuel.gps_gap", "yellow", "vehicle", vid, t, "加油前后30分钟无定位",
                          "No GPS fix within 30 min of the fill",
                          {"window_min": 30, "station_id": sid, "liters": liters, "card_id": card,
                           "gap_min": 80.0}, [tid], unit=uid)
            if vi == 2 and k == 0:
                new_alert("fuel.over_capacity", "red", "vehicle", vid, t, f"单次加油 {liters} 升，超过油箱容积",
                          f"{liters} L in one fill, over the tank", {"tank_liters": tank, "window_liters": liters,
                                                                    "limit_liters": tank * 1.05}, [tid], unit=uid)
    # parked pings between fills (so tracks have a background)
    for vid, plate, uid, dlat, dlon, card, tank in vehicles:
        for d in range(DAYS):
            gps.append(_ev("gps", {"vehicle_id": vid, "ts": format_ts(T0 + d * 86400 + 20 * 3600),
                                   "lat": dlat, "lon": dlon, "speed_kmh": 0.0}))

    payments: list = []
    pay = 0

    def add_payment(vid: str, t: float, amount: float, payee_id: str, payee_name: str, category: str,
                    channel: str = "transfer", approval: str | None = "AP-1") -> str:
        nonlocal pay
        pay += 1
        pid = f"PM-{vid}-{pay:06d}"
        payments.append(_ev("payments", {"payment_id": pid, "village_id": vid, "ts": format_ts(t),
                                         "amount_yuan": amount, "channel": channel, "payee_id": payee_id,
                                         "payee_name": payee_name, "category": category, "purpose": "日常支出",
                                         "approval_id": approval}))
        return pid

    cats = ["engineering", "procurement", "labor", "services", "office", "subsidy"]
    for vi, (vid, name, town, lat, lon) in enumerate(villages):
        for k in range(10):
            t = T0 + rng.uniform(0, DAYS * 86400)
            add_payment(vid, t, round(rng.uniform(800, 30000), 2), f"PAYEE{vi}{k % 3}", f"杭州某{k % 3}号供应商",
                        cats[(vi + k) % len(cats)])
    v0, v1, v2, v3 = (villages[i][0] for i in range(4))
    split = [add_payment(v1, T0 + (3 + j) * 86400 + 36000, 19000.0 + j * 500, "91330109MA2SPL001Q",
                         "杭州某建设有限公司", "engineering", approval=None) for j in range(3)]
    new_alert("payment.split", "red", "village", v1, T0 + 5 * 86400 + 36000, "拆分支付：30天内向同一收款方3笔共58500元",
              "Split: 3 payments to one payee, 58,500 yuan in 30 days",
              {"payee_id": "91330109MA2SPL001Q", "total_yuan": 58500.0, "threshold_yuan": 50000}, split,
              village=v1)
    coi = add_payment(v0, T0 + 6 * 86400 + 40000, 12000.0, related, "杭州某关联商贸有限公司", "procurement")
    new_alert("payment.conflict_of_interest", "red", "village", v0, T0 + 6 * 86400 + 40000,
              "向村干部关联企业支付12000元", "12,000 yuan to a company tied to the village director",
              {"payee_id": related, "person_ids": ["P0001"]}, [coi], village=v0)
    big = add_payment(v2, T0 + 7 * 86400 + 30000, 88000.0, "PAYEEBIG", "杭州某工程公司", "engineering", approval=None)
    new_alert("payment.no_approval", "red", "village", v2, T0 + 7 * 86400 + 30000, "88000元支付无审批记录",
              "88,000 yuan paid without approval", {"amount_yuan": 88000.0, "threshold_yuan": 50000}, [big],
              village=v2)
    cash = add_payment(v3, T0 + 8 * 86400 + 30000, 7600.0, "PSN-1", "张某", "labor", channel="cash")
    new_alert("payment.cash", "yellow", "village", v3, T0 + 8 * 86400 + 30000, "现金支付7600元",
              "Cash payment of 7,600 yuan", {"amount_yuan": 7600.0, "limit_yuan": 5000}, [cash], village=v3)
    odd = add_payment(v2, T0 + 9 * 86400 + 3000, 29500.0, "PAYEEODD", "杭州某咨询公司", "services")
    new_alert("payment.unusual", "yellow", "village", v2, T0 + 9 * 86400 + 3000, "支付金额与时间异常（模型评分0.91）",
              "Unusual payment (model score 0.91)", {"score": 0.91, "threshold": 0.8}, [odd], village=v2)

    progress: list = []
    rep = 0

    def report(pj: str, t: float, stage: str, pct: float, paid: float) -> str:
        nonlocal rep
        rep += 1
        rid = f"PR-{pj}-{rep:04d}"
        progress.append(_ev("progress", {"report_id": rid, "project_id": pj, "ts": format_ts(t), "stage": stage,
                                         "percent_complete": pct, "disbursed_yuan": paid}))
        return rid

    for i, (pj, vid, start) in enumerate(projects):
        if i == 1:  # never started
            report(pj, start - 20 * 86400, "contracted", 0, 0)
            new_alert("project.overdue_start", "red", "project", pj, start + 7 * 86400,
                      "项目计划开工30天后仍未开工", "No start 30 days after the planned start",
                      {"planned_start": format_ts(start)[:10], "days_late": 90 - 10}, [pj], village=vid,
                      detected=T0 + 3600.0)
            continue
        report(pj, start + 3 * 86400, "started", 5, 100_000)
        if i == 2:  # stalled: nothing since
            new_alert("project.stalled", "yellow", "project", pj, start + 63 * 86400, "项目已开工，60天无进度报告",
                      "Started, no report for 60 days", {"last_report": format_ts(start + 3 * 86400)}, [pj],
                      village=vid, detected=T0 + 7200.0)
            continue
        if i == 3:  # paid far ahead of progress
            rid = report(pj, T0 + 2 * 86400, "in_progress", 20, 900_000)
            new_alert("project.disbursement_mismatch", "red", "project", pj, T0 + 2 * 86400,
                      "已拨付82%而进度仅20%", "82% disbursed at 20% progress",
                      {"disbursed_yuan": 900_000, "budget_yuan": 1_300_000, "percent_complete": 20}, [pj, rid],
                      village=vid)
            continue
        report(pj, T0 + (i + 1) * 86400, "in_progress", 30 + 5 * i, 300_000 + 20_000 * i)
        if i == 0:
            report(pj, T0 + 10 * 86400, "completed", 100, 1_000_000)

    store.archive("gps", gps)
    store.archive("fuel", fuel)
    store.archive("payments", payments)
    store.archive("progress", progress)
    store.archive("fuel", fuel[:2])  # delivered twice upstream: the dashboards must not count them twice
    store.write_alerts(alerts)

    # ------------------------------------------------------------- handling history
    # the lifecycle's vocabulary (lianwatch.lifecycle.machine): open → rectify → verify,
    # dismiss, and escalate when the deadline (red 10 days, yellow 30) passes while open
    from lianwatch.models.clock import parse_ts

    hist = []
    end_t = T0 + DAYS * 86400.0
    fate = {"project.overdue_start": 0, "fuel.over_capacity": 0, "project.disbursement_mismatch": 0,
            "payment.split": 1, "fuel.gps_gap": 1, "payment.no_approval": 2,
            "payment.conflict_of_interest": 2, "payment.cash": 3}
    for n, a in enumerate(sorted(alerts, key=lambda a: a.alert_id)):
        t = parse_ts(a.detected_at)
        steps = [("open", "open", "system", f"level={a.level}")]
        n = fate.get(a.rule, n)
        if n % 5 == 1:
            steps.append(("rectify", "rectifying", "镇纪委·李四", "已约谈当事人，责令退回油费"))
        elif n % 5 == 2:
            steps += [("rectify", "rectifying", "镇纪委·李四", "已整改"), ("verify", "closed", "县纪委·赵六", "")]
        elif n % 5 == 3:
            steps.append(("dismiss", "dismissed", "镇纪委·李四", "经核实为公务加油，手续齐全"))
        days = 10 if a.level == "red" else 30
        rows = []
        for seq, (action, state, by, note) in enumerate(steps, 1):
            rows.append({"alert_id": a.alert_id, "seq": seq, "at_time": t + (seq - 1) * 3600.0, "action": action,
                         "state": state, "by": by, "note": note, "evidence_ref": ""})
        if len(steps) == 1 and t + days * 86400 < end_t:
            rows.append({"alert_id": a.alert_id, "seq": 2, "at_time": t + days * 86400.0, "action": "escalate",
                         "state": "open", "by": "system", "note": "escalation=1", "evidence_ref": ""})
        hist += rows
    store.insert_dicts("alert_history", hist)
    away_vehicle = vehicles[0][0]
    return SampleInfo(time_from=T0, time_to=T0 + DAYS * 86400.0, alert_ids=ids, away_vehicle=away_vehicle)
