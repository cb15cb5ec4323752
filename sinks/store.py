"""The alert store: alerts (latest version wins), the raw-event archive, dead letters.

It speaks ClickHouse SQL to a backend: chDB (embedded, the default, a data
directory) or a ClickHouse server (:mod:`lianwatch.sinks.server`). The same
tables serve both (:mod:`lianwatch.sinks.schema`); ``store.caps`` says how they
are rendered (on an 18.16 server a timestamp is ``DateTime`` + ``<col>_ms``:
use :func:`~lianwatch.sinks.schema.ts_ms_sql` for SQL that runs on both).

Writes go in *canonical rows* (tuples in the table's column order, timestamps
as epoch milliseconds): ``rows_for_*`` build them, :meth:`AlertStore.insert_rows`
sends them. The :class:`~lianwatch.sinks.writer.Writer` batches, retries and
spills the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from lianwatch.errors import ConfigError
from lianwatch.models.alert import Alert
from lianwatch.models.clock import DEFAULT_TZ, parse_ts
from lianwatch.models.streams import SPECS
from lianwatch.sinks.base import StoreError
from lianwatch.sinks.sql import in_list, plain_ident, quote_str
from lianwatch.sinks.schema import (
    SCHEMA_VERSION, TABLES, VIEWS, Capabilities, canonical_row, column_types, render_add_column,
    render_table, render_view, to_ms, ts_cmp_sql, ts_ms_sql,
)

__all__ = ["AlertStore", "open_store", "connect", "alert_from_row", "ALERT_COLUMNS"]

log = logging.getLogger(__name__)

#: the ``alerts`` columns that make an :class:`Alert` (see :func:`alert_from_row`)
ALERT_COLUMNS = ("alert_id, version, rule, level, subject_type, subject_id, unit_id, "
                 "village_id, event_ts, detected_at, title, title_en, evidence, source_event_ids")


def _norm_type(t: str) -> str:
    return t.replace(" ", "").replace('"', "'")


class AlertStore:
    def __init__(self, backend: Any, database: str = "lianwatch") -> None:
        self.backend = backend
        self.db = plain_ident(database)
        #: statements the last :meth:`migrate` ran (empty: nothing to do)
        self.last_migration: list[str] = []

    @property
    def caps(self) -> Capabilities:
        return self.backend.caps

    def __repr__(self) -> str:
        return f"AlertStore({self.backend!r}, database={self.db!r})"

    # ------------------------------------------------------------------ schema
    def _inspect(self) -> dict[str, Any]:
        """What exists: {"database": bool, "tables": {name: engine}, "columns": {t: {c: type}}}."""
        db = quote_str(self.db)
        dbs = self.query(f"SELECT name FROM system.databases WHERE name = {db}")
        tables = {r["name"]: r["engine"] for r in self.query(
            f"SELECT name, engine FROM system.tables WHERE database = {db}")}
        cols: dict[str, dict[str, str]] = {}
        for r in self.query(f"SELECT table, name, type FROM system.columns WHERE database = {db}"):
            cols.setdefault(r["table"], {})[r["name"]] = r["type"]
        return {"database": bool(dbs), "tables": tables, "columns": cols}

    def plan_migration(self, info: dict[str, Any] | None = None) -> list[str]:
        """The statements that bring this store to the current schema (empty: up to date)."""
        info = info or self._inspect()
        caps = self.caps
        out: list[str] = []
        if not info["database"]:
            out.append(f"CREATE DATABASE IF NOT EXISTS {self.db}")
        for t in TABLES.values():
            have = info["columns"].get(t.name)
            if t.name not in info["tables"]:
                out.append(render_table(t, caps, self.db))
                continue
            prev = None
            for name, _typ, _c in column_types(t, caps):
                if name not in (have or {}):
                    out.append(render_add_column(t, caps, self.db, name, after=prev))
                prev = name
        for v in VIEWS.values():
            if v.name not in info["tables"]:
                out.append(render_view(v, self.db))
            elif v.name == "alerts_current":
                want = {n for n, _, _ in column_types("alerts", caps)}
                if set(info["columns"].get(v.name, {})) != want:  # the table got columns
                    out.append(f"DROP TABLE IF EXISTS {self.db}.{v.name}")
                    out.append(render_view(v, self.db))
        return out

    def migrate(self) -> int:
        """Create missing tables, columns and views; record the schema version. Idempotent.

        Any older schema (or none) is brought to :data:`SCHEMA_VERSION` by looking at
        what exists (``system.tables``/``system.columns``), never by trusting the
        recorded version alone; a second run does nothing.
        """
        plan = self.plan_migration()
        done = []
        for stmt in plan:
            try:
                self.backend.execute(stmt)
            except StoreError:
                # another process may have added it meanwhile: fine if it is there now
                if " ADD COLUMN " in stmt and stmt not in self.plan_migration():
                    continue
                raise
            done.append(stmt)
            log.info("migrate %s: %s", self.db, stmt.splitlines()[0])
        if self.schema_version() < SCHEMA_VERSION:
            self.insert_rows("schema_version", [(SCHEMA_VERSION, to_ms(_now()))])
            done.append(f"-- schema_version {SCHEMA_VERSION}")
        self.last_migration = done
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        try:
            rows = self.backend.select(f"SELECT max(version) AS v FROM {self.db}.schema_version")
        except StoreError:
            return 0
        return int(rows[0]["v"] or 0) if rows else 0

    def check(self) -> dict[str, Any]:
        """What is wrong with the store, without changing it (``lianwatch db check``)."""
        report: dict[str, Any] = {"backend": self.backend.kind, "database": self.db,
                                  "server_version": self.backend.server_version(),
                                  "expected_schema": SCHEMA_VERSION, "problems": [],
                                  "notes": []}
        info = self._inspect()
        problems, notes = report["problems"], report["notes"]
        report["schema_version"] = self.schema_version() if "schema_version" in info[
            "tables"] else 0
        if not info["database"]:
            problems.append(f"database {self.db} is missing")
        for t in TABLES.values():
            if t.name not in info["tables"]:
                if info["database"]:
                    problems.append(f"table {t.name} is missing")
                continue
            have = info["columns"].get(t.name, {})
            want = {n: typ for n, typ, _ in column_types(t, self.caps)}
            for n, typ in want.items():
                if n not in have:
                    problems.append(f"column {t.name}.{n} is missing")
                elif _norm_type(have[n]) != _norm_type(typ):
                    notes.append(f"column {t.name}.{n} is {have[n]}, the schema says {typ}")
            for n in have:
                if n not in want:
                    notes.append(f"column {t.name}.{n} is not in the schema")
            engine = t.engine.split("(")[0]
            if info["tables"][t.name] != engine:
                notes.append(f"table {t.name} has engine {info['tables'][t.name]}, new stores "
                             f"get {engine}")
        for v in VIEWS.values():
            if info["database"] and v.name not in info["tables"]:
                problems.append(f"view {v.name} is missing")
        sv = report["schema_version"]
        if info["database"] and sv < SCHEMA_VERSION:
            problems.append(f"schema version {sv} is older than {SCHEMA_VERSION}")
        elif sv > SCHEMA_VERSION:
            problems.append(f"schema version {sv} is newer than this lianwatch ({SCHEMA_VERSION})")
        counts = {}
        for t in TABLES:
            if t in info["tables"]:
                try:
                    counts[t] = int(self.query(f"SELECT count() AS n FROM {self.db}.{t}")[0]["n"])
                except StoreError as exc:
                    problems.append(f"table {t} cannot be read: {exc}")
        if "alerts" in info["tables"]:
            try:
                counts["alerts_current"] = int(self.query(
                    f"SELECT count() AS n FROM {self.current_alerts_sql()}")[0]["n"])
            except StoreError as exc:  # pragma: no cover - read above
                problems.append(f"alerts cannot be read: {exc}")
        report["counts"] = counts
        report["ok"] = not problems
        return report

    # ------------------------------------------------------------------ canonical rows
    def rows_for_alerts(self, alerts: Iterable[Alert]) -> list[tuple]:
        rows = []
        for a in alerts:
            pos = a.evidence.get("vehicle_position") or a.evidence.get("station") or {}
            if not isinstance(pos, dict):
                pos = {}
            rows.append((
                a.alert_id, int(a.version), a.rule, a.level, a.subject_type, a.subject_id,
                a.unit_id or "", a.village_id or "",
                to_ms(parse_ts(a.event_ts)), to_ms(parse_ts(a.detected_at)),
                a.event_ts, a.detected_at, a.title, a.title_en,
                orjson.dumps(a.evidence).decode(), [str(x) for x in a.source_event_ids],
                _float(pos.get("lat")), _float(pos.get("lon")),
            ))
        return rows

    def rows_for_archive(self, stream: str, records: Iterable[tuple[dict[str, Any], bytes]],
                         subject_of: Any = None) -> list[tuple]:
        """(subject, epoch ms, event id, raw text) per record: the archive's canonical rows."""
        subj = SPECS[stream].subject_field
        rows: list[tuple] = []
        append = rows.append
        if stream == "gps":
            # the hot path (most events are pings): the id is "<vehicle>@<seconds.mmm>"
            for ev, raw in records:
                ms = round(ev["t"] * 1000.0)
                vid = ev["vehicle_id"]
                append((vid or (subject_of(ev) if subject_of else None) or "", ms,
                        "%s@%d.%03d" % (vid, ms // 1000, ms % 1000),
                        raw.decode("utf-8", "replace")))
        else:
            key = SPECS[stream].id_field
            for ev, raw in records:
                sid = ev.get(subj) or (subject_of(ev) if subject_of else None) or ""
                append((sid, round(ev["t"] * 1000.0), ev[key], raw.decode("utf-8", "replace")))
        return rows

    def rows_for_deadletters(self, items: Iterable[dict[str, Any]]) -> list[tuple]:
        return [canonical_row("deadletters", {
            "received_time": it.get("received_t", 0.0), "stream": it.get("stream", ""),
            "source": it.get("source", ""), "reason": it.get("reason", ""),
            "raw": it.get("raw", "")}) for it in items]

    def insert_rows(self, table: str, rows: Sequence[tuple]) -> None:
        """Send canonical rows of ``table`` to the backend (one insert)."""
        if rows:
            self.backend.insert(self.db, TABLES[table], rows)

    def insert_dicts(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows given as dicts of column → value (timestamps as epoch seconds,
        missing columns get the table's defaults): for the tables written a few rows at a
        time (history, notifications, reference)."""
        self.insert_rows(table, [canonical_row(table, r) for r in rows])

    # ------------------------------------------------------------------ writes
    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        self.insert_rows("alerts", self.rows_for_alerts(alerts))

    def archive(self, stream: str, records: Iterable[tuple[dict[str, Any], bytes]],
                subject_of: Any = None) -> int:
        """Archive raw records (the bytes as received) with their subject and time.

        ``subject_of(ev)`` gives the subject when the record does not carry it
        (a fuel transaction with only a card: its vehicle through the card).
        """
        rows = self.rows_for_archive(stream, records, subject_of)
        self.insert_rows(f"events_{stream}", rows)
        return len(rows)

    def write_reference(self, ref: Any) -> None:
        """Reference data (a :class:`~lianwatch.reference.Reference`) for dashboards/incidents."""
        rows: dict[str, list[dict[str, Any]]] = {
            "ref_vehicles": [], "ref_villages": [], "ref_officials": [], "ref_projects": []}
        for v in ref.vehicles.values():
            rows["ref_vehicles"].append({
                "vehicle_id": v.vehicle_id, "plate": v.plate, "unit_id": v.unit_id,
                "unit_name": v.unit_name, "tank_liters": v.tank_liters, "fuel_type": v.fuel_type,
                "depot_lat": v.depot.lat if v.depot else float("nan"),
                "depot_lon": v.depot.lon if v.depot else float("nan"),
                "card_ids": list(v.card_ids), "raw": v.model_dump_json()})
        for vl in ref.villages.values():
            rows["ref_villages"].append({
                "village_id": vl.village_id, "name": vl.name, "town": vl.town,
                "county": vl.county, "approval_threshold_yuan": vl.approval_threshold_yuan,
                "raw": vl.model_dump_json()})
        for o in ref.officials.values():
            rows["ref_officials"].append({
                "person_id": o.person_id, "name": o.name, "village_id": o.village_id or "",
                "role": o.role, "related_payee_ids": list(o.related_payee_ids),
                "raw": o.model_dump_json()})
        for pj in ref.projects.values():
            rows["ref_projects"].append({
                "project_id": pj.project_id, "name": pj.name, "village_id": pj.village_id or "",
                "unit_id": pj.unit_id or "", "budget_yuan": pj.budget_yuan,
                "planned_start": pj.planned_start.isoformat(),
                "planned_end": pj.planned_end.isoformat(), "raw": pj.model_dump_json()})
        for table, rs in rows.items():
            if rs:
                self.insert_dicts(table, rs)

    def write_deadletters(self, items: Iterable[dict[str, Any]]) -> None:
        self.insert_rows("deadletters", self.rows_for_deadletters(items))

    # ------------------------------------------------------------------ reads
    def query(self, sql: str) -> list[dict[str, Any]]:
        return self.backend.select(sql)

    def archived(self, stream: str, *, subject: str | None = None, start: float | None = None,
                 end: float | None = None, limit: int | None = None) -> list[tuple[float, bytes]]:
        """Raw archived records of a stream, by subject and time (uses the ordering key)."""
        where = []
        if subject is not None:
            where.append(f"subject_id = {quote_str(subject)}")
        if start is not None:
            where.append(ts_cmp_sql(self.caps, "event_time", ">=", to_ms(start)))
        if end is not None:
            where.append(ts_cmp_sql(self.caps, "event_time", "<=", to_ms(end)))
        w = (" WHERE " + " AND ".join(where)) if where else ""
        lim = f" LIMIT {int(limit)}" if limit else ""
        order = "subject_id, event_time" + ("" if self.caps.datetime64 else ", event_time_ms")
        rows = self.query(f"SELECT {ts_ms_sql(self.caps, 'event_time')} AS ms, raw "
                          f"FROM {self.db}.events_{stream}{w} ORDER BY {order}{lim}")
        return [(int(r["ms"]) / 1000.0, r["raw"].encode("utf-8")) for r in rows]

    def reference_rows(self, kind: str) -> list[bytes]:
        """The raw JSON of the stored reference records of ``kind`` (vehicles, …); none
        for a kind the store keeps no table of."""
        key = SPECS[kind].id_field
        if f"ref_{kind}" not in TABLES:
            return []
        rows = self.query(f"SELECT raw FROM {self.db}.ref_{kind} FINAL ORDER BY {key}")
        return [r["raw"].encode("utf-8") for r in rows]

    def current_alerts_sql(self) -> str:
        """The current row per alert id (newest version), for any query to build on."""
        return f"(SELECT * FROM {self.db}.alerts FINAL)"

    def alerts(self, *, level: str | None = None, rule: str | None = None,
               subject: str | None = None, since: str | None = None,
               until: str | None = None, limit: int = 1000) -> list[Alert]:
        where = []
        if level:
            where.append(f"level = {quote_str(level)}")
        if rule:
            where.append(f"rule = {quote_str(rule)}" if "*" not in rule
                         else f"rule LIKE {quote_str(rule.replace('*', '%'))}")
        if subject:
            where.append(f"subject_id = {quote_str(subject)}")
        if since:
            where.append(ts_cmp_sql(self.caps, "event_time", ">=", to_ms(parse_ts(since))))
        if until:
            where.append(ts_cmp_sql(self.caps, "event_time", "<", to_ms(parse_ts(until))))
        w = (" WHERE " + " AND ".join(where)) if where else ""
        order = "event_time DESC" + ("" if self.caps.datetime64 else ", event_time_ms DESC")
        rows = self.query(
            f"SELECT {ALERT_COLUMNS} FROM {self.current_alerts_sql()}{w} "
            f"ORDER BY {order}, alert_id LIMIT {int(limit)}")
        return [alert_from_row(r) for r in rows]

    #: ids per ``IN (…)`` list of :meth:`current_alerts`
    IN_LIMIT = 2000

    def current_alerts(self, alert_ids: Iterable[str]) -> dict[str, Alert]:
        """The current version of each of these alerts that the store has, by id."""
        ids = sorted(set(alert_ids))
        out: dict[str, Alert] = {}
        for i in range(0, len(ids), self.IN_LIMIT):
            rows = self.query(f"SELECT {ALERT_COLUMNS} FROM {self.current_alerts_sql()} "
                              f"WHERE alert_id IN {in_list(ids[i:i + self.IN_LIMIT])}")
            for r in rows:
                a = alert_from_row(r)
                out[a.alert_id] = a
        return out

    def get_alert(self, alert_id: str) -> Alert | None:
        rows = self.query(
            f"SELECT {ALERT_COLUMNS} FROM {self.db}.alerts WHERE alert_id = {quote_str(alert_id)} "
            f"ORDER BY version DESC LIMIT 1")
        return alert_from_row(rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        out = {}
        for t in TABLES:
            try:
                out[t] = int(self.query(f"SELECT count() AS n FROM {self.db}.{t}")[0]["n"])
            except StoreError:
                out[t] = -1
        out["alerts_current"] = int(self.query(
            f"SELECT count() AS n FROM {self.current_alerts_sql()}")[0]["n"])
        return out

    def truncate_all(self) -> None:
        for t in TABLES:
            if t != "schema_version":
                self.backend.execute(f"TRUNCATE TABLE IF EXISTS {self.db}.{t}")

    def close(self) -> None:
        self.backend.close()


def _now() -> float:
    # the only clock read of the store: when a schema version was applied
    return datetime.now(DEFAULT_TZ).timestamp()


def _float(v: Any) -> float:
    try:
        return float("nan") if v is None else float(v)
    except (TypeError, ValueError):
        return float("nan")


def alert_from_row(r: dict[str, Any]) -> Alert:
    """An :class:`Alert` from a row of the ``alerts`` table (as :data:`ALERT_COLUMNS` select it)."""
    r = dict(r)
    r["evidence"] = orjson.loads(r["evidence"]) if r.get("evidence") else {}
    r["unit_id"] = r.get("unit_id") or None
    r["village_id"] = r.get("village_id") or None
    return Alert.model_validate(r)


def connect(backend: str = "chdb", *, path: str | Path | None = None,
            clickhouse: Any = None) -> AlertStore:
    """A store as it is (no migration).

    ``backend``: ``chdb`` (embedded: the data directory ``path``) or ``clickhouse``
    (a server: ``clickhouse``, a :class:`~lianwatch.sinks.server.ClickHouseConfig`).
    The commands build these from the settings (``lianwatch.commands.open_configured_store``).
    """
    if backend == "clickhouse":
        from lianwatch.sinks.server import ServerBackend

        if clickhouse is None:
            raise ConfigError("a ClickHouse server store needs its connection settings")
        return AlertStore(ServerBackend(clickhouse), database=clickhouse.database)
    if backend != "chdb":
        raise ConfigError(f"unknown store backend {backend!r} (chdb or clickhouse)")
    if path is None:
        raise ConfigError("an embedded (chDB) store needs its data directory")
    from lianwatch.sinks.chdb_backend import ChdbBackend

    return AlertStore(ChdbBackend(path), database="lianwatch")


def open_store(backend: str = "chdb", *, path: str | Path | None = None,
               clickhouse: Any = None) -> AlertStore:
    """A store, migrated (see :func:`connect`)."""
    store = connect(backend, path=path, clickhouse=clickhouse)
    store.migrate()
    return store
