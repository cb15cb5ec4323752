"""Run a dashboard's panels against the store, as Grafana would.

Each panel's SQL goes through :func:`~lianwatch.dashboards.macros.expand_macros`
(the ClickHouse plugin's expansion) with the dashboard's time range and
variable values, then to :meth:`AlertStore.query`. Variables default to *All*
(or, for a single-value variable, its first option), computed in dashboard
order so a variable's query can use the ones before it, as Grafana does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .macros import ALL, expand_macros, grafana_interval_ms
from .model import DB_TOKEN, Dashboard, Panel, Var
from .thresholds import DEFAULT, Thresholds

__all__ = ["Context", "sql_for", "resolve_variables", "run_panel", "data_time_range", "panel_sql",
           "BuiltRun", "run_built"]


def sql_for(sql: str, database: str, thresholds: Thresholds | None = None) -> str:
    """A definition's SQL for one store and rules: ``__DB__`` and the ``{{th:…}}`` tokens filled."""
    return (thresholds or DEFAULT).render(sql.replace(DB_TOKEN, database))


@dataclass
class Context:
    """A time range and variable values for one dashboard."""

    time_from: float
    time_to: float
    values: dict[str, Any] = field(default_factory=dict)
    all_values: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # var → value → text
    database: str = "lianwatch"
    max_data_points: int = 1000
    thresholds: Thresholds = DEFAULT


def _expand(sql: str, ctx: Context, values: Mapping[str, Any], min_interval: str | None = None) -> str:
    return expand_macros(sql_for(sql, ctx.database, ctx.thresholds), ctx.time_from, ctx.time_to, values,
                         all_values=ctx.all_values,
                         interval_ms=grafana_interval_ms(ctx.time_from, ctx.time_to,
                                                         ctx.max_data_points, min_interval))


def _var_options(store: Any, var: Var, ctx: Context, lang: str) -> list[tuple[str, str]]:
    if var.kind == "custom":
        return [(v, t(lang)) for v, t in var.options]
    if var.kind == "textbox":
        return []
    rows = store.query(_expand(var.sql, ctx, ctx.values))
    out = []
    for r in rows:
        vals = list(r.values())
        value = "" if vals[0] is None else str(vals[0])
        text = str(vals[1]) if len(vals) > 1 and vals[1] is not None else value
        out.append((value, text))
    return out


def resolve_variables(store: Any, dash: Dashboard, time_from: float, time_to: float,
                      overrides: Mapping[str, Any] | None = None, *, database: str = "lianwatch",
                      lang: str = "zh", thresholds: Thresholds | None = None) -> Context:
    """Every variable's options and value (``overrides`` win; else All / the first option)."""
    ctx = Context(time_from, time_to, database=database, thresholds=thresholds or DEFAULT)
    overrides = dict(overrides or {})
    for var in dash.variables:
        opts = _var_options(store, var, ctx, lang)
        ctx.all_values[var.name] = [v for v, _ in opts]
        ctx.texts[var.name] = dict(opts)
        if var.name in overrides:
            ctx.values[var.name] = overrides[var.name]
        elif var.include_all:
            ctx.values[var.name] = [ALL] if var.multi else ALL
        else:
            ctx.values[var.name] = opts[0][0] if opts else ""
    return ctx


def panel_sql(panel: Panel, ctx: Context, ref: str = "A", values: Mapping[str, Any] | None = None) -> str:
    """The SQL ClickHouse receives for one of the panel's queries."""
    q = next(q for q in panel.queries() if q.ref == ref)
    return _expand(q.sql, ctx, values if values is not None else ctx.values, panel.interval)


def run_panel(store: Any, panel: Panel, ctx: Context, *, report: bool = False) -> dict[str, list[dict]]:
    """Rows per query ref. ``report``: apply the panel's ``report_vars`` (one chosen value)."""
    values = dict(ctx.values)
    if report:
        for name, pick_sql in panel.report_vars.items():
            rows = store.query(_expand(pick_sql, ctx, values))
            if rows:
                values[name] = [str(next(iter(rows[0].values())))]
    out = {}
    for q in panel.queries():
        out[q.ref] = store.query(panel_sql(panel, ctx, q.ref, values))
    return out


@dataclass
class BuiltRun:
    """What Grafana would send for one built dashboard: per variable its options
    (value, text) and chosen value; per panel query (panel id, refId) the SQL and rows."""

    options: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    variable_sql: dict[str, str] = field(default_factory=dict)
    sql: dict[tuple[int, str], str] = field(default_factory=dict)
    rows: dict[tuple[int, str], list[dict]] = field(default_factory=dict)


def _json_options(store: Any, v: dict[str, Any], ctx: Context, run: BuiltRun) -> list[tuple[str, str]]:
    if v["type"] == "custom":
        return [(o["value"], o["text"]) for o in v.get("options", []) if o["value"] != ALL]
    if v["type"] != "query":
        return []
    sql = _expand(v["query"], ctx, ctx.values)  # the query exactly as the JSON holds it
    run.variable_sql[v["name"]] = sql
    out = []
    for r in store.query(sql):  # metricFindQuery: first field the value, second the text
        vals = list(r.values())
        value = "" if vals[0] is None else str(vals[0])
        out.append((value, str(vals[1]) if len(vals) > 1 and vals[1] is not None else value))
    return out


def run_built(store: Any, dash: dict[str, Any], time_from: float, time_to: float,
              overrides: Mapping[str, Any] | None = None, *, max_data_points: int = 1000,
              panels: bool = True) -> BuiltRun:
    """Run a *built* dashboard (its JSON) as Grafana would: variables in order, each
    query from the JSON expanded with the values before it, then every panel target's
    ``rawSql`` with the panel's ``interval`` (``panels=False``: the variables only).
    Nothing from the Python definitions is used."""
    overrides = dict(overrides or {})
    ctx = Context(time_from, time_to, max_data_points=max_data_points)
    run = BuiltRun()
    for v in dash.get("templating", {}).get("list", []):
        opts = _json_options(store, v, ctx, run)
        run.options[v["name"]] = opts
        ctx.all_values[v["name"]] = [x for x, _ in opts]
        if v["name"] in overrides:
            value = overrides[v["name"]]
        elif v.get("includeAll"):
            value = [ALL] if v.get("multi") else ALL
        else:
            value = opts[0][0] if opts else ""
        ctx.values[v["name"]] = run.values[v["name"]] = value
    for p in dash.get("panels", []) if panels else []:
        for t in p.get("targets", []):
            key = (p["id"], t["refId"])
            run.sql[key] = sql = _expand(t["rawSql"], ctx, ctx.values, p.get("interval"))
            run.rows[key] = store.query(sql)
    return run


def data_time_range(store: Any, database: str = "lianwatch") -> tuple[float, float] | None:
    """The span of the stored event window (GPS and fuel; else payments, else alerts),
    whole days in Asia/Shanghai; None for an empty store."""
    for tables in (("events_gps", "events_fuel"), ("events_payments",), ("alerts",)):
        got = _span(store, database, tables)
        if got is not None:
            return got
    return None


def _span(store: Any, database: str, tables: tuple[str, ...]) -> tuple[float, float] | None:
    parts = []
    for t in tables:
        parts.append(f"SELECT min(toUnixTimestamp(event_time)) AS t_lo, max(toUnixTimestamp(event_time)) AS t_hi, "
                     f"count() AS t_n FROM {database}.{t}")
    rows = store.query(f"SELECT min(t_lo) AS lo, max(t_hi) AS hi, sum(t_n) AS n FROM ({' UNION ALL '.join(parts)}) "
                       f"WHERE t_n > 0")
    if not rows or not rows[0].get("n"):
        return None
    lo, hi = float(rows[0]["lo"]), float(rows[0]["hi"])
    day, off = 86400.0, 8 * 3600.0  # Asia/Shanghai has no DST
    lo = (lo + off) // day * day - off
    hi = ((hi + off) // day + 1) * day - off
    return lo, hi
