"""Vehicle tracks: a day is planned as piecewise-linear motion, then rendered to pings.

Ping cadence (integer-second timestamps, strictly increasing per vehicle):

* ``DRIVE``  every 25–35 s, ignition true, speed = leg speed × 0.8–1.15,
  GPS noise σ 2 m; the first ping 2–15 s after departure.
* ``STOP``   (at a fuel station) every 60–120 s, speed 0, ignition false,
  noise σ 4 m (never more than ~15 m); the first ping 5–20 s after arrival.
* ``PARK``   every 180–300 s, speed 0, ignition false, noise σ = the vehicle's
  5–8 m, and about 2 % of the pings 18–22 m off.

Tracker gaps remove every ping inside ``[start, end)``.
"""

from __future__ import annotations

import math
import random

import numpy as np
import orjson

from .geom import M_PER_DEG_LAT, haversine_m, offset

PARK, DRIVE, STOP = 0, 1, 2

_CADENCE = {
    DRIVE: (25, 35, 2, 15),
    STOP: (60, 120, 5, 20),
    PARK: (180, 300, 5, 60),
}


class Track:
    """Motion of one vehicle during one local day, as keyframes and intervals."""

    __slots__ = ("kt", "klat", "klon", "kodo", "iv", "t", "lat", "lon", "odo")

    def __init__(self, t0: float, lat: float, lon: float, odo: float):
        self.kt = [t0]
        self.klat = [lat]
        self.klon = [lon]
        self.kodo = [odo]
        self.iv: list[tuple[float, float, int, float]] = []  # (start, end, mode, speed_kmh)
        self.t, self.lat, self.lon, self.odo = t0, lat, lon, odo

    def _key(self) -> None:
        self.kt.append(self.t)
        self.klat.append(self.lat)
        self.klon.append(self.lon)
        self.kodo.append(self.odo)

    def stay(self, until: float, mode: int = PARK) -> None:
        if until <= self.t + 1:
            return
        self.iv.append((self.t, until, mode, 0.0))
        self.t = until
        self._key()

    def drive(self, lat: float, lon: float, rng: random.Random, speed: float | None = None) -> float:
        """Drive along a straight-ish polyline to (lat, lon). Returns km driven."""
        dist = haversine_m(self.lat, self.lon, lat, lon)
        if dist < 1.0:
            return 0.0
        if speed is None:
            speed = rng.uniform(25, 40) if dist < 3000 else rng.uniform(32, 55)
        pts: list[tuple[float, float]] = []
        nwp = 0 if dist < 1500 else rng.randint(1, 3)
        if nwp:
            # waypoints offset perpendicular to the chord by a few per cent of its length
            dy = (lat - self.lat) * M_PER_DEG_LAT
            dx = (lon - self.lon) * M_PER_DEG_LAT * math.cos(math.radians(self.lat))
            ux, uy = -dy / dist, dx / dist
            for i in range(1, nwp + 1):
                f = i / (nwp + 1)
                side = max(-0.1, min(0.1, rng.gauss(0, 0.05))) * dist
                bl = self.lat + (lat - self.lat) * f
                bo = self.lon + (lon - self.lon) * f
                pts.append(offset(bl, bo, ux * side, uy * side))
        pts.append((lat, lon))
        v = speed / 3.6
        t_start = self.t
        km = 0.0
        for la, lo in pts:
            d = haversine_m(self.lat, self.lon, la, lo)
            self.t += d / v
            self.odo += d / 1000.0
            km += d / 1000.0
            self.lat, self.lon = la, lo
            self._key()
        self.iv.append((t_start, self.t, DRIVE, speed))
        return km

    # -- queries on the plan (no jitter) -------------------------------------------------
    def pos_at(self, t) -> tuple[np.ndarray, np.ndarray]:
        return np.interp(t, self.kt, self.klat), np.interp(t, self.kt, self.klon)

    def odo_at(self, t: float) -> float:
        return float(np.interp(t, self.kt, self.kodo))

    def drive_legs(self) -> list[tuple[float, float, float]]:
        return [(a, b, s) for a, b, m, s in self.iv if m == DRIVE]


class Rendered:
    __slots__ = ("t", "lat", "lon", "speed", "ign", "odo")

    def __init__(self, t, lat, lon, speed, ign, odo):
        self.t, self.lat, self.lon, self.speed, self.ign, self.odo = t, lat, lon, speed, ign, odo

    def __len__(self) -> int:
        return len(self.t)


def render(
    tr: Track,
    nrng: np.random.Generator,
    jitter_m: float,
    gaps: list[tuple[float, float]],
) -> Rendered:
    t_parts: list[np.ndarray] = []
    m_parts: list[np.ndarray] = []
    s_parts: list[np.ndarray] = []
    first_iv = True
    for a, b, mode, speed in tr.iv:
        lo, hi, f0, f1 = _CADENCE[mode]
        if first_iv and mode == PARK:
            f0, f1 = 0, 240
        first_iv = False
        start = math.ceil(a) + int(nrng.integers(f0, f1 + 1))
        if start >= b:
            continue
        n = int((b - start) // lo) + 2
        steps = nrng.integers(lo, hi + 1, n)
        steps[0] = 0
        t = start + np.cumsum(steps)
        t = t[t < b]
        t_parts.append(t)
        m_parts.append(np.full(len(t), mode, dtype=np.int8))
        if mode == DRIVE:
            s_parts.append(speed * nrng.uniform(0.8, 1.15, len(t)))
        else:
            s_parts.append(np.zeros(len(t)))
    t = np.concatenate(t_parts)
    mode = np.concatenate(m_parts)
    spd = np.concatenate(s_parts)
    if gaps:
        keep = np.ones(len(t), dtype=bool)
        for g0, g1 in gaps:
            keep &= ~((t >= g0) & (t < g1))
        t, mode, spd = t[keep], mode[keep], spd[keep]
    n = len(t)
    lat = np.interp(t, tr.kt, tr.klat)
    lon = np.interp(t, tr.kt, tr.klon)
    odo = np.interp(t, tr.kt, tr.kodo)
    # GPS noise, metres east/north
    sig = np.where(mode == PARK, jitter_m, np.where(mode == STOP, 4.0, 2.0))
    noise = nrng.normal(0.0, 1.0, (2, n))
    out = (mode == PARK) & (nrng.random(n) < 0.02)
    nout = int(out.sum())
    if nout:
        ang = nrng.uniform(0, 2 * math.pi, nout)
        r = nrng.uniform(18.0, 22.0, nout)
        noise[0, out] = r * np.cos(ang) / sig[out]
        noise[1, out] = r * np.sin(ang) / sig[out]
    stop = mode == STOP
    if stop.any():  # keep station pings tight: never more than 3.5 σ (14 m)
        noise[:, stop] = np.clip(noise[:, stop], -2.5, 2.5)
    lat = lat + noise[1] * sig / M_PER_DEG_LAT
    lon = lon + noise[0] * sig / (M_PER_DEG_LAT * np.cos(np.radians(lat)))
    return Rendered(t, lat, lon, spd, mode == DRIVE, odo)


def gps_lines(
    vid: str,
    r: Rendered,
    day0: int,
    table: list[str],
    basic: bool,
    utc_idx: int | None,
    utc_fmt,
) -> list[bytes]:
    """Serialise rendered pings; ``basic`` trackers omit ignition and odometer."""
    sod = (r.t - day0).tolist()
    lat = np.round(r.lat, 6).tolist()
    lon = np.round(r.lon, 6).tolist()
    spd = np.round(r.speed, 1).tolist()
    dumps = orjson.dumps
    if basic:
        out = [
            dumps({"vehicle_id": vid, "ts": table[s], "lat": a, "lon": b, "speed_kmh": c})
            for s, a, b, c in zip(sod, lat, lon, spd)
        ]
    else:
        ign = r.ign.tolist()
        odo = np.round(r.odo, 1).tolist()
        out = [
            dumps(
                {
                    "vehicle_id": vid,
                    "ts": table[s],
                    "lat": a,
                    "lon": b,
                    "speed_kmh": c,
                    "ignition": g,
                    "odometer_km": o,
                }
            )
            for s, a, b, c, g, o in zip(sod, lat, lon, spd, ign, odo)
        ]
    if utc_idx is not None and 0 <= utc_idx < len(out):
        rec = orjson.loads(out[utc_idx])
        rec["ts"] = utc_fmt(day0 + sod[utc_idx])
        out[utc_idx] = dumps(rec)
    return out
