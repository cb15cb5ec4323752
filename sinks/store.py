"""The alert store: alerts (latest version wins), the raw-event archive, dead letters.

It speaks ClickHouse SQL to a backend: chDB (embedded, the default, a data
directory) or a ClickHouse server (:mod:`lianwatch.sinks.server`). The same
tables serve both (:mod:`lianwatch.sinks.schema`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from lianwatch.models.alert import Alert
from lianwatch.models.clock import DEFAULT_TZ, parse_ts
from lianwatch.sinks.base import StoreError
from lianwatch.sinks.schema import (
    SCHEMA_VERSION, TABLES, column_names, render_add_columns, render_all,
)

__all__ = ["AlertStore", "open_store"]

_ARCHIVE_COLS = ["subject_id", "event_time", "event_id", "raw"]
_SUBJECT = {"gps": "vehicle_id", "fuel": "vehicle_id", "payments": "village_id",
            "progress": "project_id"}


def _tsv(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class AlertStore:
    def __init__(self, backend: Any, database: str = "lianwatch") -> None:
        self.backend = backend
        self.db = database
        self.caps = backend.caps

    # ------------------------------------------------------------------ schema
    def migrate(self) -> int:
        """Create missing tables and columns; record the schema version. Idempotent."""
        current = self.schema_version()
        for stmt in render_all(self.caps, self.db):
            self.backend.execute(stmt)
        if current and current < SCHEMA_VERSION:
            for t in TABLES.values():
                for stmt in render_add_columns(t, self.caps, self.db, current):
                    self.backend.execute(stmt)
        if current != SCHEMA_VERSION:
            self._insert("schema_version", [{"version": SCHEMA_VERSION,
                                             "applied_time": _now_placeholder()}])
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        try:
            rows = self.backend.select(f"SELECT max(version) AS v FROM {self.db}.schema_version")
        except StoreError:
            return 0
        return int(rows[0]["v"] or 0) if rows else 0

    # ------------------------------------------------------------------ writes
    def _ts_value(self, t: float) -> Any:
        if self.caps.datetime64:
            return f"{t:.3f}"
        return int(t)

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        cols = column_names(table, self.caps)
        if not self.caps.datetime64:
            for r in rows:
                for c in list(r):
                    if c.endswith("_time") and f"{c}_ms" in cols:
                        v = float(r[c])
                        r[c] = int(v)
                        r[f"{c}_ms"] = int(round((v - int(v)) * 1000)) % 1000
        else:
            for r in rows:
                for c in list(r):
                    if c.endswith("_time"):
                        r[c] = f"{float(r[c]):.3f}"
        self.backend.insert_json_rows(f"{self.db}.{table}", rows)

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        rows = []
        for a in alerts:
            pos = a.evidence.get("vehicle_position") or a.evidence.get("station") or {}
            rows.append({
                "alert_id": a.alert_id, "version": a.version, "rule": a.rule, "level": a.level,
                "subject_type": a.subject_type, "subject_id": a.subject_id,
                "unit_id": a.unit_id or "", "village_id": a.village_id or "",
                "event_time": parse_ts(a.event_ts), "detected_time": parse_ts(a.detected_at),
                "event_ts": a.event_ts, "detected_at": a.detected_at, "title": a.title,
                "title_en": a.title_en,
                "evidence": orjson.dumps(a.evidence).decode(),
                "source_event_ids": list(a.source_event_ids),
                "lat": float(pos.get("lat", "nan")), "lon": float(pos.get("lon", "nan")),
            })
        self._insert("alerts", rows)

    def archive(self, stream: str, records: Iterable[tuple[dict[str, Any], bytes]]) -> int:
        """Archive raw records (the bytes as received) with their subject and time."""
        subj = _SUBJECT[stream]
        parts = []
        if self.caps.datetime64:
            for ev, raw in records:
                sid = ev.get(subj) or ""
                eid = _event_id(stream, ev)
                parts.append(f"{_tsv(sid)}\t{ev['t']:.3f}\t{_tsv(eid)}\t"
                             f"{_tsv(raw.decode('utf-8', 'replace'))}\n")
            self.backend.insert_tsv(f"{self.db}.events_{stream}", _ARCHIVE_COLS, "".join(parts))
        else:
            rows = [{"subject_id": ev.get(subj) or "", "event_time": ev["t"],
                     "event_id": _event_id(stream, ev),
                     "raw": raw.decode("utf-8", "replace")} for ev, raw in records]
            self._insert(f"events_{stream}", rows)
            parts = rows  # type: ignore[assignment]
        return len(parts)

    def write_reference(self, ref: Any) -> None:
        """Reference data (a :class:`~lianwatch.reference.Reference`) for dashboards/incidents."""
        rows = {"ref_vehicles": [], "ref_villages": [], "ref_officials": [], "ref_projects": []}
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
                self._insert(table, rs)

    def write_deadletters(self, items: Iterable[dict[str, Any]]) -> None:
        rows = [{"received_time": it.get("received_t", 0.0), "stream": it.get("stream", ""),
                 "source": it.get("source", ""), "reason": it.get("reason", ""),
                 "raw": it.get("raw", "")} for it in items]
        if rows:
            self._insert("deadletters", rows)

    # ------------------------------------------------------------------ reads
    def query(self, sql: str) -> list[dict[str, Any]]:
        return self.backend.select(sql)

    def current_alerts_sql(self) -> str:
        """The current row per alert id (newest version), for any query to build on."""
        return f"(SELECT * FROM {self.db}.alerts FINAL)"

    def alerts(self, *, level: str | None = None, rule: str | None = None,
               subject: str | None = None, since: str | None = None,
               until: str | None = None, limit: int = 1000) -> list[Alert]:
        where = []
        if level:
            where.append(f"level = {_q(level)}")
        if rule:
            where.append(f"rule = {_q(rule)}" if "*" not in rule
                         else f"rule LIKE {_q(rule.replace('*', '%'))}")
        if subject:
            where.append(f"subject_id = {_q(subject)}")
        if since:
            where.append(f"event_time >= toDateTime64({parse_ts(since):.3f}, 3)")
        if until:
            where.append(f"event_time < toDateTime64({parse_ts(until):.3f}, 3)")
        w = (" WHERE " + " AND ".join(where)) if where else ""
        rows = self.query(
            f"SELECT alert_id, version, rule, level, subject_type, subject_id, unit_id, "
            f"village_id, event_ts, detected_at, title, title_en, evidence, source_event_ids "
            f"FROM {self.current_alerts_sql()}{w} ORDER BY event_time DESC, alert_id "
            f"LIMIT {int(limit)}")
        return [_row_alert(r) for r in rows]

    def get_alert(self, alert_id: str) -> Alert | None:
        rows = self.query(
            f"SELECT alert_id, version, rule, level, subject_type, subject_id, unit_id, "
            f"village_id, event_ts, detected_at, title, title_en, evidence, source_event_ids "
            f"FROM {self.db}.alerts WHERE alert_id = {_q(alert_id)} "
            f"ORDER BY version DESC LIMIT 1")
        return _row_alert(rows[0]) if rows else None

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


def _now_placeholder() -> float:
    # the only clock read of the store: when a schema version was applied
    return datetime.now(DEFAULT_TZ).timestamp()


def _event_id(stream: str, ev: dict[str, Any]) -> str:
    if stream == "gps":
        return f"{ev['vehicle_id']}@{ev['t']:.3f}"
    return ev[{"fuel": "txn_id", "payments": "payment_id", "progress": "report_id"}[stream]]


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _row_alert(r: dict[str, Any]) -> Alert:
    r = dict(r)
    r["evidence"] = orjson.loads(r["evidence"]) if r.get("evidence") else {}
    r["unit_id"] = r.get("unit_id") or None
    r["village_id"] = r.get("village_id") or None
    return Alert.model_validate(r)


def open_store(settings: Any = None, path: str | None = None) -> AlertStore:
    """The configured store: chDB in ``data_dir`` by default, or a ClickHouse server."""
    from lianwatch.settings import Settings

    settings = settings or Settings()
    if settings.store == "clickhouse":
        from lianwatch.sinks.server import ServerBackend  # issue: ClickHouse server sink
        from lianwatch.settings import ClickHouseSettings

        chs = ClickHouseSettings()
        store = AlertStore(ServerBackend(chs), database=chs.database)
    else:
        from lianwatch.sinks.chdb_backend import ChdbBackend

        store = AlertStore(ChdbBackend(path or settings.data_dir), database="lianwatch")
    store.migrate()
    return store
