"""Orchestration: write a whole synthetic county into a directory, streaming."""

from __future__ import annotations

import os
import random

import orjson

from .config import GenConfig, Summary
from .county import build_world
from .fuel import Fleet, FuelDesk
from .payments import Payments
from .projects import ProjectGen
from .writer import DAY, Clock, EventWriter, write_reference

EVENT_FILES = ("gps", "fuel", "payments", "progress")
REFERENCE_FILES = ("vehicles", "villages", "officials", "projects")


def _spread(total_chunks: int, n: int) -> list[int]:
    total_chunks = max(1, total_chunks)
    return [max(1, (i + 1) * total_chunks // (n + 1)) for i in range(n)]


def _malformed(w: dict[str, EventWriter], cfg: GenConfig, world, clock: Clock, chunks: dict[str, int]) -> None:
    """Queue a handful of invalid lines into each event file (dead-letter material)."""
    v = world.vehicles[0]
    vil = world.villages[0]
    t = DAY + 12 * 3600  # day 1, noon
    gps_ok = {"vehicle_id": v.vehicle_id, "ts": clock.rfc(t), "lat": round(v.spot_lat, 6),
              "lon": round(v.spot_lon, 6), "speed_kmh": 0.0, "ignition": False, "odometer_km": v.odo0}
    bad = {
        "gps": [
            (orjson.dumps(gps_ok)[:57], "bad JSON (truncated line)"),
            (orjson.dumps({k: x for k, x in gps_ok.items() if k != "ts"}), "missing field ts"),
            (orjson.dumps({**gps_ok, "ts": "2026-03-32T25:61:00+08:00"}), "bad timestamp"),
            (orjson.dumps({**gps_ok, "lat": 123.4}), "latitude out of range (123.4)"),
            (orjson.dumps({**gps_ok, "speed_kmh": "fast"}), "wrongly typed field speed_kmh"),
        ],
    }
    st = world.stations[0]
    day1 = clock.date_str(1).replace("-", "")
    fuel_ok = {"txn_id": f"T{day1}-900001", "card_id": v.cards[0], "vehicle_id": v.vehicle_id,
               "ts": clock.naive(t), "station_id": st.station_id, "station_name": st.name,
               "station_lat": st.raw_lat, "station_lon": st.raw_lon, "station_coord": st.coord,
               "liters": 35.5, "amount_yuan": 270.51, "fuel_type": v.fuel_type}
    bad["fuel"] = [
        (b'{"txn_id": "T' + day1.encode() + b'-900002", "card_id": ', "bad JSON (truncated line)"),
        (orjson.dumps({**{k: x for k, x in fuel_ok.items() if k != "liters"}, "txn_id": f"T{day1}-900003"}),
         "missing field liters"),
        (orjson.dumps({**fuel_ok, "txn_id": f"T{day1}-900004", "ts": "yesterday 9am"}), "bad timestamp"),
        (orjson.dumps({**fuel_ok, "txn_id": f"T{day1}-900005", "liters": -35.0, "amount_yuan": -270.51}),
         "negative litres"),
    ]
    pay_ok = {"payment_id": f"PM-{vil.village_id}-900001", "village_id": vil.village_id, "ts": clock.rfc(t),
              "amount_yuan": 1234.5, "channel": "transfer", "payee_id": world.village_persons[0][0].payee_id,
              "payee_name": world.village_persons[0][0].name, "category": "labor", "purpose": "临时用工工资",
              "approval_id": None}
    bad["payments"] = [
        (orjson.dumps(pay_ok)[:-30], "bad JSON (truncated line)"),
        (orjson.dumps({**{k: x for k, x in pay_ok.items() if k != "amount_yuan"},
                       "payment_id": f"PM-{vil.village_id}-900002"}), "missing field amount_yuan"),
        (orjson.dumps({**pay_ok, "payment_id": f"PM-{vil.village_id}-900003", "ts": "2026/03/05 10:11"}),
         "bad timestamp"),
        (orjson.dumps({**pay_ok, "payment_id": f"PM-{vil.village_id}-900004", "channel": "wechat"}),
         "unknown channel (wechat)"),
    ]
    pr_ok = {"report_id": "PR-PJ9999-0001", "project_id": "PJ0001", "ts": clock.rfc(t), "stage": "in_progress",
             "percent_complete": 50, "disbursed_yuan": 100000}
    bad["progress"] = [
        (b"{not json at all}", "bad JSON"),
        (orjson.dumps({k: x for k, x in pr_ok.items() if k != "project_id"}), "missing field project_id"),
        (orjson.dumps({**pr_ok, "report_id": "PR-PJ9999-0002", "ts": "2026-13-01T09:00:00+08:00"}),
         "bad timestamp"),
    ]
    for name, items in bad.items():
        for pos, (line, reason) in zip(_spread(chunks[name], len(items)), items):
            w[name].add_malformed(pos, line, reason)


def generate(out_dir: str | os.PathLike, cfg: GenConfig | None = None) -> Summary:
    """Write a synthetic county into ``out_dir``; see :class:`GenConfig`.

    Output is byte-identical for a given configuration. Memory is bounded by
    one simulated day of one vehicle plus the reference data (the GPS file
    is written vehicle-day by vehicle-day).
    """
    cfg = cfg or GenConfig()
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    for name in REFERENCE_FILES + EVENT_FILES:  # a stale file of the other format would be read too
        stale = os.path.join(out, name + (".jsonl" if cfg.gzip else ".jsonl.gz"))
        if os.path.exists(stale):
            os.remove(stale)
    clock = Clock(cfg.start)
    world = build_world(cfg)
    summary = Summary(out_dir=out)
    labels: list[dict] = []
    lookalikes: list[dict] = []

    # reference data
    for name, recs in (
        ("vehicles", [v.record() for v in world.vehicles]),
        ("villages", [v.record() for v in world.villages]),
        ("officials", [o.record() for o in world.officials]),
    ):
        summary.files[name] = write_reference(os.path.join(out, name + ".jsonl"), cfg.gzip, recs)
        summary.lines[name] = summary.records[name] = len(recs)

    dup = cfg.dup_rate if cfg.duplicates else 0.0
    writers = {
        name: EventWriter(os.path.join(out, name + ".jsonl"), cfg.gzip, random.Random(f"{cfg.seed}:dup:{name}"), dup)
        for name in EVENT_FILES
    }
    pg = ProjectGen(world, clock, labels, lookalikes)
    projects, reports = pg.build()
    summary.files["projects"] = write_reference(os.path.join(out, "projects.jsonl"), cfg.gzip, projects)
    summary.lines["projects"] = summary.records["projects"] = len(projects)
    n_progress_chunks = max(1, (len(reports) + 99) // 100)
    if cfg.malformed:
        chunks = {
            "gps": cfg.vehicles * cfg.days,
            "fuel": cfg.days,
            "payments": cfg.days + cfg.history_days,
            "progress": n_progress_chunks,
        }
        _malformed(writers, cfg, world, clock, chunks)

    pw = writers["progress"]
    for i in range(0, len(reports), 100):
        part = reports[i : i + 100]
        pw.write_lines([line for _, line in part])
        pw.note_time(part[0][0], part[-1][0])
    del reports

    desk = FuelDesk(writers["fuel"], clock, random.Random(f"{cfg.seed}:fuel-desk"))
    fleet = Fleet(world, clock, writers["gps"], desk, labels, lookalikes)
    pay = Payments(world, clock, writers["payments"], labels, lookalikes)
    for d in range(-cfg.history_days, 0):
        pay.run_day(d)
    for d in range(cfg.days):
        fleet.run_day(d)
        pay.run_day(d)
    desk.flush(None)
    for name, w in writers.items():
        w.close()
        summary.files[name] = w.path
        summary.lines[name] = w.lines
        summary.records[name] = w.good
        summary.duplicates[name] = w.dups
        summary.malformed[name] = list(w.malformed)
        if w.t_min is not None:
            summary.time_range[name] = (clock.rfc(w.t_min), clock.rfc(w.t_max))  # type: ignore[arg-type]
    t_min = min(w.t_min for w in writers.values() if w.t_min is not None)
    t_max = max(w.t_max for w in writers.values() if w.t_max is not None)
    summary.first_event, summary.last_event = clock.rfc(t_min), clock.rfc(t_max)
    summary.window = (clock.rfc(0), clock.rfc(cfg.days * DAY))
    summary.fuel_max_delivery_delay_h = round(desk.max_delay / 3600.0, 3)

    def key(r: dict) -> tuple:
        return (r["rule"], r["subject_id"], tuple(r["source_event_ids"]), r.get("note", ""))

    labels.sort(key=key)
    lookalikes.sort(key=key)
    with open(os.path.join(out, "labels.jsonl"), "wb") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in labels))
    with open(os.path.join(out, "lookalikes.jsonl"), "wb") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in lookalikes))
    for r in labels:
        summary.labels[r["rule"]] = summary.labels.get(r["rule"], 0) + 1
    for r in lookalikes:
        summary.lookalikes[r["rule"]] = summary.lookalikes.get(r["rule"], 0) + 1
    summary.labels = dict(sorted(summary.labels.items()))
    summary.lookalikes = dict(sorted(summary.lookalikes.items()))
    return summary
