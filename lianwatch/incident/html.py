"""The incident page: one self-contained HTML file a discipline officer can attach
to a case file (no scripts, no external tiles or fonts: inline SVG and CSS)."""

from __future__ import annotations

import html
import math
from typing import Any

import orjson

from lianwatch.incident.reconstruct import Reconstruction
from lianwatch.incident.views import VIEWS
from lianwatch.models.clock import DEFAULT_TZ, format_ts
from lianwatch.models.geo import to_wgs84
from lianwatch.models.parse import parse_event
from lianwatch.rules import RULES

__all__ = ["render_incident"]

_E = html.escape
LEVEL_COLOUR = {"red": "#d32f2f", "yellow": "#f9a825", "green": "#2e7d32"}
RULE_ZH = {rule: meta["zh"] for rule, meta in RULES.items()}


def _svg_map(rec: Reconstruction, tz) -> str:
    """Track around the purchase, the station, the car's position and the depot."""
    a = rec.alert
    ev = a.evidence
    t0 = None
    try:
        from lianwatch.models.clock import parse_ts

        t0 = parse_ts(a.event_ts)
    except ValueError:
        pass
    pts = []
    for t, raw in rec.records.get("gps", []):
        if t0 is None or abs(t - t0) <= 3600:
            e, _ = parse_event("gps", raw, tz)
            if e:
                pts.append((t, e["lat"], e["lon"]))
    marks = []  # (lat, lon, colour, label)
    st = ev.get("station")
    if isinstance(st, dict) and "lat" in st:
        marks.append((st["lat"], st["lon"], "#1565c0", "加油站 station"))
    for t, raw in rec.records.get("fuel", []):
        e, _ = parse_event("fuel", raw, tz)
        if e and e["txn_id"] in a.source_event_ids and not st:
            lat, lon = to_wgs84(e["station_lat"], e["station_lon"], e.get("station_coord") or "wgs84")
            marks.append((lat, lon, "#1565c0", f"加油站 {e['station_id']}"))
    vp = ev.get("vehicle_position")
    if isinstance(vp, dict):
        marks.append((vp["lat"], vp["lon"], LEVEL_COLOUR[a.level], "购油时车辆位置 car at purchase"))
    if not pts and not marks:
        return ""
    lats = [p[1] for p in pts] + [m[0] for m in marks]
    lons = [p[2] for p in pts] + [m[1] for m in marks]
    la0, la1, lo0, lo1 = min(lats), max(lats), min(lons), max(lons)
    kx = math.cos(math.radians((la0 + la1) / 2))
    span = max((la1 - la0), (lo1 - lo0) * kx, 0.002) * 1.15
    cx, cy = (lo0 + lo1) / 2, (la0 + la1) / 2
    W, H = 640, 420

    def xy(lat: float, lon: float) -> tuple[float, float]:
        x = W / 2 + (lon - cx) * kx / span * (H - 40)
        y = H / 2 - (lat - cy) / span * (H - 40)
        return round(x, 1), round(y, 1)

    parts = [f'<svg id="map" class="map" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
             'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="track map">',
             f'<rect width="{W}" height="{H}" fill="#f4f6f8"/>']
    for i in range(1, 8):  # a light grid instead of map tiles
        parts.append(f'<line x1="{i * W / 8}" y1="0" x2="{i * W / 8}" y2="{H}" stroke="#e0e4e8"/>')
        parts.append(f'<line x1="0" y1="{i * H / 8}" x2="{W}" y2="{i * H / 8}" stroke="#e0e4e8"/>')
    if pts:
        path = " ".join(f"{x},{y}" for x, y in (xy(p[1], p[2]) for p in pts))
        parts.append(f'<polyline class="track" points="{path}" fill="none" stroke="#455a64" '
                     'stroke-width="2" stroke-linejoin="round"/>')
        for t, lat, lon in pts:
            x, y = xy(lat, lon)
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.2" fill="#455a64"><title>'
                         f'{_E(format_ts(t, tz))}</title></circle>')
    for lat, lon, colour, label in marks:
        x, y = xy(lat, lon)
        parts.append(f'<circle class="mark" cx="{x}" cy="{y}" r="8" fill="{colour}" '
                     f'stroke="white" stroke-width="2"><title>{_E(label)}</title></circle>')
        parts.append(f'<text x="{x + 11}" y="{y + 4}" font-size="13" fill="#212121">'
                     f'{_E(label)}</text>')
    km = span * 111.195
    parts.append(f'<text x="10" y="{H - 10}" font-size="12" fill="#607d8b">视野约 {km:.1f} 公里 '
                 f'· view ≈ {km:.1f} km · WGS-84</text></svg>')
    return "".join(parts)


def _timeline(rec: Reconstruction, tz) -> str:
    items: list[tuple[float, str, str]] = []
    srcs = set(rec.alert.source_event_ids)
    for stream, recs in rec.records.items():
        if stream == "gps":
            continue
        for t, raw in recs:
            e, _ = parse_event(stream, raw, tz)
            if e is None:
                continue
            key = e.get("txn_id") or e.get("payment_id") or e.get("report_id")
            desc = {
                "fuel": lambda: f"加油 {e['liters']:g} 升 · {e.get('station_name') or e['station_id']}",
                "payments": lambda: f"支付 ¥{e['amount_yuan']:,.2f} → {e.get('payee_name') or e['payee_id']}"
                                    f"（{e['channel']}）",
                "progress": lambda: f"进度报告 {e['stage']} {e['percent_complete']:g}% · "
                                    f"已拨付 ¥{e.get('disbursed_yuan', 0):,.0f}",
            }[stream]()
            cls = "src" if key in srcs else ""
            items.append((t, cls, f"{_E(key)} · {_E(desc)}"))
    gps = rec.records.get("gps", [])
    if gps:
        items.append((gps[0][0], "gps", f"首个定位 first ping ({len(gps)} 个定位 pings)"))
        items.append((gps[-1][0], "gps", "末个定位 last ping"))
    from lianwatch.models.clock import parse_ts

    items.append((parse_ts(rec.alert.event_ts), "alert", f"告警事件时间 · {_E(rec.alert.title)}"))
    items.append((parse_ts(rec.alert.detected_at), "alert", "告警发现 detected"))
    items.sort(key=lambda x: x[0])
    rows = "".join(f'<li class="{c}"><time>{_E(format_ts(t, tz))}</time> {d}</li>'
                   for t, c, d in items[-200:])
    return f'<ol id="timeline" class="timeline">{rows}</ol>'


def render_incident(rec: Reconstruction, history: list[dict[str, Any]] | None = None,
                    tz=DEFAULT_TZ) -> str:
    a = rec.alert
    colour = LEVEL_COLOUR[a.level]
    verdict = ("已从存档复现：编号、级别与证据数值一致 · reproduced from the archive alone"
               if rec.reproduced else
               "未完全复现 · not reproduced exactly: " + "; ".join(rec.differences))
    ev_rows = "".join(f"<tr><th>{_E(str(k))}</th><td>{_E(_fmt(v))}</td></tr>"
                      for k, v in a.evidence.items())
    hist = ""
    if history:
        hist = "<h2>处置记录 Lifecycle</h2><table class='kv'>" + "".join(
            f"<tr><td>{_E(str(h.get('at', '')))}</td><td>{_E(str(h.get('action', '')))}</td>"
            f"<td>{_E(str(h.get('state', '')))}</td><td>{_E(str(h.get('by', '')))}</td>"
            f"<td>{_E(str(h.get('note', '')))}</td></tr>" for h in history) + "</table>"
    w0, w1 = rec.window
    data_rows = "".join(f"<tr><th>{_E(s)}</th><td>{len(r)}</td></tr>" for s, r in rec.records.items())
    settings = "".join(f"<tr><th>{_E(k)}</th><td>{_E(_fmt(v))}</td></tr>"
                       for k, v in rec.rule_settings.items())
    notes = "".join(f"<p class='note'>{_E(n)}</p>" for n in rec.notes)
    view = VIEWS.get(a.rule.split(".", 1)[0])
    extra = "".join(f"<h2>{_E(title)}</h2>{body}"
                    for title, body in (view.sections(rec, tz) if view and view.sections else ()))
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>事件还原 {_E(a.alert_id)}</title>
<style>
body{{font-family:"Noto Sans CJK SC","Noto Sans SC","Microsoft YaHei",sans-serif;margin:24px;color:#212121;max-width:1100px}}
h1{{font-size:22px;border-left:8px solid {colour};padding-left:12px}}
h2{{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}}
.badge{{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;background:{colour}}}
.verdict{{padding:10px 14px;border-radius:6px;background:{'#e8f5e9' if rec.reproduced else '#fff3e0'}}}
table.kv{{border-collapse:collapse}} table.kv th,table.kv td{{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;font-size:13px}}
.timeline{{list-style:none;padding-left:0;font-size:13px}} .timeline li{{padding:3px 8px;border-left:3px solid #cfd8dc;margin:2px 0}}
.timeline li.src{{border-left-color:{colour};font-weight:bold}} .timeline li.alert{{border-left-color:#6a1b9a;background:#f3e5f5}}
.timeline time{{color:#607d8b;margin-right:8px}} .note{{color:#6d4c41;font-size:13px}}
.grid{{display:flex;gap:24px;flex-wrap:wrap}}
code{{font-size:12px}}
</style></head><body>
<h1>{_E(a.title)}</h1>
<p>{_E(a.title_en)}</p>
<p><span class="badge">{_E(a.level)}</span> <b>{_E(RULE_ZH.get(a.rule, a.rule))}</b> <code>{_E(a.rule)}</code>
 · 对象 {_E(a.subject_type)} <b>{_E(a.subject_id)}</b>
 {('· 单位 ' + _E(a.unit_id)) if a.unit_id else ''} {('· 村 ' + _E(a.village_id)) if a.village_id else ''}</p>
<p>编号 <code>{_E(a.alert_id)}</code> (version {a.version}) · 事件 {_E(a.event_ts)} · 发现 {_E(a.detected_at)}</p>
<p class="verdict" id="verdict">{_E(verdict)}</p>{notes}
<div class="grid"><div>{_svg_map(rec, tz)}</div>
<div><h2>证据 Evidence</h2><table class="kv" id="evidence">{ev_rows}</table></div></div>
<h2>时间线 Timeline</h2>{_timeline(rec, tz)}
{extra}
{hist}
<h2>依据 Basis of this reconstruction</h2>
<table class="kv">
<tr><th>数据来源 source</th><td>{_E(rec.source)}</td></tr>
<tr><th>时间窗 window</th><td>{_E(format_ts(w0, tz) if w0 else '—')} — {_E(format_ts(w1, tz) if w1 else '—')}</td></tr>
<tr><th>判定时点 as of</th><td>{_E(format_ts(rec.as_of, tz) if rec.as_of else 'end of records')}</td></tr>
{data_rows}
<tr><th>输入内容哈希 SHA-256 of inputs</th><td><code>{_E(rec.input_hash)}</code></td></tr>
<tr><th>规则版本 rules fingerprint</th><td><code>{_E(rec.rules_fingerprint)}</code></td></tr>
</table>
<h2>规则阈值 Thresholds used</h2><table class="kv">{settings}</table>
<h2>来源记录 Source record ids</h2><p><code>{_E(', '.join(a.source_event_ids))}</code></p>
</body></html>
"""


def _fmt(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return orjson.dumps(v).decode()
    return str(v)
