"""Fuel card × GPS track, per vehicle, in event time (the ``fuel.*`` rules).

Each vehicle's state holds a bounded track (pings of the last
``track_retention_h``, with a jitter-suppressed running distance), the fuel
transactions waiting for their GPS window to close, the recent fills and the
open over-capacity incidents. A transaction is judged once the watermark has
passed ``t + gap_window`` (all pings that can matter are in), or at the end of
input. A transaction older than the retained track is set aside as too late.

Redelivery: a ``txn_id`` seen again with the same content is dropped, with
other content set aside (the first one taken stays). A ping is known by its
car and second: the same position again is dropped; another position in the
same second is set aside and the smaller ``(lat, lon)`` kept, whatever came
first (replay's order takes that one first too).
"""

from __future__ import annotations

import bisect
import math
from array import array
from typing import Any

from lianwatch.engine.detector import Ctx, Detector, SetAside, Step, forget_before, redelivery
from lianwatch.models.alert import Alert
from lianwatch.models.geo import haversine_m, to_wgs84
from lianwatch.rules import FuelRules

__all__ = ["FuelDetector", "VehicleState"]

M_PER_DEG = 6371008.8 * math.pi / 180.0  # metres per degree of latitude
STRIDE = 5  # values per ping in VehicleState.d: lat, lon, cum, anchor lat, anchor lon

FUEL_NAMES = {"0": ("0 号柴油", "diesel"), "92": ("92 号汽油", "92 petrol"),
              "95": ("95 号汽油", "95 petrol"), "98": ("98 号汽油", "98 petrol")}


def _fuel_name(code: str | None) -> tuple[str, str]:
    if code is None:
        return ("未知油品", "unknown fuel")
    return FUEL_NAMES.get(code, (f"{code} 号", code))


def _dist_text(m: float) -> tuple[str, str]:
    if m >= 1000:
        return f"{m / 1000:.1f} 公里", f"{m / 1000:.1f} km"
    return f"{m:.0f} 米", f"{m:.0f} m"


class VehicleState:
    """Per-vehicle state. The track is two ``array('d')`` (compact, fast to pickle):
    times, and five values per ping (:data:`STRIDE`)."""

    __slots__ = ("vid", "t", "d", "pending", "fills",
                 "seen", "episodes", "wake", "n_since_evict", "jitter2", "kx")

    def __init__(self, vid: str) -> None:
        self.vid = vid
        self.t = array("d")  # ping times, ascending (bisected)
        # per ping, side by side (one cache line): lat, lon, the jitter-suppressed
        # running distance in metres, and the jitter anchor's lat, lon after it
        self.d = array("d")
        self.pending: list[dict[str, Any]] = []  # transactions not judged yet, by t
        # judged fills: (t, txn_id, liters, cum_m or nan, judged_with_track)
        self.fills: list[tuple[float, str, float, float, bool]] = []
        self.seen: dict[str, tuple[float, int]] = {}  # txn_id → (t, fingerprint) while it matters
        # open over-capacity incidents: anchor, txn ids, litres, first t, last t, version
        self.episodes: list[dict[str, Any]] = []
        self.wake: float | None = None
        self.n_since_evict = 0
        self.jitter2 = 0.0  # squared jitter threshold (m²), set at the first ping
        self.kx = M_PER_DEG  # metres per degree of longitude here

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, d: dict[str, Any]) -> None:
        for k in self.__slots__:
            setattr(self, k, d[k])


class FuelDetector(Detector[VehicleState]):
    name = "fuel"
    streams = ("gps", "fuel")
    rules = ("fuel.not_at_station", "fuel.gps_gap", "fuel.over_capacity", "fuel.no_distance",
             "fuel.type_mismatch")
    timer_clock = "watermark"

    def key(self, ev: dict[str, Any], ctx: Ctx) -> str | None:
        if ev["_s"] == "gps":
            return ev["vehicle_id"]
        return ctx.ref.vehicle_of(ev)

    def unplaced_reason(self, ev: dict[str, Any]) -> str:
        return (f"fuel: card {ev.get('card_id')!r} belongs to no known vehicle "
                "(no vehicle_id and not in vehicles[].card_ids)")

    def new_state(self, key: str, ctx: Ctx) -> VehicleState:
        return VehicleState(key)

    # ------------------------------------------------------------------ events
    hot_fields = {"gps": ("lat", "lon")}

    def on_event(self, st: VehicleState, ev: dict[str, Any], ctx: Ctx) -> Step[VehicleState]:
        if ev["_s"] == "gps":
            sa = self._add_ping(st, ev["t"], ev["lat"], ev["lon"], ctx)
            if sa is None:
                return Step(st)
            if sa.record["lat"] == ev["lat"] and sa.record["lon"] == ev["lon"]:
                sa = SetAside("gps", ev, sa.reason)  # this very record: keep its raw form
            return Step(st, (), (sa,))
        return self._add_fuel(st, ev, ctx)

    def hot(self, stream: str):
        return self._add_ping if stream == "gps" else None

    def _rules(self, st: VehicleState, ctx: Ctx) -> FuelRules:
        return ctx.rules.fuel_for(ctx.ref.unit_of_vehicle(st.vid))

    def _add_ping(self, st: VehicleState, t: float, lat: float, lon: float, ctx: Ctx,
                  _m: float = M_PER_DEG, _sqrt: Any = math.sqrt) -> SetAside | None:
        # the hot path (most events are pings): local flat-earth distances, locals only
        tt = st.t
        d = st.d
        if tt:
            last = tt[-1]
            if t <= last:
                i = len(tt) - 1 if t == last else bisect.bisect_left(tt, t)
                if tt[i] == t:
                    return self._same_second(st, i, t, lat, lon, ctx)
                self._insert_ping(st, i, t, lat, lon, ctx)
                return None
            alat = d[-2]
            alon = d[-1]
            dy = (lat - alat) * _m
            dx = (lon - alon) * st.kx
            d2 = dx * dx + dy * dy
            if d2 > st.jitter2:
                d.extend((lat, lon, d[-3] + _sqrt(d2), lat, lon))
            else:
                d.extend((lat, lon, d[-3], alat, alon))
        else:
            r = self._rules(st, ctx)
            st.jitter2 = r.jitter_m * r.jitter_m
            st.kx = _m * math.cos(math.radians(lat))
            d.extend((lat, lon, 0.0, lat, lon))
        tt.append(t)
        n = st.n_since_evict + 1
        st.n_since_evict = n
        if n >= 512:
            self._evict(st, ctx)

    def _same_second(self, st: VehicleState, i: int, t: float, lat: float, lon: float,
                     ctx: Ctx) -> SetAside | None:
        """A ping in the second of the kept ping ``i``: the same position is a
        redelivery; another one conflicts: the smaller ``(lat, lon)`` stays."""
        d = st.d
        k = i * STRIDE
        kept = (d[k], d[k + 1])
        if kept == (lat, lon):
            return None
        if (lat, lon) < kept:
            d[k], d[k + 1] = lat, lon
            self._recompute(st, i, ctx)
            kept, (lat, lon) = (lat, lon), kept
        return SetAside("gps", {"vehicle_id": st.vid, "ts": ctx.ts(t), "t": t, "lat": lat, "lon": lon},
                        f"conflicts with the ping of {st.vid} at {ctx.ts(t)} seen at another "
                        f"position; kept the one at ({kept[0]:.6f}, {kept[1]:.6f})")

    def _insert_ping(self, st: VehicleState, i: int, t: float, lat: float, lon: float,
                     ctx: Ctx) -> None:
        """An out-of-order ping: insert it and recompute the running distance after it."""
        st.t.insert(i, t)
        st.d[i * STRIDE:i * STRIDE] = array("d", (lat, lon, 0.0, lat, lon))
        self._recompute(st, i, ctx)

    def _recompute(self, st: VehicleState, i: int, ctx: Ctx) -> None:
        """The running distance and jitter anchors from ping ``i`` on."""
        d = st.d
        r = self._rules(st, ctx)
        st.jitter2 = r.jitter_m * r.jitter_m
        st.kx = M_PER_DEG * math.cos(math.radians(d[0]))
        for j in range(i, len(st.t)):
            k = j * STRIDE
            if j == 0:
                d[2], d[3], d[4] = 0.0, d[0], d[1]
                continue
            alat, alon = d[k - 2], d[k - 1]
            dy = (d[k] - alat) * M_PER_DEG
            dx = (d[k + 1] - alon) * st.kx
            d2 = dx * dx + dy * dy
            if d2 > st.jitter2:
                d[k + 2], d[k + 3], d[k + 4] = d[k - 3] + math.sqrt(d2), d[k], d[k + 1]
            else:
                d[k + 2], d[k + 3], d[k + 4] = d[k - 3], alat, alon

    def _evict(self, st: VehicleState, ctx: Ctx) -> None:
        st.n_since_evict = 0
        if ctx.watermark == float("-inf"):
            return
        r = self._rules(st, ctx)
        horizon = ctx.watermark - r.track_retention_h * 3600.0
        k = bisect.bisect_left(st.t, horizon)
        if k > 0:
            del st.t[:k]
            del st.d[:k * STRIDE]
        # fills: keep those within the retention (and the newest one before it)
        fills = st.fills
        j = bisect.bisect_left(fills, (horizon,))
        if j > 1:
            del fills[: j - 1]
        keep_from = min(horizon, fills[0][0]) if fills else horizon
        if st.seen:
            st.seen = forget_before(st.seen, keep_from)
        cap_h = r.capacity_window_h * 3600.0
        st.episodes = [e for e in st.episodes if e["last_t"] >= ctx.watermark - 2 * cap_h]

    def _add_fuel(self, st: VehicleState, ev: dict[str, Any], ctx: Ctx) -> Step[VehicleState]:
        fp, again = redelivery(st.seen, ev, ctx, "txn_id")
        if again is not None:
            return Step(st, (), again)  # a redelivered transaction (or a conflicting copy)
        r = self._rules(st, ctx)
        if ev["t"] < ctx.watermark - r.track_retention_h * 3600.0:
            return Step(st, (), (SetAside("fuel", ev, (
                f"too late to judge: transaction at {ctx.ts(ev['t'])} is older than the "
                f"{r.track_retention_h:g} h of GPS track kept (watermark {ctx.ts(ctx.watermark)})")),))
        st.seen[ev["txn_id"]] = (ev["t"], fp)
        alerts: list[Alert] = []
        mismatch = self._type_mismatch(st, ev, ctx)
        if mismatch is not None:
            alerts.append(mismatch)
        p = st.pending
        i = len(p)
        while i and p[i - 1]["t"] > ev["t"]:
            i -= 1
        p.insert(i, ev)
        st.wake = p[0]["t"] + r.gap_window_min * 60.0
        if st.wake < ctx.watermark:  # its window already closed (a late transaction)
            alerts.extend(self._judge_due(st, ctx, final=False).alerts)
        return Step(st, alerts)

    # ------------------------------------------------------------------ judging
    def on_timer(self, st: VehicleState, key: str, ctx: Ctx) -> Step[VehicleState]:
        return self._judge_due(st, ctx, final=False)

    def on_flush(self, st: VehicleState, key: str, ctx: Ctx) -> Step[VehicleState]:
        if not st.pending:
            return Step(st)
        return self._judge_due(st, ctx, final=True)

    def _judge_due(self, st: VehicleState, ctx: Ctx, final: bool) -> Step[VehicleState]:
        r = self._rules(st, ctx)
        gap = r.gap_window_min * 60.0
        alerts: list[Alert] = []
        while st.pending and (final or st.pending[0]["t"] + gap <= ctx.watermark):
            ev = st.pending.pop(0)
            alerts.extend(self._judge(st, ev, r, ctx))
        st.wake = st.pending[0]["t"] + gap if st.pending else None
        self._evict(st, ctx)
        return Step(st, alerts)

    def _window(self, st: VehicleState, t: float, half: float) -> tuple[int, int]:
        return bisect.bisect_left(st.t, t - half), bisect.bisect_right(st.t, t + half)

    def _judge(self, st: VehicleState, ev: dict[str, Any], r: FuelRules, ctx: Ctx) -> list[Alert]:
        alerts: list[Alert] = []
        t = ev["t"]
        vid = st.vid
        veh = ctx.ref.vehicles.get(vid)
        unit = veh.unit_id if veh else None
        txn = ev["txn_id"]
        slat, slon = to_wgs84(ev["station_lat"], ev["station_lon"], ev.get("station_coord") or "wgs84")
        g0, g1 = self._window(st, t, r.gap_window_min * 60.0)
        has_track = g1 > g0
        cum_here = float("nan")
        if not has_track:
            if ctx.rules.enabled("fuel.gps_gap"):
                alerts.append(self._gap_alert(st, ev, r, ctx, unit))
        else:
            p0, p1 = self._window(st, t, r.position_window_min * 60.0)
            if p1 > p0:
                lat, lon, cum_here = self._position(st, p0, p1, t)
                dist = haversine_m(lat, lon, slat, slon)
                if dist > r.station_radius_m and ctx.rules.enabled("fuel.not_at_station"):
                    alerts.append(self._not_at_station(st, ev, r, ctx, unit, p0, p1, lat, lon,
                                                       slat, slon, dist))
            else:
                cum_here = self._cum_at(st, t)
        if veh is not None and ctx.rules.enabled("fuel.over_capacity"):
            alerts.extend(self._capacity(st, ev, veh.tank_liters, r, ctx, unit))
        if ctx.rules.enabled("fuel.no_distance"):
            nd = self._no_distance(st, ev, r, ctx, unit, cum_here, has_track)
            if nd is not None:
                alerts.append(nd)
        bisect.insort(st.fills, (t, txn, float(ev["liters"]), cum_here, has_track))
        return alerts

    def _position(self, st: VehicleState, p0: int, p1: int, t: float):
        """Position (and running distance) at ``t`` from the pings ``[p0, p1)``."""
        tt = st.t
        d = st.d
        j = bisect.bisect_left(tt, t, p0, p1)
        if j < p1 and tt[j] == t:
            return d[j * STRIDE], d[j * STRIDE + 1], d[j * STRIDE + 2]
        if p0 < j < p1:  # pings on both sides: interpolate
            a, b = (j - 1) * STRIDE, j * STRIDE
            f = (t - tt[j - 1]) / (tt[j] - tt[j - 1])
            return (d[a] + f * (d[b] - d[a]), d[a + 1] + f * (d[b + 1] - d[a + 1]),
                    d[a + 2] + f * (d[b + 2] - d[a + 2]))
        k = (j - 1 if j == p1 else j) * STRIDE  # one side only: the nearest ping
        return d[k], d[k + 1], d[k + 2]

    def _cum_at(self, st: VehicleState, t: float) -> float:
        tt = st.t
        d = st.d
        if not tt:
            return float("nan")
        j = bisect.bisect_left(tt, t)
        if j == 0:
            return d[2]
        if j >= len(tt):
            return d[-3]
        f = (t - tt[j - 1]) / (tt[j] - tt[j - 1]) if tt[j] > tt[j - 1] else 0.0
        ca, cb = d[(j - 1) * STRIDE + 2], d[j * STRIDE + 2]
        return ca + f * (cb - ca)

    # ------------------------------------------------------------------ rules
    def _not_at_station(self, st, ev, r, ctx, unit, p0, p1, lat, lon, slat, slon, dist):
        lats = st.d[p0 * STRIDE:p1 * STRIDE:STRIDE]
        lons = st.d[p0 * STRIDE + 1:p1 * STRIDE:STRIDE]
        spread = haversine_m(min(lats), min(lons), max(lats), max(lons))
        parked = spread < r.parked_move_m
        veh = ctx.ref.vehicles.get(st.vid)
        at_depot = False
        if parked and veh is not None and veh.depot is not None:
            at_depot = haversine_m(lat, lon, veh.depot.lat, veh.depot.lon) <= veh.depot.radius_m
        before = [x for x in st.t[p0:p1] if x <= ev["t"]]
        after = [x for x in st.t[p0:p1] if x >= ev["t"]]
        dz, de = _dist_text(dist)
        if at_depot:
            sz, se = "车辆停放在单位大院", "the car was parked in its unit compound"
        elif parked:
            sz, se = "车辆处于停放状态", "the car was parked"
        else:
            sz, se = "车辆正在别处行驶", "the car was driving elsewhere"
        title = (f"加油时车辆不在加油站：距加油站 {dz}，{sz}",
                 f"Car not at the station when fuel was bought: {de} away, {se}")
        evidence = {
            "distance_m": round(dist),
            "vehicle_state": "parked" if parked else "moving",
            "at_depot": at_depot,
            "station_id": ev["station_id"],
            "station_name": ev.get("station_name", ""),
            "station": {"lat": round(slat, 6), "lon": round(slon, 6),
                        "coord_given": ev.get("station_coord") or "wgs84",
                        "lat_given": ev["station_lat"], "lon_given": ev["station_lon"]},
            "vehicle_position": {"lat": round(lat, 6), "lon": round(lon, 6)},
            "movement_m": round(spread),
            "pings_in_window": p1 - p0,
            "ping_before": ctx.ts(before[-1]) if before else None,
            "ping_after": ctx.ts(after[0]) if after else None,
            "liters": ev["liters"],
            "card_id": ev["card_id"],
        }
        return ctx.alert("fuel.not_at_station", "red", "vehicle", st.vid, [ev["txn_id"]],
                         ev["t"], title, evidence, [ev["txn_id"]], unit_id=unit)

    def _gap_alert(self, st, ev, r, ctx, unit):
        tt = st.t
        j = bisect.bisect_left(tt, ev["t"])
        prev_t = tt[j - 1] if j > 0 else None
        # a ping after the window is not known in every delivery order when the
        # window closes (it is in replay's only if it came first): not evidence
        next_t = tt[j] if j < len(tt) and tt[j] <= ev["t"] + r.gap_window_min * 60.0 else None
        title = (f"加油前后 {r.gap_window_min:g} 分钟内无定位：定位设备疑似关闭"
                 f"（{ev.get('station_name') or ev['station_id']}，{ev['liters']:g} 升）",
                 f"No GPS ping within ±{r.gap_window_min:g} min of a fuel purchase: "
                 f"tracker apparently off ({ev['liters']:g} L at {ev['station_id']})")
        evidence = {
            "window_min": r.gap_window_min,
            "last_ping_before": ctx.ts(prev_t) if prev_t is not None else None,
            "first_ping_after": ctx.ts(next_t) if next_t is not None else None,
            "gap_min": round((next_t - prev_t) / 60.0, 1)
            if prev_t is not None and next_t is not None else None,
            "station_id": ev["station_id"],
            "liters": ev["liters"],
            "card_id": ev["card_id"],
        }
        return ctx.alert("fuel.gps_gap", "yellow", "vehicle", st.vid, [ev["txn_id"]], ev["t"],
                         title, evidence, [ev["txn_id"]], unit_id=unit)

    def _capacity(self, st, ev, tank, r, ctx, unit) -> list[Alert]:
        cap = tank * r.capacity_factor
        win = r.capacity_window_h * 3600.0
        t = ev["t"]
        lo = bisect.bisect_left(st.fills, (t - win,))
        group = [(f[0], f[1], f[2]) for f in st.fills[lo:] if f[0] <= t]
        group.append((t, ev["txn_id"], float(ev["liters"])))
        total = sum(g[2] for g in group)
        if total <= cap + 1e-9:
            return []
        ids = [g[1] for g in group]
        ep = next((e for e in st.episodes if set(e["txns"]) & set(ids)), None)
        if ep is None:
            ep = {"anchor": ids[0], "txns": [], "liters": {}, "first_t": group[0][0],
                  "last_t": t, "version": 0, "max_total": 0.0}
            st.episodes.append(ep)
        for g in group:
            if g[1] not in ep["liters"]:
                ep["txns"].append(g[1])
                ep["liters"][g[1]] = g[2]
        ep["last_t"] = max(ep["last_t"], t)
        ep["max_total"] = max(ep["max_total"], total)
        ep["version"] += 1
        n = len(ep["txns"])
        if n == 1:
            title = (f"单笔加油 {total:.1f} 升，超过油箱容量 {tank:g} 升",
                     f"One fill of {total:.1f} L exceeds the {tank:g} L tank")
        else:
            hours = r.capacity_window_h
            title = (f"加油量超过油箱容量：{hours:g} 小时内 {len(group)} 笔共 {total:.1f} 升，"
                     f"油箱 {tank:g} 升",
                     f"Fills exceed the tank: {len(group)} fills of {total:.1f} L within "
                     f"{hours:g} h, tank {tank:g} L")
        evidence = {
            "tank_liters": tank,
            "limit_liters": round(cap, 2),
            "window_liters": round(total, 2),
            "max_window_liters": round(ep["max_total"], 2),
            "window_h": r.capacity_window_h,
            "fills": [{"txn_id": k, "liters": v} for k, v in ep["liters"].items()],
        }
        return [ctx.alert("fuel.over_capacity", "red", "vehicle", st.vid, [ep["anchor"]],
                          ep["first_t"], title, evidence, list(ep["txns"]), unit_id=unit,
                          version=ep["version"])]

    def _no_distance(self, st, ev, r, ctx, unit, cum_here, has_track) -> Alert | None:
        liters = float(ev["liters"])
        if liters <= r.min_liters or not has_track or cum_here != cum_here:
            return None
        t = ev["t"]
        k = bisect.bisect_left(st.fills, (t,))
        if k == 0:
            return None
        pt, ptxn, pl, pcum, ptrack = st.fills[k - 1]
        if not ptrack:
            return None  # the tracker was off at the previous fill: distance unknown
        if st.t and st.t[0] <= pt:
            pcum = self._cum_at(st, pt)
        if pcum != pcum:
            return None
        km = (cum_here - pcum) / 1000.0
        if km >= r.min_distance_km:
            return None
        title = (f"两次加油间行驶不足 {r.min_distance_km:g} 公里：仅行驶 {km:.1f} 公里却加油 {liters:g} 升",
                 f"Less than {r.min_distance_km:g} km driven since the last fill: "
                 f"{km:.1f} km, yet {liters:g} L bought")
        evidence = {
            "distance_km": round(km, 2),
            "liters": liters,
            "previous_txn_id": ptxn,
            "previous_fill_at": ctx.ts(pt),
            "previous_liters": pl,
            "hours_since_previous": round((t - pt) / 3600.0, 1),
        }
        return ctx.alert("fuel.no_distance", "yellow", "vehicle", st.vid, [ev["txn_id"]], t,
                         title, evidence, [ev["txn_id"]], unit_id=unit)

    def _type_mismatch(self, st, ev, ctx) -> Alert | None:
        if not ctx.rules.enabled("fuel.type_mismatch"):
            return None
        veh = ctx.ref.vehicles.get(st.vid)
        got = ev.get("fuel_type")
        if veh is None or got is None or got == veh.fuel_type:
            return None
        want_z, want_e = _fuel_name(veh.fuel_type)
        got_z, got_e = _fuel_name(got)
        title = (f"油品与车辆不符：车辆用{want_z}，本次加注{got_z}",
                 f"Fuel type does not match the car: the car takes {want_e}, {got_e} was bought")
        evidence = {"vehicle_fuel_type": veh.fuel_type, "fuel_type": got,
                    "liters": ev["liters"], "station_id": ev["station_id"],
                    "card_id": ev["card_id"]}
        return ctx.alert("fuel.type_mismatch", "yellow", "vehicle", st.vid, [ev["txn_id"]],
                         ev["t"], title, evidence, [ev["txn_id"]], unit_id=veh.unit_id)
