"""A tiny reference oracle: recompute the deterministic rules from a generated
directory and compare them with ``labels.jsonl``.

This is a test aid for the generator, not the product's detector: it loads
everything into memory and implements the rule semantics the generator was
built against (see the module docstrings of :mod:`lianwatch.sim.fuel`,
:mod:`lianwatch.sim.payments`, :mod:`lianwatch.sim.projects`).
``payment.unusual`` is model-scored and is not checked here.

``python -m lianwatch.sim.verify DIR`` prints the comparison and the
closest margins to every threshold.
"""

from __future__ import annotations

import gzip
import math
import os
import sys
from bisect import bisect_left, bisect_right
from datetime import date, datetime, timedelta, timezone

import numpy as np
import orjson

from lianwatch.models.geo import haversine_m, to_wgs84

CST = timezone(timedelta(hours=8))
DAY = 86400.0


def read_jsonl(d: str, name: str) -> tuple[list[dict], int]:
    """Good records (exact duplicate lines dropped) and the number of lines skipped."""
    p = os.path.join(d, name + ".jsonl")
    if os.path.exists(p + ".gz"):
        f = gzip.open(p + ".gz", "rb")
    elif os.path.exists(p):
        f = open(p, "rb")
    else:
        return [], 0
    out, bad, seen = [], 0, set()
    with f:
        for line in f:
            line = line.rstrip(b"\n")
            if not line:
                continue
            if line in seen:
                continue
            seen.add(line)
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(r, dict):
                bad += 1
                continue
            out.append(r)
    return out, bad


def parse_ts(s) -> float | None:
    if not isinstance(s, str):
        return None
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=CST)
    return dt.timestamp()


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load(d: str) -> dict:
    vehicles, _ = read_jsonl(d, "vehicles")
    villages, _ = read_jsonl(d, "villages")
    officials, _ = read_jsonl(d, "officials")
    projects, _ = read_jsonl(d, "projects")
    data: dict = {"vehicles": {v["vehicle_id"]: v for v in vehicles},
                  "villages": {v["village_id"]: v for v in villages},
                  "officials": officials, "projects": {p["project_id"]: p for p in projects}, "bad": {}}
    card = {c: v["vehicle_id"] for v in vehicles for c in v["card_ids"]}
    # gps
    raw, bad = read_jsonl(d, "gps")
    per: dict[str, list[tuple]] = {}
    for r in raw:
        t = parse_ts(r.get("ts"))
        la, lo, sp = r.get("lat"), r.get("lon"), r.get("speed_kmh")
        if t is None or not (_num(la) and _num(lo) and _num(sp)) or not (-90 <= la <= 90 and -180 <= lo <= 180):
            bad += 1
            continue
        if r.get("vehicle_id") not in data["vehicles"]:
            bad += 1
            continue
        per.setdefault(r["vehicle_id"], []).append((t, la, lo, sp, r.get("ignition")))
    gps = {}
    for vid, rows in per.items():
        rows.sort(key=lambda x: x[0])
        uniq = [rows[0]]
        for x in rows[1:]:
            if x[0] != uniq[-1][0]:
                uniq.append(x)
        gps[vid] = (
            np.array([x[0] for x in uniq]),
            np.array([x[1] for x in uniq]),
            np.array([x[2] for x in uniq]),
            np.array([x[3] for x in uniq]),
        )
    data["gps"] = gps
    data["bad"]["gps"] = bad
    # fuel
    raw, bad = read_jsonl(d, "fuel")
    fuel, seen = [], set()
    for r in raw:
        t = parse_ts(r.get("ts"))
        lit = r.get("liters")
        if t is None or not _num(lit) or lit < 0 or not _num(r.get("station_lat")):
            bad += 1
            continue
        if r["txn_id"] in seen:
            continue
        seen.add(r["txn_id"])
        vid = r.get("vehicle_id") or card.get(r.get("card_id"))
        lat, lon = to_wgs84(r["station_lat"], r["station_lon"], r.get("station_coord", "wgs84"))
        fuel.append({**r, "_t": t, "_vid": vid, "_slat": lat, "_slon": lon})
    fuel.sort(key=lambda r: (r["_t"], r["txn_id"]))
    data["fuel"] = fuel
    data["bad"]["fuel"] = bad
    # payments
    raw, bad = read_jsonl(d, "payments")
    pays, seen = [], set()
    for r in raw:
        t = parse_ts(r.get("ts"))
        if t is None or not _num(r.get("amount_yuan")) or r.get("channel") not in ("card", "transfer", "cash"):
            bad += 1
            continue
        if r["payment_id"] in seen:
            continue
        seen.add(r["payment_id"])
        pays.append({**r, "_t": t})
    pays.sort(key=lambda r: (r["_t"], r["payment_id"]))
    data["payments"] = pays
    data["bad"]["payments"] = bad
    # progress
    raw, bad = read_jsonl(d, "progress")
    reps, seen = [], set()
    for r in raw:
        t = parse_ts(r.get("ts"))
        if t is None or r.get("project_id") not in data["projects"]:
            bad += 1
            continue
        if r["report_id"] in seen:
            continue
        seen.add(r["report_id"])
        reps.append({**r, "_t": t})
    reps.sort(key=lambda r: (r["_t"], r["report_id"]))
    data["progress"] = reps
    data["bad"]["progress"] = bad
    ends = [a[0][-1] for a in gps.values()]
    ends += [r["_t"] for r in fuel] + [r["_t"] for r in pays] + [r["_t"] for r in reps]
    data["now"] = max(ends)
    data["start"] = min(a[0][0] for a in gps.values()) if gps else data["now"]
    return data


# ---------------------------------------------------------------------------- helpers
def interp_position(g, t: float, win: float = 600.0):
    ts, la, lo, _ = g
    i0, i1 = bisect_left(ts, t - win), bisect_right(ts, t + win)
    if i0 >= i1:
        return None
    k = bisect_right(ts, t)  # first ping after t
    before = k - 1 if k - 1 >= i0 else None
    after = k if k < i1 else None
    if before is not None and after is not None:
        t0, t1 = ts[before], ts[after]
        f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
        return la[before] + f * (la[after] - la[before]), lo[before] + f * (lo[after] - lo[before])
    j = before if before is not None else after
    return la[j], lo[j]


def _hav(la1, lo1, la2, lo2):
    p1, p2 = np.radians(la1), np.radians(la2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lo2 - lo1) / 2) ** 2
    return 2 * 6_371_008.8 * np.arcsin(np.minimum(1.0, np.sqrt(h)))


def gps_km(g, t0: float, t1: float, method: str = "moving") -> float:
    """GPS distance in (t0, t1] with jitter suppression.

    ``moving``: count a step when either end reports speed > 0;
    ``anchor``: count the displacement from an anchor once it exceeds 50 m.
    """
    ts, la, lo, sp = g
    i0, i1 = bisect_right(ts, t0), bisect_right(ts, t1)
    if i1 - i0 < 2:
        return 0.0
    la, lo, sp = la[i0:i1], lo[i0:i1], sp[i0:i1]
    if method == "moving":
        step = _hav(la[:-1], lo[:-1], la[1:], lo[1:])
        mov = (sp[:-1] > 0) | (sp[1:] > 0)
        return float(step[mov].sum()) / 1000.0
    total, al, ao = 0.0, la[0], lo[0]
    for a, b in zip(la[1:].tolist(), lo[1:].tolist()):
        dd = haversine_m(al, ao, a, b)
        if dd > 50:
            total += dd
            al, ao = a, b
    return total / 1000.0


# ---------------------------------------------------------------------------- rules
def expected(data: dict, km_method: str = "moving") -> tuple[list[dict], dict]:
    """Alerts by the rule semantics, plus the closest margins seen on both sides."""
    alerts: list[dict] = []
    m: dict[str, float] = {}

    def margin(key: str, val: float, worst=min) -> None:
        m[key] = val if key not in m else worst(m[key], val)

    def alert(rule, level, subj, ids):
        alerts.append({"rule": rule, "level": level, "subject_id": subj, "source_event_ids": list(ids)})

    veh = data["vehicles"]
    prev_fill: dict[str, float] = {}
    by_vehicle: dict[str, list[dict]] = {}
    for f in data["fuel"]:
        vid = f["_vid"]
        v = veh[vid]
        g = data["gps"].get(vid)
        t = f["_t"]
        by_vehicle.setdefault(vid, []).append(f)
        # not_at_station / gps_gap
        pos = interp_position(g, t) if g is not None else None
        if pos is not None:
            dist = haversine_m(pos[0], pos[1], f["_slat"], f["_slon"])
            if dist > 500:
                alert("fuel.not_at_station", "red", vid, [f["txn_id"]])
                margin("not_at_station.alert_min_m", dist)
            else:
                margin("not_at_station.normal_max_m", dist, max)
        near = interp_position(g, t, 1800.0) if g is not None else None
        if near is None:
            alert("fuel.gps_gap", "yellow", vid, [f["txn_id"]])
        else:
            ts = g[0]
            k = bisect_left(ts, t)
            nearest = min(abs(ts[j] - t) for j in (k - 1, k) if 0 <= j < len(ts))
            margin("gps_gap.normal_max_nearest_ping_s", nearest, max)
        # no_distance
        t_prev = prev_fill.get(vid, data["start"] - 1)
        km = gps_km(g, t_prev, t, km_method) if g is not None else 0.0
        if f["liters"] > 20:
            if km < 10:
                alert("fuel.no_distance", "yellow", vid, [f["txn_id"]])
                margin("no_distance.alert_max_km", km, max)
            else:
                margin("no_distance.normal_min_km", km)
        else:
            margin("no_distance.small_fill_max_l", f["liters"], max)
        prev_fill[vid] = t
        if f["fuel_type"] != v["fuel_type"]:
            alert("fuel.type_mismatch", "yellow", vid, [f["txn_id"]])
    # over_capacity: single fills and 6 h groups (overlapping windows merged)
    for vid, fs in by_vehicle.items():
        tank = veh[vid]["tank_liters"]
        cap = tank * 1.05
        groups: list[set[str]] = []
        wins: list[tuple[set[str], float]] = []
        for i, f in enumerate(fs):
            if f["liters"] > cap:
                groups.append({f["txn_id"]})
                margin("over_capacity.single_alert_min_ratio", f["liters"] / tank)
            win = [x for x in fs[i:] if x["_t"] - f["_t"] <= 6 * 3600]
            s = sum(x["liters"] for x in win)
            if len(win) > 1 and s > cap:
                groups.append({x["txn_id"] for x in win})
            wins.append(({x["txn_id"] for x in win}, s))
        merged = _merge(groups)
        for ids, s in wins:
            if not any(ids & g for g in merged):
                key = "window" if len(ids) > 1 else "single"
                margin(f"over_capacity.normal_max_{key}_ratio", s / tank, max)
        for grp in merged:
            alert("fuel.over_capacity", "red", vid, sorted(grp))
    # payments
    vil = data["villages"]
    related: dict[str, set[str]] = {}
    for o in data["officials"]:
        related.setdefault(o["village_id"], set()).update(o.get("related_payee_ids") or [])
    per_pair: dict[tuple, list[dict]] = {}
    for p in data["payments"]:
        v = vil[p["village_id"]]
        thr = v.get("approval_threshold_yuan", 50000)
        a = p["amount_yuan"]
        if a >= thr and p.get("approval_id") is None:
            alert("payment.no_approval", "red", p["village_id"], [p["payment_id"]])
        if p["payee_id"] in related.get(p["village_id"], set()):
            alert("payment.conflict_of_interest", "red", p["village_id"], [p["payment_id"]])
        if p["channel"] == "cash":
            if a > 5000:
                alert("payment.cash", "yellow", p["village_id"], [p["payment_id"]])
            else:
                margin("cash.normal_max_yuan", a, max)
        per_pair.setdefault((p["village_id"], p["payee_id"]), []).append(p)
    for (vid, _payee), ps in per_pair.items():
        thr = vil[vid].get("approval_threshold_yuan", 50000)
        below = [p for p in ps if p["amount_yuan"] < thr]
        groups = []
        wins = []
        for i, p in enumerate(below):
            win = [x for x in below[i:] if x["_t"] - p["_t"] <= 30 * DAY]
            s = sum(x["amount_yuan"] for x in win)
            if len(win) >= 2 and s >= thr:
                groups.append({x["payment_id"] for x in win})
            elif len(win) >= 2:
                wins.append(({x["payment_id"] for x in win}, s))
        merged = _merge(groups)
        for ids, s in wins:
            if not any(ids & g for g in merged):
                margin("split.normal_max_window_ratio", s / thr, max)
        for grp in merged:
            alert("payment.split", "red", vid, sorted(grp))
        for i, p in enumerate(ps):
            for q in ps[i + 1:]:
                if q["amount_yuan"] == p["amount_yuan"]:
                    if q["_t"] - p["_t"] <= 7 * DAY:
                        alert("payment.duplicate", "yellow", vid, [p["payment_id"], q["payment_id"]])
                    else:
                        margin("duplicate.normal_min_days", (q["_t"] - p["_t"]) / DAY)
    # projects
    now = data["now"]
    reps: dict[str, list[dict]] = {}
    for r in data["progress"]:
        reps.setdefault(r["project_id"], []).append(r)
    for pid, p in data["projects"].items():
        rs = reps.get(pid, [])
        ps = datetime.combine(date.fromisoformat(p["planned_start"]), datetime.min.time(), CST).timestamp()
        pe = datetime.combine(date.fromisoformat(p["planned_end"]), datetime.min.time(), CST).timestamp()
        started = next((r["_t"] for r in rs if r["stage"] in ("started", "in_progress", "completed")), None)
        completed = next((r["_t"] for r in rs if r["stage"] == "completed"), None)
        if started is None:
            if now >= ps + 30 * DAY:
                alert("project.overdue_start", "red", pid, [pid])
            elif now >= ps + 7 * DAY:
                alert("project.overdue_start", "yellow", pid, [pid])
        elif started > ps + 7 * DAY:
            alert("project.overdue_start", "red" if started > ps + 30 * DAY else "yellow", pid, [pid])
        else:
            margin("overdue_start.normal_max_delay_days", (started - ps) / DAY, max)
        if started is not None and completed is None and rs:
            idle = (now - rs[-1]["_t"]) / DAY
            if idle >= 60:
                alert("project.stalled", "yellow", pid, [pid])
            else:
                margin("stalled.normal_max_idle_days", idle, max)
        if (completed is None and now >= pe + 30 * DAY) or (completed is not None and completed > pe + 30 * DAY):
            alert("project.overdue_completion", "yellow", pid, [pid])
        for r in rs:
            diff = r["disbursed_yuan"] / p["budget_yuan"] - r["percent_complete"] / 100
            if diff > 0.30:
                alert("project.disbursement_mismatch", "red", pid, [pid, r["report_id"]])
                break
            margin("mismatch.normal_max_diff", diff, max)
    return alerts, m


def _merge(groups: list[set[str]]) -> list[set[str]]:
    out: list[set[str]] = []
    for g in groups:
        for o in out:
            if o & g:
                o |= g
                break
        else:
            out.append(set(g))
    return out


def compare(labels: list[dict], alerts: list[dict], skip=("payment.unusual",)) -> tuple[list[dict], list[dict]]:
    """(labels without a matching alert, alerts without a matching label)."""
    labels = [lb for lb in labels if lb["rule"] not in skip]
    used = [False] * len(alerts)
    missing = []
    for lb in labels:
        ok = False
        for i, a in enumerate(alerts):
            if (
                not used[i]
                and a["rule"] == lb["rule"]
                and a["subject_id"] == lb["subject_id"]
                and set(a["source_event_ids"]) & set(lb["source_event_ids"])
                and a["level"] == lb["level"]
            ):
                used[i] = ok = True
                break
        if not ok:
            missing.append(lb)
    extra = [a for i, a in enumerate(alerts) if not used[i]]
    return missing, extra


def check_dir(d: str, km_method: str = "moving") -> dict:
    data = load(d)
    labels, _ = read_jsonl(d, "labels")
    alerts, margins = expected(data, km_method)
    missing, extra = compare(labels, alerts)
    return {"missing": missing, "unexpected": extra, "margins": margins, "alerts": len(alerts),
            "labels": len(labels), "bad_lines": data["bad"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    d = argv[0]
    rc = 0
    for method in ("moving", "anchor"):
        res = check_dir(d, method)
        print(f"[{method}] labels={res['labels']} oracle alerts={res['alerts']} bad lines={res['bad_lines']}")
        for lb in res["missing"]:
            print("  MISSING ", orjson.dumps(lb).decode())
        for a in res["unexpected"]:
            print("  UNEXPECTED", orjson.dumps(a).decode())
        for k, v in sorted(res["margins"].items()):
            print(f"  margin {k}: {v:.3f}" if isinstance(v, float) and not math.isnan(v) else f"  margin {k}: {v}")
        rc |= bool(res["missing"] or res["unexpected"])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
