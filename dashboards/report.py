"""The dashboards as one self-contained HTML file: the same panels, the same SQL
(macros expanded as the Grafana ClickHouse plugin expands them), run against
the alert store and drawn as inline SVG and colour-coded tables.

Nothing is loaded from elsewhere: no script, no font file, no map tiles, no
image. Layout follows the Grafana grid (24 columns; a grid unit is 32 px
high). The newest red alerts get an Alert-detail section each, and the
Overview's alert ids link to them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from . import svg
from .definitions import DASHBOARDS
from .labels import MAPPINGS
from .macros import ALL
from .model import Column, Dashboard, Panel, T
from .run import Context, data_time_range, resolve_variables, run_panel
from .thresholds import DEFAULT, Thresholds

__all__ = ["render_report", "write_report", "UNIT_SUFFIX"]

ROW_PX = 32
COL_PX = 56  # 24 columns ≈ 1344 px

UNIT_SUFFIX = {"litre": (" L", " L"), "lengthm": (" 米", " m"), "percent": ("%", "%"),
               "d": (" 天", " d"), "currencyCNY": ("", "")}
_TXT = {
    "report": T("小微权力监督报告", "Micro-power supervision report"),
    "period": T("统计时段", "Period"),
    "generated": T("生成时间", "Generated"),
    "filters": T("筛选", "Filters"),
    "all": T("全部", "All"),
    "no_data": T("无数据", "No data"),
    "detail_of": T("预警详情", "Alert detail"),
    "details_note": T("以下为最新 {n} 条红色预警的详情。", "Details of the newest {n} red alerts."),
    "contents": T("目录", "Contents"),
    "offline": T("本报告为离线静态页面，数据来自预警库，图表与地图不依赖网络。",
                 "A static, offline page: data from the alert store; charts and map need no network."),
    "overdue_rule": T("逾期：红色预警 {{th:lifecycle.red_days}} 天、黄色 {{th:lifecycle.yellow_days}} 天内未报告整改"
                      f"（自登记、升级或重新打开起算）。",
                      "Overdue: no rectification reported within {{th:lifecycle.red_days}} days (red) or "
                      "{{th:lifecycle.yellow_days}} days (yellow) of registration, raise or reopening."),
    "empty_store": T("预警库中没有数据。", "The alert store holds no data."),
}

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f5f5;color:#24292f;font:13px/1.45 "Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC",
"PingFang SC","Microsoft YaHei","WenQuanYi Micro Hei",sans-serif}
header{background:#1f2933;color:#fff;padding:14px 24px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header .meta{color:#c9d1d9;font-size:13px}
nav{background:#fff;border-bottom:1px solid #d0d7de;padding:8px 24px;position:sticky;top:0;z-index:2}
nav a{margin-right:18px;color:#0969da;text-decoration:none;font-weight:500}
main{padding:8px 24px 40px;max-width:1400px}
section.dash{margin-top:18px}
section.dash>h2{font-size:18px;margin:10px 0 2px;font-weight:600}
section.dash>p{margin:0 0 8px;color:#57606a}
.grid{display:grid;grid-template-columns:repeat(24,1fr);grid-auto-rows:32px;gap:8px}
.panel{background:#fff;border:1px solid #d8dee4;border-radius:4px;display:flex;flex-direction:column;min-width:0;overflow:hidden}
.panel h3{margin:0;padding:6px 10px 4px;font-size:13px;font-weight:600;color:#24292f;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.panel .body{flex:1;min-height:0;padding:2px 8px 6px;overflow:hidden}
.panel-table .body{overflow:auto}
.panel .desc{font-size:11px;color:#6e7781;padding:0 10px}
.panel .empty{color:#8c959f;padding:16px;text-align:center}
.stat{display:flex;align-items:center;justify-content:center;height:100%;border-radius:3px;font-size:34px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:12px}
th{position:sticky;top:0;background:#f6f8fa;text-align:left;font-weight:600;border-bottom:1px solid #d0d7de;padding:4px 6px;white-space:nowrap}
td{border-bottom:1px solid #eaeef2;padding:3px 6px;vertical-align:top;white-space:nowrap;max-width:460px;overflow:hidden;text-overflow:ellipsis}
td.wrap{white-space:normal;min-width:220px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{white-space:nowrap}
td.cell-colored{font-weight:600}
td code{font:11px/1.35 "DejaVu Sans Mono",monospace;white-space:pre-wrap;word-break:break-all;color:#3d444d}
td a{color:#0969da}
.note{font-size:12px;color:#57606a;margin:4px 0}
.detail{border-top:3px solid #F2495C;margin-top:26px;padding-top:4px}
"""


def _unit_fmt(unit: str | None, decimals: int | None, lang: str):
    def f(v: Any) -> str:
        if v is None:
            return "–"
        s = svg.fmt_num(v, decimals)
        if unit == "currencyCNY":
            return "¥" + s
        if unit in UNIT_SUFFIX:
            return s + UNIT_SUFFIX[unit][0 if lang == "zh" else 1]
        return s
    return f


def _threshold_color(th, v: Any) -> str | None:
    if th is None or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    col = None
    for lo, c in th:
        if lo is None or x >= lo:
            col = c
    return col


def _text_on(bg: str) -> str:
    h = bg.lstrip("#")
    if len(h) != 6:
        return "#fff"
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return "#1f2328" if (0.299 * r + 0.587 * g + 0.114 * b) > 150 else "#fff"


def _mapped(names: str | None, value: Any, lang: str) -> tuple[str, str | None]:
    if names:
        for name in names.split(","):
            m = MAPPINGS[name]
            if str(value) in m.values:
                return m.text(value, lang), m.color(value)
    return ("" if value is None else str(value)), None


def _time_text(v: Any) -> str:
    if v is None:
        return "–"
    s = str(v)
    return s[:-4] if s.endswith(".000") else s


def _colon(lang: str) -> str:
    return "：" if lang == "zh" else ": "


class _Renderer:
    def __init__(self, store: Any, lang: str, database: str, time_from: float, time_to: float,
                 detail_ids: set[str], thresholds: Thresholds = DEFAULT) -> None:
        self.th = thresholds
        self.store, self.lang, self.db = store, lang, database
        self.tf, self.tt = time_from, time_to
        self.detail_ids = detail_ids

    # ---------------------------------------------------------- panels
    def panel(self, p: Panel, ctx: Context, pos: dict[str, int]) -> str:
        lang = self.lang
        data = run_panel(self.store, p, ctx, report=True)
        rows = data["A"]
        w_px = pos["w"] * COL_PX
        h_px = pos["h"] * ROW_PX + (pos["h"] - 1) * 8 - 36 - (16 if p.description else 0)
        note = ""
        if p.report_vars:
            for name in p.report_vars:
                texts = ctx.texts.get(name, {})
                chosen = self._chosen(p, ctx, name)
                if chosen:
                    note = (f'<div class="desc">{escape(T("示例车辆", "Example vehicle")(lang))}{_colon(lang)}'
                            f'{escape(texts.get(chosen, chosen))}</div>')
        if not rows and p.kind != "stat":
            body = f'<div class="empty">{escape((p.empty or _TXT["no_data"])(lang))}</div>'
        elif p.kind == "stat":
            body = self.stat(p, rows)
        elif p.kind == "table":
            body = self.table(p, rows)
        elif p.kind == "barchart":
            body = self.bars(p, rows, w_px, h_px)
        elif p.kind == "timeseries":
            body = self.timeseries(p, rows, w_px, h_px, ctx)
        elif p.kind == "piechart":
            body = self.pie(p, rows, w_px, h_px)
        elif p.kind == "geomap":
            body = self.geomap(p, data, w_px, h_px - (16 if note else 0))
        else:  # pragma: no cover
            body = ""
        desc = (f'<div class="desc">{escape(self.th.render(p.description(lang)))}</div>'
                if p.description and p.kind != "stat" else "")
        style = (f'grid-column:{pos["x"] + 1} / span {pos["w"]};grid-row:{pos["y"] + 1} / span {pos["h"]}')
        title_attr = f' title="{escape(self.th.render(p.description(lang)))}"' if p.description else ""
        return (f'<div class="panel panel-{p.kind}" id="panel-{p.key}" style="{style}"{title_attr}>'
                f'<h3>{escape(self.th.render(p.title(lang)))}</h3>{desc}{note}<div class="body">{body}</div></div>')

    def _chosen(self, p: Panel, ctx: Context, name: str) -> str | None:
        from .run import _expand
        rows = self.store.query(_expand(p.report_vars[name], ctx, ctx.values))
        return str(next(iter(rows[0].values()))) if rows else None

    def stat(self, p: Panel, rows: list[dict]) -> str:
        v = next(iter(rows[0].values())) if rows else None
        col = svg.color(_threshold_color(self.th.steps(p.thresholds), v) or "blue")
        text = _unit_fmt(p.unit, p.decimals, self.lang)(v)
        return (f'<div class="stat" style="background:{col};color:{_text_on(col)}" data-value="{escape(str(v))}">'
                f'{escape(text)}</div>')

    def table(self, p: Panel, rows: list[dict]) -> str:
        lang = self.lang
        cols = [c for c in p.columns if not c.hidden and (c.lang is None or c.lang == lang)]
        head = "".join(f"<th>{escape(c.label(lang))}</th>" for c in cols)
        body = []
        for r in rows:
            cells = []
            for c in cols:
                cells.append(self.cell(c, r.get(c.name), r))
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f'<table class="lw-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'

    def cell(self, c: Column, v: Any, row: dict) -> str:
        lang = self.lang
        cls = []
        color = None
        if c.kind == "time":
            text, cls = _time_text(v), ["time"]
        elif c.kind == "date":
            text, cls = ("–" if v is None else str(v)), ["time"]
        elif c.kind == "number":
            text, cls = _unit_fmt(c.unit, c.decimals, lang)(v), ["num"]
            color = _threshold_color(self.th.steps(c.thresholds), v)
        elif c.kind == "json":
            try:
                text = json.dumps(json.loads(v), ensure_ascii=False) if isinstance(v, str) else str(v)
            except ValueError:
                text = str(v)
            return f'<td class="wrap"><code>{escape(text[:600])}</code></td>'
        else:
            text, color = _mapped(c.mapping, v, lang)
            if c.thresholds and color is None:
                color = _threshold_color(self.th.steps(c.thresholds), v)
        if c.link == "alert" and v in self.detail_ids:
            inner = f'<a href="#alert-{escape(str(v))}">{escape(text)}</a>'
        else:
            inner = escape(text)
        style = ""
        if c.colored and color:
            bg = svg.color(color)
            style = f' style="background:{bg};color:{_text_on(bg)}"'
            cls.append("cell-colored")
        if c.name in ("title", "title_en", "note", "value"):
            cls.append("wrap")
        klass = f' class="{" ".join(cls)}"' if cls else ""
        return f"<td{klass}{style}>{inner}</td>"

    def _series(self, p: Panel, rows: list[dict]):
        return [(s.label(self.lang), svg.color(s.color), [r.get(s.name) or 0 for r in rows]) for s in p.series]

    def bars(self, p: Panel, rows: list[dict], w: float, h: float) -> str:
        cats = [_mapped(p.x_mapping, r.get(p.x), self.lang)[0] or "–" for r in rows]
        return svg.bars(cats, self._series(p, rows), width=w, height=h, stacked=p.stacked,
                        unit_fmt=_unit_fmt(p.unit, 0, self.lang))

    def timeseries(self, p: Panel, rows: list[dict], w: float, h: float, ctx: Context) -> str:
        from .macros import grafana_interval_ms
        times = [svg.parse_time(r.get(p.x)) for r in rows]
        step = grafana_interval_ms(ctx.time_from, ctx.time_to, ctx.max_data_points, p.interval) / 1000
        return svg.timeseries(times, self._series(p, rows), t0=ctx.time_from, t1=ctx.time_to, width=w,
                              height=h, stacked=p.stacked or len(p.series) == 1, step=step,
                              unit_fmt=_unit_fmt(p.unit, 0, self.lang))

    def pie(self, p: Panel, rows: list[dict], w: float, h: float) -> str:
        palette = ["blue", "orange", "purple", "green", "yellow", "red"]
        items = []
        for i, r in enumerate(rows):
            label, col = _mapped(p.x_mapping, r.get(p.x), self.lang)
            items.append((label, svg.color(col or palette[i % len(palette)]), float(r.get(p.series[0].name) or 0)))
        return svg.donut(items, width=w, height=h)

    def geomap(self, p: Panel, data: dict[str, list[dict]], w: float, h: float) -> str:
        layers = []
        for layer in p.layers:
            rows = data.get(layer.ref, [])
            pts = []
            legend = []
            for r in rows:
                lat, lon = r.get("lat"), r.get("lon")
                if lat is None or lon is None:
                    continue
                if layer.color_field:
                    col = svg.color(_threshold_color(self.th.steps(p.thresholds), r.get(layer.color_field))
                                    or layer.color)
                elif "point" in r:
                    col = svg.color(MAPPINGS["point"].color(r["point"]) or layer.color)
                else:
                    col = svg.color(layer.color)
                tip = " · ".join(self._tip(k, v) for k, v in r.items() if k not in ("lat", "lon", "severity")
                                 and not (k == "title_en" and self.lang == "zh")
                                 and not (k == "title" and self.lang == "en"))
                pts.append((float(lat), float(lon), col, tip))
            if layer.color_field:
                legend = [(label(self.lang), svg.color(c)) for label, c in (
                    (T("红色", "Red"), "red"), (T("黄色", "Yellow"), "yellow"))
                    if any(pc == svg.color(c) for *_x, pc, _t in pts)] or [(layer.name(self.lang), svg.color(layer.color))]
                if p.thresholds and p.thresholds[0][1] == "green":
                    legend = [(layer.name(self.lang), svg.color("green")),
                              (T("人车分离", "Away from car")(self.lang), svg.color("red"))]
            elif rows and "point" in rows[0]:
                legend = [(MAPPINGS["point"].text(k, self.lang), svg.color(MAPPINGS["point"].color(k)))
                          for k in ("vehicle", "station")]
            else:
                legend = [(layer.name(self.lang), svg.color(layer.color))]
            tracks = []
            if layer.track_by:
                groups: dict[str, list[tuple[float, float]]] = {}
                for r in rows:
                    key = "" if layer.track_by == "__all__" else str(r.get(layer.track_by))
                    groups.setdefault(key, []).append((float(r["lat"]), float(r["lon"])))
                tracks = list(groups.values())
                pts = pts[:: max(1, len(pts) // 400)]  # dots thinned; the track line keeps every fix
            layers.append({"name": layer.name(self.lang), "points": pts, "tracks": tracks,
                           "size": layer.size, "legend": legend, "track_color": svg.color(layer.color)})
        return svg.geomap(layers, width=w, height=h)

    def _tip(self, k: str, v: Any) -> str:
        if k in MAPPINGS and k in ("rule", "level", "state", "point"):
            return MAPPINGS[k].text(v, self.lang)
        if k in ("event_time", "time"):
            return _time_text(v)
        return str(v)

    # ---------------------------------------------------------- dashboards
    def dashboard(self, d: Dashboard, overrides: dict[str, Any] | None = None, *, anchor: str | None = None,
                  heading: str | None = None, css: str = "dash") -> str:
        from .model import layout
        lang = self.lang
        ctx = resolve_variables(self.store, d, self.tf, self.tt, overrides, database=self.db, lang=lang,
                                thresholds=self.th)
        pos = layout(d.panels)
        panels = "".join(self.panel(p, ctx, pos[p.key]) for p in d.panels)
        filters = []
        for v in d.variables:
            val = ctx.values.get(v.name)
            if val in (ALL, [ALL]):
                shown = _TXT["all"](lang)
            else:
                vals = val if isinstance(val, list) else [val]
                shown = ("、" if lang == "zh" else ", ").join(ctx.texts.get(v.name, {}).get(x, x) for x in vals)
            filters.append(f"{v.label(lang)}{_colon(lang)}{shown}")
        extra = (f'<p class="note">{escape(self.th.render(_TXT["overdue_rule"](lang)))}</p>'
                 if d.key == "overview" else "")
        return (f'<section class="{css}" id="{escape(anchor or d.key)}"><h2>{escape(heading or d.title(lang))}</h2>'
                f'<p>{escape(self.th.render(d.description(lang)))}</p><p class="note">{escape(_TXT["filters"](lang))}{_colon(lang)}'
                f'{escape(("；" if lang == "zh" else "; ").join(filters))}</p>{extra}'
                f'<div class="grid">{panels}</div></section>')


def _newest_red(store: Any, database: str, tf: float, tt: float, n: int) -> list[tuple[str, str, str]]:
    if n <= 0:
        return []
    rows = store.query(
        f"SELECT alert_id, rule, subject_id FROM {database}.alerts FINAL WHERE level = 'red' AND "
        f"((event_time >= toDateTime({int(tf)}) AND event_time <= toDateTime({int(tt)})) OR "
        f"(detected_time >= toDateTime({int(tf)}) AND detected_time <= toDateTime({int(tt)}))) "
        f"ORDER BY event_time DESC, alert_id LIMIT {int(n)}")
    return [(r["alert_id"], r["rule"], r["subject_id"]) for r in rows]


def render_report(store: Any, *, time_from: float | None = None, time_to: float | None = None,
                  lang: str = "zh", details: int = 5, database: str = "lianwatch",
                  dashboards: Iterable[Dashboard] | None = None, generated: datetime | None = None,
                  thresholds: Thresholds | None = None) -> str:
    """The whole report as one HTML string (time range default: the stored data's;
    ``thresholds``: of the rules in force, default the contract's)."""
    dashboards = list(dashboards or DASHBOARDS)
    if time_from is None or time_to is None:
        span = data_time_range(store, database)
        if span is None:
            now = (generated or datetime.now(svg.TZ)).timestamp()
            span = (now - 7 * 86400, now)
        time_from = span[0] if time_from is None else time_from
        time_to = span[1] if time_to is None else time_to
    red = _newest_red(store, database, time_from, time_to, details)
    r = _Renderer(store, lang, database, time_from, time_to, {a for a, _, _ in red}, thresholds or DEFAULT)
    sections = []
    nav = []
    for d in dashboards:
        if d.key == "alert":
            continue
        sections.append(r.dashboard(d))
        nav.append(f'<a href="#{d.key}">{escape(d.title(lang))}</a>')
    alert_db = next((d for d in dashboards if d.key == "alert"), None)
    if alert_db is not None and red:
        nav.append(f'<a href="#details">{escape(_TXT["detail_of"](lang))}</a>')
        sections.append(f'<section class="dash" id="details"><h2>{escape(_TXT["detail_of"](lang))}</h2>'
                        f'<p>{escape(_TXT["details_note"](lang).format(n=len(red)))}</p></section>')
        for aid, rule, subject in red:
            heading = f'{_TXT["detail_of"](lang)} · {MAPPINGS["rule"].text(rule, lang)} · {subject}'
            sections.append(r.dashboard(alert_db, {"alert_id": aid}, anchor=f"alert-{aid}", heading=heading,
                                        css="dash detail"))
    fmt = "%Y-%m-%d %H:%M"
    period = (f"{datetime.fromtimestamp(time_from, svg.TZ):{fmt}} — "
              f"{datetime.fromtimestamp(time_to, svg.TZ):{fmt}}")
    gen = (generated or datetime.now(svg.TZ)).astimezone(svg.TZ).strftime(fmt)
    html_lang = "zh-CN" if lang == "zh" else "en"
    return (f'<!doctype html><html lang="{html_lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(_TXT["report"](lang))}</title><style>{CSS}</style></head><body>'
            f'<header><h1>{escape(_TXT["report"](lang))}</h1><div class="meta">'
            f'{escape(_TXT["period"](lang))}{_colon(lang)}{escape(period)}　'
            f'{escape(_TXT["generated"](lang))}{_colon(lang)}{escape(gen)}　'
            f'{escape(_TXT["offline"](lang))}</div></header>'
            f'<nav>{"".join(nav)}</nav><main>{"".join(sections)}</main></body></html>')


def write_report(store: Any, out: str | Path, **kw: Any) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(store, **kw), encoding="utf-8")
    tmp.replace(path)
    return path
