"""Inline SVG charts for the HTML report: no script, no external file, no tiles.

Every chart is an ``<svg class="lw-… ">`` sized by a viewBox in CSS pixels of
its panel, so text keeps its size. Colours are Grafana's (:data:`COLORS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from .model import COLORS

__all__ = ["color", "bars", "timeseries", "donut", "geomap", "nice_ticks", "parse_time", "fmt_num",
           "MAP_BG", "PLOT_BG", "TS_BG"]

TZ = ZoneInfo("Asia/Shanghai")
#: the map's paper and the charts' plot areas: distinct colours a screenshot test can find
MAP_BG = "#e9f1f7"
PLOT_BG = "#fbfcfe"  # bar charts
TS_BG = "#f7f9fc"  # time series
GRID = "#dfe3e8"
AXIS = "#6e7681"
FONT = 12


def color(name: str | None) -> str:
    if not name:
        return COLORS["grey"]
    return COLORS.get(name, name)


def parse_time(v: Any) -> float | None:
    """ClickHouse's JSON time text (local, Asia/Shanghai) or epoch → epoch seconds."""
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)):
        return float(v)
    s = str(v)
    try:
        dt = datetime.fromisoformat(s.replace(" ", "T"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt.timestamp()


def fmt_num(v: Any, decimals: int | None = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return v
    if decimals is None:
        decimals = 0 if float(v).is_integer() else (1 if abs(v) >= 100 else 2)
    return f"{v:,.{decimals}f}"


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, n)
    if integer:
        raw = max(raw, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw and (not integer or float(m * mag).is_integer()))
    start = math.floor(lo / step) * step
    out = []
    t = start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            out.append(round(t, 10))
        t += step
    return out


def _t(x: float, y: float, s: str, anchor: str = "start", size: int = FONT, fill: str = AXIS,
       extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"'
            f'{extra}>{escape(s)}</text>')


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, width: float) -> str:
    out = []
    cx = x
    for label, col in items:
        w = 18 + 7.5 * sum(2 if ord(ch) > 0x2e80 else 1 for ch in label)
        if cx + w > x + width and cx > x:
            cx = x
            y += 16
        out.append(f'<rect x="{cx:.1f}" y="{y - 9:.1f}" width="12" height="10" rx="2" fill="{col}"/>')
        out.append(_t(cx + 16, y, label))
        cx += w + 10
    return "".join(out)


def _short(s: str, n: int) -> str:
    width = 0
    for i, ch in enumerate(s):
        width += 2 if ord(ch) > 0x2e80 else 1
        if width > n:
            return s[:i] + "…"
    return s


# ------------------------------------------------------------------- bars
def bars(categories: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], *,
         width: float, height: float, stacked: bool = True, unit_fmt=fmt_num) -> str:
    """Horizontal bars: one row per category; ``series`` = (label, colour, values)."""
    n = len(categories)
    label_w = min(190.0, max(70.0, 7.2 * max((sum(2 if ord(c) > 0x2e80 else 1 for c in s)
                                               for s in categories), default=6)))
    left, right, top, bottom = label_w + 8, 46.0, 6.0, 36.0
    pw, ph = max(10.0, width - left - right), max(10.0, height - top - bottom)
    totals = [sum(float(s[2][i] or 0) for s in series) if stacked
              else max((float(s[2][i] or 0) for s in series), default=0) for i in range(n)]
    vmax = max(totals + [1.0])
    ticks = nice_ticks(0, vmax, 4, integer=all(float(t).is_integer() for t in totals))
    vmax = max(vmax, ticks[-1])
    row = ph / max(1, n)
    bh = row * 0.72
    out = [f'<svg class="lw-chart lw-bars" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'width="100%" height="100%" preserveAspectRatio="xMidYMid meet" role="img">',
           f'<rect x="{left}" y="{top}" width="{pw:.1f}" height="{ph:.1f}" fill="{PLOT_BG}"/>']
    for t in ticks:
        x = left + pw * t / vmax
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph:.1f}" stroke="{GRID}"/>')
        out.append(_t(x, top + ph + 14, fmt_num(t), "middle", 11))
    for i, cat in enumerate(categories):
        y = top + i * row + (row - bh) / 2
        out.append(_t(left - 6, y + bh / 2 + 4, _short(cat, 26), "end", FONT, "#30363d"))
        x = left
        k = len(series)
        for j, (label, col, vals) in enumerate(series):
            v = float(vals[i] or 0)
            w = pw * v / vmax
            if stacked:
                out.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bh:.1f}" '
                           f'fill="{col}"><title>{escape(cat)} · {escape(label)}: {fmt_num(v)}</title></rect>')
                x += w
            else:
                sub = bh / k
                out.append(f'<rect class="bar" x="{left:.1f}" y="{y + j * sub:.1f}" width="{w:.1f}" '
                           f'height="{sub * 0.9:.1f}" fill="{col}"><title>{escape(cat)} · {escape(label)}: '
                           f'{fmt_num(v)}</title></rect>')
        end = left + pw * totals[i] / vmax
        if stacked:
            out.append(_t(end + 4, y + bh / 2 + 4, unit_fmt(totals[i]), "start", 11, "#30363d"))
    out.append(_legend([(s[0], s[1]) for s in series], left, height - 6, pw))
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------- time series
def _time_ticks(t0: float, t1: float, n: int = 7) -> list[tuple[float, str]]:
    span = t1 - t0
    steps = [3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400]
    step = next((s for s in steps if span / s <= n), 30 * 86400)
    start = datetime.fromtimestamp(t0, TZ).replace(minute=0, second=0, microsecond=0)
    if step >= 86400:
        start = start.replace(hour=0)
    out = []
    t = start
    while t.timestamp() <= t1:
        if t.timestamp() >= t0:
            label = f"{t:%m-%d}" if step >= 86400 else f"{t:%m-%d %H:%M}"
            out.append((t.timestamp(), label))
        t += timedelta(seconds=step)
    return out


def timeseries(times: Sequence[float], series: Sequence[tuple[str, str, Sequence[float]]], *,
               t0: float, t1: float, width: float, height: float, stacked: bool = True,
               step: float | None = None, unit_fmt=fmt_num) -> str:
    """Stacked bars per time bucket (``stacked``) or lines; times clipped to [t0, t1]."""
    left, right, top, bottom = 58.0, 14.0, 8.0, 40.0
    pw, ph = max(10.0, width - left - right), max(10.0, height - top - bottom)
    keep = [i for i, t in enumerate(times) if t is not None and t0 <= t < t1]
    if stacked:
        vmax = max([sum(float(s[2][i] or 0) for s in series) for i in keep] + [1.0])
    else:
        vmax = max([float(s[2][i] or 0) for s in series for i in keep] + [1.0])
    ticks = nice_ticks(0, vmax, 4, integer=all(float(v or 0).is_integer() for s in series for v in s[2]))
    vmax = max(vmax, ticks[-1])

    def X(t: float) -> float:
        return left + pw * (t - t0) / (t1 - t0)

    def Y(v: float) -> float:
        return top + ph - ph * v / vmax

    out = [f'<svg class="lw-chart lw-timeseries" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
           f'height="100%" preserveAspectRatio="xMidYMid meet" role="img">',
           f'<rect x="{left}" y="{top}" width="{pw:.1f}" height="{ph:.1f}" fill="{TS_BG}"/>']
    for v in ticks:
        out.append(f'<line x1="{left}" y1="{Y(v):.1f}" x2="{left + pw:.1f}" y2="{Y(v):.1f}" stroke="{GRID}"/>')
        out.append(_t(left - 6, Y(v) + 4, unit_fmt(v), "end", 11))
    for t, label in _time_ticks(t0, t1):
        out.append(f'<line x1="{X(t):.1f}" y1="{top}" x2="{X(t):.1f}" y2="{top + ph:.1f}" stroke="{GRID}" '
                   f'stroke-dasharray="2,3"/>')
        out.append(_t(X(t), top + ph + 14, label, "middle", 11))
    if stacked:
        if step is None:
            gaps = sorted(b - a for a, b in zip([times[i] for i in keep], [times[i] for i in keep][1:]) if b > a)
            step = gaps[0] if gaps else 3600.0
        bw = max(1.5, pw * step / (t1 - t0) * 0.85)
        for i in keep:
            base = 0.0
            for label, col, vals in series:
                v = float(vals[i] or 0)
                if v <= 0:
                    continue
                y1, y0 = Y(base + v), Y(base)
                out.append(f'<rect class="bar" x="{X(times[i]):.1f}" y="{y1:.1f}" width="{bw:.1f}" '
                           f'height="{max(0.5, y0 - y1):.1f}" fill="{col}"><title>'
                           f'{datetime.fromtimestamp(times[i], TZ):%Y-%m-%d %H:%M} {escape(label)}: {fmt_num(v)}'
                           f'</title></rect>')
                base += v
    else:
        for label, col, vals in series:
            pts = [(X(times[i]), Y(float(vals[i] or 0))) for i in keep]
            if pts:
                out.append(f'<polyline class="line" fill="none" stroke="{col}" stroke-width="2" points="'
                           + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
                out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{col}"/>' for x, y in pts)
    out.append(f'<line x1="{left}" y1="{top + ph:.1f}" x2="{left + pw:.1f}" y2="{top + ph:.1f}" stroke="{AXIS}"/>')
    out.append(_legend([(s[0], s[1]) for s in series], left, height - 6, pw))
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------- donut
def donut(items: Sequence[tuple[str, str, float]], *, width: float, height: float) -> str:
    """(label, colour, value) slices with a legend (value and share)."""
    total = sum(max(0.0, v) for _, _, v in items) or 1.0
    r = max(20.0, min(height - 16, width * 0.5) / 2 - 4)
    cx, cy = 12 + r, height / 2
    out = [f'<svg class="lw-chart lw-donut" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
           f'height="100%" preserveAspectRatio="xMidYMid meet" role="img">']
    a0 = -math.pi / 2
    for label, col, v in items:
        frac = max(0.0, v) / total
        if frac <= 0:
            continue
        if frac >= 0.9999:
            out.append(f'<circle class="slice" cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{col}"/>')
            continue
        a1 = a0 + frac * 2 * math.pi
        large = 1 if frac > 0.5 else 0
        x0, y0 = cx + r * math.cos(a0), cy + r * math.sin(a0)
        x1, y1 = cx + r * math.cos(a1), cy + r * math.sin(a1)
        out.append(f'<path class="slice" d="M{cx:.1f},{cy:.1f} L{x0:.1f},{y0:.1f} A{r:.1f},{r:.1f} 0 {large} 1 '
                   f'{x1:.1f},{y1:.1f} Z" fill="{col}" stroke="#fff" stroke-width="1.5"><title>{escape(label)}: '
                   f'{fmt_num(v)}</title></path>')
        a0 = a1
    out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r * 0.55:.1f}" fill="#fff"/>')
    out.append(_t(cx, cy + 6, fmt_num(total), "middle", 18, "#30363d", ' font-weight="600"'))
    lx = cx + r + 18
    ly = max(18.0, cy - len(items) * 10)
    for label, col, v in items:
        out.append(f'<rect x="{lx:.1f}" y="{ly - 10:.1f}" width="12" height="12" rx="2" fill="{col}"/>')
        out.append(_t(lx + 18, ly, f"{label}  {fmt_num(v)}  ({100 * v / total:.0f}%)", "start", FONT, "#30363d"))
        ly += 20
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------- map
M_PER_DEG = 111_194.9


def geomap(layers: Sequence[dict[str, Any]], *, width: float, height: float) -> str:
    """Points (and tracks) on a plain lat/lon grid: no tiles.

    Each layer: ``name``, ``points`` [(lat, lon, colour, tooltip)], optional
    ``tracks`` [[(lat, lon), …], …] drawn as lines under the points.
    """
    pts = [(p[0], p[1]) for layer in layers for p in layer["points"]]
    pts += [q for layer in layers for tr in layer.get("tracks", []) for q in tr]
    pts = [(a, b) for a, b in pts if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
           and (a, b) != (0.0, 0.0)]
    left, right, top, bottom = 50.0, 10.0, 8.0, 40.0
    pw, ph = max(10.0, width - left - right), max(10.0, height - top - bottom)
    out = [f'<svg class="lw-map" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" height="100%" '
           f'preserveAspectRatio="xMidYMid meet" role="img">']
    if not pts:
        out.append(f'<rect x="{left}" y="{top}" width="{pw:.1f}" height="{ph:.1f}" fill="{MAP_BG}" '
                   f'stroke="{AXIS}"/></svg>')
        return "".join(out)
    lat0 = sum(a for a, _ in pts) / len(pts)
    k = math.cos(math.radians(lat0))
    la_lo, la_hi = min(a for a, _ in pts), max(a for a, _ in pts)
    lo_lo, lo_hi = min(b for _, b in pts), max(b for _, b in pts)
    # at least ~1 km across, then a margin, then the panel's aspect
    span_y = max(la_hi - la_lo, 0.01)
    span_x = max((lo_hi - lo_lo) * k, 0.01)
    cy_, cx_ = (la_lo + la_hi) / 2, (lo_lo + lo_hi) / 2
    span_y *= 1.15
    span_x *= 1.15
    if span_x / span_y < pw / ph:
        span_x = span_y * pw / ph
    else:
        span_y = span_x * ph / pw
    lat_min, lat_max = cy_ - span_y / 2, cy_ + span_y / 2
    lon_min, lon_max = cx_ - span_x / k / 2, cx_ + span_x / k / 2

    def X(lon: float) -> float:
        return left + pw * (lon - lon_min) / (lon_max - lon_min)

    def Y(lat: float) -> float:
        return top + ph * (lat_max - lat) / (lat_max - lat_min)

    out.append(f'<defs><clipPath id="mapclip{id(layers) % 100000}"><rect x="{left}" y="{top}" width="{pw:.1f}" '
               f'height="{ph:.1f}"/></clipPath></defs>')
    out.append(f'<rect class="paper" x="{left}" y="{top}" width="{pw:.1f}" height="{ph:.1f}" fill="{MAP_BG}"/>')
    for v in nice_ticks(lat_min, lat_max, 5):
        out.append(f'<line x1="{left}" y1="{Y(v):.1f}" x2="{left + pw:.1f}" y2="{Y(v):.1f}" stroke="#c9d6e2"/>')
        out.append(_t(left - 4, Y(v) + 4, f"{v:.2f}°N", "end", 10))
    for v in nice_ticks(lon_min, lon_max, 6):
        out.append(f'<line x1="{X(v):.1f}" y1="{top}" x2="{X(v):.1f}" y2="{top + ph:.1f}" stroke="#c9d6e2"/>')
        out.append(_t(X(v), top + ph + 12, f"{v:.2f}°E", "middle", 10))
    out.append(f'<g clip-path="url(#mapclip{id(layers) % 100000})">')
    for layer in layers:
        col = layer.get("track_color", COLORS["blue"])
        for tr in layer.get("tracks", []):
            tr = [(a, b) for a, b in tr if a and b]
            if len(tr) > 1:
                out.append(f'<polyline class="track" fill="none" stroke="{col}" stroke-width="1.5" '
                           f'stroke-opacity="0.7" points="' + " ".join(f"{X(b):.1f},{Y(a):.1f}" for a, b in tr)
                           + '"/>')
    for layer in layers:
        size = layer.get("size", 6) / 2 + 1
        for lat, lon, col, tip in layer["points"]:
            if lat is None or lon is None or (lat, lon) == (0.0, 0.0):
                continue
            out.append(f'<circle class="pt" cx="{X(lon):.1f}" cy="{Y(lat):.1f}" r="{size:.1f}" fill="{col}" '
                       f'fill-opacity="0.9" stroke="#fff" stroke-width="0.8"><title>{escape(tip)}</title></circle>')
    out.append("</g>")
    out.append(f'<rect x="{left}" y="{top}" width="{pw:.1f}" height="{ph:.1f}" fill="none" stroke="{AXIS}"/>')
    # scale bar and north arrow
    km_per_px = (lon_max - lon_min) * k * M_PER_DEG / 1000 / pw
    bar_km = next((b for b in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if b / km_per_px >= 60), 50)
    bx, by = left + 10, top + ph - 12
    blen = bar_km / km_per_px
    out.append(f'<rect x="{bx - 4:.1f}" y="{by - 16:.1f}" width="{blen + 50:.1f}" height="22" fill="#fff" '
               f'fill-opacity="0.75" rx="3"/>')
    out.append(f'<line x1="{bx:.1f}" y1="{by:.1f}" x2="{bx + blen:.1f}" y2="{by:.1f}" stroke="#30363d" '
               f'stroke-width="3"/>')
    out.append(_t(bx + blen + 6, by + 4, f"{bar_km:g} km", "start", 11, "#30363d"))
    nx, ny = left + pw - 18, top + 24
    out.append(f'<path d="M{nx},{ny - 14} L{nx - 6},{ny + 2} L{nx},{ny - 2} L{nx + 6},{ny + 2} Z" fill="#30363d"/>')
    out.append(_t(nx, ny + 14, "N", "middle", 11, "#30363d"))
    legend = []
    for layer in layers:
        for label, col in layer.get("legend", []):
            legend.append((label, col))
    out.append(_legend(legend, left, height - 6, pw))
    out.append("</svg>")
    return "".join(out)
