"""The synthetic county: towns, units and their compounds, vehicles, fuel
stations, villages, officials and payees. Everything here is small reference
data held in memory; events are generated elsewhere and streamed to disk.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from lianwatch.models.geo import wgs84_to_bd09, wgs84_to_gcj02

from . import names
from .config import GenConfig
from .geom import dist_arr, polar

LAT_MIN, LAT_MAX, LON_MIN, LON_MAX = 30.005, 30.345, 120.105, 120.495
SEAT = (30.1650, 120.2680)  # district seat: where the bureaus' compounds are


def _clip(lat: float, lon: float) -> tuple[float, float]:
    return min(LAT_MAX, max(LAT_MIN, lat)), min(LON_MAX, max(LON_MIN, lon))


@dataclass
class Unit:
    unit_id: str
    name: str
    town: str
    lat: float
    lon: float


@dataclass
class Vehicle:
    vehicle_id: str
    plate: str
    unit: Unit
    tank: int
    fuel_type: str
    spot_lat: float  # its own parking spot inside the unit compound
    spot_lon: float
    cards: list[str]
    p_work: float  # probability of being used on a working day
    jitter_m: float  # parked GPS noise sigma
    basic: bool  # tracker reports neither ignition nor odometer
    odo0: float
    near_station: int | None = None  # index of a station 1.0–1.8 km from the spot

    def record(self) -> dict:
        return {
            "vehicle_id": self.vehicle_id,
            "plate": self.plate,
            "unit_id": self.unit.unit_id,
            "unit_name": self.unit.name,
            "tank_liters": self.tank,
            "fuel_type": self.fuel_type,
            "depot": {"lat": round(self.unit.lat, 6), "lon": round(self.unit.lon, 6), "radius_m": 150},
            "card_ids": list(self.cards),
        }


@dataclass
class Station:
    idx: int
    station_id: str
    name: str
    lat: float  # true WGS-84
    lon: float
    coord: str  # datum of the published coordinates
    raw_lat: float
    raw_lon: float
    emit_coord: bool  # False: station_coord omitted (contract default wgs84)
    price_delta: float


@dataclass
class Village:
    idx: int
    village_id: str
    name: str
    town: str
    lat: float
    lon: float
    threshold: int
    contacts: list[dict]
    scale: float  # spending scale of this village

    def record(self) -> dict:
        return {
            "village_id": self.village_id,
            "name": self.name,
            "town": self.town,
            "county": names.COUNTY,
            "approval_threshold_yuan": self.threshold,
            "contacts": self.contacts,
        }


@dataclass
class Official:
    person_id: str
    name: str
    village_id: str
    role: str
    related: list[str] = field(default_factory=list)

    def record(self) -> dict:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "village_id": self.village_id,
            "role": self.role,
            "related_payee_ids": list(self.related),
        }


@dataclass
class Payee:
    payee_id: str
    name: str
    category: str  # main business category
    company: bool


@dataclass
class World:
    cfg: GenConfig
    units: list[Unit]
    vehicles: list[Vehicle]
    stations: list[Station]
    villages: list[Village]
    officials: list[Official]
    town_companies: dict[str, list[Payee]]  # small suppliers per town (normal flow)
    town_contractors: dict[str, list[Payee]]  # big approved engineering payments only
    village_persons: list[list[Payee]]
    related_of_village: list[set[str]]  # payee ids related to each village's officials
    related_all: set[str]
    st_lat: np.ndarray = None  # type: ignore[assignment]
    st_lon: np.ndarray = None  # type: ignore[assignment]
    vl_lat: np.ndarray = None  # type: ignore[assignment]
    vl_lon: np.ndarray = None  # type: ignore[assignment]
    _rng: random.Random = None  # type: ignore[assignment]
    _used_names: set[str] = field(default_factory=set)
    _used_ids: set[str] = field(default_factory=set)
    _person_seq: int = 0

    def new_company(self, town: str, category: str | None = None) -> Payee:
        """A company that appears nowhere else (for injected incidents)."""
        rng = self._rng
        while True:
            name, cat = names.company_name(rng, town, self._used_names)
            if category is None or cat == category or rng.random() < 0.3:
                break
        while True:
            pid = names.uscc(rng)
            if pid not in self._used_ids:
                self._used_ids.add(pid)
                return Payee(pid, name, category or cat, True)

    def new_person(self, village: Village) -> Payee:
        self._person_seq += 1
        return Payee(f"PSN-{village.village_id}-N{self._person_seq:04d}", names.person_name(self._rng), "labor", False)


def build_world(cfg: GenConfig) -> World:
    rng = random.Random(f"{cfg.seed}:world")
    used_names: set[str] = set()
    used_ids: set[str] = set()

    towns = names.TOWNS
    town_pos = {t: (la, lo) for t, la, lo in towns}

    # -- units and their compounds -------------------------------------------------
    units: list[Unit] = []
    for b in names.BUREAUS:
        la, lo = polar(SEAT[0], SEAT[1], rng.uniform(200, 2600), rng.uniform(0, 2 * math.pi))
        units.append(Unit(f"U{len(units) + 1:02d}", b, "城厢街道", la, lo))
    for t, la, lo in towns:
        la2, lo2 = polar(la, lo, rng.uniform(50, 500), rng.uniform(0, 2 * math.pi))
        suffix = "人民政府" if t.endswith("镇") else "办事处"
        units.append(Unit(f"U{len(units) + 1:02d}", t + suffix, t, la2, lo2))
    bureau_units = units[: len(names.BUREAUS)]
    town_units = units[len(names.BUREAUS):]

    # -- vehicles --------------------------------------------------------------------
    vehicles: list[Vehicle] = []
    plates: set[str] = set()
    card_no = 0
    for i in range(cfg.vehicles):
        unit = rng.choice(bureau_units) if rng.random() < 0.55 else rng.choice(town_units)
        r = rng.random()
        if r < 0.14:
            ftype, tank = "0", rng.choice([65, 70, 75, 80])
        elif r < 0.30:
            ftype, tank = "95", rng.choice([55, 60, 65, 70])
        else:
            ftype, tank = "92", rng.choice([50, 55, 60, 65, 70])
        cards = []
        for _ in range(2 if rng.random() < 0.3 else 1):
            card_no += 1
            cards.append(f"C{card_no:04d}")
        sl, so = polar(unit.lat, unit.lon, rng.uniform(5, 60), rng.uniform(0, 2 * math.pi))
        vehicles.append(
            Vehicle(
                vehicle_id=f"V{i + 1:04d}",
                plate=names.plate(rng, plates),
                unit=unit,
                tank=tank,
                fuel_type=ftype,
                spot_lat=sl,
                spot_lon=so,
                cards=cards,
                p_work=rng.uniform(0.6, 0.92),
                jitter_m=rng.uniform(5.0, 8.0),
                basic=rng.random() < 0.08,
                odo0=round(rng.uniform(12000, 160000), 1),
            )
        )

    # -- fuel stations ------------------------------------------------------------------
    st_pos: list[tuple[float, float, str]] = []
    u_lat = np.array([u.lat for u in units])
    u_lon = np.array([u.lon for u in units])
    for t, la, lo in towns:
        for _ in range(2):
            for _try in range(20):  # not inside or next to a unit compound
                p = _clip(*polar(la, lo, rng.uniform(700, 3500), rng.uniform(0, 2 * math.pi)))
                if dist_arr(p[0], p[1], u_lat, u_lon).min() > 400:
                    break
            st_pos.append((p[0], p[1], t))
    depot_units = sorted({v.unit.unit_id for v in vehicles})
    unit_by_id = {u.unit_id: u for u in units}
    for uid in depot_units:
        u = unit_by_id[uid]
        if rng.random() < 0.6:
            for _try in range(20):
                p = _clip(*polar(u.lat, u.lon, rng.uniform(1150, 1650), rng.uniform(0, 2 * math.pi)))
                if dist_arr(p[0], p[1], u_lat, u_lon).min() > 400:
                    break
            st_pos.append((p[0], p[1], u.town))
    stations: list[Station] = []
    st_names: set[str] = set()
    for i, (la, lo, t) in enumerate(st_pos):
        k = i % 6
        coord = "gcj02" if k in (0, 3) else ("bd09" if k == 1 else "wgs84")
        if coord == "gcj02":
            rl, ro = wgs84_to_gcj02(la, lo)
        elif coord == "bd09":
            rl, ro = wgs84_to_bd09(la, lo)
        else:
            rl, ro = la, lo
        while True:
            nm = rng.choice(names.STATION_BRANDS) + t[:2] + rng.choice(
                ["", "东", "西", "南", "北", "城东", "城西", "湖", "桥", "新区", "工业园", "大道"]
            ) + "加油站"
            if nm not in st_names:
                st_names.add(nm)
                break
        stations.append(
            Station(
                idx=i,
                station_id=f"S{i + 1:03d}",
                name=nm,
                lat=la,
                lon=lo,
                coord=coord,
                raw_lat=round(rl, 6),
                raw_lon=round(ro, 6),
                emit_coord=coord != "wgs84" or i % 2 == 0,
                price_delta=rng.choice([-0.05, -0.03, 0.0, 0.0, 0.02, 0.04]),
            )
        )
    st_lat = np.array([s.lat for s in stations])
    st_lon = np.array([s.lon for s in stations])
    for v in vehicles:
        d = dist_arr(v.spot_lat, v.spot_lon, st_lat, st_lon)
        ok = np.nonzero((d >= 1000) & (d <= 1800))[0]
        if len(ok):
            v.near_station = int(ok[np.argmin(d[ok])])

    # -- villages ----------------------------------------------------------------------
    town_order = [t for t, _, _ in towns]
    rng.shuffle(town_order)
    vnames = names.village_names(rng, cfg.villages)
    villages: list[Village] = []
    for i in range(cfg.villages):
        t = town_order[i % len(town_order)]
        la, lo = _clip(*polar(*town_pos[t], rng.uniform(1500, 5000), rng.uniform(0, 2 * math.pi)))
        r = rng.random()
        thr = 50000 if r < 0.7 else (30000 if r < 0.85 else 100000)
        villages.append(
            Village(
                idx=i,
                village_id=f"VL{i + 1:03d}",
                name=vnames[i],
                town=t,
                lat=la,
                lon=lo,
                threshold=thr,
                contacts=[],
                scale=rng.uniform(0.6, 1.5),
            )
        )
    vl_lat = np.array([v.lat for v in villages])
    vl_lon = np.array([v.lon for v in villages])

    # -- payees --------------------------------------------------------------------------
    def company(town: str, want: str | None = None) -> Payee:
        for _ in range(50):
            nm, cat = names.company_name(rng, town, used_names)
            if want is None or cat == want:
                break
        while True:
            pid = names.uscc(rng)
            if pid not in used_ids:
                used_ids.add(pid)
                return Payee(pid, nm, cat, True)

    town_companies: dict[str, list[Payee]] = {}
    town_contractors: dict[str, list[Payee]] = {}
    for t in sorted({v.town for v in villages}):
        town_companies[t] = [company(t) for _ in range(12)]
        town_contractors[t] = [company(t, "engineering") for _ in range(3)]
    village_persons = [
        [Payee(f"PSN-{v.village_id}-{j + 1:03d}", names.person_name(rng), "labor", False) for j in range(15)]
        for v in villages
    ]

    # -- officials, contacts, related payees ---------------------------------------------
    officials: list[Official] = []
    related_of_village: list[set[str]] = [set() for _ in villages]
    town_discipline = {t: (names.person_name(rng), names.phone(rng)) for t in town_order}
    county_discipline = (names.person_name(rng), names.phone(rng))
    for v in villages:
        for role in ("secretary", "director", "accountant", "supervisor"):
            o = Official(f"P{len(officials) + 1:04d}", names.person_name(rng), v.village_id, role)
            if role != "supervisor" and rng.random() < 0.35:
                pool = town_companies[v.town]
                for c in rng.sample(pool, rng.randint(1, 2)):
                    o.related.append(c.payee_id)
            officials.append(o)
            if role in ("secretary", "director"):
                v.contacts.append({"role": role, "name": o.name, "phone": names.phone(rng)})
        # every village gets at least one tie, so conflict-of-interest can be injected anywhere
        if not any(o.related for o in officials[-4:]):
            c = rng.choice(town_companies[v.town])
            officials[-3].related.append(c.payee_id)  # the director
        for o in officials[-4:]:
            related_of_village[v.idx].update(o.related)
        td = town_discipline[v.town]
        v.contacts.append({"role": "town_discipline", "name": td[0], "phone": td[1]})
        v.contacts.append({"role": "county_discipline", "name": county_discipline[0], "phone": county_discipline[1]})
    related_all: set[str] = set().union(*related_of_village) if related_of_village else set()

    w = World(
        cfg=cfg,
        units=units,
        vehicles=vehicles,
        stations=stations,
        villages=villages,
        officials=officials,
        town_companies=town_companies,
        town_contractors=town_contractors,
        village_persons=village_persons,
        related_of_village=related_of_village,
        related_all=related_all,
    )
    w.st_lat, w.st_lon, w.vl_lat, w.vl_lon = st_lat, st_lon, vl_lat, vl_lon
    w._rng = random.Random(f"{cfg.seed}:world-extra")
    w._used_names = used_names
    w._used_ids = used_ids
    return w


__all__ = ["World", "build_world", "Vehicle", "Station", "Village", "Official", "Payee", "Unit"]
