"""What every dashboard shares: the alert, reference and archive sub-queries, the
filters, template variables, columns and formats.

SQL is ClickHouse SQL as the Grafana ClickHouse plugin runs it: its macros
(``$__timeFilter``, ``$__timeInterval``, ``$__fromTime``/``$__toTime``,
``$__conditionalAll``) and template variables (``${town:singlequote}`` …).
Tables are the store's (:mod:`lianwatch.sinks.schema`): ``alerts`` (current
row per id with ``FINAL``), the raw-event archive ``events_*`` read with
``JSONExtract*``, ``alert_history`` and the reference tables ``ref_*``.
Archived events can hold the same record twice (delivered twice upstream):
every archive read keeps one row per ``event_id`` (``LIMIT 1 BY``).

A family's dashboard lives in a module of its own (``dashboards/<family>.py``)
built from these pieces and is listed in :data:`lianwatch.dashboards.definitions.DASHBOARDS`.
"""

from __future__ import annotations

from .labels import CLOCK_ACTIONS, CLOSED_STATES, RULE_NAMES, STARTED_STAGES, sql_list
from .model import Column as C
from .model import Series, T, Var


CLOSED = sql_list(CLOSED_STATES)
STARTED = sql_list(STARTED_STAGES)


def _sub(template: str, **parts: str) -> str:
    for k, v in parts.items():
        template = template.replace(f"<<{k}>>", v)
    assert "<<" not in template, template
    return template


# ----------------------------------------------------------------- building blocks
VILLAGES = "(SELECT village_id, name AS village_name, town FROM __DB__.ref_villages FINAL)"
UNITS = ("(SELECT unit_id, any(unit_name) AS unit_name FROM __DB__.ref_vehicles FINAL "
         "GROUP BY unit_id)")
VEHICLES = ("(SELECT vehicle_id, plate, unit_id, unit_name, tank_liters, fuel_type "
            "FROM __DB__.ref_vehicles FINAL)")
STATES = ("(SELECT alert_id, argMax(state, seq) AS state, max(at_time) AS state_time, "
          f"maxIf(at_time, action IN {sql_list(CLOCK_ACTIONS)}) AS clock_from, "
          "countIf(action = 'escalate') AS escalations "
          "FROM __DB__.alert_history FINAL GROUP BY alert_id)")

_ALERTS = """(
  SELECT a.alert_id AS alert_id, a.version AS version, a.rule AS rule, a.level AS level,
         a.subject_type AS subject_type, a.subject_id AS subject_id, a.unit_id AS unit_id,
         a.vkey AS village_id, a.event_time AS event_time, a.detected_time AS detected_time,
         a.title AS title, a.title_en AS title_en, a.evidence AS evidence,
         a.source_event_ids AS source_event_ids, a.lat AS lat, a.lon AS lon,
         v.village_name AS village_name, v.town AS town,
         if(u.unit_name != '', u.unit_name, a.unit_id) AS unit_name,
         multiIf(a.subject_type = 'vehicle' AND rv.plate != '', rv.plate,
                 a.subject_type = 'project' AND a.project_name != '', a.project_name,
                 a.subject_type = 'village' AND v.village_name != '', v.village_name,
                 a.subject_id) AS subject_name,
         if(s.state != '', s.state, 'open') AS state, s.state_time AS state_time,
         s.escalations AS escalations,
         addSeconds(toDateTime(if(toUnixTimestamp(s.clock_from) > 0, s.clock_from, a.detected_time)),
                    toInt64(86400 * if(a.level = 'red', {{th:lifecycle.red_days@a.rule}},
                                       {{th:lifecycle.yellow_days@a.rule}}))) AS due_time
  FROM (
    SELECT al.alert_id AS alert_id, al.version AS version, al.rule AS rule, al.level AS level,
           al.subject_type AS subject_type, al.subject_id AS subject_id, al.unit_id AS unit_id,
           al.event_time AS event_time, al.detected_time AS detected_time, al.title AS title,
           al.title_en AS title_en, al.evidence AS evidence, al.source_event_ids AS source_event_ids,
           al.lat AS lat, al.lon AS lon, pj.project_name AS project_name,
           multiIf(al.village_id != '', al.village_id, al.subject_type = 'village', al.subject_id,
                   al.subject_type = 'project', pj.project_village, '') AS vkey
    FROM __DB__.alerts AS al FINAL
    LEFT JOIN (SELECT project_id, name AS project_name, village_id AS project_village
               FROM __DB__.ref_projects FINAL) AS pj ON pj.project_id = al.subject_id
  ) AS a
  LEFT JOIN <<VILLAGES>> AS v ON v.village_id = a.vkey
  LEFT JOIN <<UNITS>> AS u ON u.unit_id = a.unit_id
  LEFT JOIN (SELECT vehicle_id, plate FROM __DB__.ref_vehicles FINAL) AS rv ON rv.vehicle_id = a.subject_id
  LEFT JOIN <<STATES>> AS s ON s.alert_id = a.alert_id
  WHERE <<WHERE>>
)"""


def alerts(where: str) -> str:
    """Current alerts with names, town, state and deadline (a subquery), filtered by ``where``
    (over ``a.*``, ``v.town``)."""
    return _sub(_ALERTS, VILLAGES=VILLAGES, UNITS=UNITS, STATES=STATES, WHERE=where)


#: an alert belongs to the dashboard's period when it happened or was raised in it
IN_RANGE = "($__timeFilter(a.event_time) OR $__timeFilter(a.detected_time))"


def _all(column: str, var: str) -> str:
    return f"$__conditionalAll({column} IN (${{{var}:singlequote}}), ${var})"


#: the Overview's filters (town, village, unit, rule, level), whatever the time
OVERVIEW_FILTERS = " AND ".join([
    _all("v.town", "town"), _all("a.vkey", "village"),
    _all("a.unit_id", "unit"), _all("a.rule", "rule"), _all("a.level", "level")])
OVERVIEW_WHERE = f"{IN_RANGE} AND {OVERVIEW_FILTERS}"
VEHICLE_WHERE = " AND ".join([
    IN_RANGE, "a.subject_type = 'vehicle'", _all("a.unit_id", "unit"),
    _all("a.subject_id", "vehicle")])
VILLAGE_WHERE = " AND ".join([
    IN_RANGE, "a.subject_type = 'village'", _all("v.town", "town"),
    _all("a.vkey", "village")])
PROJECT_WHERE = " AND ".join([
    IN_RANGE, "a.subject_type = 'project'", _all("v.town", "town"),
    _all("a.vkey", "village")])
ONE_ALERT_WHERE = "a.alert_id = ${alert_id:singlequote}"

OPEN = f"state NOT IN {CLOSED}"
#: still waiting for a rectification report after the deadline (the lifecycle escalates these)
OVERDUE = "state = 'open' AND due_time < $__toTime"

# fuel transactions (archive) with their vehicle (given, else through the card)
_FUEL = """(
  SELECT t.txn_id AS txn_id, t.event_time AS event_time, t.vehicle_id AS vehicle_id,
         t.card_id AS card_id, JSONExtractString(t.raw, 'station_id') AS station_id,
         JSONExtractString(t.raw, 'station_name') AS station_name,
         JSONExtractFloat(t.raw, 'station_lat') AS station_lat,
         JSONExtractFloat(t.raw, 'station_lon') AS station_lon,
         JSONExtractString(t.raw, 'station_coord') AS station_coord,
         JSONExtractFloat(t.raw, 'liters') AS liters,
         JSONExtractFloat(t.raw, 'amount_yuan') AS amount_yuan,
         JSONExtractString(t.raw, 'fuel_type') AS fuel_type,
         if(rv.plate != '', rv.plate, t.vehicle_id) AS plate, rv.unit_id AS unit_id,
         if(rv.unit_name != '', rv.unit_name, rv.unit_id) AS unit_name, rv.tank_liters AS tank_liters
  FROM (
    SELECT f.event_id AS txn_id, f.event_time AS event_time, f.card_id AS card_id, f.raw AS raw,
           if(f.subject_id != '', f.subject_id, c.vehicle_id) AS vehicle_id
    FROM (SELECT event_id, event_time, subject_id, raw, JSONExtractString(raw, 'card_id') AS card_id
          FROM __DB__.events_fuel WHERE $__timeFilter(event_time)
          ORDER BY event_time LIMIT 1 BY event_id) AS f
    LEFT JOIN (SELECT arrayJoin(card_ids) AS card_id, vehicle_id FROM __DB__.ref_vehicles FINAL) AS c
      ON c.card_id = f.card_id
  ) AS t
  LEFT JOIN <<VEHICLES>> AS rv ON rv.vehicle_id = t.vehicle_id
  WHERE <<UNIT>> AND <<VEHICLE>>
)"""
FUEL = _sub(_FUEL, VEHICLES=VEHICLES, UNIT=_all("rv.unit_id", "unit"),
            VEHICLE=_all("t.vehicle_id", "vehicle"))

# fuel alerts per transaction id
FUEL_ALERTS = """(
  SELECT arrayJoin(source_event_ids) AS txn_id, count() AS alerts,
         argMax(rule, level = 'red') AS top_rule,
         countIf(rule = 'fuel.not_at_station') > 0 AS away,
         maxIf(JSONExtractFloat(evidence, 'distance_m'), rule = 'fuel.not_at_station') AS away_m,
         anyIf(JSONExtractString(evidence, 'vehicle_state'), rule = 'fuel.not_at_station') AS vehicle_state,
         maxIf(JSONExtractFloat(evidence, 'station', 'lat'), rule = 'fuel.not_at_station') AS st_lat,
         maxIf(JSONExtractFloat(evidence, 'station', 'lon'), rule = 'fuel.not_at_station') AS st_lon
  FROM __DB__.alerts FINAL WHERE subject_type = 'vehicle' GROUP BY txn_id
)"""

# pings (archive) of the selected vehicles, an hour either side of the range
PINGS = ("(SELECT subject_id, event_time AS ping_time, JSONExtractFloat(raw, 'lat') AS plat, "
         "JSONExtractFloat(raw, 'lon') AS plon FROM __DB__.events_gps "
         "WHERE event_time >= $__fromTime - INTERVAL 1 HOUR AND event_time <= $__toTime + INTERVAL 1 HOUR "
         "AND " + _all("subject_id", "vehicle") + ")")

_PAY = """(
  SELECT p.event_id AS payment_id, p.subject_id AS village_id, p.event_time AS event_time,
         JSONExtractFloat(p.raw, 'amount_yuan') AS amount_yuan,
         JSONExtractString(p.raw, 'channel') AS channel,
         JSONExtractString(p.raw, 'payee_id') AS payee_id,
         JSONExtractString(p.raw, 'payee_name') AS payee_name,
         JSONExtractString(p.raw, 'category') AS category,
         JSONExtractString(p.raw, 'purpose') AS purpose,
         JSONExtractString(p.raw, 'approval_id') AS approval_id,
         if(v.village_name != '', v.village_name, p.subject_id) AS village_name, v.town AS town
  FROM (SELECT event_id, subject_id, event_time, raw FROM __DB__.events_payments
        WHERE <<SCOPE>> ORDER BY event_time LIMIT 1 BY event_id) AS p
  LEFT JOIN <<VILLAGES>> AS v ON v.village_id = p.subject_id
  WHERE <<TOWN>> AND <<VILLAGE>>
)"""


def payments(scope: str = "$__timeFilter(event_time)") -> str:
    """Archived payments with village and town; ``scope`` selects archive rows."""
    return _sub(_PAY, SCOPE=scope, VILLAGES=VILLAGES, TOWN=_all("v.town", "town"),
                VILLAGE=_all("p.subject_id", "village"))


def payments_of(rule_filter: str) -> str:
    """The archived payments that alerts matching ``rule_filter`` rest on (any time)."""
    return payments("event_id IN (SELECT arrayJoin(source_event_ids) FROM __DB__.alerts FINAL "
                    f"WHERE {rule_filter})")


PAY_ALERTS = """(
  SELECT arrayJoin(source_event_ids) AS payment_id, count() AS alerts,
         argMax(rule, level = 'red') AS top_rule
  FROM __DB__.alerts FINAL WHERE subject_type = 'village' GROUP BY payment_id
)"""

_PROJ = """(
  SELECT rp.project_id AS project_id, rp.name AS project_name, rp.village_id AS village_id,
         rp.unit_id AS unit_id,
         if(v.village_name != '', v.village_name, rp.village_id) AS village_name, v.town AS town,
         rp.budget_yuan AS budget_yuan, rp.planned_start AS planned_start, rp.planned_end AS planned_end,
         pr.reports AS reports, pr.started AS started,
         if(pr.started, pr.first_started, NULL) AS first_started,
         if(pr.reports > 0, pr.last_report, NULL) AS last_report,
         pr.last_stage AS last_stage, pr.percent_complete AS percent_complete,
         pr.disbursed_yuan AS disbursed_yuan
  FROM __DB__.ref_projects AS rp FINAL
  LEFT JOIN <<VILLAGES>> AS v ON v.village_id = rp.village_id
  LEFT JOIN (
    SELECT subject_id AS project_id, count() AS reports,
           countIf(JSONExtractString(raw, 'stage') IN <<STARTED>>) > 0 AS started,
           minIf(event_time, JSONExtractString(raw, 'stage') IN <<STARTED>>) AS first_started,
           max(event_time) AS last_report,
           argMax(JSONExtractString(raw, 'stage'), event_time) AS last_stage,
           argMax(JSONExtractFloat(raw, 'percent_complete'), event_time) AS percent_complete,
           argMax(JSONExtractFloat(raw, 'disbursed_yuan'), event_time) AS disbursed_yuan
    FROM (SELECT subject_id, event_time, event_id, raw FROM __DB__.events_progress
          WHERE event_time <= $__toTime ORDER BY event_time LIMIT 1 BY event_id)
    GROUP BY subject_id
  ) AS pr ON pr.project_id = rp.project_id
  WHERE <<TOWN>> AND <<VILLAGE>>
)"""
PROJ = _sub(_PROJ, VILLAGES=VILLAGES, STARTED=STARTED, TOWN=_all("v.town", "town"),
            VILLAGE=_all("rp.village_id", "village"))

# ----------------------------------------------------------------- variables
V_TOWN = Var("town", T("镇街", "Town"), sql=(
    "SELECT DISTINCT town FROM __DB__.ref_villages FINAL WHERE town != '' ORDER BY town"))
V_VILLAGE = Var("village", T("村（社区）", "Village"), sql=(
    "SELECT village_id, concat(name, '（', town, '）') FROM __DB__.ref_villages FINAL "
    "WHERE " + _all("town", "town") + " ORDER BY town, name"))
V_UNIT = Var("unit", T("单位", "Unit"), sql=(
    "SELECT unit_id, any(unit_name) FROM __DB__.ref_vehicles FINAL GROUP BY unit_id ORDER BY unit_id"))
V_VEHICLE = Var("vehicle", T("车辆", "Vehicle"), sql=(
    "SELECT vehicle_id, concat(plate, '（', vehicle_id, '）') FROM __DB__.ref_vehicles FINAL "
    "WHERE " + _all("unit_id", "unit") + " ORDER BY vehicle_id"))
V_RULE = Var("rule", T("规则", "Rule"), kind="custom",
             options=tuple((k, v) for k, v in RULE_NAMES.items()))
V_LEVEL = Var("level", T("级别", "Level"), kind="custom",
              options=(("red", T("红色", "Red")), ("yellow", T("黄色", "Yellow"))))
V_ALERT = Var("alert_id", T("预警", "Alert"), multi=False, include_all=False, sql=(
    "SELECT alert_id, concat(substring(toString(event_time), 1, 16), ' ', rule, ' ', subject_id) "
    "FROM __DB__.alerts FINAL WHERE $__timeFilter(event_time) OR $__timeFilter(detected_time) "
    "ORDER BY event_time DESC LIMIT 500"))

# ----------------------------------------------------------------- common columns
COL_TIME = C("event_time", T("发生时间", "Time"), "time", width=150)
COL_RULE = C("rule", T("规则", "Rule"), mapping="rule", width=170)
COL_LEVEL = C("level", T("级别", "Level"), mapping="level", colored=True, width=70)
COL_STATE = C("state", T("处置状态", "State"), mapping="state", colored=True, width=100)
COL_TITLE = C("title", T("预警内容", "Alert"), lang="zh")
COL_TITLE_EN = C("title_en", T("预警内容", "Alert"), lang="en")
COL_ALERT = C("alert_id", T("预警编号", "Alert id"), link="alert", width=120)
COL_TOWN = C("town", T("镇街", "Town"), width=90)
COL_VILLAGE = C("village_name", T("村（社区）", "Village"), width=110)
COL_UNIT = C("unit_name", T("单位", "Unit"), width=110)
COL_SUBJECT = C("subject_name", T("对象", "Subject"), width=120)
COL_PLATE = C("plate", T("车牌", "Plate"), link="vehicle", width=100)
COL_VEHICLE_ID = C("vehicle_id", T("车辆编号", "Vehicle id"), hidden=True)
YUAN = "currencyCNY"
RED_YELLOW = (("red", "red"), ("yellow", "yellow"))


def red_yellow_series() -> tuple[Series, Series]:
    return (Series("red", T("红色", "Red"), "red"), Series("yellow", T("黄色", "Yellow"), "yellow"))


