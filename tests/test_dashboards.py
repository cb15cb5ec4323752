"""Dashboards as code: the plugin's macro expansion, every panel's SQL against a
filled store, the built Grafana JSON's structure, provisioning and ``apply``
against a fake Grafana on 127.0.0.1.

Two stores: one for the module, filled with :mod:`lianwatch.dashboards.sample`
(every panel, exact numbers, handling history), and the session's demo county
(tests/conftest.py: the generator replayed), on which every panel must run too.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lianwatch.dashboards import macros
from lianwatch.dashboards.definitions import DASHBOARDS, get
from lianwatch.dashboards.grafana import (DATASOURCE_TYPE, DATASOURCE_UID, build_all, build_dashboard,
                                          check_dashboards)
from lianwatch.dashboards.macros import ALL, MacroError, expand_macros
from lianwatch.dashboards.run import data_time_range, panel_sql, resolve_variables, run_panel

F, T = 1772380800, 1773590400  # 2026-03-02 .. 2026-03-16 (+08:00)
DS = [{"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}]


# ============================================================ macro expansion
def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


#: grafana/clickhouse-datasource v4.20.0, pkg/macros/macros_test.go, ported case by case:
#: (Go test, SQL, from, to, interval ms, expected SQL — or MacroError)
P1 = ("2014-11-12T11:45:26.371Z", "2015-11-12T11:45:26.371Z")  # the handler tests' range
P2 = ("2014-11-12T11:45:26.123Z", "2015-11-12T11:45:26.456Z")  # TestInterpolate*'s range
PLUGIN_CASES = [
    ("TestMacroFromTimeFilter", "$__fromTime", *P1, 0, "toDateTime(1415792726)"),
    ("TestMacroToTimeFilter", "$__toTime", *P1, 0, "toDateTime(1447328726)"),
    ("TestMacroFromTimeFilterMs", "$__fromTime_ms", *P1, 0, "fromUnixTimestamp64Milli(1415792726371)"),
    ("TestMacroToTimeFilterMs", "$__toTime_ms", *P1, 0, "fromUnixTimestamp64Milli(1447328726371)"),
    ("TestMacroDateFilter", "$__dateFilter(dateCol)", *P1, 0,
     "dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')"),
    ("TestMacroDateTimeFilter", "$__dateTimeFilter(dateCol, timeCol)", *P1, 0,
     "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND "
     "(timeCol >= toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))"),
    ("TestMacroTimeInterval", "$__timeInterval(col)", *P1, 20_000,
     "toStartOfInterval(toDateTime(col), INTERVAL 20 second)"),
    ("TestMacroTimeIntervalMs", "$__timeInterval_ms(col)", *P1, 20_000,
     "toStartOfInterval(toDateTime64(col, 3), INTERVAL 20000 millisecond)"),
    ("TestMacroIntervalSeconds", "$__interval_s", *P1, 20_000, "20"),
    ("TestMacroTimeFrom", "$__timeFrom(ts)", *P1, 0, "ts >= toDateTime(1415792726)"),
    ("TestMacroTimeFrom/no args", "$__timeFrom()", *P1, 0, MacroError),
    ("TestMacroTimeTo", "$__timeTo(ts)", *P1, 0, "ts <= toDateTime(1447328726)"),
    ("TestMacroTimeTo/no args", "$__timeTo", *P1, 0, MacroError),
    ("TestMacroTimeGroup/5m", "$__timeGroup(ts, 5m)", *P1, 0,
     "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
    ("TestMacroTimeGroup/1h", "$__timeGroup(ts, 1h)", *P1, 0,
     "toStartOfInterval(toDateTime(ts), INTERVAL 3600 second)"),
    ("TestMacroTimeGroup/one arg", "$__timeGroup(ts)", *P1, 0, MacroError),
    ("TestMacroTimeGroup/bad duration", "$__timeGroup(ts, not-a-duration)", *P1, 0, MacroError),
    ("TestMacroErrorsAreDownstream/TimeFilter", "$__timeFilter", *P1, 0, MacroError),
    ("TestMacroErrorsAreDownstream/TimeFilterMs", "$__timeFilter_ms()", *P1, 0, MacroError),
    ("TestMacroErrorsAreDownstream/DateFilter", "$__dateFilter", *P1, 0, MacroError),
    ("TestMacroErrorsAreDownstream/DateTimeFilter", "$__dateTimeFilter(d)", *P1, 0, MacroError),
    ("TestMacroErrorsAreDownstream/TimeInterval", "$__timeInterval", *P1, 0, MacroError),
    ("TestMacroErrorsAreDownstream/TimeIntervalMs", "$__timeInterval_ms", *P1, 0, MacroError),
    ("TestMacroErrorsAreDownstream/TimeGroup nope", "$__timeGroup(ts, nope)", *P1, 0, MacroError),
    ("TestInterpolate/timeFilter", "select * from foo where $__timeFilter(cast(sth as timestamp))", *P2, 0,
     "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND "
     "cast(sth as timestamp) <= toDateTime(1447328726)"),
    ("TestInterpolate/timeFilter spaces", "select * from foo where $__timeFilter(cast(sth as timestamp) )",
     *P2, 0, "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND "
     "cast(sth as timestamp) <= toDateTime(1447328726)"),
    ("TestInterpolate/timeFilter_ms", "select * from foo where $__timeFilter_ms(cast(sth as timestamp))",
     *P2, 0, "select * from foo where cast(sth as timestamp) >= fromUnixTimestamp64Milli(1415792726123) "
     "AND cast(sth as timestamp) <= fromUnixTimestamp64Milli(1447328726456)"),
    ("TestInterpolate/timeFilter_ms spaces",
     "select * from foo where $__timeFilter_ms(cast(sth as timestamp) )", *P2, 0,
     "select * from foo where cast(sth as timestamp) >= fromUnixTimestamp64Milli(1415792726123) "
     "AND cast(sth as timestamp) <= fromUnixTimestamp64Milli(1447328726456)"),
    ("TestInterpolate/fromTime toTime",
     "select * from foo where ( date >= $__fromTime and date <= $__toTime ) limit 100", *P2, 0,
     "select * from foo where ( date >= toDateTime(1415792726) and date <= toDateTime(1447328726) ) "
     "limit 100"),
    ("TestInterpolate/fromTime toTime clauses",
     "select * from foo where ( date >= $__fromTime ) and ( date <= $__toTime ) limit 100", *P2, 0,
     "select * from foo where ( date >= toDateTime(1415792726) ) and ( date <= toDateTime(1447328726) ) "
     "limit 100"),
    ("TestInterpolate/fromTime_ms toTime_ms",
     "select * from foo where ( date >= $__fromTime_ms and date <= $__toTime_ms ) limit 100", *P2, 0,
     "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) and "
     "date <= fromUnixTimestamp64Milli(1447328726456) ) limit 100"),
    ("TestInterpolate/fromTime_ms toTime_ms clauses",
     "select * from foo where ( date >= $__fromTime_ms ) and ( date <= $__toTime_ms ) limit 100", *P2, 0,
     "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) ) and "
     "( date <= fromUnixTimestamp64Milli(1447328726456) ) limit 100"),
    ("TestInterpolateNestedMacros/sole argument", "SELECT $__timeInterval($__fromTime) AS from_time",
     *P2, 60_000,
     "SELECT toStartOfInterval(toDateTime(toDateTime(1415792726)), INTERVAL 60 second) AS from_time"),
    ("TestInterpolateNestedMacros/ms", "SELECT $__timeInterval_ms($__fromTime_ms)", *P2, 60_000,
     "SELECT toStartOfInterval(toDateTime64(fromUnixTimestamp64Milli(1415792726123), 3), "
     "INTERVAL 60000 millisecond)"),
    ("TestInterpolateNestedMacros/inside an expression",
     "select * from foo where $__timeFilter(coalesce(closed_at, $__toTime))", *P2, 60_000,
     "select * from foo where coalesce(closed_at, toDateTime(1447328726)) >= toDateTime(1415792726) AND "
     "coalesce(closed_at, toDateTime(1447328726)) <= toDateTime(1447328726)"),
    ("TestInterpolateBackslashEscapedStringLiterals/--",
     r"select * from foo where msg = 'it\'s -- fine' and $__fromTime", *P2, 0,
     r"select * from foo where msg = 'it\'s -- fine' and toDateTime(1415792726)"),
    ("TestInterpolateBackslashEscapedStringLiterals//*",
     r"select * from foo where msg = 'a\'/*x' and $__toTime", *P2, 0,
     r"select * from foo where msg = 'a\'/*x' and toDateTime(1447328726)"),
    ("TestInterpolateBackslashEscapedStringLiterals/doubled",
     "select * from foo where msg = 'it''s' and $__fromTime", *P2, 0,
     "select * from foo where msg = 'it''s' and toDateTime(1415792726)"),
]


@pytest.mark.parametrize("name,sql,t0,t1,interval,want", PLUGIN_CASES, ids=[c[0] for c in PLUGIN_CASES])
def test_macros_as_the_plugin(name, sql, t0, t1, interval, want):
    from lianwatch.dashboards.plugin_macros import interpolate

    if want is MacroError:
        with pytest.raises(MacroError):
            interpolate(sql, _ms(t0), _ms(t1), interval)
    else:
        assert interpolate(sql, _ms(t0), _ms(t1), interval) == want


class TestMacros:
    """Beyond the plugin's own cases: what its engine (macropro 1.0.1) does around them,
    and the browser's part (variables, ``$__conditionalAll``)."""

    def test_time_macros(self):
        e = lambda s: expand_macros(s, F + 0.9, T + 0.25, interval_ms=20_000)  # noqa: E731
        assert e("$__timeFilter(ts)") == f"ts >= toDateTime({F}) AND ts <= toDateTime({T})"
        assert e("$__timeFilter_ms(ts)") == (f"ts >= fromUnixTimestamp64Milli({F}900) AND "
                                             f"ts <= fromUnixTimestamp64Milli({T}250)")
        assert e("$__dateFilter(d)") == "d >= toDate('2026-03-01') AND d <= toDate('2026-03-15')"
        # 4.20 overrides the SDK's string literal with ClickHouse's own functions
        assert e("$__timeFrom(t)") == f"t >= toDateTime({F})"
        assert e("$__timeTo(t)") == f"t <= toDateTime({T})"
        assert e("$__timeGroup(t, '1h30m')") == "toStartOfInterval(toDateTime(t), INTERVAL 5400 second)"
        assert e("$__timeGroup(t, 500ms)") == "toStartOfInterval(toDateTime(t), INTERVAL 1 second)"

    def test_time_group_takes_go_durations_only(self):
        for bad, why in (("hour", 'invalid duration "hour"'), ("1d", 'unknown unit "d"'),
                         ("5", 'missing unit'), ("0s", "must be positive"), ("100ms", "must be positive")):
            with pytest.raises(MacroError, match=why):
                expand_macros(f"$__timeGroup(ts, {bad})", 1, 2)

    def test_interval_floor_and_minimum(self):
        from lianwatch.dashboards.plugin_macros import interpolate

        assert expand_macros("$__interval_s", 0, 10, interval_ms=1500) == "1"   # int(1.5)
        assert expand_macros("$__interval_s", 0, 10, interval_ms=200) == "1"    # max(…, 1)
        assert expand_macros("$__timeInterval_ms(t)", 0, 10, interval_ms=0).endswith("INTERVAL 1 millisecond)")
        # Grafana's own interval: 14 days over 1000 points → 20 min; a panel minimum wins
        assert macros.grafana_interval_ms(F, T, 1000) == 1_200_000
        assert macros.grafana_interval_ms(F, T, 1000, "6h") == 21_600_000
        # the browser replaces $__interval first (Grafana's text) …
        assert expand_macros("$__interval $__interval_ms", F, T, interval_ms=86_400_000) == "1d 86400000"
        # … what reaches the back end is macropro's FormatDuration: the largest whole unit
        assert [interpolate("$__interval", 0, 1, ms) for ms in (86_400_000, 300_000, 1500, 0)] == \
            ["24h", "5m", "1500ms", "0s"]
        with pytest.raises(MacroError, match="no table name"):
            interpolate("SELECT * FROM $__table", 0, 1, 1)
        assert interpolate("$__table.$__column", 0, 1, 1, table="t", column="c") == "t.c"

    def test_comments_are_blanked_strings_are_not(self):
        from lianwatch.dashboards.plugin_macros import interpolate, strip_comments

        sql = "SELECT 1 -- $__timeFilter() 注释\nFROM t /* $__nope( */ WHERE $__fromTime"
        out = interpolate(sql, 1000, 2000, 1)
        assert out == ("SELECT 1 " + " " * len("-- $__timeFilter() 注释".encode()) + "\nFROM t "
                       + " " * len("/* $__nope( */") + " WHERE toDateTime(1)")
        assert interpolate("SELECT 1 /* $__x", 0, 1, 1) == "SELECT 1 " + " " * 7
        # quotes are kept and protect what looks like a comment …
        assert strip_comments("a = '-- no' AND b = \"/* no */\"") == "a = '-- no' AND b = \"/* no */\""
        # … but macros inside quoted strings ARE expanded, as the plugin does (macropro has
        # "no notion of identifiers vs. literals")
        assert interpolate("x = '$__fromTime'", 5000, 6000, 1) == "x = 'toDateTime(5)'"
        # a query with no $__ at all goes out untouched, comments included
        assert interpolate("SELECT 1 -- hi", 0, 1, 1) == "SELECT 1 -- hi"

    def test_parser_edge_cases(self):
        # the longest name wins: $__timeFilter never eats $__timeFilter_ms
        out = expand_macros("$__timeFilter_ms(a) AND $__timeFilter(b)", 1, 2, interval_ms=1000)
        assert out == ("a >= fromUnixTimestamp64Milli(1000) AND a <= fromUnixTimestamp64Milli(2000) AND "
                       "b >= toDateTime(1) AND b <= toDateTime(2)")
        # nested brackets and quoted commas are one argument; arguments are trimmed
        assert expand_macros("$__timeFilter( toDateTime(x, 'U,TC') )", 1, 2) == \
            "toDateTime(x, 'U,TC') >= toDateTime(1) AND toDateTime(x, 'U,TC') <= toDateTime(2)"
        # brackets must follow the name directly, else the macro has no arguments
        assert expand_macros("$__fromTime (1)", 1, 2) == "toDateTime(1) (1)"
        # unknown macros and a bare prefix stay as they are
        assert expand_macros("$__nothing(1) $__ $__fromTimes", 1, 2) == "$__nothing(1) $__ $__fromTimes"
        with pytest.raises(MacroError, match=r"macro \$__timeFilter\(\): unexpected number of arguments: "
                                             r"\$__timeFilter expected 1 argument\(s\), received 0"):
            expand_macros("WHERE $__timeFilter", 1, 2)
        with pytest.raises(MacroError, match="expected 1 argument"):
            expand_macros("$__timeFilter(a, b)", 1, 2)
        with pytest.raises(MacroError, match="received 0"):  # unbalanced: a call without arguments
            expand_macros("$__timeFilter(a", 1, 2)

    def test_variables(self):
        v = {"town": ["益农镇", "O'Hare"], "one": "a'b", "lvl": "red"}
        e = lambda s: expand_macros(s, 1, 2, v)  # noqa: E731
        assert e("IN (${town:singlequote})") == "IN ('益农镇','O\\'Hare')"
        assert e("IN ($town)") == "IN ('益农镇','O'Hare')"          # the plugin's own format: no escaping
        assert e("= ${one:singlequote}") == "= 'a\\'b'"
        assert e("= ${one:sqlstring}") == "= 'a''b'"
        assert e("= $lvl") == "= red"                              # single value: as is
        assert e("${town:csv}|${town:pipe}|${town:json}") == '益农镇,O\'Hare|益农镇|O\'Hare|["益农镇","O\'Hare"]'
        assert e("[[lvl]] ${lvl:raw} ${nope:singlequote}") == "red red ${nope:singlequote}"  # unknown: kept
        assert e("${__from}-${__to:date:seconds}") == "1000-2"
        # All: every option's value, unless a custom all value is set (then unformatted)
        assert expand_macros("IN (${t:singlequote})", 1, 2, {"t": [ALL]}, all_values={"t": ["x", "y"]}) == \
            "IN ('x','y')"
        assert expand_macros("IN (${t:singlequote})", 1, 2, {"t": ALL}, custom_all={"t": "SELECT 1"}) == \
            "IN (SELECT 1)"

    def test_conditional_all(self):
        sql = ("WHERE $__conditionalAll(town IN (${town:singlequote}), $town) "
               "AND $__conditionalAll(rule IN (${rule:singlequote}), ${rule})")
        assert expand_macros(sql, 1, 2, {"town": [ALL], "rule": ALL}) == "WHERE 1=1 AND 1=1"
        assert expand_macros(sql, 1, 2, {"town": ["益农镇"], "rule": []}) == \
            "WHERE town IN ('益农镇') AND 1=1"
        assert expand_macros(sql, 1, 2, {"town": "", "rule": ["a", "b"]}) == "WHERE 1=1 AND rule IN ('a','b')"
        # an unknown variable leaves the condition (and then its text) in place, as in Grafana
        assert expand_macros("$__conditionalAll(x = 1, $zz)", 1, 2, {}) == "x = 1"

    def test_time_can_be_datetime(self):
        a = datetime(2026, 3, 2, tzinfo=timezone.utc)
        assert expand_macros("$__fromTime", a, a) == f"toDateTime({int(a.timestamp())})"


# ============================================================ the store
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from lianwatch.dashboards.sample import fill_sample_store
    from lianwatch.sinks.store import open_store

    path = tmp_path_factory.mktemp("dash-store")
    store = open_store(path=str(path))
    info = fill_sample_store(store)
    return store, info, path


def _overrides(d, info):
    return {"alert_id": info.alert_ids["fuel.not_at_station"]} if d.key == "alert" else {}


PANELS = [(d.key, p.key) for d in DASHBOARDS for p in d.panels]


def test_time_range_is_the_data(sample):
    store, info, _ = sample
    assert data_time_range(store) == (info.time_from, info.time_to)


@pytest.mark.parametrize("dash,panel", PANELS, ids=[f"{d}-{p}" for d, p in PANELS])
def test_every_panel_runs_and_returns_its_columns(sample, dash, panel):
    store, info, _ = sample
    d = get(dash)
    p = next(x for x in d.panels if x.key == panel)
    ctx = resolve_variables(store, d, *data_time_range(store), _overrides(d, info))
    data = run_panel(store, p, ctx, report=True)
    for q in p.queries():
        rows = data[q.ref]
        assert rows, f"{dash}/{panel}/{q.ref} returned no rows:\n{panel_sql(p, ctx, q.ref)}"
    rows = data["A"]
    missing = set(p.fields) - set(rows[0])
    assert not missing, f"{dash}/{panel} lacks {missing}"
    # what the panel shows must come from its SQL
    for c in p.columns:
        assert c.name in rows[0], f"{dash}/{panel}: column {c.name} not returned"
    for s in p.series:
        assert s.name in rows[0], f"{dash}/{panel}: series {s.name} not returned"
    if p.x:
        assert p.x in rows[0]
    if p.kind == "geomap":
        for ref in data:
            assert {"lat", "lon"} <= set(data[ref][0]), ref
        assert all(-90 <= r["lat"] <= 90 and -180 <= r["lon"] <= 180 for r in rows)
    # the SQL ClickHouse got had every macro and variable expanded
    sql = panel_sql(p, ctx)
    assert "$" not in sql.replace("$$", ""), sql


def test_numbers_match_the_sample(sample):
    store, info, _ = sample
    d = get("overview")
    ctx = resolve_variables(store, d, *data_time_range(store))
    val = {p.key: run_panel(store, p, ctx)["A"] for p in d.panels}
    assert val["open_red"][0]["open_red"] + val["open_yellow"][0]["open_yellow"] + val["closed"][0]["closed"] \
        == sum(r["alerts"] for r in val["state"])
    by_rule = {r["rule"]: (r["red"], r["yellow"]) for r in val["by_rule"]}
    assert by_rule["fuel.not_at_station"] == (5, 0)
    v = get("vehicles")
    vctx = resolve_variables(store, v, *data_time_range(store))
    fills = run_panel(store, next(p for p in v.panels if p.key == "fills"), vctx)["A"][0]["fills"]
    assert fills == 32  # two fills were archived twice: counted once
    txns = run_panel(store, next(p for p in v.panels if p.key == "fuel_txns"), vctx)["A"]
    away = [r for r in txns if r["rule"] == "fuel.not_at_station"]
    assert len(away) == 5 and all(r["distance_m"] > 500 for r in away)
    near = [r for r in txns if not r["rule"] and r["distance_m"] is not None]
    assert near and all(r["distance_m"] < 100 for r in near)  # computed from the nearest fix
    assert any(r["plate"] == "浙A·17HX" for r in txns)        # card-only fills found their car


def test_filters_narrow_the_panels(sample):
    store, info, _ = sample
    d = get("overview")
    span = data_time_range(store)
    p = next(x for x in d.panels if x.key == "by_town")
    everything = run_panel(store, p, resolve_variables(store, d, *span))["A"]
    one = run_panel(store, p, resolve_variables(store, d, *span, {"town": ["党湾镇"]}))["A"]
    assert len(everything) == 3 and [r["town"] for r in one] == ["党湾镇"]
    red_only = resolve_variables(store, d, *span, {"level": ["red"]})
    rows = run_panel(store, next(x for x in d.panels if x.key == "by_rule"), red_only)["A"]
    assert rows and all(r["yellow"] == 0 for r in rows)
    village_opts = resolve_variables(store, d, *span, {"town": ["党湾镇"]}).all_values["village"]
    assert village_opts and len(village_opts) < 8


def test_alert_detail_of_each_rule(sample):
    store, info, _ = sample
    d = get("alert")
    for rule, aid in info.alert_ids.items():
        ctx = resolve_variables(store, d, info.time_from, info.time_to, {"alert_id": aid})
        summary = run_panel(store, d.panels[0], ctx)["A"]
        assert {"field": "rule", "value": rule} in summary
        sources = run_panel(store, next(p for p in d.panels if p.key == "sources"), ctx)["A"]
        assert sources, rule


# ============================================================ Grafana JSON
@pytest.fixture(scope="module")
def built():
    return build_all(DASHBOARDS)


def test_built_dashboards_pass_the_checks(built):
    assert len(built) == 2 * len(DASHBOARDS)
    assert check_dashboards(built, DS) == []
    uids = [d["uid"] for d in built]
    assert len(set(uids)) == len(uids) and "lw-overview" in uids and "lw-overview-en" in uids


def test_grid_and_references(built):
    for d in built:
        assert d["schemaVersion"] == 42
        cells = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{d['uid']}: {p['title']} overlaps"
                    cells.add((x, y))
            for t in [p] + p["targets"]:
                assert t["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
            for t in p["targets"]:
                assert t["editorType"] == "sql" and t["format"] in (0, 1) and t["pluginVersion"] == "4.20.0"
                assert t["queryType"] == ("timeseries" if p["type"] == "timeseries" else "table")
                assert "__DB__" not in t["rawSql"] and "lianwatch." in t["rawSql"]
        names = {v["name"] for v in d["templating"]["list"]}
        text = json.dumps(d["panels"], ensure_ascii=False)
        assert macros.variables_used(text) <= names


def test_languages_and_drilldowns(built):
    zh = next(d for d in built if d["uid"] == "lw-overview")
    en = next(d for d in built if d["uid"] == "lw-overview-en")
    assert zh["title"].startswith("小微权力监督") and en["title"].startswith("Micro-power")
    assert [p["targets"][0]["rawSql"] for p in zh["panels"]] == [p["targets"][0]["rawSql"] for p in en["panels"]]
    assert any(link.get("url") == "/d/lw-overview-en" for link in zh["links"])
    table = next(p for p in zh["panels"] if p["title"] == "最新红色预警")
    urls = [prop["value"][0]["url"] for o in table["fieldConfig"]["overrides"] for prop in o["properties"]
            if prop["id"] == "links"]
    assert urls and urls[0].startswith("/d/lw-alert/?var-alert_id=${__value.raw}")
    en_table = next(p for p in en["panels"] if p["title"] == "Newest red alerts")
    hidden = {o["matcher"]["options"] for o in en_table["fieldConfig"]["overrides"]
              for prop in o["properties"] if prop["id"] == "custom.hidden"}
    assert "title" in hidden and "title_en" not in hidden
    level = next(d for d in built if d["uid"] == "lw-overview")["templating"]["list"][-1]
    assert level["name"] == "level" and level["query"] == "红色 : red,黄色 : yellow"
    geo = next(p for p in zh["panels"] if p["type"] == "geomap")
    assert geo["options"]["layers"][0]["location"] == {"mode": "coords", "latitude": "lat", "longitude": "lon"}


def test_checker_finds_problems():
    d = build_dashboard(get("overview"), "zh", all_dashboards=DASHBOARDS)
    bad = json.loads(json.dumps(d))
    bad["panels"][1]["gridPos"] = dict(bad["panels"][0]["gridPos"])
    bad["panels"][2]["gridPos"]["x"] = 20
    bad["panels"][3]["targets"][0]["datasource"] = {"type": "mysql", "uid": "nope"}
    bad["panels"][4]["targets"][0]["rawSql"] += " AND x = ${ghost:singlequote}"
    bad["templating"]["list"][1]["query"] += " AND $later"
    bad["panels"][5]["links"] = [{"url": "/d/lw-missing"}]
    errs = "\n".join(check_dashboards([bad, bad], DS))
    for needle in ("duplicate dashboard uid", "overlaps", "outside 24 columns", "unknown data source",
                   "undefined variable $ghost", "uses $later before", "unknown dashboard lw-missing"):
        assert needle in errs, needle


# ============================================================ provisioning
def test_build_writes_provisioning(tmp_path, monkeypatch):
    from lianwatch.cli import main

    monkeypatch.setenv("LIANWATCH_CH_HOST", "ch.internal")
    monkeypatch.setenv("LIANWATCH_CH_PORT", "19000")
    monkeypatch.setenv("LIANWATCH_CH_USER", "grafana_ro")
    monkeypatch.setenv("LIANWATCH_CH_PASSWORD", "s3cret-literal")
    assert main(["dashboards", "build", "--out", str(tmp_path)]) == 0
    ds = (tmp_path / "provisioning" / "datasources" / "lianwatch.yaml").read_text("utf-8")
    assert 'type: "grafana-clickhouse-datasource"' in ds and 'protocol: "native"' in ds
    assert 'host: "ch.internal"' in ds and "port: 19000" in ds and 'username: "grafana_ro"' in ds
    assert 'password: "${LIANWATCH_CH_PASSWORD}"' in ds and "s3cret" not in ds
    prov = (tmp_path / "provisioning" / "dashboards" / "lianwatch.yaml").read_text("utf-8")
    assert str((tmp_path / "dashboards").resolve()) in prov and "type: file" in prov
    files = sorted(p.name for p in (tmp_path / "dashboards").glob("*.json"))
    assert len(files) == 10 and "lw-alert-en.json" in files
    for f in (tmp_path / "dashboards").glob("*.json"):
        assert "s3cret" not in f.read_text("utf-8")
        json.loads(f.read_text("utf-8"))
    try:
        import yaml  # optional: parse when PyYAML is around
    except ImportError:
        return
    assert yaml.safe_load(ds)["datasources"][0]["jsonData"]["port"] == 19000


class _FakeGrafana(BaseHTTPRequestHandler):
    """Records every request; answers like Grafana's HTTP API for what apply uses."""

    state: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        rec = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
               "body": body}
        self.state["requests"].append(rec)
        return rec

    def do_GET(self):  # noqa: N802
        self._record()
        if self.path == "/api/folders/lianwatch":
            if self.state["folder"]:
                return self._reply(200, {"uid": "lianwatch", "title": self.state["folder"]})
            return self._reply(404, {"message": "folder not found"})
        if self.path.startswith("/api/datasources/uid/"):
            return self._reply(404, {"message": "Data source not found"})
        return self._reply(404, {"message": "not found"})

    def do_POST(self):  # noqa: N802
        rec = self._record()
        if self.path == "/api/folders":
            self.state["folder"] = rec["body"]["title"]
            return self._reply(200, {"uid": rec["body"]["uid"], "title": rec["body"]["title"]})
        if self.path == "/api/dashboards/db":
            uid = rec["body"]["dashboard"]["uid"]
            self.state["dashboards"][uid] = rec["body"]
            return self._reply(200, {"status": "success", "uid": uid, "version": 1})
        if self.path == "/api/datasources":
            return self._reply(200, {"message": "Datasource added", "id": 1})
        return self._reply(404, {"message": "not found"})


@pytest.fixture
def fake_grafana():
    _FakeGrafana.state = {"requests": [], "folder": None, "dashboards": {}}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", _FakeGrafana.state
    finally:
        srv.shutdown()
        srv.server_close()


def test_apply_pushes_to_grafana(fake_grafana, monkeypatch):
    from lianwatch.cli import main

    url, state = fake_grafana
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_test_token")
    monkeypatch.setenv("LIANWATCH_CH_PASSWORD", "pw-from-env")
    assert main(["dashboards", "apply", "--url", url, "--with-datasource"]) == 0
    reqs = state["requests"]
    assert all(r["auth"] == "Bearer glsa_test_token" for r in reqs)
    paths = [(r["method"], r["path"]) for r in reqs]
    assert ("POST", "/api/folders") in paths
    assert paths.index(("POST", "/api/folders")) < paths.index(("POST", "/api/dashboards/db"))
    ds_post = next(r for r in reqs if r["path"] == "/api/datasources")
    assert ds_post["body"]["uid"] == DATASOURCE_UID and ds_post["body"]["jsonData"]["protocol"] == "native"
    assert ds_post["body"]["secureJsonData"] == {"password": "pw-from-env"}
    assert len(state["dashboards"]) == 10
    for uid, body in state["dashboards"].items():
        assert body["overwrite"] is True and body["folderUid"] == "lianwatch"
        assert body["dashboard"]["uid"] == uid and body["dashboard"]["id"] is None
    # again: the folder exists now, dashboards are overwritten by uid
    state["requests"].clear()
    assert main(["dashboards", "apply", "--url", url]) == 0
    paths = [(r["method"], r["path"]) for r in state["requests"]]
    assert ("POST", "/api/folders") not in paths and ("POST", "/api/datasources") not in paths
    assert paths.count(("POST", "/api/dashboards/db")) == 10


def test_apply_reports_an_unreachable_grafana(monkeypatch, capsys):
    from lianwatch.cli import main

    monkeypatch.setenv("GRAFANA_TOKEN", "t")
    assert main(["dashboards", "apply", "--url", "http://127.0.0.1:9", "--timeout", "2"]) == 1
    assert "cannot apply" in capsys.readouterr().err


def test_cli_list_and_sql(capsys):
    from lianwatch.cli import main

    assert main(["dashboards", "list"]) == 0
    assert "lw-overview" in capsys.readouterr().out
    assert main(["dashboards", "sql", "overview", "trend", "--from", "2026-03-02", "--to", "2026-03-16",
                 "--var", "town=益农镇"]) == 0
    sql = capsys.readouterr().out
    assert f"toDateTime({F})" in sql and "v.town IN ('益农镇')" in sql and "INTERVAL 21600 second" in sql


# ============================================================ report and demo hook
def test_report_command_and_demo_hook(sample, tmp_path, capsys):
    from lianwatch.cli import main
    from lianwatch.dashboards.demo import after_demo
    from lianwatch.settings import Settings

    store, info, path = sample
    out = tmp_path / "r.html"
    assert main(["report", "--store", str(path), "--out", str(out), "--details", "2"]) == 0
    html = out.read_text("utf-8")
    assert "小微权力监督报告" in html and html.count('class="panel ') >= 40
    assert 'id="alert-' in html and 'href="#alert-' in html
    written = after_demo(store=store, data_dir=tmp_path)
    assert written == tmp_path / "report.html" and written.exists()
    assert str(written.resolve()) in capsys.readouterr().out


# ============================================================ the real demo
#: panels that may be empty on a plain replay: nothing has been handled yet (no lifecycle run)
EMPTY_ON_REPLAY = {("alert", "history")}


@pytest.fixture(scope="module")
def demo_ctx(demo):
    """Time range of the session's demo county and one alert of each rule."""
    span = data_time_range(demo.store)
    assert span is not None
    firsts = {}
    for a in demo.result.alerts:
        firsts.setdefault(a.rule, a.alert_id)
    return span, firsts


@pytest.mark.parametrize("dash,panel", PANELS, ids=[f"{d}-{p}" for d, p in PANELS])
def test_every_panel_on_the_demo(demo, demo_ctx, dash, panel):
    """The generator's county replayed (tests/conftest.py ``demo``): every panel's SQL runs,
    returns its columns, and has rows (the county has incidents of every rule)."""
    span, firsts = demo_ctx
    d = get(dash)
    p = next(x for x in d.panels if x.key == panel)
    over = {"alert_id": firsts["fuel.not_at_station"]} if dash == "alert" else {}
    ctx = resolve_variables(demo.store, d, *span, over)
    data = run_panel(demo.store, p, ctx, report=True)
    if (dash, panel) in EMPTY_ON_REPLAY:
        return
    for q in p.queries():
        assert data[q.ref], f"{dash}/{panel}/{q.ref} empty on the demo:\n{panel_sql(p, ctx, q.ref)}"
    assert set(p.fields) <= set(data["A"][0])
    assert {c.name for c in p.columns} <= set(data["A"][0])


# ============================================================ the built JSON, as Grafana runs it
@pytest.fixture(scope="module")
def built_demo(demo, demo_ctx):
    """Every built dashboard (zh) run from its JSON alone against the demo store."""
    from lianwatch.dashboards.run import run_built

    span, firsts = demo_ctx
    out = {}
    for d in build_all(DASHBOARDS, langs=("zh",)):
        over = {"alert_id": firsts["fuel.not_at_station"]} if d["uid"] == "lw-alert" else {}
        out[d["uid"]] = (d, run_built(demo.store, d, *span, over))
    return out


def _query_vars(d):
    return [v for v in d["templating"]["list"] if v["type"] == "query"]


def test_every_variable_query_of_the_json_runs(built_demo):
    """Issue 20 #1: the dropdowns' queries as the JSON holds them (no __DB__), expanded
    as Grafana sends them, give options on the demo store."""
    names = set()
    for uid, (d, run) in built_demo.items():
        for v in _query_vars(d):
            assert "__DB__" not in v["query"] and "lianwatch." in v["query"], (uid, v["query"])
            sql = run.variable_sql[v["name"]]
            assert "$" not in sql, sql
            assert run.options[v["name"]], f"{uid}: variable {v['name']} has no options:\n{sql}"
            names.add(v["label"])
    assert {"镇街", "村（社区）", "单位", "车辆"} <= names


def test_every_panel_query_of_the_json_runs(built_demo):
    """Every target's rawSql from the JSON, expanded with the panel's interval, returns rows."""
    empty_ok = {("lw-alert", "处置记录")}  # nothing handled yet on a plain replay
    n = 0
    for uid, (d, run) in built_demo.items():
        for p in d["panels"]:
            for t in p["targets"]:
                sql = run.sql[(p["id"], t["refId"])]
                assert "$" not in sql.replace("$$", ""), sql
                n += 1
                if (uid, p["title"]) not in empty_ok:
                    assert run.rows[(p["id"], t["refId"])], f"{uid}/{p['title']}/{t['refId']}:\n{sql}"
    assert n >= 40


def test_dropdowns_are_chained(demo, demo_ctx):
    """Choosing a town narrows the villages; choosing a unit narrows the vehicles."""
    from lianwatch.dashboards.run import run_built

    span, _ = demo_ctx
    ov = next(d for d in build_all(DASHBOARDS, langs=("zh",)) if d["uid"] == "lw-overview")
    every = run_built(demo.store, ov, *span, panels=False)
    town = every.options["town"][0][0]
    one = run_built(demo.store, ov, *span, {"town": [town]}, panels=False)
    assert 0 < len(one.options["village"]) < len(every.options["village"])
    assert all(f"（{town}）" in text for _, text in one.options["village"])
    veh = next(d for d in build_all(DASHBOARDS, langs=("zh",)) if d["uid"] == "lw-vehicles")
    all_cars = run_built(demo.store, veh, *span, panels=False)
    unit = all_cars.options["unit"][0][0]
    some = run_built(demo.store, veh, *span, {"unit": [unit]}, panels=False)
    assert 0 < len(some.options["vehicle"]) < len(all_cars.options["vehicle"])
    by_town = next(p for p in ov["panels"] if p["title"] == "按镇街")
    rows = run_built(demo.store, ov, *span, {"town": [town]}).rows[(by_town["id"], "A")]
    assert [r["town"] for r in rows] == [town]


@pytest.fixture(scope="module")
def server_demo(demo, tmp_path_factory):
    """The demo county replayed into the real ClickHouse server (scripts/clickhouse.sh:
    Debian's 18.16, the server schema: DateTime + _ms columns, no LowCardinality)."""
    import os

    from pydantic import SecretStr

    from lianwatch.replay.run import replay_dir
    from lianwatch.settings import ClickHouseSettings
    from lianwatch.sinks.server import ServerBackend
    from lianwatch.sinks.store import AlertStore
    from tests.conftest import require, script

    if script("clickhouse.sh", "status", check=False).returncode != 0:
        require("the ClickHouse server (scripts/clickhouse.sh start)")
    env = dict(line.split("=", 1) for line in script("clickhouse.sh", "env").stdout.split())
    db = f"lw_dash_{os.getpid()}"
    store = AlertStore(ServerBackend(ClickHouseSettings(
        host=env["CH_HOST"], port=int(env["CH_TCP_PORT"]), user=env["CH_USER"],
        password=SecretStr(env["CH_PASSWORD"]), database=db)), database=db)
    store.backend.execute(f"DROP DATABASE IF EXISTS {db}")
    store.migrate()
    replay_dir(demo.input, tmp_path_factory.mktemp("srv") / "a.jsonl", store=store, progress=False)
    yield store
    store.backend.execute(f"DROP DATABASE IF EXISTS {db}")
    store.close()


def test_variable_queries_on_the_server_schema(server_demo, demo, demo_ctx, built_demo):
    """The same JSON's variable queries on the server store give the same options as on chDB.

    (Panels are run on chDB only: they use JSONExtract*, ASOF JOIN and several JOINs in one
    SELECT, which ClickHouse 18.16 does not have; the plugin's Grafana needs a current server.)"""
    from lianwatch.dashboards.run import run_built

    span, firsts = demo_ctx
    for d in build_all(DASHBOARDS, langs=("zh",), database=server_demo.db):
        over = {"alert_id": firsts["fuel.not_at_station"]} if d["uid"] == "lw-alert" else {}
        srv = run_built(server_demo, d, *span, over, panels=False)
        local = built_demo[d["uid"]][1]
        for v in _query_vars(d):
            assert srv.options[v["name"]] == local.options[v["name"]], (d["uid"], v["name"])


def test_tiles_count_what_is_open_now(demo, demo_ctx, built_demo):
    """Issue 20 #3: an alert dated before the period (the demo's overdue starts) that is
    still open counts in the Overview's tiles (report and Grafana JSON alike); the
    period still governs the trend and the lists."""
    span, _ = demo_ctx
    cur: dict = {}
    for a in demo.result.alerts:
        if a.alert_id not in cur or a.version >= cur[a.alert_id].version:
            cur[a.alert_id] = a
    red = [a for a in cur.values() if a.level == "red"]  # a plain replay: every alert is open
    from lianwatch.models.clock import parse_ts

    before = [a for a in red if parse_ts(a.event_ts) < span[0] and parse_ts(a.detected_at) < span[0]]
    assert before, "the demo has red alerts dated before its period"
    d = get("overview")
    ctx = resolve_variables(demo.store, d, *span)
    val = {p.key: run_panel(demo.store, p, ctx)["A"] for p in d.panels}
    assert val["open_red"][0]["open_red"] == len(red)
    assert val["open_yellow"][0]["open_yellow"] == sum(a.level == "yellow" for a in cur.values())
    trend_red = sum(r["red"] for r in val["trend"])
    assert trend_red == len(red) - len(before)  # the period's trend leaves them out
    assert len(val["newest_red"]) == len(red) - len(before)
    ov, run = built_demo["lw-overview"]
    tile = next(p for p in ov["panels"] if p["title"] == "红色预警（当前待处置）")
    assert run.rows[(tile["id"], "A")][0]["open_red"] == len(red)


def test_panel_thresholds_follow_the_rules_file(tmp_path, monkeypatch, demo, demo_ctx):
    """Issue 13 (knowledge in one place): the panels' numbers are the rules file's, global
    and per village, for `dashboards build` and the report alike."""
    from lianwatch.cli import main
    from lianwatch.dashboards.run import run_built
    from lianwatch.dashboards.thresholds import Thresholds
    from lianwatch.lifecycle.config import load_policies
    from lianwatch.settings import Settings

    def projects(out):
        return json.loads((out / "dashboards" / "lw-projects.json").read_text("utf-8"))

    def sql_of(d, title):
        return next(p for p in d["panels"] if p["title"].startswith(title))

    assert main(["dashboards", "build", "--out", str(tmp_path / "default")]) == 0
    base = projects(tmp_path / "default")
    late = sql_of(base, "逾期未开工")["targets"][0]["rawSql"]
    assert "toInt64(7)" in late and "> 0.3)" in sql_of(base, "拨付超进度30%以上")["targets"][0]["rawSql"]

    village = demo.store.query("SELECT village_id FROM lianwatch.ref_projects FINAL WHERE village_id != '' ORDER BY project_id LIMIT 1")
    vid = village[0]["village_id"]
    rules = tmp_path / "rules.toml"
    rules.write_text(f"[project]\nstart_grace_days = 60\ndisbursement_gap = 0.5\nstart_red_days = 90\n"
                     f"[village.{vid}.project]\nstart_grace_days = 3\n"
                     f"[fuel]\nstation_radius_m = 800\n[lifecycle]\nred_days = 5\n", "utf-8")
    monkeypatch.setenv("LIANWATCH_RULES_FILE", str(rules))
    assert main(["dashboards", "build", "--out", str(tmp_path / "custom")]) == 0
    mine = projects(tmp_path / "custom")
    late = sql_of(mine, "逾期未开工")["targets"][0]["rawSql"]
    assert f"toInt64(multiIf(village_id = '{vid}', 3, 60))" in late
    mismatch = sql_of(mine, "拨付超进度50%以上")
    assert "> 0.5)" in mismatch["targets"][0]["rawSql"]
    start = sql_of(mine, "计划开工与实际开工")
    steps = [o for o in start["fieldConfig"]["overrides"] if o["matcher"]["options"] == "start_delay_days"]
    values = [s["value"] for p in steps[0]["properties"] if p["id"] == "thresholds" for s in p["value"]["steps"]]
    assert values == [None, 60.0, 90.0]
    veh = json.loads((tmp_path / "custom" / "dashboards" / "lw-vehicles.json").read_text("utf-8"))
    assert "800.0" in json.dumps(sql_of(veh, "加油交易与车辆距离")["fieldConfig"], ensure_ascii=False)
    ov = json.loads((tmp_path / "custom" / "dashboards" / "lw-overview.json").read_text("utf-8"))
    assert "if(a.level = 'red', 5," in sql_of(ov, "逾期未整改（当前）")["targets"][0]["rawSql"].replace("\n", " ")
    # the SQL runs, and what it counts moves with the threshold
    span, _ = demo_ctx
    th = Thresholds.load(str(rules), load_policies(str(rules))[0])
    counts = []
    for d in (base, mine):
        run = run_built(demo.store, d, *span, panels=True)
        counts.append(run.rows[(sql_of(d, "逾期未开工")["id"], "A")][0]["late"])
    assert counts[0] > counts[1] >= 0
    html = (tmp_path / "r.html")
    from lianwatch.dashboards.report import write_report

    write_report(demo.store, html, thresholds=th)
    assert "拨付超进度50%以上" in html.read_text("utf-8") and "红色预警 5 天" in html.read_text("utf-8")
