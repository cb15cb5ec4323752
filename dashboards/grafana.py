"""Panel definitions → Grafana dashboard JSON (Grafana 12, ``schemaVersion`` 42), and
the structural checks every built dashboard must pass.

Languages: each dashboard is built twice, Chinese (uid ``lw-overview``, the
default) and English (uid ``lw-overview-en``); every dashboard has a link to
its other-language twin (variables and time range kept) and drill-down links
stay within one language. The SQL is the same in both; only titles, labels
and value mappings differ (``title`` vs ``title_en`` columns are hidden by
language).

Queries use the ClickHouse data source provisioned with uid
:data:`DATASOURCE_UID` (``grafana-clickhouse-datasource`` 4.20.0: raw SQL
editor, ``format`` 0 = time series, 1 = table). Where the version fields come from:

* ``pluginVersion`` "4.20.0": the plugin release the macros follow
  (:data:`.plugin_macros.PLUGIN_VERSION`; tag ``v4.20.0``, ``package.json`` "version").
* ``queryType`` "timeseries" / "table": the plugin's ``QueryType`` enum
  (``src/types/queryBuilder.ts``: ``TimeSeries = 'timeseries'``, ``Table = 'table'``).
* ``schemaVersion`` 42: "Latest Version: 42 … Schema version 42 is the final version
  for the v1 dashboard API" (grafana/grafana
  ``apps/dashboard/pkg/migration/schemaversion/README.md``); the migrations 40–42
  (string ``refresh``, no ``timepicker.time_options``, ``hideFrom.tooltip``) find
  nothing to change in what is built here. 4.20.0 needs Grafana 11.6 or later
  (its ``docs/sources/_index.md``).

Variable queries are written like panel SQL (``__DB__``, macros, other variables)
and rendered the same way; a variable whose query uses the time range is
refreshed when the range changes (``refresh`` 2), the others on load (1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .labels import MAPPINGS
from .macros import ALL, variables_used
from .model import DB_TOKEN, Column, Dashboard, Panel, T, Var, layout
from .plugin_macros import PLUGIN_VERSION
from .run import sql_for
from .thresholds import DEFAULT, Thresholds

__all__ = ["DATASOURCE_TYPE", "DATASOURCE_UID", "PLUGIN_VERSION", "build_dashboard", "build_all",
           "check_dashboards", "LANGS", "dashboard_filename"]

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "lianwatch-clickhouse"
SCHEMA_VERSION = 42
LANGS = ("zh", "en")
FOLDER_UID = "lianwatch"
FOLDER_TITLE = "小微权力监督 lianwatch"

_LANG_SWITCH = {"zh": T("English", "English"), "en": T("中文", "中文")}


def _ds() -> dict[str, str]:
    return {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}


def _steps(th: Iterable[tuple[Any, str]] | None, thresholds: Thresholds = DEFAULT) -> dict[str, Any]:
    steps = [{"color": c, "value": thresholds.step(v)} for v, c in (th or ((None, "green"),))]
    return {"mode": "absolute", "steps": steps}


def _mappings(names: str | None, lang: str) -> list[dict[str, Any]]:
    if not names:
        return []
    options: dict[str, Any] = {}
    i = 0
    for name in names.split(","):
        for value, (text, color) in MAPPINGS[name].values.items():
            if value in options:
                continue
            opt: dict[str, Any] = {"text": text(lang), "index": i}
            if color:
                opt["color"] = color
            options[value] = opt
            i += 1
    return [{"type": "value", "options": options}] if options else []


def _link(kind: str, lang: str, uids: dict[str, str]) -> dict[str, Any]:
    if kind == "alert":
        return {"title": T("预警详情", "Alert detail")(lang), "targetBlank": False,
                "url": f"/d/{uids['alert']}/?var-alert_id=${{__value.raw}}&${{__url_time_range}}"}
    if kind == "vehicle":
        return {"title": T("车辆与油卡", "Vehicles & fuel")(lang),
                "url": f"/d/{uids['vehicles']}/?var-vehicle=${{__data.fields.vehicle_id}}&${{__url_time_range}}"}
    if kind == "village":
        return {"title": T("村级资金支付", "Village payments")(lang),
                "url": f"/d/{uids['payments']}/?var-village=${{__data.fields.village_id}}&${{__url_time_range}}"}
    raise KeyError(kind)


def _target(ref: str, sql: str, timeseries: bool, database: str, th: Thresholds) -> dict[str, Any]:
    return {"refId": ref, "datasource": _ds(), "editorType": "sql",
            "queryType": "timeseries" if timeseries else "table", "format": 0 if timeseries else 1,
            "rawSql": sql_for(sql, database, th), "pluginVersion": PLUGIN_VERSION}


def _by_name(name: str, props: list[dict[str, Any]]) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name}, "properties": props}


def _series_overrides(p: Panel, lang: str) -> list[dict[str, Any]]:
    return [_by_name(s.name, [{"id": "displayName", "value": s.label(lang)},
                              {"id": "color", "value": {"mode": "fixed", "fixedColor": s.color}}]
                     + ([{"id": "unit", "value": s.unit}] if s.unit else []))
            for s in p.series]


def _column_overrides(cols: Iterable[Column], lang: str, uids: dict[str, str],
                      th: Thresholds) -> list[dict[str, Any]]:
    out = []
    for c in cols:
        props: list[dict[str, Any]] = [{"id": "displayName", "value": c.label(lang)}]
        if c.hidden or (c.lang and c.lang != lang):
            props.append({"id": "custom.hidden", "value": True})
        if c.unit:
            props.append({"id": "unit", "value": c.unit})
        if c.decimals is not None:
            props.append({"id": "decimals", "value": c.decimals})
        if c.width:
            props.append({"id": "custom.width", "value": c.width})
        if c.kind == "time":
            props.append({"id": "unit", "value": "dateTimeAsIso"})
        if c.mapping:
            props.append({"id": "mappings", "value": _mappings(c.mapping, lang)})
        if c.thresholds:
            props.append({"id": "thresholds", "value": _steps(c.thresholds, th)})
            props.append({"id": "color", "value": {"mode": "thresholds"}})
        if c.colored:
            props.append({"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}})
        if c.kind == "json":
            props.append({"id": "custom.cellOptions", "value": {"type": "json-view"}})
            props.append({"id": "custom.inspect", "value": True})
        if c.link:
            props.append({"id": "links", "value": [_link(c.link, lang, uids)]})
        out.append(_by_name(c.name, props))
    return out


def _panel(p: Panel, pos: dict[str, int], pid: int, lang: str, uids: dict[str, str],
           database: str, th: Thresholds) -> dict[str, Any]:
    ts = p.kind == "timeseries"
    d: dict[str, Any] = {
        "id": pid, "type": p.kind, "title": th.render(p.title(lang)), "gridPos": dict(pos),
        "datasource": _ds(),
        "targets": [_target(q.ref, q.sql, ts, database, th) for q in p.queries()],
    }
    if p.description:
        d["description"] = th.render(p.description(lang))
    if p.interval:
        d["interval"] = p.interval
    defaults: dict[str, Any] = {"thresholds": _steps(p.thresholds, th), "mappings": []}
    if p.unit:
        defaults["unit"] = p.unit
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    overrides: list[dict[str, Any]] = []
    legend = {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []}
    if p.kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        d["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "none", "justifyMode": "center",
                        "textMode": "value", "orientation": "auto", "wideLayout": True,
                        "showPercentChange": False}
    elif p.kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {"drawStyle": "bars" if p.stacked else "line", "lineWidth": 2,
                              "fillOpacity": 70 if p.stacked else 15, "pointSize": 4,
                              "showPoints": "auto", "spanNulls": False, "barAlignment": 0,
                              "stacking": {"mode": "normal" if p.stacked else "none", "group": "A"},
                              "axisPlacement": "auto", "gradientMode": "none"}
        overrides = _series_overrides(p, lang)
        d["options"] = {"legend": legend, "tooltip": {"mode": "multi", "sort": "none"}}
    elif p.kind == "barchart":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {"fillOpacity": 85, "lineWidth": 0, "gradientMode": "none"}
        if p.x_mapping:
            overrides.append(_by_name(p.x, [{"id": "mappings", "value": _mappings(p.x_mapping, lang)}]))
        overrides += _series_overrides(p, lang)
        d["options"] = {"xField": p.x, "orientation": "horizontal" if p.horizontal else "vertical",
                        "stacking": "normal" if p.stacked else "none", "showValue": "auto",
                        "groupWidth": 0.7, "barWidth": 0.9, "xTickLabelRotation": 0,
                        "xTickLabelMaxLength": 16, "legend": legend,
                        "tooltip": {"mode": "multi", "sort": "none"}}
    elif p.kind == "piechart":
        defaults["color"] = {"mode": "palette-classic"}
        defaults["mappings"] = _mappings(p.x_mapping, lang)
        d["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": f"/^{p.series[0].name}$/",
                                          "values": True},
                        "pieType": "donut", "displayLabels": ["name", "percent"],
                        "legend": {"showLegend": True, "displayMode": "table", "placement": "right",
                                   "values": ["value", "percent"]},
                        "tooltip": {"mode": "single", "sort": "none"}}
    elif p.kind == "table":
        defaults["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False,
                              "filterable": True}
        overrides = _column_overrides(p.columns, lang, uids, th)
        d["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False},
                        "sortBy": []}
        d["transformations"] = [{"id": "organize", "options": {
            "indexByName": {c.name: i for i, c in enumerate(p.columns)},
            "excludeByName": {}, "renameByName": {}}}]
    elif p.kind == "geomap":
        defaults["color"] = {"mode": "thresholds"}
        layers = []
        for layer in p.layers:
            color = ({"field": layer.color_field, "fixed": layer.color} if layer.color_field
                     else {"fixed": layer.color})
            layers.append({
                "type": "markers", "name": layer.name(lang), "tooltip": True,
                "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                "filterData": {"id": "byRefId", "options": layer.ref},
                "config": {"showLegend": layer.color_field is not None, "style": {
                    "color": color, "opacity": 0.8, "size": {"fixed": layer.size, "min": 2, "max": 15},
                    "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                    "rotation": {"fixed": 0, "mode": "mod", "min": -360, "max": 360},
                    "symbolAlign": {"horizontal": "center", "vertical": "center"},
                    "textConfig": {"fontSize": 12, "textAlign": "center", "textBaseline": "middle",
                                   "offsetX": 0, "offsetY": 0}}},
            })
        d["options"] = {"view": {"id": "fit", "allLayers": True, "lat": 30.2, "lon": 120.2, "zoom": 10},
                        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True,
                                     "showScale": True},
                        "basemap": {"type": "default", "name": "Basemap", "config": {}},
                        "layers": layers, "tooltip": {"mode": "details"}}
    d["fieldConfig"] = {"defaults": defaults, "overrides": overrides}
    return d


def _esc(s: str) -> str:
    """A custom variable's option text: commas separate options unless escaped."""
    return s.replace(",", "\\,")


def _uses_time(sql: str) -> bool:
    return bool(re.search(r"\$__(time|from|to|date|dt\b|interval)|\$\{?__(from|to)\b", sql))


def _variable(v: Var, lang: str, database: str, th: Thresholds) -> dict[str, Any]:
    base: dict[str, Any] = {"name": v.name, "label": v.label(lang), "hide": 2 if v.hide else 0,
                            "skipUrlSync": False, "multi": v.multi, "includeAll": v.include_all}
    if v.include_all:
        cur = {"selected": True, "text": ["All"] if v.multi else "All",
               "value": [ALL] if v.multi else ALL}
    else:
        cur = {}
    if v.kind == "custom":
        base.update(type="custom", query=",".join(f"{_esc(t(lang))} : {_esc(val)}" for val, t in v.options),
                    options=([{"selected": True, "text": "All", "value": ALL}] if v.include_all else [])
                    + [{"selected": False, "text": t(lang), "value": val} for val, t in v.options],
                    current=cur)
    elif v.kind == "textbox":
        base.update(type="textbox", query="", current=cur or {"text": "", "value": ""})
    else:
        sql = sql_for(v.sql, database, th)
        base.update(type="query", datasource=_ds(), query=sql, definition=sql,
                    refresh=2 if _uses_time(sql) else 1,
                    regex="", sort=0, options=[], current=cur, allowCustomValue=True)
    return base


def dashboard_filename(d: Dashboard, lang: str) -> str:
    return f"{d.uid_for(lang)}.json"


def build_dashboard(d: Dashboard, lang: str = "zh", *, all_dashboards: Iterable[Dashboard] | None = None,
                    database: str = "lianwatch", thresholds: Thresholds | None = None) -> dict[str, Any]:
    """One dashboard's JSON in one language, with the thresholds of the rules in force."""
    th = thresholds or DEFAULT
    all_dashboards = list(all_dashboards or [d])
    uids = {x.key: x.uid_for(lang) for x in all_dashboards}
    pos = layout(d.panels)
    other = "en" if lang == "zh" else "zh"
    links = [
        {"type": "dashboards", "tags": ["lianwatch", lang], "asDropdown": False, "includeVars": False,
         "keepTime": True, "title": T("监督看板", "Dashboards")(lang), "icon": "external link",
         "targetBlank": False, "tooltip": "", "url": ""},
        {"type": "link", "title": _LANG_SWITCH[lang](lang), "url": f"/d/{d.uid_for(other)}",
         "includeVars": True, "keepTime": True, "asDropdown": False, "icon": "doc", "tags": [],
         "targetBlank": False, "tooltip": ""},
    ]
    return {
        "uid": d.uid_for(lang),
        "title": d.title(lang),
        "description": th.render(d.description(lang)),
        "tags": [*d.tags, lang],
        "timezone": "Asia/Shanghai",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "time": {"from": d.time_from, "to": d.time_to},
        "timepicker": {},
        "refresh": d.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "monday",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "links": links,
        "templating": {"list": [_variable(v, lang, database, th) for v in d.variables]},
        "panels": [_panel(p, pos[p.key], i + 1, lang, uids, database, th) for i, p in enumerate(d.panels)],
    }


def build_all(dashboards: Iterable[Dashboard], database: str = "lianwatch",
              langs: Iterable[str] = LANGS, thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    ds = list(dashboards)
    return [build_dashboard(d, lang, all_dashboards=ds, database=database, thresholds=thresholds)
            for lang in langs for d in ds]


# ----------------------------------------------------------------- checks
_BUILTIN_DS = {("grafana", "-- Grafana --")}
_UID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_LINK_UID = re.compile(r"/d/([A-Za-z0-9_-]+)")


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def _walk_strings(obj: Any):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _walk_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_strings(v)


def check_dashboards(dashboards: list[dict[str, Any]],
                     datasources: Iterable[dict[str, Any]]) -> list[str]:
    """Problems in built dashboard JSON (empty when all is well): no ``__DB__`` left, unique uids,
    grid positions within 24 columns and non-overlapping, every data source
    reference resolvable, every variable used defined (before use, for
    variables), every drill-down link to a known dashboard."""
    errs: list[str] = []
    known_ds = {(d.get("type"), d.get("uid")) for d in datasources} | _BUILTIN_DS
    uids = [d.get("uid") for d in dashboards]
    for u in {u for u in uids if uids.count(u) > 1}:
        errs.append(f"duplicate dashboard uid {u}")
    uid_set = set(uids)
    for d in dashboards:
        uid = d.get("uid", "?")
        if any(DB_TOKEN in x or "{{th:" in x for x in _walk_strings(d)):
            errs.append(f"{uid}: a {DB_TOKEN} or {{{{th:…}}}} placeholder is left in the JSON")
        if not isinstance(uid, str) or not _UID_RE.match(uid):
            errs.append(f"{uid}: bad uid")
        if not d.get("title"):
            errs.append(f"{uid}: no title")
        var_names = [v["name"] for v in d.get("templating", {}).get("list", [])]
        if len(set(var_names)) != len(var_names):
            errs.append(f"{uid}: duplicate variable names")
        defined: set[str] = set()
        for v in d.get("templating", {}).get("list", []):
            if "datasource" in v:
                ref = v["datasource"]
                if (ref.get("type"), ref.get("uid")) not in known_ds:
                    errs.append(f"{uid}: variable {v['name']}: unknown data source {ref}")
            for s in _walk_strings({k: v.get(k) for k in ("query", "definition")}):
                for name in variables_used(s):
                    if name not in defined:
                        errs.append(f"{uid}: variable {v['name']} uses ${name} before it is defined")
            defined.add(v["name"])
        ids = [p.get("id") for p in d.get("panels", [])]
        if len(set(ids)) != len(ids):
            errs.append(f"{uid}: duplicate panel ids")
        panels = d.get("panels", [])
        for i, p in enumerate(panels):
            g = p.get("gridPos") or {}
            name = f"{uid}/{p.get('title')}"
            if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
                errs.append(f"{name}: gridPos incomplete")
                continue
            if g["x"] < 0 or g["y"] < 0 or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
                errs.append(f"{name}: gridPos {g} outside 24 columns")
            for q in panels[i + 1:]:
                if _overlap(g, q.get("gridPos", {})):
                    errs.append(f"{name}: overlaps {q.get('title')}")
            refs = [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]
            for ref in refs:
                if ref is None or (ref.get("type"), ref.get("uid")) not in known_ds:
                    errs.append(f"{name}: unknown data source {ref}")
            refids = [t.get("refId") for t in p.get("targets", [])]
            if len(set(refids)) != len(refids) or not refids:
                errs.append(f"{name}: missing or duplicate refIds")
            for t in p.get("targets", []):
                if not (t.get("rawSql") or "").strip():
                    errs.append(f"{name}: empty SQL")
            for s in _walk_strings(p):
                for name_used in variables_used(s):
                    if name_used not in defined:
                        errs.append(f"{name}: uses undefined variable ${name_used}")
                for target in _LINK_UID.findall(s):
                    if target not in uid_set:
                        errs.append(f"{name}: link to unknown dashboard {target}")
            for layer in p.get("options", {}).get("layers", []) or []:
                ref = layer.get("filterData", {}).get("options")
                if ref not in refids:
                    errs.append(f"{name}: layer {layer.get('name')} reads missing query {ref}")
        for link in d.get("links", []):
            for target in _LINK_UID.findall(link.get("url", "")):
                if target not in uid_set:
                    errs.append(f"{uid}: dashboard link to unknown {target}")
    return errs


def pretty(d: dict[str, Any]) -> str:
    return json.dumps(d, ensure_ascii=False, indent=2, sort_keys=False) + "\n"
