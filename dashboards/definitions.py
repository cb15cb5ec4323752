"""The five dashboards of the first families, each panel written once: Overview,
Vehicles & fuel, Village payments, Projects, Alert detail (shared pieces:
:mod:`.common`), and :data:`DASHBOARDS`, the list every builder reads.
"""

from __future__ import annotations

from .common import (
    CLOSED, COL_ALERT, COL_LEVEL, COL_PLATE, COL_RULE, COL_STATE, COL_SUBJECT, COL_TIME,
    COL_TITLE, COL_TITLE_EN, COL_TOWN, COL_UNIT, COL_VEHICLE_ID, COL_VILLAGE, FUEL, FUEL_ALERTS,
    ONE_ALERT_WHERE, OVERDUE, OVERVIEW_FILTERS, OVERVIEW_WHERE, PAY_ALERTS, PINGS, PROJ,
    PROJECT_WHERE, VEHICLE_WHERE, VILLAGE_WHERE, V_ALERT, V_LEVEL, V_RULE, V_TOWN, V_UNIT,
    V_VEHICLE, V_VILLAGE, YUAN, red_yellow_series, alerts, payments, payments_of,
)
from .model import Column as C
from .model import Dashboard, Layer, Panel, Query, Series, T
from .thresholds import Th

__all__ = ["DASHBOARDS", "dashboards", "get"]

# ================================================================= Overview
A = alerts(OVERVIEW_WHERE)
#: every alert the filters select, whenever it happened: what is open *now* is counted here
#: (an overdue start dated before the period is still open), the period governs the rest
A_NOW = alerts(OVERVIEW_FILTERS)

OVERVIEW = Dashboard(
    key="overview", uid="lw-overview",
    title=T("小微权力监督 · 总览", "Micro-power supervision · Overview"),
    description=T("红黄预警数量、趋势、分布、地图、最新红色预警与整改情况",
                  "Open red/yellow alerts, trend, where and by whom, newest red alerts, rectification"),
    variables=[V_TOWN, V_VILLAGE, V_UNIT, V_RULE, V_LEVEL],
    panels=[
        Panel("open_red", T("红色预警（当前待处置）", "Red (open now)"), "stat",
              f"SELECT count() AS open_red FROM {A_NOW} WHERE level = 'red' AND state = 'open'",
              w=6, h=4, fields=("open_red",), thresholds=((None, "green"), (1, "red")),
              description=T("当前尚未报告整改的红色预警，不论发生在何时",
                            "Red alerts with no rectification reported yet, whenever they happened")),
        Panel("open_yellow", T("黄色预警（当前待处置或整改中）", "Yellow (open or rectifying now)"), "stat",
              f"SELECT count() AS open_yellow FROM {A_NOW} "
              f"WHERE (level = 'yellow' AND state = 'open') OR state = 'rectifying'",
              w=6, h=4, fields=("open_yellow",), thresholds=((None, "green"), (1, "yellow")),
              description=T("当前的黄色预警，以及已报告整改、待核实的红色预警，不论发生在何时",
                            "Yellow alerts, and red ones whose rectification awaits verification, "
                            "whenever they happened")),
        Panel("closed", T("本期办结或核销（绿色）", "Closed or dismissed in the period (green)"), "stat",
              f"SELECT count() AS closed FROM {A_NOW} WHERE state IN {CLOSED} AND $__timeFilter(state_time)",
              w=6, h=4, fields=("closed",), thresholds=((None, "green"),),
              description=T("统计时段内核实办结或核销的预警", "Alerts verified or dismissed within the period")),
        Panel("overdue_count", T("逾期未整改（当前）", "Overdue (now)"), "stat",
              f"SELECT count() AS overdue FROM {A_NOW} WHERE {OVERDUE}",
              w=6, h=4, fields=("overdue",), thresholds=((None, "green"), (1, "red")),
              description=T("红色{{th:lifecycle.red_days}}天、黄色{{th:lifecycle.yellow_days}}天内未报告整改，"
                            "不论发生在何时",
                            "No rectification reported within {{th:lifecycle.red_days}} days (red) / "
                            "{{th:lifecycle.yellow_days}} days (yellow), whenever they happened")),
        Panel("trend", T("预警趋势", "Alerts over time"), "timeseries",
              f"SELECT $__timeInterval(event_time) AS time, countIf(level = 'red') AS red, "
              f"countIf(level = 'yellow') AS yellow FROM {A} GROUP BY time ORDER BY time",
              w=16, h=9, x="time", fields=("time", "red", "yellow"), series=red_yellow_series(),
              interval="6h", stacked=True),
        Panel("state", T("本期预警整改状态", "Rectification status (period)"), "piechart",
              f"SELECT state, count() AS alerts FROM {A} GROUP BY state ORDER BY alerts DESC",
              w=8, h=9, x="state", x_mapping="state", fields=("state", "alerts"),
              series=(Series("alerts", T("预警数", "Alerts"), "blue"),)),
        Panel("by_rule", T("按规则", "By rule"), "barchart",
              f"SELECT rule, countIf(level = 'red') AS red, countIf(level = 'yellow') AS yellow "
              f"FROM {A} GROUP BY rule ORDER BY red + yellow DESC, rule",
              w=12, h=10, x="rule", x_mapping="rule", fields=("rule", "red", "yellow"),
              series=red_yellow_series(), stacked=True),
        Panel("map", T("预警地图", "Where alerts happened"), "geomap",
              f"SELECT lat, lon, severity, level, rule, subject_name, title, title_en, event_time, alert_id "
              f"FROM (SELECT if(isFinite(m.lat) AND m.lat != 0, m.lat, st.slat) AS lat, "
              f"if(isFinite(m.lon) AND m.lon != 0, m.lon, st.slon) AS lon, "
              f"if(m.level = 'red', 2, 1) AS severity, m.level AS level, m.rule AS rule, "
              f"m.subject_name AS subject_name, m.title AS title, m.title_en AS title_en, "
              f"m.event_time AS event_time, m.alert_id AS alert_id "
              f"FROM (SELECT *, source_event_ids[1] AS first_source FROM {A} WHERE subject_type = 'vehicle') AS m "
              f"LEFT JOIN (SELECT event_id, JSONExtractFloat(raw, 'station_lat') AS slat, "
              f"JSONExtractFloat(raw, 'station_lon') AS slon FROM __DB__.events_fuel "
              f"WHERE event_id IN (SELECT arrayJoin(source_event_ids) FROM __DB__.alerts FINAL "
              f"WHERE subject_type = 'vehicle') LIMIT 1 BY event_id) AS st ON st.event_id = m.first_source) "
              f"WHERE isFinite(lat) AND isFinite(lon) AND lat != 0 ORDER BY event_time DESC, alert_id LIMIT 2000",
              w=12, h=10, fields=("lat", "lon", "severity", "alert_id"),
              layers=(Layer("A", T("预警", "Alerts"), color_field="severity"),),
              thresholds=((None, "yellow"), (2, "red")),
              description=T("车辆类预警的位置：车辆定位，无定位时取加油站（按报送坐标）",
                            "Vehicle alerts: the vehicle's fix, else the station (as reported)")),
        Panel("by_town", T("按镇街", "By town"), "barchart",
              f"SELECT town, countIf(level = 'red') AS red, countIf(level = 'yellow') AS yellow "
              f"FROM {A} WHERE town != '' GROUP BY town ORDER BY red + yellow DESC, town",
              w=8, h=9, x="town", fields=("town", "red", "yellow"), series=red_yellow_series(),
              stacked=True),
        Panel("by_village", T("按村（社区）前15", "By village (top 15)"), "barchart",
              f"SELECT if(village_name != '', concat(village_name, '·', town), village_id) AS village, "
              f"countIf(level = 'red') AS red, countIf(level = 'yellow') AS yellow "
              f"FROM {A} WHERE village_id != '' GROUP BY village ORDER BY red + yellow DESC, village LIMIT 15",
              w=8, h=9, x="village", fields=("village", "red", "yellow"), series=red_yellow_series(),
              stacked=True),
        Panel("by_unit", T("按单位（车辆）", "By unit (vehicles)"), "barchart",
              f"SELECT unit_name AS unit, countIf(level = 'red') AS red, countIf(level = 'yellow') AS yellow "
              f"FROM {A} WHERE unit_id != '' GROUP BY unit ORDER BY red + yellow DESC, unit LIMIT 15",
              w=8, h=9, x="unit", fields=("unit", "red", "yellow"), series=red_yellow_series(),
              stacked=True),
        Panel("newest_red", T("最新红色预警", "Newest red alerts"), "table",
              f"SELECT event_time, rule, subject_name, town, village_name, unit_name, title, title_en, "
              f"state, alert_id FROM {A} WHERE level = 'red' ORDER BY event_time DESC, alert_id LIMIT 50",
              w=24, h=10, fields=("event_time", "rule", "subject_name", "state", "alert_id"),
              columns=(COL_TIME, COL_RULE, COL_SUBJECT, COL_TOWN, COL_VILLAGE, COL_UNIT, COL_TITLE,
                       COL_TITLE_EN, COL_STATE, COL_ALERT)),
        Panel("overdue", T("逾期未整改预警", "Overdue alerts"), "table",
              f"SELECT level, rule, subject_name, town, village_name, unit_name, detected_time, due_time, "
              f"dateDiff('day', due_time, $__toTime) AS days_overdue, escalations, state, alert_id FROM {A_NOW} "
              f"WHERE {OVERDUE} ORDER BY days_overdue DESC, level, alert_id LIMIT 100",
              w=24, h=9, fields=("level", "rule", "due_time", "days_overdue", "state", "alert_id"),
              columns=(COL_LEVEL, COL_RULE, COL_SUBJECT, COL_TOWN, COL_VILLAGE, COL_UNIT,
                       C("detected_time", T("发现时间", "Detected"), "time", width=150),
                       C("due_time", T("整改期限", "Due"), "time", width=150),
                       C("days_overdue", T("逾期天数", "Days overdue"), "number", unit="d",
                         thresholds=((None, "yellow"), (7, "red")), colored=True, width=90),
                       C("escalations", T("逾期上报次数", "Escalations"), "number", width=90),
                       COL_STATE, COL_ALERT),
              description=T("当前逾期的预警，不论发生在何时", "Overdue now, whenever they happened")),
    ],
    tags=("lianwatch",),
)

# ================================================================= Vehicles & fuel
AV = alerts(VEHICLE_WHERE)
_DIST = ("if(al.away, al.away_m, if(g.subject_id != '' AND dateDiff('second', g.ping_time, fu.event_time) "
         "<= 60 * {{th:fuel.position_window_min}} "
         "AND fu.station_coord IN ('', 'wgs84'), "
         "greatCircleDistance(g.plon, g.plat, fu.station_lon, fu.station_lat), NULL))")

VEHICLES_DB = Dashboard(
    key="vehicles", uid="lw-vehicles",
    title=T("公车与油卡", "Vehicles & fuel"),
    description=T("逐车查看加油交易、加油时车辆位置与轨迹、加油量与油箱容积、人车分离的油卡",
                  "Per vehicle: fills and the car's distance, track around each fill, litres vs tank, "
                  "cards used away from their car"),
    variables=[V_UNIT, V_VEHICLE],
    panels=[
        Panel("fills", T("加油笔数", "Fills"), "stat", f"SELECT count() AS fills FROM {FUEL} AS fu",
              w=6, h=4, fields=("fills",), thresholds=((None, "blue"),)),
        Panel("litres", T("加油量（升）", "Litres"), "stat",
              f"SELECT round(sum(liters)) AS liters FROM {FUEL} AS fu",
              w=6, h=4, fields=("liters",), unit="litre", thresholds=((None, "blue"),)),
        Panel("away", T("人车分离（红）", "Away from car (red)"), "stat",
              f"SELECT countIf(rule = 'fuel.not_at_station') AS away FROM {AV}",
              w=6, h=4, fields=("away",), thresholds=((None, "green"), (1, "red"))),
        Panel("vehicle_yellow", T("车辆黄色预警", "Vehicle yellow alerts"), "stat",
              f"SELECT countIf(level = 'yellow') AS yellow FROM {AV}",
              w=6, h=4, fields=("yellow",), thresholds=((None, "green"), (1, "yellow"))),
        Panel("fuel_txns", T("加油交易与车辆距离", "Fills and the car's distance"), "table",
              f"SELECT fu.event_time AS event_time, fu.plate AS plate, fu.unit_name AS unit_name, "
              f"fu.station_name AS station_name, fu.liters AS liters, fu.tank_liters AS tank_liters, "
              f"fu.amount_yuan AS amount_yuan, round({_DIST}) AS distance_m, "
              f"if(al.away, al.vehicle_state, '') AS vehicle_state, al.top_rule AS rule, fu.txn_id AS txn_id, "
              f"fu.vehicle_id AS vehicle_id "
              f"FROM {FUEL} AS fu "
              f"ASOF LEFT JOIN {PINGS} AS g ON g.subject_id = fu.vehicle_id AND g.ping_time <= fu.event_time "
              f"LEFT JOIN {FUEL_ALERTS} AS al ON al.txn_id = fu.txn_id "
              f"ORDER BY al.away DESC, fu.event_time DESC LIMIT 200",
              w=24, h=10, fields=("event_time", "plate", "liters", "tank_liters", "distance_m", "txn_id"),
              columns=(COL_TIME, COL_PLATE, COL_UNIT,
                       C("station_name", T("加油站", "Station"), width=140),
                       C("liters", T("加油量", "Litres"), "number", unit="litre", decimals=1, width=80),
                       C("tank_liters", T("油箱容积", "Tank"), "number", unit="litre", decimals=0, width=80),
                       C("amount_yuan", T("金额", "Amount"), "number", unit=YUAN, decimals=2, width=90),
                       C("distance_m", T("距车辆（米）", "Distance to car (m)"), "number", unit="lengthm",
                         decimals=0, thresholds=((None, "green"), (Th("fuel.station_radius_m"), "red")),
                         colored=True, width=110),
                       C("vehicle_state", T("车辆状态", "Car"), mapping="vehicle_state", width=90),
                       C("rule", T("预警", "Alert"), mapping="rule", width=150),
                       C("txn_id", T("交易号", "Txn"), width=150), COL_VEHICLE_ID),
              description=T("距离取自预警证据；无预警的交易按加油前最近一次定位"
                            "（{{th:fuel.position_window_min}}分钟内、WGS-84站点）计算",
                            "Distance from the alert's evidence, else from the last fix before the fill "
                            "(within {{th:fuel.position_window_min}} min, WGS-84 stations)")),
        Panel("track", T("加油前后30分钟车辆轨迹", "Track 30 min around each fill"), "geomap",
              f"SELECT g.plat AS lat, g.plon AS lon, g.ping_time AS time, fu.txn_id AS txn_id, fu.plate AS plate, "
              f"dateDiff('second', fu.event_time, g.ping_time) AS offset_s "
              f"FROM {PINGS} AS g INNER JOIN {FUEL} AS fu ON fu.vehicle_id = g.subject_id "
              f"WHERE g.ping_time >= fu.event_time - INTERVAL 30 MINUTE "
              f"AND g.ping_time <= fu.event_time + INTERVAL 30 MINUTE "
              f"ORDER BY fu.txn_id, g.ping_time LIMIT 5000",
              extra=(Query("B",
                           f"SELECT if(al.away AND al.st_lat != 0, al.st_lat, fu.station_lat) AS lat, "
                           f"if(al.away AND al.st_lon != 0, al.st_lon, fu.station_lon) AS lon, "
                           f"fu.station_name AS station_name, fu.liters AS liters, fu.txn_id AS txn_id, "
                           f"if(al.away, 2, 1) AS severity "
                           f"FROM {FUEL} AS fu LEFT JOIN {FUEL_ALERTS} AS al ON al.txn_id = fu.txn_id "
                           f"ORDER BY fu.event_time DESC LIMIT 500"),),
              w=12, h=11, fields=("lat", "lon", "time", "txn_id"),
              layers=(Layer("A", T("轨迹", "Track"), color="blue", size=3, track_by="txn_id"),
                      Layer("B", T("加油站", "Stations"), color_field="severity", size=7)),
              thresholds=((None, "green"), (2, "red")),
              report_vars={"vehicle": (
                  "SELECT subject_id FROM __DB__.alerts FINAL WHERE rule = 'fuel.not_at_station' "
                  "AND $__timeFilter(event_time) GROUP BY subject_id ORDER BY count() DESC, subject_id LIMIT 1")}),
        Panel("litres_vs_tank", T("单次最大加油量与油箱容积", "Largest fill vs tank"), "barchart",
              f"SELECT plate, max(liters) AS max_fill, any(tank_liters) AS tank_liters FROM {FUEL} AS fu "
              f"GROUP BY plate ORDER BY max_fill / greatest(tank_liters, 1) DESC, plate LIMIT 15",
              w=12, h=11, x="plate", fields=("plate", "max_fill", "tank_liters"), unit="litre",
              series=(Series("max_fill", T("单次最大加油量", "Largest fill"), "orange"),
                      Series("tank_liters", T("油箱容积", "Tank"), "grey"))),
        Panel("cards_away", T("人车分离的油卡", "Cards used away from their car"), "table",
              f"SELECT JSONExtractString(evidence, 'card_id') AS card_id, subject_name AS plate, unit_name, "
              f"any(subject_id) AS vehicle_id, "
              f"count() AS times, max(JSONExtractFloat(evidence, 'distance_m')) AS max_distance_m, "
              f"countIf(JSONExtractString(evidence, 'vehicle_state') = 'parked') AS parked, "
              f"countIf(JSONExtractBool(evidence, 'at_depot')) AS at_depot, max(event_time) AS last_time "
              f"FROM {AV} WHERE rule = 'fuel.not_at_station' GROUP BY card_id, plate, unit_name "
              f"ORDER BY times DESC, max_distance_m DESC LIMIT 50",
              w=10, h=9, fields=("card_id", "plate", "times", "max_distance_m"),
              columns=(C("card_id", T("油卡", "Card"), width=90), COL_PLATE, COL_UNIT,
                       C("times", T("次数", "Times"), "number", thresholds=((None, "yellow"), (2, "red")),
                         colored=True, width=60),
                       C("max_distance_m", T("最远距离（米）", "Farthest (m)"), "number", unit="lengthm",
                         decimals=0, width=100),
                       C("parked", T("车辆停放未动", "Car parked"), "number", width=90),
                       C("at_depot", T("车在单位大院", "Car at depot"), "number", width=90),
                       C("last_time", T("最近一次", "Last"), "time", width=150), COL_VEHICLE_ID)),
        Panel("vehicle_alerts", T("车辆预警", "Vehicle alerts"), "table",
              f"SELECT event_time, level, rule, subject_name AS plate, unit_name, title, title_en, state, "
              f"alert_id, subject_id AS vehicle_id FROM {AV} ORDER BY event_time DESC, alert_id LIMIT 100",
              w=14, h=9, fields=("event_time", "level", "rule", "alert_id"),
              columns=(COL_TIME, COL_LEVEL, COL_RULE, COL_PLATE, COL_UNIT, COL_TITLE, COL_TITLE_EN, COL_STATE,
                       COL_ALERT, COL_VEHICLE_ID)),
    ],
    tags=("lianwatch",),
)

# ================================================================= Village payments
AP = alerts(VILLAGE_WHERE)
PAY = payments()
PAY_SPLIT = payments_of("rule = 'payment.split'")
PAY_UNUSUAL = payments_of("rule = 'payment.unusual'")
PAY_ALERTED = payments_of("subject_type = 'village'")

PAYMENTS_DB = Dashboard(
    key="payments", uid="lw-payments",
    title=T("村级资金支付", "Village payments"),
    description=T("逐村查看支付金额走势、拆分支付、关联收款方与模型异常评分",
                  "Per village: payments over time, splits, related payees, unusual scores"),
    variables=[V_TOWN, V_VILLAGE],
    panels=[
        Panel("pay_trend", T("支付金额", "Payments"), "timeseries",
              f"SELECT $__timeInterval(py.event_time) AS time, round(sum(py.amount_yuan)) AS amount, "
              f"round(sumIf(py.amount_yuan, pa.alerts > 0)) AS flagged "
              f"FROM {PAY} AS py LEFT JOIN {PAY_ALERTS} AS pa ON pa.payment_id = py.payment_id "
              f"GROUP BY time ORDER BY time",
              w=16, h=9, x="time", fields=("time", "amount", "flagged"), unit=YUAN, interval="1d",
              series=(Series("amount", T("支付金额", "Paid"), "blue"),
                      Series("flagged", T("其中有预警", "Flagged"), "red"))),
        Panel("by_category", T("按类别", "By category"), "barchart",
              f"SELECT category, round(sum(py.amount_yuan)) AS amount, "
              f"round(sumIf(py.amount_yuan, pa.alerts > 0)) AS flagged "
              f"FROM {PAY} AS py LEFT JOIN {PAY_ALERTS} AS pa ON pa.payment_id = py.payment_id "
              f"GROUP BY category ORDER BY amount DESC",
              w=8, h=9, x="category", x_mapping="category", unit=YUAN,
              fields=("category", "amount", "flagged"),
              series=(Series("amount", T("支付金额", "Paid"), "blue"),
                      Series("flagged", T("其中有预警", "Flagged"), "red"))),
        Panel("splits", T("拆分支付", "Split payments"), "table",
              f"SELECT s.event_time AS event_time, s.village_name AS village_name, s.town AS town, "
              f"any(py.payee_name) AS payee_name, count() AS payments, round(sum(py.amount_yuan)) AS total_yuan, "
              f"min(py.event_time) AS first_time, max(py.event_time) AS last_time, s.state AS state, "
              f"s.alert_id AS alert_id "
              f"FROM (SELECT alert_id, event_time, village_name, town, state, "
              f"arrayJoin(source_event_ids) AS payment_id FROM {AP} WHERE rule = 'payment.split') AS s "
              f"LEFT JOIN {PAY_SPLIT} AS py "
              f"ON py.payment_id = s.payment_id "
              f"GROUP BY s.alert_id, s.event_time, s.village_name, s.town, s.state "
              f"ORDER BY s.event_time DESC, s.alert_id LIMIT 50",
              w=24, h=8, fields=("village_name", "payee_name", "payments", "total_yuan", "alert_id"),
              columns=(COL_TIME, COL_VILLAGE, COL_TOWN, C("payee_name", T("收款方", "Payee")),
                       C("payments", T("笔数", "Payments"), "number", width=60),
                       C("total_yuan", T("合计金额", "Total"), "number", unit=YUAN, decimals=0,
                         colored=True, thresholds=((None, "red"),), width=110),
                       C("first_time", T("首笔", "First"), "time", width=150),
                       C("last_time", T("末笔", "Last"), "time", width=150), COL_STATE, COL_ALERT)),
        Panel("related", T("向村干部关联方支付", "Payments to officials' related payees"), "table",
              f"SELECT py.village_name AS village_name, py.town AS town, o.name AS official, o.role AS role, "
              f"py.payee_name AS payee_name, count() AS payments, round(sum(py.amount_yuan)) AS total_yuan, "
              f"max(py.event_time) AS last_time FROM {PAY} AS py "
              f"INNER JOIN (SELECT village_id, name, role, arrayJoin(related_payee_ids) AS payee_id "
              f"FROM __DB__.ref_officials FINAL) AS o ON o.village_id = py.village_id AND o.payee_id = py.payee_id "
              f"GROUP BY village_name, town, official, role, payee_name ORDER BY total_yuan DESC LIMIT 50",
              w=12, h=9, fields=("village_name", "official", "payee_name", "total_yuan"),
              columns=(COL_VILLAGE, COL_TOWN, C("official", T("村干部", "Official"), width=80),
                       C("role", T("职务", "Role"), mapping="role", width=110),
                       C("payee_name", T("收款方", "Payee")),
                       C("payments", T("笔数", "Payments"), "number", width=60),
                       C("total_yuan", T("合计金额", "Total"), "number", unit=YUAN, decimals=0, width=110),
                       C("last_time", T("最近一笔", "Last"), "time", width=150))),
        Panel("unusual", T("模型异常评分", "Unusual payment scores"), "table",
              f"SELECT u.event_time AS event_time, u.village_name AS village_name, py.payee_name AS payee_name, "
              f"py.category AS category, py.amount_yuan AS amount_yuan, u.score AS score, u.threshold AS threshold, "
              f"u.state AS state, "
              f"u.alert_id AS alert_id FROM (SELECT alert_id, event_time, village_name, state, "
              f"JSONExtractFloat(evidence, 'score') AS score, JSONExtractFloat(evidence, 'threshold') AS threshold, "
              f"arrayJoin(source_event_ids) AS payment_id "
              f"FROM {AP} WHERE rule = 'payment.unusual') AS u "
              f"LEFT JOIN {PAY_UNUSUAL} AS py "
              f"ON py.payment_id = u.payment_id ORDER BY u.score DESC, u.alert_id LIMIT 50",
              w=12, h=9, fields=("village_name", "amount_yuan", "score", "alert_id"),
              columns=(COL_TIME, COL_VILLAGE, C("payee_name", T("收款方", "Payee")),
                       C("category", T("类别", "Category"), mapping="category", width=70),
                       C("amount_yuan", T("金额", "Amount"), "number", unit=YUAN, decimals=0, width=100),
                       C("score", T("异常评分", "Score"), "number", decimals=3, colored=True,
                         thresholds=((None, "yellow"),), width=80),
                       C("threshold", T("告警阈值", "Threshold"), "number", decimals=3, width=80),
                       COL_STATE, COL_ALERT)),
        Panel("payment_alerts", T("支付预警", "Payment alerts"), "table",
              f"SELECT x.event_time AS event_time, x.level AS level, x.rule AS rule, x.village_name AS village_name, "
              f"x.town AS town, x.title AS title, x.title_en AS title_en, "
              f"round(sum(py.amount_yuan)) AS amount_yuan, x.state AS state, x.alert_id AS alert_id "
              f"FROM (SELECT alert_id, event_time, level, rule, village_name, town, title, title_en, state, "
              f"arrayJoin(source_event_ids) AS payment_id FROM {AP}) AS x "
              f"LEFT JOIN {PAY_ALERTED} AS py "
              f"ON py.payment_id = x.payment_id "
              f"GROUP BY event_time, level, rule, village_name, town, title, title_en, state, alert_id "
              f"ORDER BY event_time DESC, alert_id LIMIT 100",
              w=24, h=9, fields=("event_time", "level", "rule", "amount_yuan", "alert_id"),
              columns=(COL_TIME, COL_LEVEL, COL_RULE, COL_VILLAGE, COL_TOWN, COL_TITLE, COL_TITLE_EN,
                       C("amount_yuan", T("涉及金额", "Amount"), "number", unit=YUAN, decimals=0, width=110),
                       COL_STATE, COL_ALERT)),
    ],
    tags=("lianwatch",),
)

# ================================================================= Projects
AJ = alerts(PROJECT_WHERE)

PROJECTS_DB = Dashboard(
    key="projects", uid="lw-projects",
    title=T("工程项目", "Projects"),
    description=T("计划与实际开工、进度与资金拨付、停滞项目",
                  "Planned vs reported start, progress vs disbursement, stalled projects"),
    variables=[V_TOWN, V_VILLAGE],
    panels=[
        Panel("projects_total", T("项目数", "Projects"), "stat",
              f"SELECT count() AS projects FROM {PROJ}", w=8, h=4, fields=("projects",),
              thresholds=((None, "blue"),)),
        Panel("late_start", T("逾期未开工", "Start overdue"), "stat",
              f"SELECT countIf(NOT started AND addDays(planned_start, "
              f"toInt64({{{{th:project.start_grace_days@village_id,unit_id}}}})) < toDate($__toTime)) AS late "
              f"FROM {PROJ}", w=8, h=4, fields=("late",), thresholds=((None, "green"), (1, "yellow"))),
        Panel("mismatch_count", T("拨付超进度{{th:project.disbursement_gap%}}%以上",
                                  "Paid > progress + {{th:project.disbursement_gap%}}%"), "stat",
              f"SELECT countIf(reports > 0 AND disbursed_yuan / budget_yuan - percent_complete / 100 > "
              f"{{{{th:project.disbursement_gap@village_id,unit_id}}}}) "
              f"AS mismatched FROM {PROJ}", w=8, h=4, fields=("mismatched",),
              thresholds=((None, "green"), (1, "red"))),
        Panel("start", T("计划开工与实际开工", "Planned vs reported start"), "table",
              f"SELECT project_name, village_name, town, planned_start, toDate(first_started) AS reported_start, "
              f"dateDiff('day', planned_start, if(started, toDate(first_started), toDate($__toTime))) "
              f"AS start_delay_days, toUInt8(started) AS started, last_stage, project_id FROM {PROJ} "
              f"WHERE planned_start <= toDate($__toTime) ORDER BY start_delay_days DESC, project_id LIMIT 100",
              w=24, h=9, fields=("project_name", "planned_start", "reported_start", "start_delay_days"),
              columns=(C("project_name", T("项目", "Project")), COL_VILLAGE, COL_TOWN,
                       C("planned_start", T("计划开工", "Planned start"), "date", width=100),
                       C("reported_start", T("报告开工", "Reported start"), "date", width=100),
                       C("start_delay_days", T("开工延迟（天）", "Start delay (days)"), "number",
                         thresholds=((None, "green"), (Th("project.start_grace_days"), "yellow"),
                                     (Th("project.start_red_days"), "red")), colored=True, width=110),
                       C("started", T("开工", "Started"), mapping="started", colored=True, width=70),
                       C("last_stage", T("最新阶段", "Stage"), mapping="stage", width=80),
                       C("project_id", T("编号", "Id"), width=80))),
        Panel("progress", T("进度与资金拨付", "Progress vs disbursement"), "barchart",
              f"SELECT project_name, round(percent_complete) AS progress_pct, "
              f"round(100 * disbursed_yuan / budget_yuan) AS disbursed_pct FROM {PROJ} WHERE reports > 0 "
              f"ORDER BY disbursed_pct - progress_pct DESC, project_name LIMIT 15",
              w=12, h=11, x="project_name", unit="percent",
              fields=("project_name", "progress_pct", "disbursed_pct"),
              series=(Series("progress_pct", T("完成进度%", "Progress %"), "blue"),
                      Series("disbursed_pct", T("已拨付%", "Disbursed %"), "orange"))),
        Panel("stalled", T("在建项目停报天数", "Days since last report (started projects)"), "table",
              f"SELECT project_name, village_name, last_stage, toDate(last_report) AS last_report_date, "
              f"dateDiff('day', last_report, $__toTime) AS silent_days, round(percent_complete) AS progress_pct, "
              f"project_id FROM {PROJ} WHERE started AND last_stage != 'completed' "
              f"ORDER BY silent_days DESC, project_id LIMIT 50",
              w=12, h=11, fields=("project_name", "last_report_date", "silent_days"),
              columns=(C("project_name", T("项目", "Project")), COL_VILLAGE,
                       C("last_stage", T("最新阶段", "Stage"), mapping="stage", width=80),
                       C("last_report_date", T("最近报告", "Last report"), "date", width=100),
                       C("silent_days", T("停报天数", "Silent days"), "number",
                         thresholds=((None, "green"), (Th("project.stall_days", 0.5), "yellow"),
                                     (Th("project.stall_days"), "red")), colored=True, width=80),
                       C("progress_pct", T("进度%", "Progress %"), "number", unit="percent", width=70))),
        Panel("project_alerts", T("项目预警", "Project alerts"), "table",
              f"SELECT event_time, level, rule, subject_name AS project_name, village_name, title, title_en, "
              f"state, alert_id FROM {AJ} ORDER BY event_time DESC, alert_id LIMIT 100",
              w=24, h=9, fields=("event_time", "level", "rule", "project_name", "alert_id"),
              columns=(COL_TIME, COL_LEVEL, COL_RULE, C("project_name", T("项目", "Project")), COL_VILLAGE,
                       COL_TITLE, COL_TITLE_EN, COL_STATE, COL_ALERT)),
    ],
    tags=("lianwatch",),
)

# ================================================================= Alert detail
A1 = alerts(ONE_ALERT_WHERE)
_ONE = "alert_id = ${alert_id:singlequote}"
_SRC = f"SELECT arrayJoin(source_event_ids) FROM __DB__.alerts FINAL WHERE {_ONE}"
_AT = f"(SELECT any(event_time) FROM __DB__.alerts FINAL WHERE {_ONE})"

ALERT_DB = Dashboard(
    key="alert", uid="lw-alert",
    title=T("预警详情", "Alert detail"),
    description=T("一条预警的内容、证据、所依据的原始记录与处置记录",
                  "One alert: its evidence, the records it rests on, its history"),
    variables=[V_ALERT],
    panels=[
        Panel("summary", T("预警概要", "Summary"), "table",
              "SELECT tupleElement(kv, 1) AS field, tupleElement(kv, 2) AS value FROM ("
              "SELECT arrayJoin([('alert_id', alert_id), ('rule', rule), ('level', level), ('state', state), "
              "('subject_type', subject_type), ('subject', concat(subject_name, ' (', subject_id, ')')), "
              "('unit', unit_name), ('town', town), ('village', village_name), "
              "('event_time', toString(toDateTime(event_time))), "
              "('detected_time', toString(toDateTime(detected_time))), "
              "('due_time', toString(due_time)), ('title', title), ('title_en', title_en), "
              f"('version', toString(version))]) AS kv FROM {A1})",
              w=10, h=12, fields=("field", "value"),
              columns=(C("field", T("项目", "Field"), mapping="field", width=90),
                       C("value", T("内容", "Value"), mapping="rule,level,state,subject_type", colored=True))),
        Panel("evidence", T("证据", "Evidence"), "table",
              "SELECT tupleElement(kv, 1) AS key, tupleElement(kv, 2) AS value FROM ("
              f"SELECT arrayJoin(JSONExtractKeysAndValuesRaw(evidence)) AS kv FROM __DB__.alerts FINAL WHERE {_ONE})",
              w=14, h=12, fields=("key", "value"),
              columns=(C("key", T("证据项", "Item"), width=140), C("value", T("值", "Value"), "json"))),
        Panel("location", T("位置与前后30分钟轨迹", "Position and track ±30 min"), "geomap",
              "SELECT JSONExtractFloat(raw, 'lat') AS lat, JSONExtractFloat(raw, 'lon') AS lon, "
              "event_time AS time, JSONExtractFloat(raw, 'speed_kmh') AS speed_kmh FROM __DB__.events_gps "
              f"WHERE subject_id = (SELECT any(subject_id) FROM __DB__.alerts FINAL WHERE {_ONE} "
              "AND subject_type = 'vehicle') "
              f"AND event_time >= {_AT} - INTERVAL 30 MINUTE AND event_time <= {_AT} + INTERVAL 30 MINUTE "
              "ORDER BY event_time LIMIT 1 BY event_time LIMIT 2000",
              extra=(Query("B",
                           "SELECT tupleElement(p, 2) AS lat, tupleElement(p, 3) AS lon, tupleElement(p, 1) AS point "
                           "FROM (SELECT arrayJoin([('vehicle', JSONExtractFloat(evidence, 'vehicle_position', 'lat'), "
                           "JSONExtractFloat(evidence, 'vehicle_position', 'lon')), "
                           "('station', JSONExtractFloat(evidence, 'station', 'lat'), "
                           "JSONExtractFloat(evidence, 'station', 'lon'))]) AS p "
                           f"FROM __DB__.alerts FINAL WHERE {_ONE}) WHERE lat != 0"),),
              w=10, h=11, fields=("lat", "lon", "time"),
              layers=(Layer("A", T("轨迹", "Track"), color="blue", size=3, track_by="__all__"),
                      Layer("B", T("车辆/加油站", "Vehicle / station"), color="red", size=8)),
              empty=T("非车辆类预警，无轨迹", "Not a vehicle alert: no track")),
        Panel("sources", T("依据的原始记录", "Source records"), "table",
              "SELECT stream, event_id, event_time, raw FROM ("
              f"SELECT 'fuel' AS stream, event_id, event_time, raw FROM __DB__.events_fuel WHERE event_id IN ({_SRC}) "
              f"UNION ALL SELECT 'payments' AS stream, event_id, event_time, raw FROM __DB__.events_payments "
              f"WHERE event_id IN ({_SRC}) "
              f"UNION ALL SELECT 'progress' AS stream, event_id, event_time, raw FROM __DB__.events_progress "
              f"WHERE event_id IN ({_SRC}) "
              "UNION ALL SELECT 'project' AS stream, project_id AS event_id, "
              "toDateTime64(planned_start, 3, 'Asia/Shanghai') AS event_time, raw FROM __DB__.ref_projects FINAL "
              f"WHERE project_id IN ({_SRC})) ORDER BY event_time, event_id LIMIT 1 BY stream, event_id",
              w=14, h=11, fields=("stream", "event_id", "event_time", "raw"),
              columns=(C("stream", T("来源", "Source"), mapping="stream", width=90),
                       C("event_id", T("记录编号", "Record id"), width=160),
                       C("event_time", T("时间", "Time"), "time", width=150),
                       C("raw", T("原始记录", "Raw record"), "json"))),
        Panel("history", T("处置记录", "History"), "table",
              "SELECT seq, at_time, action, state, `by`, note, evidence_ref FROM __DB__.alert_history FINAL "
              f"WHERE {_ONE} ORDER BY seq",
              w=24, h=8, fields=("seq", "at_time", "action", "state"),
              columns=(C("seq", T("序号", "#"), "number", width=50),
                       C("at_time", T("时间", "Time"), "time", width=150),
                       C("action", T("操作", "Action"), mapping="action", width=100), COL_STATE,
                       C("by", T("处置人", "By"), width=100), C("note", T("说明", "Note")),
                       C("evidence_ref", T("佐证材料", "Evidence ref"), width=160)),
              empty=T("尚无处置记录", "No history yet")),
    ],
    tags=("lianwatch",),
    time_from="now-30d",
)

DASHBOARDS: list[Dashboard] = [OVERVIEW, VEHICLES_DB, PAYMENTS_DB, PROJECTS_DB, ALERT_DB]


def dashboards() -> list[Dashboard]:
    return list(DASHBOARDS)


def get(key: str) -> Dashboard:
    for d in DASHBOARDS:
        if d.key == key:
            return d
    raise KeyError(key)
