r"""The back end of the Grafana ClickHouse data source, re-done in Python: the
``$__`` macros ClickHouse never sees, expanded as the plugin expands them.

Pinned to **grafana-clickhouse-datasource 4.20.0** (tag ``v4.20.0`` of
github.com/grafana/clickhouse-datasource): its macros are
``pkg/macros/macros.go`` (``ClickHouseMacros`` = macropro's ``DefaultMacros``
with ClickHouse overrides) and the engine that finds and expands them is
github.com/grafana/macropro **v1.0.1** (the plugin's ``go.mod``), called with
``WithComments(LineComment | BlockComment | BackslashEscape)``. What the engine does:

1. **Comments are blanked first** (``StripComments``): ``-- …`` to the end of the
   line and ``/* … */`` (an unterminated one to the end) become spaces, one per
   byte, so nothing inside a comment is expanded and positions stay put. Quoted
   text (``'…'``, ``"…"``, with ``''``/``""`` doubled and ``\x`` backslash
   escapes) is not a comment. A query without ``$__`` is returned untouched
   (comments and all).
2. **One forward pass**: at each ``$__`` the longest run of ``[A-Za-z0-9_]`` is
   the name (``$__timeFilter_ms`` is never ``$__timeFilter``); an unknown name is
   left as it is. A ``(`` *right after* the name opens the argument list
   (brackets nest, quotes are skipped, arguments split on top-level commas and
   trimmed); unbalanced brackets make it a call without arguments.
3. **Nested macros expand innermost first** (macropro 1.0.1, plugin 4.20.0
   "Expand macros nested inside another macro's arguments").
4. Macros inside *quoted strings* are expanded like any other text: macropro
   "has no notion of SQL syntax, no notion of identifiers vs. literals"
   (its README, Security considerations); only comments are protected.
5. A handler error fails the whole query: ``macro $__name(args): reason``.

==============================  ===============================================
``$__timeFilter(c)``            ``c >= toDateTime(F) AND c <= toDateTime(T)``
``$__timeFilter_ms(c)``         ``c >= fromUnixTimestamp64Milli(Fms) AND c <= …``
``$__timeFrom(c)``              ``c >= toDateTime(F)`` (4.20 override of the SDK's
                                string literal); ``$__timeTo(c)``: ``c <= toDateTime(T)``
``$__fromTime`` ``$__toTime``   ``toDateTime(F)`` ``toDateTime(T)``; ``_ms``: ``fromUnixTimestamp64Milli``
``$__dateFilter(c)``            ``c >= toDate('YYYY-MM-DD') AND c <= toDate(…)``
``$__dateTimeFilter(d, t)``     ``(d …dates…) AND (t …toDateTime…)``; ``$__dt`` the same
``$__timeInterval(c)``          ``toStartOfInterval(toDateTime(c), INTERVAL S second)``, S = max(interval s, 1)
``$__timeInterval_ms(c)``       ``toStartOfInterval(toDateTime64(c, 3), INTERVAL M millisecond)``
``$__timeGroup(c, 5m)``         ``toStartOfInterval(toDateTime(c), INTERVAL 300 second)``: a Go
                                duration (``time.ParseDuration``: ns us µs ms s m h, no ``d``)
``$__interval_s``               S; ``$__interval_ms`` the interval in ms;
                                ``$__interval`` its largest whole unit (``5m``, ``2h``, ``300ms``)
``$__table`` ``$__column``      the query's table / column (an error when it has none)
==============================  ===============================================

F and T are whole epoch seconds (Go ``Time.Unix()``, floor), Fms/Tms epoch ms.

>>> interpolate("SELECT $__timeGroup(ts, 5m) -- $__timeFilter()", 0, 1000, 60000)
'SELECT toStartOfInterval(toDateTime(ts), INTERVAL 300 second)                   '
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

from lianwatch.errors import MacroError

__all__ = ["PLUGIN_VERSION", "MACROPRO_VERSION", "MACRO_NAMES", "interpolate", "strip_comments",
           "go_duration_s", "format_duration"]

#: the plugin release this module follows (and the dashboards' ``pluginVersion``)
PLUGIN_VERSION = "4.20.0"
#: the macro engine that release is built with (its go.mod)
MACROPRO_VERSION = "1.0.1"
_PREFIX = "$__"


# ------------------------------------------------------------------ 1. comments
def _scan_string(s: str, pos: int, backslash: bool = True) -> int:
    """Index after the quoted text opening at ``pos``: doubled quotes, and ``\\x``
    escapes when ``backslash`` (StripComments with BackslashEscape; macropro's argument
    parser knows doubled quotes only)."""
    quote, j, n = s[pos], pos + 1, len(s)
    while j < n:
        c = s[j]
        if backslash and c == "\\" and j + 1 < n:
            j += 2
            continue
        if c == quote:
            if j + 1 < n and s[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _blank(text: str) -> str:
    return " " * len(text.encode("utf-8"))  # Go writes one space per byte


def strip_comments(sql: str) -> str:
    """macropro ``StripComments(q, LineComment|BlockComment|BackslashEscape)``."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = _scan_string(sql, i)
            out.append(sql[i:j])
        elif sql.startswith("--", i):
            j = i
            while j < n and sql[j] not in "\r\n":
                j += 1
            out.append(_blank(sql[i:j]))
        elif sql.startswith("/*", i):
            k = sql.find("*/", i + 2)
            j = n if k < 0 else k + 2
            out.append(_blank(sql[i:j]))
        else:
            j = i + 1
            out.append(c)
        i = j
    return "".join(out)


# ------------------------------------------------------------------ 2. arguments
def _brackets(s: str, start: int = 0):
    """(index, character) of every ``(``, ``)`` and ``,`` outside quoted text."""
    i, n = start, len(s)
    while i < n:
        c = s[i]
        if c in "'\"":
            i = _scan_string(s, i, backslash=False)
            continue
        if c in "(),":
            yield i, c
        i += 1


def _closing_paren(s: str, open_at: int) -> int:
    depth = 0
    for i, c in _brackets(s, open_at):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == ")" and depth == 0:
            return i
    return -1


def _parse_args(raw: str) -> list[str]:
    raw = raw.strip()
    if not raw:
        return []
    args: list[str] = []
    depth = start = 0
    for i, c in _brackets(raw):
        if c == ")" and depth == 0:
            raise ValueError(f"unexpected ')' at position {i}")
        if c == "," and depth == 0:
            args.append(raw[start:i].strip())
            start = i + 1
        depth += {"(": 1, ")": -1}.get(c, 0)
    if depth:
        raise ValueError("unbalanced parentheses in arguments")
    args.append(raw[start:].strip())
    return args


# ------------------------------------------------------------------ 3. the macros
@dataclass(frozen=True)
class _Ctx:
    from_ms: int
    to_ms: int
    interval_ms: int
    tz: tzinfo
    table: str = ""
    column: str = ""


class _Fail(Exception):
    """A handler's error (becomes ``macro $__name(args): …``)."""


def _n(name: str, args: list[str], want: int) -> list[str]:
    if len(args) != want:  # pkg/macros badArgsErr (sqlutil.ErrorBadArgumentCount)
        raise _Fail(f"unexpected number of arguments: $__{name} expected {want} argument(s), "
                    f"received {len(args)}")
    return args


def _unix(ms: int) -> int:
    return ms // 1000  # Go Time.Unix(): floor


def _dt(ms: int) -> str:
    return f"toDateTime({_unix(ms)})"


def _dt64(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _date(c: _Ctx, ms: int) -> str:
    d = datetime.fromtimestamp(_unix(ms), timezone.utc).astimezone(c.tz)
    return f"toDate('{d:%Y-%m-%d}')"


def _interval_s(c: _Ctx) -> int:
    return int(max(c.interval_ms / 1000.0, 1))


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def go_duration_s(text: str) -> float:
    """Go's ``time.ParseDuration`` in seconds (``1h30m``, ``-1.5h``, ``300ms``); ValueError
    with Go's message otherwise."""
    s, orig = text, text
    neg = s[:1] == "-"
    if s[:1] in "+-":
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    while s:
        m = _GO_PART.match(s)
        num, unit = m.group(1), m.group(2)
        if num in ("", "."):
            raise ValueError(f'time: invalid duration "{orig}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        total += float(num) * _GO_UNITS[unit]
        s = s[m.end():]
    return -total if neg else total


def format_duration(ms: int) -> str:
    """macropro ``FormatDuration``: the largest whole unit (``2h``, ``5m``, ``30s``, ``250ms``)."""
    if ms == 0:
        return "0s"
    ms = abs(ms)
    for size, unit in ((3_600_000, "h"), (60_000, "m"), (1000, "s")):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _time_group(c: _Ctx, a: list[str]) -> str:
    col, period = _n("timeGroup", a, 2)
    period = period.strip().strip("'\"")
    try:
        d = go_duration_s(period)
        secs = int(math.copysign(math.floor(abs(d) + 0.5), d))  # Go math.Round: half away from 0
    except ValueError as exc:
        raise _Fail(f"$__timeGroup: invalid interval \"{period}\": {exc}") from None
    if secs <= 0:
        raise _Fail(f"$__timeGroup: interval must be positive, got \"{period}\"")
    return f"toStartOfInterval(toDateTime({col.strip()}), INTERVAL {secs} second)"


def _from_context(what: str, value: str) -> str:
    if not value:
        raise _Fail(f"$__{what}: no {what} name in query context")
    return value


def _filter(name: str, fmt: Callable[[_Ctx, int], str]) -> Callable[[_Ctx, list[str]], str]:
    """``col >= fmt(from) AND col <= fmt(to)`` (timeFilter, timeFilter_ms, dateFilter)."""
    def f(c: _Ctx, a: list[str]) -> str:
        col, = _n(name, a, 1)
        return f"{col} >= {fmt(c, c.from_ms)} AND {col} <= {fmt(c, c.to_ms)}"
    return f


def _date_time_filter(c: _Ctx, a: list[str]) -> str:
    d, t = _n("dateTimeFilter", a, 2)
    return (f"({d} >= {_date(c, c.from_ms)} AND {d} <= {_date(c, c.to_ms)}) AND "
            f"({t} >= {_dt(c.from_ms)} AND {t} <= {_dt(c.to_ms)})")


def _bound(name: str, op: str, which: str) -> Callable[[_Ctx, list[str]], str]:
    def f(c: _Ctx, a: list[str]) -> str:
        col, = _n(name, a, 1)
        return f"{col} {op} {_dt(getattr(c, which))}"
    return f


def _time_interval(c: _Ctx, a: list[str]) -> str:
    col, = _n("timeInterval", a, 1)
    return f"toStartOfInterval(toDateTime({col}), INTERVAL {_interval_s(c)} second)"


def _time_interval_ms(c: _Ctx, a: list[str]) -> str:
    col, = _n("timeInterval_ms", a, 1)
    return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {int(max(c.interval_ms, 1))} millisecond)"


_MACROS: dict[str, Callable[[_Ctx, list[str]], str]] = {
    # macropro DefaultMacros that the plugin keeps
    "interval": lambda c, a: format_duration(c.interval_ms),
    "interval_ms": lambda c, a: str(c.interval_ms),
    "table": lambda c, a: _from_context("table", c.table),
    "column": lambda c, a: _from_context("column", c.column),
    # pkg/macros ClickHouseMacros: overrides of the defaults …
    "timeFilter": _filter("timeFilter", lambda c, ms: _dt(ms)),
    "timeFrom": _bound("timeFrom", ">=", "from_ms"),
    "timeTo": _bound("timeTo", "<=", "to_ms"),
    "timeGroup": _time_group,
    # … and the ClickHouse extensions
    "fromTime": lambda c, a: _dt(c.from_ms),
    "toTime": lambda c, a: _dt(c.to_ms),
    "fromTime_ms": lambda c, a: _dt64(c.from_ms),
    "toTime_ms": lambda c, a: _dt64(c.to_ms),
    "timeFilter_ms": _filter("timeFilter_ms", lambda c, ms: _dt64(ms)),
    "dateFilter": _filter("dateFilter", _date),
    "dateTimeFilter": _date_time_filter,
    "dt": _date_time_filter,
    "timeInterval": _time_interval,
    "timeInterval_ms": _time_interval_ms,
    "interval_s": lambda c, a: str(_interval_s(c)),
}
MACRO_NAMES = frozenset(_MACROS)


def _is_name(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def _expand(work: str, c: _Ctx) -> str:
    out: list[str] = []
    i, n = 0, len(work)
    while i < n:
        at = work.find(_PREFIX, i)
        if at < 0:
            out.append(work[i:])
            break
        out.append(work[i:at])
        start = end = at + len(_PREFIX)
        while end < n and _is_name(work[end]):
            end += 1
        if start == end:
            out.append(_PREFIX)
            i = end
            continue
        name = work[start:end]
        fn = _MACROS.get(name)
        if fn is None:
            out.append(work[at:end])
            i = end
            continue
        raw, after = "", end
        if after < n and work[after] == "(":
            close = _closing_paren(work, after)
            if close >= 0:
                raw, after = work[after + 1:close], close + 1
        try:
            args = _parse_args(raw)
        except ValueError as exc:
            raise MacroError(f"macro $__{name}: {exc}") from None
        args = [_expand(x, c) for x in args]  # nested macros first (macropro 1.0.1)
        try:
            out.append(fn(c, args))
        except _Fail as exc:
            raise MacroError(f"macro $__{name}({', '.join(args)}): {exc}") from None
        i = after
    return "".join(out)


def interpolate(sql: str, from_ms: int, to_ms: int, interval_ms: int, *,
                plugin_tz: tzinfo = timezone.utc, table: str = "", column: str = "") -> str:
    """The plugin's ``macros.Interpolate`` (4.20.0): comments blanked, then every macro
    expanded. ``plugin_tz``: the plugin process's zone (``$__dateFilter``; UTC in
    Grafana's image). Raises :class:`~lianwatch.errors.MacroError` as the plugin fails."""
    if _PREFIX not in sql:
        return sql
    c = _Ctx(int(from_ms), int(to_ms), int(interval_ms), plugin_tz, table, column)
    return _expand(strip_comments(sql), c)

