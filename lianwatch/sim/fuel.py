"""Vehicles day by day: trips, fuel stops, GPS pings, fuel-card transactions.

Every fill the generator makes on purpose is checked against the ping
geometry right after the day is rendered (``_check``), so a label can only
be written for an incident whose geometry really is what the label says.

Margins kept by construction (detector thresholds in brackets):

* a normal fill: the car stops at the station's true WGS-84 position from at
  least 10.5 min before to 10.5 min after the purchase, pinging every 60–120 s
  within 15 m of it [500 m]; it drove >= 45 km by GPS since its previous fill
  (or since the start of the data) [10 km]; 25–45 L and <= 0.85 × tank
  [1.05 × tank]; >= 20 h after the vehicle's previous fill, and >= ~11 h
  around any injected fill, except the designed groups [6 h].
* not_at_station: the interpolated position is >= 3 km away (every planned
  position within ±11 min is); gps_gap: no ping from >= 45 min before to >= 45
  min after; no_distance: < 6 km driven since a fill the day before, 30–45 L.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

import numpy as np
import orjson

from .county import Station, Vehicle, World
from .geom import dist_arr, haversine_m
from .tracks import STOP, Track, gps_lines, render
from .writer import DAY, Clock, EventWriter

H = 3600.0
MIN = 60.0
PRICE = {"92": 7.62, "95": 8.13, "0": 7.31}
WRONG_TYPE = {"92": "0", "95": "0", "0": "92"}

# incident kinds -> (rule, level)
FUEL_RULES = {
    "na_parked": ("fuel.not_at_station", "red"),
    "na_moving": ("fuel.not_at_station", "red"),
    "gap": ("fuel.gps_gap", "yellow"),
    "oc_single": ("fuel.over_capacity", "red"),
    "oc_group": ("fuel.over_capacity", "red"),
    "nd_hop": ("fuel.no_distance", "yellow"),
    "tm": ("fuel.type_mismatch", "yellow"),
}


@dataclass
class Fill:
    tp: int
    station: Station
    liters: float
    ftype: str
    kind: str  # normal | incident kind | look-alike kind
    group: str | None = None
    note: str = ""
    txn_id: str = ""
    km_before: float = 0.0  # planned km since the previous fill (filled in by _check)
    gap: tuple[float, float] | None = None  # tracker outage around this fill


@dataclass
class VState:
    v: Vehicle
    idx: int
    odo: float
    last_fill_t: float | None
    last_fill_odo: float
    trigger: float
    cum_w: list[float] = field(default_factory=list)  # cumulative village weights


class FuelDesk:
    """Turns fills into card transactions and writes them in delivery order."""

    def __init__(self, writer: EventWriter, clock: Clock, rng: random.Random):
        self.w = writer
        self.clock = clock
        self.rng = rng
        self.heap: list[tuple[float, int, bytes]] = []
        self.seq: dict[int, int] = {}
        self.n = 0
        self.max_delay = 0.0
        self.late = 0

    def add(self, vs: VState, f: Fill) -> str:
        rng = self.rng
        day = f.tp // DAY
        s = self.seq.get(day, 0) + 1
        self.seq[day] = s
        txn = "T" + self.clock.date_str(day).replace("-", "") + f"-{s:06d}"
        v = vs.v
        rec: dict = {"txn_id": txn, "card_id": rng.choice(v.cards)}
        if rng.random() >= 0.15:
            rec["vehicle_id"] = v.vehicle_id
        rec["ts"] = self.clock.naive(f.tp) if rng.random() < 0.8 else self.clock.rfc(f.tp)
        st = f.station
        rec["station_id"] = st.station_id
        rec["station_name"] = st.name
        rec["station_lat"] = st.raw_lat
        rec["station_lon"] = st.raw_lon
        if st.emit_coord:
            rec["station_coord"] = st.coord
        rec["liters"] = f.liters
        rec["amount_yuan"] = round(f.liters * (PRICE[f.ftype] + st.price_delta), 2)
        rec["fuel_type"] = f.ftype
        r = rng.random()
        if r < 0.80:
            delay = rng.uniform(40, 20 * MIN)
        elif r < 0.85:
            delay = rng.uniform(20 * MIN, 2 * H)
        else:
            delay = rng.uniform(2 * H, 29.5 * H)
            self.late += 1
        self.max_delay = max(self.max_delay, delay)
        self.n += 1
        self.w.note_time(f.tp, f.tp)
        heapq.heappush(self.heap, (f.tp + delay, self.n, orjson.dumps(rec)))
        f.txn_id = txn
        return txn

    def flush(self, upto: float | None = None) -> None:
        out = []
        while self.heap and (upto is None or self.heap[0][0] < upto):
            out.append(heapq.heappop(self.heap)[2])
        self.w.write_lines(out)


class Fleet:
    def __init__(
        self,
        world: World,
        clock: Clock,
        gps: EventWriter,
        desk: FuelDesk,
        labels: list[dict],
        lookalikes: list[dict],
    ):
        cfg = world.cfg
        self.world = world
        self.cfg = cfg
        self.clock = clock
        self.gps = gps
        self.desk = desk
        self.labels = labels
        self.lookalikes = lookalikes
        self.rng = random.Random(f"{cfg.seed}:fleet")
        self.nrng = np.random.default_rng([cfg.seed, 11])
        self.states: list[VState] = []
        for i, v in enumerate(world.vehicles):
            d = dist_arr(v.spot_lat, v.spot_lon, world.vl_lat, world.vl_lon)
            w = 1.0 / (1.0 + (d / 9000.0) ** 2)
            self.states.append(
                VState(
                    v=v,
                    idx=i,
                    odo=v.odo0,
                    last_fill_t=None,
                    last_fill_odo=v.odo0,  # GPS distance is counted from the start of the data
                    trigger=self.rng.uniform(60, 200),
                    cum_w=list(np.cumsum(w)),
                )
            )
        self.specials: dict[tuple[int, int], tuple[str, dict]] = {}
        # long-trip destinations: villages first, then the unit compounds (always 36 of them)
        self.dest_lat = np.concatenate([world.vl_lat, [u.lat for u in world.units]])
        self.dest_lon = np.concatenate([world.vl_lon, [u.lon for u in world.units]])
        self.la_counts: dict[str, int] = {}
        self.utc_left = 40
        self._schedule()

    # ------------------------------------------------------------------ scheduling
    def _schedule(self) -> None:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:fuel-schedule")
        k = max(3, round(cfg.vehicles * cfg.days / 230))
        half = max(2, math.ceil(k / 2))
        lk = max(2, k // 2)
        plan = (
            [("na_parked", half), ("na_moving", half), ("gap", k), ("oc_single", half), ("oc_group", half)]
            + [("nd", k), ("tm", k), ("lk_b2b", lk), ("lk_big8h", lk), ("lk_nd_small", lk)]
        )
        busy: dict[int, set[int]] = {}
        for kind, n in plan:
            placed = 0
            tries = 0
            while placed < n and tries < 400:
                tries += 1
                vi = rng.randrange(cfg.vehicles)
                v = self.world.vehicles[vi]
                span = 2 if kind in ("nd", "lk_nd_small") else 1
                if span == 2 and v.near_station is None:
                    continue
                if cfg.days < span:
                    break
                d = rng.randrange(0, cfg.days - span + 1)
                days = set(range(d - 1, d + span + 1))
                if busy.get(vi, set()) & days:
                    continue
                busy.setdefault(vi, set()).update(days)
                g = f"{kind}:{vi}:{d}"
                if span == 2:
                    self.specials[(vi, d)] = ("nd_prep", {"g": g})
                    self.specials[(vi, d + 1)] = ("nd_hop" if kind == "nd" else "lk_nd_small", {"g": g})
                else:
                    opts: dict = {"g": g}
                    if kind == "oc_group":
                        opts["n"] = 3 if placed % 2 == 0 else 2
                    self.specials[(vi, d)] = (kind, opts)
                placed += 1

    # ------------------------------------------------------------------ helpers
    def _village_pick(self, vs: VState):
        vil = self.rng.choices(self.world.villages, cum_weights=vs.cum_w)[0]
        return vil

    def _far_village(self, tr: Track, lo: float = 6000, hi: float = 20000):
        """A destination lo..hi metres away: a village, or (few villages) a unit compound."""
        w = self.world
        d = dist_arr(tr.lat, tr.lon, self.dest_lat, self.dest_lon)
        ok = np.nonzero((d >= lo) & (d <= hi))[0]
        if len(ok) == 0:
            ok = np.argsort(d)[-3:]
        i = int(ok[self.rng.randrange(len(ok))])
        return w.villages[i] if i < len(w.villages) else w.units[i - len(w.villages)]

    def _ensure_km(self, tr: Track, base_odo: float, target: float, dwell=(15, 45)) -> None:
        n = 0
        while tr.odo - base_odo < target and n < 12:
            vil = self._far_village(tr)
            tr.drive(vil.lat, vil.lon, self.rng)
            tr.stay(tr.t + self.rng.uniform(*dwell) * MIN)
            n += 1

    def _detour_station(self, tr: Track, to_lat: float, to_lon: float, exclude=()) -> Station:
        w = self.world
        d1 = dist_arr(tr.lat, tr.lon, w.st_lat, w.st_lon)
        d2 = dist_arr(to_lat, to_lon, w.st_lat, w.st_lon)
        cost = d1 + d2
        for i in exclude:
            cost[i] = np.inf
        best = np.argsort(cost)[:3]
        return w.stations[int(best[self.rng.randrange(len(best))])]

    def _stop(
        self,
        tr: Track,
        st: Station,
        liters: float,
        ftype: str,
        kind: str,
        speed: float | None = None,
        tp_not_before: float | None = None,
    ) -> Fill:
        tr.drive(st.lat, st.lon, self.rng, speed)
        tp = tr.t + self.rng.uniform(630, 760)
        if tp_not_before is not None and tp < tp_not_before:
            tp = tp_not_before + self.rng.uniform(0, 120)
        tp = int(math.ceil(tp))
        tr.stay(tp + self.rng.uniform(630, 780), STOP)
        return Fill(tp, st, round(liters, 2), ftype, kind)

    def _home(self, tr: Track, vs: VState) -> None:
        tr.drive(vs.v.spot_lat, vs.v.spot_lon, self.rng)

    def _normal_liters(self, v: Vehicle) -> float:
        return self.rng.uniform(25, min(45, 0.85 * v.tank))

    # ------------------------------------------------------------------ day plans
    def _plan_normal(self, tr: Track, vs: VState, d: int, fills: list[Fill]) -> None:
        rng = self.rng
        t0 = d * DAY
        working = self.clock.date_of(d).weekday() < 5
        if rng.random() >= (vs.v.p_work if working else 0.08):
            return
        want = tr.odo - vs.last_fill_odo >= vs.trigger and (
            vs.last_fill_t is None or t0 + 7 * H - vs.last_fill_t >= 20 * H
        )
        tr.stay(t0 + rng.uniform(7.6, 9.4) * H)
        trips = 2 if rng.random() < 0.7 else 1
        for trip in range(trips):
            if trip == 1:
                if tr.t > t0 + 14.5 * H:
                    break
                tr.stay(max(tr.t + 20 * MIN, t0 + rng.uniform(13.4, 14.6) * H))
            for _ in range(rng.choice((1, 2, 2, 3, 3))):
                vil = self._village_pick(vs)
                tr.drive(vil.lat, vil.lon, rng)
                tr.stay(tr.t + rng.uniform(20, 90) * MIN)
                if tr.t > t0 + 17.5 * H:
                    break
            if want and not fills:
                st = self._detour_station(tr, vs.v.spot_lat, vs.v.spot_lon)
                fills.append(self._stop(tr, st, self._normal_liters(vs.v), vs.v.fuel_type, "normal"))
            self._home(tr, vs)

    def _plan_special(self, tr: Track, vs: VState, d: int, kind: str, opts: dict, fills, gaps) -> None:
        rng = self.rng
        w = self.world
        v = vs.v
        t0 = d * DAY
        g = opts["g"]
        home = (v.spot_lat, v.spot_lon)
        if kind == "na_parked":
            tp = int(t0 + rng.uniform(11, 20.5) * H)
            dd = dist_arr(v.spot_lat, v.spot_lon, w.st_lat, w.st_lon)
            ok = np.nonzero((dd >= 3000) & (dd <= 15000))[0]
            si = int(ok[rng.randrange(len(ok))]) if len(ok) else int(np.argmax(dd))
            km = tr.odo - vs.last_fill_odo
            lit = rng.uniform(28, min(42, 0.85 * v.tank)) if km >= 45 else rng.uniform(12, 18)
            f = Fill(tp, w.stations[si], round(lit, 2), v.fuel_type, kind, g)
            f.note = f"car parked in its compound; card used at a station {dd[si] / 1000:.1f} km away"
            fills.append(f)
            return
        if kind == "na_moving":
            tr.stay(t0 + rng.uniform(8.0, 9.5) * H)
            vil = self._far_village(tr, 12000, 30000)
            tr.drive(vil.lat, vil.lon, rng, speed=rng.uniform(35, 45))
            a, b, _ = tr.drive_legs()[-1]
            tr.stay(tr.t + rng.uniform(40, 90) * MIN)
            vil2 = self._village_pick(vs)
            tr.drive(vil2.lat, vil2.lon, rng)
            tr.stay(tr.t + rng.uniform(20, 60) * MIN)
            self._home(tr, vs)
            tp = int(a + (b - a) * rng.uniform(0.4, 0.6))
            win = np.arange(tp - 660, tp + 661, 30.0)
            plat, plon = tr.pos_at(win)
            best = []
            for st in w.stations:
                dmin = float(np.min(dist_arr(st.lat, st.lon, plat, plon)))
                if dmin >= 3000:
                    dtp = haversine_m(st.lat, st.lon, *map(float, tr.pos_at(tp)))
                    if dtp <= 20000:
                        best.append((st, dtp))
            if not best:
                raise RuntimeError("no station far enough for na_moving")
            st, dtp = best[rng.randrange(len(best))]
            km = tr.odo_at(tp) - vs.last_fill_odo
            lit = rng.uniform(25, min(40, 0.85 * v.tank)) if km >= 45 else rng.uniform(12, 18)
            f = Fill(tp, st, round(lit, 2), v.fuel_type, kind, g)
            f.note = f"car driving elsewhere; card used at a station {dtp / 1000:.1f} km away"
            fills.append(f)
            return
        if kind in ("gap", "oc_single", "tm"):
            tr.stay(t0 + rng.uniform(7.5, 8.6) * H)
            self._ensure_km(tr, vs.last_fill_odo, 55)
            if kind == "gap":
                tr.stay(tr.t + rng.uniform(70, 90) * MIN)  # visible, parked at the last village
            st = self._detour_station(tr, *home)
            if kind == "oc_single":
                lit = v.tank * rng.uniform(1.3, 1.6)
                f = self._stop(tr, st, lit, v.fuel_type, kind)
                f.note = f"single fill {lit:.1f} L into a {v.tank} L tank"
            elif kind == "tm":
                f = self._stop(tr, st, self._normal_liters(v), WRONG_TYPE[v.fuel_type], kind)
                f.note = f"fuel type {f.ftype} into a {v.fuel_type} vehicle"
            else:
                f = self._stop(tr, st, rng.uniform(25, min(40, 0.85 * v.tank)), v.fuel_type, kind)
                g0 = f.tp - rng.uniform(45, 60) * MIN
                g1 = f.tp + rng.uniform(45, 60) * MIN
                gaps.append((g0, g1))
                f.gap = (g0, g1)
                f.note = f"tracker silent {(g1 - g0) / 60:.0f} min around the purchase"
            f.group = g
            fills.append(f)
            self._home(tr, vs)
            return
        if kind == "oc_group":
            tr.stay(t0 + rng.uniform(7.6, 8.5) * H)
            self._ensure_km(tr, vs.last_fill_odo, 55, dwell=(15, 30))
            n = opts.get("n", 2)
            frac = (0.45, 0.55) if n == 3 else (0.66, 0.8)
            st = self._detour_station(tr, *home)
            used = [st.idx]
            group = [self._stop(tr, st, v.tank * rng.uniform(*frac), v.fuel_type, kind)]
            for _ in range(n - 1):
                dd = dist_arr(st.lat, st.lon, w.st_lat, w.st_lon)
                ok = [i for i in np.nonzero((dd >= 15000) & (dd <= 26000))[0] if i not in used]
                if not ok:
                    ok = [i for i in np.argsort(dd)[::-1][:3] if i not in used]
                st = w.stations[int(ok[rng.randrange(len(ok))])]
                used.append(st.idx)
                lit = v.tank * rng.uniform(*frac)
                group.append(self._stop(tr, st, lit, v.fuel_type, kind, speed=rng.uniform(50, 60)))
            total = sum(f.liters for f in group)
            for f in group:
                f.group = g
                span_h = (group[-1].tp - group[0].tp) / 3600
                f.note = f"{n} fills within {span_h:.1f} h: {total:.1f} L into a {v.tank} L tank"
            fills.extend(group)
            self._home(tr, vs)
            return
        if kind == "nd_prep":
            st = w.stations[v.near_station]  # type: ignore[index]
            tr.stay(t0 + rng.uniform(12.8, 13.8) * H)
            self._ensure_km(tr, vs.last_fill_odo, 55, dwell=(10, 30))
            f = self._stop(tr, st, self._normal_liters(v), v.fuel_type, "normal")
            fills.append(f)
            self._home(tr, vs)
            return
        if kind in ("nd_hop", "lk_nd_small"):
            st = w.stations[v.near_station]  # type: ignore[index]
            tr.stay(t0 + rng.uniform(7.8, 8.8) * H)
            lit = rng.uniform(30, min(45, 0.85 * v.tank)) if kind == "nd_hop" else rng.uniform(8, 15)
            f = self._stop(tr, st, lit, v.fuel_type, kind, speed=rng.uniform(25, 35))
            f.group = g
            fills.append(f)
            self._home(tr, vs)
            if rng.random() < 0.6:  # then an ordinary morning out
                vil = self._village_pick(vs)
                tr.drive(vil.lat, vil.lon, rng)
                tr.stay(tr.t + rng.uniform(30, 90) * MIN)
                self._home(tr, vs)
            return
        if kind == "lk_b2b":
            tr.stay(t0 + rng.uniform(7.6, 8.6) * H)
            self._ensure_km(tr, vs.last_fill_odo, 55, dwell=(15, 30))
            st1 = self._detour_station(tr, *home)
            f1 = self._stop(tr, st1, rng.uniform(20, 26), v.fuel_type, kind)
            vil = self._village_pick(vs)
            tr.drive(vil.lat, vil.lon, rng)
            tr.stay(tr.t + rng.uniform(20, 40) * MIN)
            st2 = self._detour_station(tr, *home, exclude=(st1.idx,))
            lit2 = min(rng.uniform(10, 16), 0.85 * v.tank - f1.liters)
            f2 = self._stop(tr, st2, lit2, v.fuel_type, kind)
            for f in (f1, f2):
                f.group = g
                both = f1.liters + f2.liters
                f.note = f"two fills {(f2.tp - f1.tp) / 3600:.1f} h apart, {both:.1f} L <= 0.85 x {v.tank} L"
            fills.extend([f1, f2])
            self._home(tr, vs)
            return
        if kind == "lk_big8h":
            tr.stay(t0 + rng.uniform(7.2, 7.6) * H)
            self._ensure_km(tr, vs.last_fill_odo, 55, dwell=(10, 20))
            st1 = self._detour_station(tr, *home)
            f1 = self._stop(tr, st1, v.tank * rng.uniform(0.75, 0.85), v.fuel_type, kind)
            self._ensure_km(tr, tr.odo, 55, dwell=(15, 40))
            st2 = self._detour_station(tr, *home, exclude=(st1.idx,))
            target = f1.tp + 8.5 * H
            est = haversine_m(tr.lat, tr.lon, st2.lat, st2.lon) * 1.25 / (35 / 3.6)
            tr.stay(target - 12 * MIN - est)  # wait at the village, not at the pump
            f2 = self._stop(tr, st2, v.tank * rng.uniform(0.75, 0.85), v.fuel_type, kind, tp_not_before=target)
            for f in (f1, f2):
                f.group = g
                f.note = f"two big fills {(f2.tp - f1.tp) / 3600:.1f} h apart (each <= 0.85 x tank)"
            fills.extend([f1, f2])
            self._home(tr, vs)
            return
        raise ValueError(kind)

    # ------------------------------------------------------------------ one day
    def run_day(self, d: int) -> None:
        table = self.clock.day_table(d)
        t0 = d * DAY
        for vs in self.states:
            v = vs.v
            tr = Track(t0, v.spot_lat, v.spot_lon, vs.odo)
            fills: list[Fill] = []
            gaps: list[tuple[float, float]] = []
            sp = self.specials.get((vs.idx, d))
            if sp is None:
                self._plan_normal(tr, vs, d, fills)
                if self.rng.random() < 0.04:  # tracker outage at night, nothing happening
                    g0 = t0 + self.rng.uniform(0.5, 4.5) * H
                    g1 = g0 + self.rng.uniform(10, 90) * MIN
                    gaps.append((g0, g1))
                    if self.la_counts.get("night_gap", 0) < max(3, self.cfg.vehicles // 15):
                        self._lookalike(
                            "fuel.gps_gap", v.vehicle_id, [],
                            f"tracker silent {self.clock.rfc(g0)} .. {self.clock.rfc(g1)}, no fuelling",
                            "night_gap",
                        )
            else:
                self._plan_special(tr, vs, d, sp[0], sp[1], fills, gaps)
            tr.stay(t0 + DAY)
            if tr.t > t0 + DAY + 1:
                raise RuntimeError(f"{v.vehicle_id} day {d} plan overruns midnight")
            r = render(tr, self.nrng, v.jitter_m, gaps)
            utc_idx = None
            if self.utc_left > 0 and self.rng.random() < 0.02:
                utc_idx = self.rng.randrange(len(r))
                self.utc_left -= 1
            self.gps.write_lines(gps_lines(v.vehicle_id, r, t0, table, v.basic, utc_idx, self.clock.utc))
            if len(r):
                self.gps.note_time(float(r.t[0]), float(r.t[-1]))
            fills.sort(key=lambda f: f.tp)
            for f in fills:
                self._check(vs, tr, r, f)
                self.desk.add(vs, f)
                idx = int(np.searchsorted(r.t, f.tp, side="right"))
                vs.last_fill_odo = float(r.odo[idx]) if idx < len(r) else tr.odo
                vs.last_fill_t = f.tp
            if fills:
                vs.trigger = self.rng.uniform(70, 220)
            self._record(vs, fills)
            vs.odo = tr.odo
        self.desk.flush((d + 1) * DAY)

    # ------------------------------------------------------------------ checks and labels
    def _check(self, vs: VState, tr: Track, r, f: Fill) -> None:
        st = f.station
        km = tr.odo_at(f.tp) - vs.last_fill_odo
        f.km_before = km
        m10 = (r.t >= f.tp - 600) & (r.t <= f.tp + 600)
        if f.kind == "gap":
            assert not ((r.t >= f.tp - 2400) & (r.t <= f.tp + 2400)).any(), "gap fill has pings"
            # driving seen by GPS before the gap: everything up to the gap start
            assert f.gap is not None and f.gap[0] <= f.tp - 2700 and f.gap[1] >= f.tp + 2700
            assert tr.odo_at(f.gap[0]) - vs.last_fill_odo >= 45, "gap fill: too little km seen by GPS"
            return
        assert m10.any(), f"{f.kind}: no pings within 10 min"
        dist = dist_arr(st.lat, st.lon, r.lat[m10], r.lon[m10])
        if f.kind in ("na_parked", "na_moving"):
            assert dist.min() >= 2500, f"{f.kind}: car too near the station"
            assert f.liters <= 20 or km >= 45, f"{f.kind}: would also fire no_distance"
            return
        assert dist.max() <= 30, f"{f.kind}: a ping {dist.max():.0f} m from the station"
        assert ((r.t >= f.tp - 300) & (r.t < f.tp)).any() and ((r.t > f.tp) & (r.t <= f.tp + 300)).any()
        if f.kind == "nd_hop":
            assert 1.5 <= km <= 6, f"nd_hop drove {km:.1f} km"
        elif f.kind == "lk_nd_small":
            assert km <= 6 and f.liters <= 15
        elif f.liters > 20:
            assert km >= (12 if f.kind == "oc_group" else 45), f"{f.kind}: only {km:.1f} km since last fill"

    def _lookalike(self, rule: str, subject: str, ids: list[str], note: str, key: str) -> None:
        self.la_counts[key] = self.la_counts.get(key, 0) + 1
        self.lookalikes.append(
            {"rule": rule, "subject_id": subject, "source_event_ids": ids, "note": note, "kind": key}
        )

    def _record(self, vs: VState, fills: list[Fill]) -> None:
        vid = vs.v.vehicle_id
        groups: dict[str, list[Fill]] = {}
        for f in fills:
            if f.kind in FUEL_RULES:
                groups.setdefault(f.group or f.txn_id, []).append(f)
            elif f.kind == "lk_b2b":
                groups.setdefault(f.group, []).append(f)  # type: ignore[arg-type]
            elif f.kind == "lk_big8h":
                groups.setdefault(f.group, []).append(f)  # type: ignore[arg-type]
            elif f.kind == "lk_nd_small":
                self._lookalike(
                    "fuel.no_distance", vid, [f.txn_id],
                    f"short hop of {f.km_before:.1f} km but only {f.liters:.1f} L", "nd_small",
                )
            elif f.kind == "normal" and f.station.coord != "wgs84":
                key = "datum_" + f.station.coord
                if self.la_counts.get(key, 0) < max(3, self.cfg.vehicles // 12):
                    raw = haversine_m(f.station.lat, f.station.lon, f.station.raw_lat, f.station.raw_lon)
                    self._lookalike(
                        "fuel.not_at_station", vid, [f.txn_id],
                        f"station given in {f.station.coord}: raw coordinates {raw:.0f} m off, car at the pump",
                        key,
                    )
        for fs in groups.values():
            k = fs[0].kind
            ids = [f.txn_id for f in fs]
            if k == "lk_b2b":
                self._lookalike("fuel.over_capacity", vid, ids, fs[0].note, "b2b")
                continue
            if k == "lk_big8h":
                self._lookalike("fuel.over_capacity", vid, ids, fs[0].note, "big8h")
                continue
            rule, level = FUEL_RULES[k]
            note = fs[0].note
            if k == "nd_hop":
                note = f"drove {fs[0].km_before:.1f} km since the previous fill, then {fs[0].liters:.1f} L"
            self.labels.append(
                {
                    "rule": rule,
                    "level": level,
                    "subject_type": "vehicle",
                    "subject_id": vid,
                    "source_event_ids": ids,
                    "event_ts": self.clock.rfc(fs[0].tp),
                    "note": note,
                    "kind": k,
                }
            )
