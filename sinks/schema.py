"""One definition of the store's tables, rendered for chDB and for a ClickHouse server.

Newer server features are used where the server has them: ``DateTime64``
(20.1+), ``LowCardinality`` (19.x), ``TTL`` (19.6+). On an older server (the
Debian package is 18.16) the same tables are rendered with ``DateTime`` plus a
millisecond column, plain ``String`` and no TTL, so one code path serves both.

>>> caps = Capabilities.for_version((18, 16, 1))
>>> "DateTime64" in render_table(TABLES["alerts"], caps, "lw")
False
>>> "LowCardinality(String)" in render_table(TABLES["alerts"], Capabilities.modern(), "lw")
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Capabilities", "Table", "Column", "TABLES", "SCHEMA_VERSION", "render_table",
           "render_all", "TS_COLUMNS"]

#: bump when a table or column is added; ``lianwatch db migrate`` brings older stores up
SCHEMA_VERSION = 3
TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class Capabilities:
    datetime64: bool = True
    low_cardinality: bool = True
    ttl: bool = True
    version: tuple[int, ...] = (99,)

    @classmethod
    def modern(cls) -> "Capabilities":
        return cls()

    @classmethod
    def for_version(cls, v: tuple[int, ...]) -> "Capabilities":
        return cls(datetime64=v >= (20, 1), low_cardinality=v >= (19, 0), ttl=v >= (19, 6),
                   version=tuple(v))


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # abstract: String, LC, TS (ms timestamp), Int64, UInt32, Float64, Bool, Array(String)
    since: int = 1  # schema version that added it
    default: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    engine: str
    order_by: str
    partition_by: str | None = None
    ttl: str | None = None
    since: int = 1
    settings: dict[str, str] = field(default_factory=dict)


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

TABLES: dict[str, Table] = {
    "alerts": Table("alerts", _ALERT_COLS, "ReplacingMergeTree(version)", "alert_id",
                    partition_by=None),
    "events_gps": Table("events_gps", _ARCHIVE_COLS, "MergeTree", "(subject_id, event_time)",
                        partition_by="toYYYYMM(event_time)"),
    "events_fuel": Table("events_fuel", _ARCHIVE_COLS, "MergeTree", "(subject_id, event_time)",
                         partition_by="toYYYYMM(event_time)"),
    "events_payments": Table("events_payments", _ARCHIVE_COLS, "MergeTree",
                             "(subject_id, event_time)", partition_by="toYYYYMM(event_time)"),
    "events_progress": Table("events_progress", _ARCHIVE_COLS, "MergeTree",
                             "(subject_id, event_time)", partition_by="toYYYYMM(event_time)"),
    "deadletters": Table("deadletters", (
        Column("received_time", "TS"),
        Column("stream", "LC"),
        Column("source", "String"),
        Column("reason", "String"),
        Column("raw", "String"),
    ), "MergeTree", "(stream, received_time)", ttl="toDateTime(received_time) + INTERVAL 180 DAY"),
    "alert_history": Table("alert_history", (
        Column("alert_id", "String"),
        Column("seq", "UInt32"),
        Column("at_time", "TS"),
        Column("action", "LC"),
        Column("state", "LC"),
        Column("by", "String"),
        Column("note", "String"),
        Column("evidence_ref", "String"),
    ), "ReplacingMergeTree", "(alert_id, seq)", since=2),
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
    ), "ReplacingMergeTree(attempt)", "notification_id", since=2),
    # reference data, for dashboards and incident reports (latest load wins)
    "ref_vehicles": Table("ref_vehicles", (
        Column("vehicle_id", "String"), Column("plate", "String"), Column("unit_id", "String"),
        Column("unit_name", "String"), Column("tank_liters", "Float64"),
        Column("fuel_type", "LC"), Column("depot_lat", "Float64"), Column("depot_lon", "Float64"),
        Column("card_ids", "Array(String)"), Column("raw", "String"),
    ), "ReplacingMergeTree", "vehicle_id", since=3),
    "ref_villages": Table("ref_villages", (
        Column("village_id", "String"), Column("name", "String"), Column("town", "String"),
        Column("county", "String"), Column("approval_threshold_yuan", "Float64"),
        Column("raw", "String"),
    ), "ReplacingMergeTree", "village_id", since=3),
    "ref_officials": Table("ref_officials", (
        Column("person_id", "String"), Column("name", "String"), Column("village_id", "String"),
        Column("role", "LC"), Column("related_payee_ids", "Array(String)"), Column("raw", "String"),
    ), "ReplacingMergeTree", "person_id", since=3),
    "ref_projects": Table("ref_projects", (
        Column("project_id", "String"), Column("name", "String"), Column("village_id", "String"),
        Column("unit_id", "String"), Column("budget_yuan", "Float64"),
        Column("planned_start", "Date"), Column("planned_end", "Date"), Column("raw", "String"),
    ), "ReplacingMergeTree", "project_id", since=3),
    "schema_version": Table("schema_version", (
        Column("version", "UInt32"),
        Column("applied_time", "TS"),
    ), "ReplacingMergeTree", "version", since=1),
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
    return [n for n, _, _ in _columns(TABLES[table], caps)]


def render_table(table: Table, caps: Capabilities, database: str) -> str:
    cols = ",\n    ".join(
        f"`{n}` {t}" + (f" DEFAULT {c.default}" if c.default is not None else "")
        for n, t, c in _columns(table, caps))
    sql = f"CREATE TABLE IF NOT EXISTS {database}.{table.name} (\n    {cols}\n) ENGINE = {table.engine}"
    if table.partition_by:
        sql += f"\nPARTITION BY {table.partition_by}"
    sql += f"\nORDER BY {table.order_by}"
    if table.ttl and caps.ttl:
        sql += f"\nTTL {table.ttl}"
    return sql


def render_add_columns(table: Table, caps: Capabilities, database: str, since: int) -> list[str]:
    """ALTERs adding the columns introduced after schema version ``since``."""
    out = []
    for n, t, c in _columns(table, caps):
        if c.since > since and table.since <= since:
            d = f" DEFAULT {c.default}" if c.default is not None else ""
            out.append(f"ALTER TABLE {database}.{table.name} ADD COLUMN IF NOT EXISTS `{n}` {t}{d}")
    return out


def render_all(caps: Capabilities, database: str) -> list[str]:
    return [f"CREATE DATABASE IF NOT EXISTS {database}"] + [
        render_table(t, caps, database) for t in TABLES.values()]
