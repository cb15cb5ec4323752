"""Small planar helpers on top of :mod:`lianwatch.models.geo` (WGS-84 throughout)."""

from __future__ import annotations

import math

import numpy as np

from lianwatch.models.geo import haversine_m

M_PER_DEG_LAT = 111_320.0


def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """Move a point by metres east/north (local tangent plane; fine below ~50 km)."""
    return (
        lat + north_m / M_PER_DEG_LAT,
        lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


def polar(lat: float, lon: float, dist_m: float, bearing_rad: float) -> tuple[float, float]:
    return offset(lat, lon, dist_m * math.sin(bearing_rad), dist_m * math.cos(bearing_rad))


def dist_arr(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Vectorised haversine (metres) from one point to many."""
    p1 = math.radians(lat)
    p2 = np.radians(lats)
    dp = p2 - p1
    dl = np.radians(lons - lon)
    h = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * np.arcsin(np.minimum(1.0, np.sqrt(h)))


__all__ = ["haversine_m", "offset", "polar", "dist_arr", "M_PER_DEG_LAT"]
