"""One definition of the store's tables, rendered for chDB and for a ClickHouse server.

Newer server features are used where the server has them: ``DateTime64``
(20.1+), ``LowCardinality`` (19.x), ``TTL`` (19.6+). On an older server (the
Debian package is 18.16) the same tables are rendered with ``DateTime`` plus a
``<name>_ms`` UInt16 column, plain ``String`` and no TTL, so one code path
serves both. chDB is always "modern".

Rows travel between the store, the writer, the spill queue and the backends in
one *canonical* form: a tuple in the table's column order (the abstract
columns, never the ``_ms`` ones) with every timestamp as integer epoch
milliseconds, dates as ``YYYY-MM-DD`` text and floats as Python floats (NaN
allowed). Each backend renders canonical rows its own way.

>>> caps = Capabilities.for_version((18, 16, 1))
>>> "DateTime64" in render_table(TABLES["alerts"], caps, "lw")
False
>>> "LowCardinality(String)" in render_table(TABLES["alerts"], Capabilities.modern(), "lw")
True
>>> column_names("events_gps", caps)
['subject_id', 'event_time', 'event_time_ms', 'event_id', 'raw']
>>> canonical_row("schema_version", {"version": 4, "applied_time": 1772410530.25})
(4, 1772410530250)
>>> ts_ms_sql(caps, "at_time")
'(toInt64(toUnixTimestamp(at_time)) * 1000 + at_time_ms)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lianwatch.sinks.sql import quote_ident, quote_str
from lianwatch.models.streams import EVENT_SPECS

__all__ = ["Capabilities", "Table", "Column", "View", "TABLES", "VIEWS", "SCHEMA_VERSION",
           "render_table", "render_view", "render_all", "render_add_column", "TS_COLUMNS",
           "column_names", "column_types", "canonical_row", "to_ms", "ts_ms_sql",
           "ts_literal_sql", "ts_cmp_sql", "json_string_sql", "json_float_sql", "TZ"]

#: bump when a table, view or column is added; ``lianwatch db migrate`` brings older stores up
#: 1 alerts, events_*, deadletters, schema_version · 2 alert_history, notifications,
#: alerts.lat/lon · 3 ref_* · 4 view alerts_current (argMax-free: FINAL), archive tables
#: deduplicating (ReplacingMergeTree on the event id) for new stores · 5 the archive tables
#: of contract version 2's streams (events_subsidies, _labor, _tenders, _receipts, _mileage)
SCHEMA_VERSION = 5
TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class Capabilities:
    """What the ClickHouse at the other end can do (chDB: everything)."""

    datetime64: bool = True
    low_cardinality: bool = True
    ttl: bool = True
    json_extract: bool = True  # JSONExtract* (else visitParamExtract*)
    version: tuple[int, ...] = (99,)

    @classmethod
    def modern(cls) -> "Capabilities":
        return cls()

    @classmethod
    def for_version(cls, v: tuple[int, ...]) -> "Capabilities":
        v = tuple(int(x) for x in v)
        return cls(datetime64=v >= (20, 1), low_cardinality=v >= (19, 0), ttl=v >= (19, 6),
                   json_extract=v >= (19, 10), version=v)

    @property
    def version_text(self) -> str:
        return ".".join(str(x) for x in self.version)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # abstract: String, LC, TS (ms timestamp), Int64, UInt32, UInt16, Float64, Bool,
    #            Date, Array(String)
    since: int = 1  # schema version that added it
    default: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    engine: str
    order_by: tuple[str, ...]  # column names; a TS column brings its ``_ms`` on old servers
    partition_by: str | None = None
    ttl: str | None = None
    since: int = 1
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True)
class View:
    name: str
    select: str  # ``{db}`` stands for the database
    since: int = 1


def _type(c: Column, caps: Capabilities) -> str:
    t = c.type
    if t == "LC":
        return "LowCardinality(String)" if caps.low_cardinality else "String"
    if t == "TS":
        return f"DateTime64(3, '{TZ}')" if caps.datetime64 else f"DateTime('{TZ}')"
    if t == "Bool":
        return "UInt8"
    return t


#: timestamp columns per table; on servers without DateTime64 each also gets
#: a ``<name>_ms`` UInt16 column so milliseconds survive
TS_COLUMNS: dict[str, list[str]] = {}

_ALERT_COLS = (
    Column("alert_id", "String"),
    Column("version", "UInt32"),
    Column("rule", "LC"),
    Column("level", "LC"),
    Column("subject_type", "LC"),
    Column("subject_id", "String"),
    Column("unit_id", "String"),
    Column("village_id", "String"),
    Column("event_time", "TS"),
    Column("detected_time", "TS"),
    Column("event_ts", "String"),
    Column("detected_at", "String"),
    Column("title", "String"),
    Column("title_en", "String"),
    Column("evidence", "String"),
    Column("source_event_ids", "Array(String)"),
    Column("lat", "Float64", since=2, default="nan"),
    Column("lon", "Float64", since=2, default="nan"),
)

_ARCHIVE_COLS = (
    Column("subject_id", "String"),
    Column("event_time", "TS"),
    Column("event_id", "String"),
    Column("raw", "String"),
)


def _archive(stream: str, since: int) -> Table:
    # one table per stream, partitioned by month; a re-sent record (same subject, time
    # and id: a writer retry after an ambiguous failure, a record delivered twice
    # upstream) is folded away by the merges
    return Table(f"events_{stream}", _ARCHIVE_COLS, "ReplacingMergeTree",
                 ("subject_id", "event_time", "event_id"), partition_by="toYYYYMM(event_time)",
                 since=since)


#: the schema version that added each contract version's archive tables
_ARCHIVE_SINCE = {1: 1, 2: 5}


TABLES: dict[str, Table] = {
    # one current row per alert id: the highest version (query with FINAL or alerts_current)
    "alerts": Table("alerts", _ALERT_COLS, "ReplacingMergeTree(version)", ("alert_id",)),
    # the raw-event archive: one table per event stream of the contract
    **{f"events_{s.name}": _archive(s.name, _ARCHIVE_SINCE[s.since]) for s in EVENT_SPECS},
    "deadletters": Table("deadletters", (
        Column("received_time", "TS"),
        Column("stream", "LC"),
        Column("source", "String"),
        Column("reason", "String"),
        Column("raw", "String"),
    ), "MergeTree", ("stream", "received_time"),
        ttl="toDateTime(received_time) + INTERVAL 180 DAY"),
    "alert_history": Table("alert_history", (
        Column("alert_id", "String"),
        Column("seq", "UInt32"),
        Column("at_time", "TS"),
        Column("action", "LC"),
        Column("state", "LC"),
        Column("by", "String"),
        Column("note", "String"),
        Column("evidence_ref", "String"),
    ), "ReplacingMergeTree", ("alert_id", "seq"), since=2),
    # the notification log: one row per attempt, the latest attempt wins
    "notifications": Table("notifications", (
        Column("notification_id", "String"),
        Column("attempt", "UInt32"),
        Column("at_time", "TS"),
        Column("alert_id", "String"),
        Column("phone_masked", "String"),
        Column("phone_hash", "String"),
        Column("role", "LC"),
        Column("level", "LC"),
        Column("kind", "LC"),
        Column("provider", "LC"),
        Column("status", "LC"),
        Column("text", "String"),
        Column("error", "String"),
    ), "ReplacingMergeTree(attempt)", ("notification_id",), since=2),
    # reference data, for dashboards and incident reports (latest load wins)
    "ref_vehicles": Table("ref_vehicles", (
        Column("vehicle_id", "String"), Column("plate", "String"), Column("unit_id", "String"),
        Column("unit_name", "String"), Column("tank_liters", "Float64"),
        Column("fuel_type", "LC"), Column("depot_lat", "Float64"), Column("depot_lon", "Float64"),
        Column("card_ids", "Array(String)"), Column("raw", "String"),
    ), "ReplacingMergeTree", ("vehicle_id",), since=3),
    "ref_villages": Table("ref_villages", (
        Column("village_id", "String"), Column("name", "String"), Column("town", "String"),
        Column("county", "String"), Column("approval_threshold_yuan", "Float64"),
        Column("raw", "String"),
    ), "ReplacingMergeTree", ("village_id",), since=3),
    "ref_officials": Table("ref_officials", (
        Column("person_id", "String"), Column("name", "String"), Column("village_id", "String"),
        Column("role", "LC"), Column("related_payee_ids", "Array(String)"), Column("raw", "String"),
    ), "ReplacingMergeTree", ("person_id",), since=3),
    "ref_projects": Table("ref_projects", (
        Column("project_id", "String"), Column("name", "String"), Column("village_id", "String"),
        Column("unit_id", "String"), Column("budget_yuan", "Float64"),
        Column("planned_start", "Date"), Column("planned_end", "Date"), Column("raw", "String"),
    ), "ReplacingMergeTree", ("project_id",), since=3),
    "schema_version": Table("schema_version", (
        Column("version", "UInt32"),
        Column("applied_time", "TS"),
    ), "ReplacingMergeTree", ("version",), since=1),
}

VIEWS: dict[str, View] = {
    # the current row of each alert; FINAL works on every version (18.16 included)
    "alerts_current": View("alerts_current", "SELECT * FROM {db}.alerts FINAL", since=4),
}

for _t in TABLES.values():
    TS_COLUMNS[_t.name] = [c.name for c in _t.columns if c.type == "TS"]


def _columns(table: Table, caps: Capabilities) -> list[tuple[str, str, Column]]:
    out = []
    for c in table.columns:
        out.append((c.name, _type(c, caps), c))
        if c.type == "TS" and not caps.datetime64:
            out.append((f"{c.name}_ms", "UInt16", c))
    return out


def column_names(table: str, caps: Capabilities) -> list[str]:
    """The physical columns of ``table`` on a backend with ``caps`` (``_ms`` included)."""
    return [n for n, _, _ in _columns(TABLES[table], caps)]


def column_types(table: Table | str, caps: Capabilities,
                 upto: int = SCHEMA_VERSION) -> list[tuple[str, str, Column]]:
    """(physical name, rendered type, abstract column) of the columns of schema ``upto``."""
    t = TABLES[table] if isinstance(table, str) else table
    return [x for x in _columns(t, caps) if x[2].since <= upto]


def _order_by(table: Table, caps: Capabilities) -> str:
    ts = set(TS_COLUMNS[table.name])
    cols: list[str] = []
    for n in table.order_by:
        cols.append(n)
        if n in ts and not caps.datetime64:
            cols.append(f"{n}_ms")
    return cols[0] if len(cols) == 1 else "(" + ", ".join(cols) + ")"


def _col_sql(n: str, t: str, c: Column) -> str:
    return f"{quote_ident(n)} {t}" + (f" DEFAULT {c.default}" if c.default is not None else "")


def render_table(table: Table, caps: Capabilities, database: str,
                 upto: int = SCHEMA_VERSION) -> str:
    """CREATE TABLE IF NOT EXISTS for ``table`` as of schema version ``upto``."""
    cols = ",\n    ".join(_col_sql(n, t, c) for n, t, c in column_types(table, caps, upto))
    sql = (f"CREATE TABLE IF NOT EXISTS {database}.{table.name} (\n    {cols}\n) "
           f"ENGINE = {table.engine}")
    if table.partition_by:
        sql += f"\nPARTITION BY {table.partition_by}"
    sql += f"\nORDER BY {_order_by(table, caps)}"
    if table.ttl and caps.ttl:
        sql += f"\nTTL {table.ttl}"
    return sql


def render_view(view: View, database: str) -> str:
    return f"CREATE VIEW IF NOT EXISTS {database}.{view.name} AS " + view.select.format(db=database)


def render_add_column(table: Table, caps: Capabilities, database: str, name: str,
                      after: str | None) -> str:
    """ALTER adding one physical column (no ``IF NOT EXISTS``: 18.16 lacks it; check first)."""
    for n, t, c in _columns(table, caps):
        if n == name:
            pos = f" AFTER {quote_ident(after)}" if after else ""
            return f"ALTER TABLE {database}.{table.name} ADD COLUMN {_col_sql(n, t, c)}{pos}"
    raise KeyError(f"{table.name}.{name}")


def render_all(caps: Capabilities, database: str, upto: int = SCHEMA_VERSION) -> list[str]:
    """Every statement creating the store as of schema version ``upto`` (tests build old ones)."""
    return ([f"CREATE DATABASE IF NOT EXISTS {database}"]
            + [render_table(t, caps, database, upto) for t in TABLES.values() if t.since <= upto]
            + [render_view(v, database) for v in VIEWS.values() if v.since <= upto])


# ---------------------------------------------------------------------- canonical rows
def to_ms(v: Any) -> int:
    """Epoch milliseconds of a timestamp given as float/int epoch seconds (None → 0)."""
    if v is None:
        return 0
    return int(round(float(v) * 1000.0))


_NAN = float("nan")


def _default(c: Column) -> Any:
    t = c.type
    if t in ("String", "LC"):
        return ""
    if t == "Float64":
        return _NAN if c.default in (None, "nan") else float(c.default)
    if t == "Array(String)":
        return []
    if t == "Date":
        return "1970-01-01"
    return 0


def _conv(c: Column):  # noqa: ANN202 - a small converter per abstract type
    t = c.type
    if t == "TS":
        return to_ms
    if t in ("String", "LC"):
        return lambda v: "" if v is None else str(v)
    if t == "Float64":
        return lambda v: _NAN if v is None else float(v)
    if t == "Array(String)":
        return lambda v: [] if v is None else [str(x) for x in v]
    if t == "Date":
        return lambda v: "1970-01-01" if v is None else (v if isinstance(v, str) else v.isoformat())
    return lambda v: 0 if v is None else int(v)


_CONVERTERS: dict[str, list[tuple[str, Any, Any]]] = {
    name: [(c.name, _conv(c), _default(c)) for c in t.columns] for name, t in TABLES.items()}


def canonical_row(table: str, row: dict[str, Any]) -> tuple:
    """A row dict (timestamps as epoch *seconds*, missing columns → defaults) → canonical tuple."""
    get = row.get
    return tuple(default if (v := get(name)) is None else conv(v)
                 for name, conv, default in _CONVERTERS[table])


# ---------------------------------------------------------------------- SQL helpers
def ts_ms_sql(caps: Capabilities, col: str) -> str:
    """SQL for a timestamp column as Int64 epoch milliseconds, on any backend."""
    if caps.datetime64:
        return f"toUnixTimestamp64Milli({col})"
    return f"(toInt64(toUnixTimestamp({col})) * 1000 + {col}_ms)"


def ts_literal_sql(caps: Capabilities, ms: int) -> str:
    """A literal comparable with a timestamp column (whole seconds on old servers)."""
    if caps.datetime64:
        return f"fromUnixTimestamp64Milli(toInt64({int(ms)}), '{TZ}')"
    return f"toDateTime({int(ms) // 1000}, '{TZ}')"


def ts_cmp_sql(caps: Capabilities, col: str, op: str, ms: int) -> str:
    """``col <op> ms`` exactly to the millisecond, still usable by the primary key.

    >>> ts_cmp_sql(Capabilities.for_version((18, 16)), "t", "<", 1500)
    "(t <= toDateTime(1, 'Asia/Shanghai') AND (toInt64(toUnixTimestamp(t)) * 1000 + t_ms) < 1500)"
    """
    assert op in ("<", "<=", ">", ">=", "=")
    if caps.datetime64:
        return f"{col} {op} {ts_literal_sql(caps, ms)}"
    coarse = {"<": "<=", "<=": "<=", ">": ">=", ">=": ">=", "=": "="}[op]
    return f"({col} {coarse} {ts_literal_sql(caps, ms)} AND {ts_ms_sql(caps, col)} {op} {int(ms)})"


def json_string_sql(caps: Capabilities, col: str, key: str) -> str:
    k = quote_str(key)
    return (f"JSONExtractString({col}, {k})" if caps.json_extract
            else f"visitParamExtractString({col}, {k})")


def json_float_sql(caps: Capabilities, col: str, key: str) -> str:
    k = quote_str(key)
    return (f"JSONExtractFloat({col}, {k})" if caps.json_extract
            else f"visitParamExtractFloat({col}, {k})")


def is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
