r"""What Grafana and the ClickHouse data source plugin do to a panel's SQL before
ClickHouse sees it, re-done in Python so every panel can be run against the
store (tests, the HTML report) exactly as Grafana would run it.

Three steps, in the order grafana-clickhouse-datasource 4.20.0 applies them
(two in the browser, one in the plugin's back end):

1. ``$__conditionalAll(condition, $var)`` (front end): replaced by ``1=1``
   when ``$var`` is *All* (``$__all``) or empty, else by ``condition``.
2. Template variables (Grafana's template service, front end):
   ``$var``, ``${var}``, ``${var:format}``, ``[[var]]``. Without a format the
   plugin's own formatter applies: a multi-value (list) becomes
   ``'a','b'`` (quoted, *not* escaped), a single value is inserted as is.
   ``:singlequote`` quotes each value and escapes ``'`` as ``\'``;
   ``:sqlstring`` doubles ``'``; ``:csv``, ``:pipe``, ``:raw``, ``:json``,
   ``:doublequote``, ``:regex``, ``:glob``, ``:join``, ``:text`` as Grafana.
   *All* without a custom all value means every option's value. Unknown
   variables are left untouched (and ClickHouse then fails on them).
3. Macros (back end): :mod:`.plugin_macros`, the plugin's ``pkg/macros`` and the
   macropro engine it is built with (comments blanked first, one forward pass,
   nested macros innermost first). A wrong argument count fails the query, as in
   the plugin.

The front end steps are what 4.20.0's ``src/data/CHDatasource.ts``
(``applyTemplateVariables``: ``applyConditionalAll``, then ``templateSrv.replace``
with the plugin's ``format``) does; variable queries (``metricFindQuery``) go the
same way.

>>> expand_macros("SELECT 1 WHERE $__timeFilter(event_time)", 1710000000, 1710086400)
'SELECT 1 WHERE event_time >= toDateTime(1710000000) AND event_time <= toDateTime(1710086400)'
>>> expand_macros("$__timeInterval(t)", 0, 86400, interval_ms=20000)
'toStartOfInterval(toDateTime(t), INTERVAL 20 second)'
>>> expand_macros("x IN (${v:singlequote}) AND y IN ($v)", 0, 1, {"v": ["a", "o'b"]})
"x IN ('a','o\\'b') AND y IN ('a','o'b')"
>>> expand_macros("WHERE $__conditionalAll(town IN (${town:singlequote}), $town)", 0, 1,
...               {"town": ALL})
'WHERE 1=1'
>>> expand_macros("WHERE $__conditionalAll(town IN (${town:singlequote}), $town)", 0, 1,
...               {"town": ["益农镇"]})
"WHERE town IN ('益农镇')"
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone, tzinfo
from typing import Any, Union

from lianwatch.errors import MacroError  # noqa: F401 (re-exported)

from .plugin_macros import MACRO_NAMES, interpolate

__all__ = [
    "ALL", "MacroError", "expand_macros", "apply_conditional_all", "interpolate_variables",
    "interpolate_macros", "grafana_interval_ms", "round_interval_ms", "format_interval",
    "variables_used", "MACRO_NAMES", "to_epoch_ms",
]

#: the value Grafana gives a variable whose *All* option is selected
ALL = "$__all"

VarValue = Union[str, Sequence[str]]
TimeLike = Union[float, int, datetime]


# --------------------------------------------------------------------------- time
def to_epoch_ms(t: TimeLike) -> int:
    """Epoch milliseconds (what the front end sends as ``range.from.valueOf()``)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime: give a time zone")
        return int(round(t.timestamp() * 1000))
    return int(round(float(t) * 1000))


def round_interval_ms(interval: float) -> int:
    """Grafana's ``rangeutil.roundInterval`` (ms in, ms out)."""
    steps = ((15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
             (1500, 1000), (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000),
             (25000, 20000), (45000, 30000), (90000, 60000), (210000, 120000),
             (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
             (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
             (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
             (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000))
    for limit, value in steps:
        if interval < limit:
            return value
    return 31536000000


_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000, "M": 2_592_000_000, "y": 31_536_000_000}


def parse_interval_ms(text: str) -> int:
    """``"1h"`` → 3600000 (Grafana interval syntax; a leading ``>`` is ignored)."""
    m = re.fullmatch(r">?\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|M|y)", text.strip())
    if not m:
        raise ValueError(f"not an interval: {text!r}")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])


def grafana_interval_ms(time_from: TimeLike, time_to: TimeLike, max_data_points: int = 1000,
                        min_interval: str | None = None) -> int:
    """The ``intervalMs`` Grafana sends with a panel's query (``calculateInterval``)."""
    span = to_epoch_ms(time_to) - to_epoch_ms(time_from)
    ms = round_interval_ms(span / max(1, max_data_points))
    if min_interval:
        ms = max(ms, parse_interval_ms(min_interval))
    return ms


def format_interval(ms: int) -> str:
    """gtime.FormatInterval / Grafana's interval text: 3600000 → ``1h``."""
    for unit, size in (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000),
                       ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


# ------------------------------------------------------- 1. $__conditionalAll
_CA = "$__conditionalAll("
_CA_VAR = re.compile(r"(?<=\$\{)[A-Za-z0-9_]+(?=\})|(?<=\$)[A-Za-z0-9_]+")


def _macro_args(query: str, args_index: int) -> list[str]:
    """CHDatasource.getMacroArgs: split the bracketed list at ``args_index`` on top-level commas."""
    args: list[str] = []
    bracket = 0
    last_end = 1
    sub = query[args_index:]
    for m in re.finditer(r"\(|\)|,", sub):
        node = m.group(0)
        end = m.end()
        if node == "(":
            bracket += 1
        elif node == ")":
            bracket -= 1
        if node == "," and bracket == 1:
            args.append(_js_substring(sub, last_end, end - 1))
            last_end = end
        if bracket == 0:
            args.append(_js_substring(sub, last_end, end - 1))
            return args
    return []


def _js_substring(s: str, a: int, b: int) -> str:
    a, b = max(0, a), max(0, b)
    return s[min(a, b):max(a, b)]


def _js_replace_first(text: str, pattern: str, replacement: str) -> str:
    """``String.prototype.replace(string, string)``: first occurrence, ``$&`` etc. honoured."""
    i = text.find(pattern)
    if i < 0:
        return text
    before, after = text[:i], text[i + len(pattern):]

    def sub(m: re.Match) -> str:
        tok = m.group(0)
        return {"$$": "$", "$&": pattern, "$`": before, "$'": after}.get(tok, tok)

    rep = re.sub(r"\$[$&`']", sub, replacement)
    return before + rep + after


def _js_to_string(value: VarValue | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return ",".join(str(v) for v in value)


def apply_conditional_all(sql: str, variables: Mapping[str, VarValue]) -> str:
    """The plugin's ``applyConditionalAll`` (innermost/last occurrence first)."""
    idx = sql.rfind(_CA)
    while idx != -1:
        params = _macro_args(sql, idx + len(_CA) - 1)
        if len(params) != 2:
            return sql
        m = _CA_VAR.search(params[1].strip())
        phrase = params[0]
        if m:
            value = _js_to_string(variables.get(m.group(0)))
            if value == "" or value == ALL:
                phrase = "1=1"
        sql = _js_replace_first(sql, f"{_CA}{params[0]},{params[1]})", phrase)
        idx = sql.rfind(_CA)
    return sql


# ------------------------------------------------------- 2. template variables
_VAR_RE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}", re.ASCII)


def variables_used(sql: str) -> set[str]:
    """Names of the template variables a text refers to (built-ins ``__*`` excluded)."""
    out = set()
    for m in _VAR_RE.finditer(sql):
        name = m.group(1) or m.group(2) or m.group(4)
        if not name.startswith("__"):
            out.add(name)
    return out


def _is_all(v: VarValue) -> bool:
    return v == ALL or (not isinstance(v, str) and len(v) > 0 and v[0] == ALL)


def _sq(v: Any, q: str, esc: str) -> str:
    return q + str(v).replace(q, esc) + q


def _fmt_value(value: VarValue, fmt: str, name: str) -> str:
    """Grafana's format registry (scenes ``formatRegistry``)."""
    parts = fmt.split(":")
    fid, args = parts[0], parts[1:]
    is_list = not isinstance(value, str)
    vals = [str(v) for v in value] if is_list else None
    if fid == "singlequote":
        return ",".join(_sq(v, "'", "\\'") for v in vals) if is_list else _sq(value, "'", "\\'")
    if fid == "doublequote":
        return ",".join(_sq(v, '"', '\\"') for v in vals) if is_list else _sq(value, '"', '\\"')
    if fid == "sqlstring":
        def esc(s: str) -> str:
            return "'" + re.sub(r"'|\"", lambda m: "''" if m.group(0) == "'" else '\\"', s) + "'"
        return ",".join(esc(v) for v in vals) if is_list else esc(str(value))
    if fid == "raw":
        return _js_to_string(value) or ""
    if fid == "csv":
        return ",".join(vals) if is_list else str(value)
    if fid == "text":
        return " + ".join(vals) if is_list else str(value)
    if fid == "pipe":
        return "|".join(vals) if is_list else str(value)
    if fid == "join":
        return (args[0] if args else ",").join(vals) if is_list else str(value)
    if fid == "json":
        return json.dumps(vals, ensure_ascii=False, separators=(",", ":")) if is_list else str(value)
    if fid == "regex":
        def rx(s: str) -> str:
            return re.sub(r"[\\^$*+?.()|{}\[\]/]", lambda m: "\\" + m.group(0), s)
        if is_list:
            e = [rx(v) for v in vals]
            return e[0] if len(e) == 1 else "(" + "|".join(e) + ")"
        return rx(str(value))
    if fid == "percentencode":
        s = "{" + ",".join(vals) + "}" if is_list else str(value)
        return urllib.parse.quote(s, safe="-_.~")
    if fid == "queryparam":
        items = vals if is_list else [str(value)]
        return "&".join(f"var-{name}={urllib.parse.quote(v, safe='-_.~')}" for v in items)
    if fid == "distributed":
        if is_list:
            return ",".join(v if i == 0 else f"{name}={v}" for i, v in enumerate(vals))
        return str(value)
    # glob, and the fallback for an unknown format
    if is_list and len(vals) > 1:
        return "{" + ",".join(vals) + "}"
    return _js_to_string(value) or ""


def _ds_format(value: VarValue) -> str:
    """The plugin's own formatter (used when the text gives no ``:format``)."""
    if not isinstance(value, str):
        return "'" + "','".join(str(v) for v in value) + "'"
    return value


def interpolate_variables(
    sql: str,
    variables: Mapping[str, VarValue],
    *,
    builtins: Mapping[str, str] | None = None,
    all_values: Mapping[str, Sequence[str]] | None = None,
    custom_all: Mapping[str, str] | None = None,
    ds_format: Callable[[VarValue], str] | None = _ds_format,
) -> str:
    """Grafana's template service ``replace(text, scopedVars, format)``."""
    builtins = builtins or {}
    all_values = all_values or {}
    custom_all = custom_all or {}

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if name in builtins:
            return _fmt_builtin(name, builtins[name], fmt)
        if name not in variables:
            return m.group(0)
        value = variables[name]
        if value is None:
            return ""
        if _is_all(value):
            if name in custom_all:  # a custom all value is not formatted
                return interpolate_variables(custom_all[name], variables, builtins=builtins,
                                             all_values=all_values)
            value = list(all_values.get(name, []))
        if fmt:
            return _fmt_value(value, fmt, name)
        if ds_format is not None:
            return ds_format(value)
        return _fmt_value(value, "glob", name)

    return _VAR_RE.sub(repl, sql)


def _fmt_builtin(name: str, value: str, fmt: str | None) -> str:
    if name in ("__from", "__to") and fmt and fmt.split(":")[0] == "date":
        args = fmt.split(":")[1:]
        ms = int(value)
        arg = args[0] if args else "iso"
        if arg == "ms":
            return str(ms)
        if arg == "seconds":
            return str(round(ms / 1000))
        dt = datetime.fromtimestamp(ms / 1000, timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return value


# --------------------------------------------------------------- 3. macros
def interpolate_macros(sql: str, from_ms: int, to_ms: int, interval_ms: int, *,
                       plugin_tz: tzinfo = timezone.utc, table: str = "", column: str = "") -> str:
    """The back end's macro expansion (:func:`.plugin_macros.interpolate`)."""
    return interpolate(sql, from_ms, to_ms, interval_ms, plugin_tz=plugin_tz, table=table,
                       column=column)


# ------------------------------------------------------------------ together
def expand_macros(
    sql: str,
    time_from: TimeLike,
    time_to: TimeLike,
    variables: Mapping[str, VarValue] | None = None,
    *,
    interval_ms: int | None = None,
    max_data_points: int = 1000,
    min_interval: str | None = None,
    all_values: Mapping[str, Sequence[str]] | None = None,
    custom_all: Mapping[str, str] | None = None,
    plugin_tz: tzinfo = timezone.utc,
) -> str:
    """A panel's SQL as the ClickHouse plugin sends it to ClickHouse.

    ``variables``: name → value (a string for a single value, a list for a
    multi-value; :data:`ALL` for *All*). ``all_values``: the options' values
    used for *All* in a formatted position. ``interval_ms``: the panel's
    interval (default: as Grafana computes it from the range,
    ``max_data_points`` and ``min_interval``). ``plugin_tz``: the plugin
    process's zone (only ``$__dateFilter``/``$__dt`` use it; UTC in the
    official image).
    """
    variables = dict(variables or {})
    from_ms, to_ms = to_epoch_ms(time_from), to_epoch_ms(time_to)
    if interval_ms is None:
        interval_ms = grafana_interval_ms(time_from, time_to, max_data_points, min_interval)
    builtins = {
        "__from": str(from_ms), "__to": str(to_ms),
        "__interval": format_interval(interval_ms), "__interval_ms": str(interval_ms),
        "__range_ms": str(to_ms - from_ms), "__range_s": str(round((to_ms - from_ms) / 1000)),
        "__range": f"{round((to_ms - from_ms) / 1000)}s",
    }
    text = apply_conditional_all(sql, variables)
    text = interpolate_variables(text, variables, builtins=builtins, all_values=all_values,
                                 custom_all=custom_all)
    return interpolate_macros(text, from_ms, to_ms, interval_ms, plugin_tz=plugin_tz)
