"""Labels and value mappings (Chinese first, English second), and the few
conventions the dashboards share with the alert lifecycle
(:mod:`lianwatch.lifecycle.machine`).

Alert state comes from ``alert_history``: the state of the row with the
highest ``seq`` (``open`` 待处置, ``rectifying`` 整改中, ``closed`` 已办结,
``dismissed`` 已核销); an alert without history is ``open``. The duty
officer's colour follows the lifecycle's display level: an open alert shows
its level, a rectifying one yellow, a closed one green, a dismissed one grey.
The deadline runs from the last ``open``/``raise``/``reopen`` event (else
from detection) for the lifecycle policy's days of the level and rule
(``[lifecycle]`` of the rules file, through :mod:`.thresholds`); an alert is
*overdue* when it is still ``open`` after that deadline, measured at the end of
the dashboard's time range (``$__toTime``). The lifecycle restarts its clock at
each escalation (for the next step up the chain); the dashboards keep counting
from the missed deadline and show the number of escalations beside it.
"""

from __future__ import annotations

from lianwatch.rules import RULES

from .model import Mapping, T

__all__ = ["RULE_NAMES", "MAPPINGS", "CLOSED_STATES", "CLOCK_ACTIONS", "STARTED_STAGES",
           "sql_list", "sql_str"]

#: states in which an alert is finished (green)
CLOSED_STATES = ("closed", "dismissed")
#: history actions that (re)start the rectification deadline
CLOCK_ACTIONS = ("open", "raise", "reopen")
#: progress stages at which a project counts as started (CONTRACT §3)
STARTED_STAGES = ("started", "in_progress", "completed", "suspended")

RULE_NAMES: dict[str, T] = {rule: T(meta["zh"], meta["en"][:1].upper() + meta["en"][1:])
                            for rule, meta in RULES.items()}
assert set(RULE_NAMES) == set(RULES), "every rule of the catalogue needs a label"


def _m(pairs: dict[str, tuple[str, str, str | None]]) -> Mapping:
    return Mapping({k: (T(zh, en), color) for k, (zh, en, color) in pairs.items()})


MAPPINGS: dict[str, Mapping] = {
    "rule": Mapping({k: (v, None) for k, v in RULE_NAMES.items()}),
    "level": _m({"red": ("红色", "Red", "red"), "yellow": ("黄色", "Yellow", "yellow"),
                 "green": ("绿色", "Green", "green")}),
    "state": _m({
        "open": ("待处置", "Open", "red"),
        "rectifying": ("整改中", "Rectifying", "yellow"),
        "closed": ("已办结", "Closed", "green"),
        "dismissed": ("已核销", "Dismissed", "grey"),
    }),
    "action": _m({
        "open": ("登记", "Registered", None), "raise": ("升级为红色", "Raised to red", "red"),
        "rectify": ("报告整改", "Rectification reported", "yellow"),
        "verify": ("核实办结", "Verified, closed", "green"), "dismiss": ("核销", "Dismissed", "grey"),
        "reopen": ("重新打开", "Reopened", "orange"), "escalate": ("逾期上报", "Escalated", "dark-red")}),
    "subject_type": _m({"vehicle": ("车辆", "Vehicle", None), "village": ("村（社区）", "Village", None),
                        "project": ("项目", "Project", None)}),
    "vehicle_state": _m({"parked": ("停放未动", "Parked", "red"), "moving": ("行驶中", "Moving", "orange")}),
    "category": _m({
        "engineering": ("工程", "Engineering", None), "procurement": ("采购", "Procurement", None),
        "labor": ("劳务", "Labour", None), "subsidy": ("补贴", "Subsidy", None),
        "services": ("服务", "Services", None), "travel": ("差旅", "Travel", None),
        "reception": ("接待", "Reception", None), "office": ("办公", "Office", None),
        "other": ("其他", "Other", None)}),
    "channel": _m({"card": ("公务卡", "Card", None), "transfer": ("转账", "Transfer", None),
                   "cash": ("现金", "Cash", "orange")}),
    "stage": _m({
        "approved": ("已立项", "Approved", None), "tendered": ("已招标", "Tendered", None),
        "contracted": ("已签约", "Contracted", None), "started": ("已开工", "Started", None),
        "in_progress": ("施工中", "In progress", None), "completed": ("已完工", "Completed", "green"),
        "suspended": ("已暂停", "Suspended", "orange"), "": ("无报告", "No report", "red")}),
    "started": _m({"1": ("已开工", "Started", "green"), "0": ("未开工", "Not started", "red")}),
    "stream": _m({"fuel": ("加油记录", "Fuel", None), "payments": ("支付记录", "Payment", None),
                  "progress": ("进度报告", "Progress report", None), "project": ("项目档案", "Project", None),
                  "gps": ("定位", "GPS", None)}),
    "role": _m({"secretary": ("村党组织书记", "Party secretary", None),
                "director": ("村委会主任", "Director", None), "accountant": ("报账员", "Accountant", None),
                "supervisor": ("村务监督委员会主任", "Supervisor", None),
                "town_discipline": ("镇纪委", "Town discipline", None),
                "county_discipline": ("县纪委", "County discipline", None)}),
    "point": _m({"vehicle": ("车辆位置", "Vehicle", "blue"), "station": ("加油站", "Station", "red")}),
    # the Alert detail's field names
    "field": _m({
        "alert_id": ("预警编号", "Alert id", None), "rule": ("规则", "Rule", None),
        "level": ("级别", "Level", None), "state": ("处置状态", "State", None),
        "subject_type": ("对象类型", "Subject type", None), "subject": ("对象", "Subject", None),
        "unit": ("单位", "Unit", None), "village": ("村（社区）", "Village", None),
        "town": ("镇街", "Town", None), "event_time": ("发生时间", "Event time", None),
        "detected_time": ("发现时间", "Detected", None), "due_time": ("整改期限", "Due", None),
        "title": ("标题", "Title (Chinese)", None), "title_en": ("英文标题", "Title", None),
        "version": ("版本", "Version", None)}),
}


def sql_str(v: str) -> str:
    """``'a\\'b'``: a constant string in ClickHouse SQL."""
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_list(values) -> str:
    """``('a', 'b')`` for an ``IN`` list of constant strings (lianwatch.sinks.sql)."""
    from lianwatch.sinks.sql import in_list

    return in_list(values)
