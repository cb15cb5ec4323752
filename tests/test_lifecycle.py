"""The alert lifecycle: transitions, refusals, escalation by the clock, the log in the store."""

from __future__ import annotations

import random
import pytest

from tests.conftest import module_store

from lianwatch.lifecycle.config import LifecyclePolicy, PolicyError, policies_from_dict
from lianwatch.lifecycle.log import HistoryLog, Lifecycle, load_history, resolve_alert_id
from lianwatch.lifecycle.machine import (
    SYSTEM, AlertState, LifecycleError, apply_event, due_escalations, fold, make_event, roles_for,
)
from lianwatch.models.alert import Alert, alert_id
from lianwatch.models.clock import format_ts

T0 = 1772409600.0  # 2026-03-02 08:00:00+08:00
DAY = 86400.0


def mk(n: int = 1, level: str = "red", rule: str = "payment.no_approval", detected: float = T0,
       version: int = 1) -> Alert:
    pid = f"PM-{n}"
    return Alert(alert_id=alert_id(rule, "village", "VL1", [pid]), rule=rule, level=level,
                 subject_type="village", subject_id="VL1", village_id="VL1",
                 event_ts=format_ts(detected - 600), detected_at=format_ts(detected),
                 title="大额支付未经审批", source_event_ids=[pid], version=version)


def opened(level: str = "red", at: float = T0, aid: str = "a1") -> AlertState:
    s = AlertState(alert_id=aid)
    return apply_event(s, make_event(s, "open", at=at, by=SYSTEM, level=level, alert_id=aid))


def act(s: AlertState, action: str, at: float, by: str = "张三", note: str = "") -> AlertState:
    return apply_event(s, make_event(s, action, at=at, by=by, note=note))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return module_store(tmp_path_factory, "lw_test_lifecycle")


@pytest.fixture
def clean(store):
    store.truncate_all()
    return store


# ------------------------------------------------------------------ pure transitions

def test_full_path_open_rectify_verify():
    s = opened("red")
    assert (s.state, s.level, s.display_level, s.escalation) == ("open", "red", "red", 0)
    s = act(s, "rectify", T0 + 3600, note="已退回油款")
    assert (s.state, s.display_level) == ("rectifying", "yellow")  # a red alert shows yellow
    s = act(s, "verify", T0 + 7200, by="李四")
    assert (s.state, s.display_level, s.seq) == ("closed", "green", 3)
    assert [e.action for e in s.history] == ["open", "rectify", "verify"]


@pytest.mark.parametrize("path,final", [
    (["dismiss"], "dismissed"),
    (["rectify", "dismiss"], "dismissed"),
    (["rectify", "reopen"], "open"),
    (["rectify", "verify", "reopen"], "open"),
    (["dismiss", "reopen"], "open"),
    (["dismiss", "reopen", "rectify", "verify"], "closed"),
])
def test_allowed_paths(path, final):
    s = opened("yellow")
    for i, a in enumerate(path, start=1):
        s = act(s, a, T0 + i * 60, note="原因 reason")
    assert s.state == final
    assert s.display_level == {"open": "yellow", "closed": "green", "dismissed": "grey"}[final]


@pytest.mark.parametrize("path,action,msg", [
    ([], "verify", "it is open"),
    (["rectify"], "rectify", "it is rectifying"),
    (["rectify", "verify"], "rectify", "it is closed"),
    (["rectify", "verify"], "dismiss", "it is closed"),
    (["dismiss"], "dismiss", "it is dismissed"),
    (["dismiss"], "verify", "it is dismissed"),
    ([], "reopen", "it is open"),
])
def test_refused_transitions(path, action, msg):
    s = opened("red")
    for i, a in enumerate(path, start=1):
        s = act(s, a, T0 + i * 60, note="x")
    with pytest.raises(LifecycleError, match=msg):
        make_event(s, action, at=T0 + 999, by="张三", note="x")


def test_refusals_with_reasons():
    s = opened("red")
    with pytest.raises(LifecycleError, match="without a reason"):
        make_event(s, "dismiss", at=T0, by="张三", note="  ")
    with pytest.raises(LifecycleError, match="without a note"):
        make_event(s, "rectify", at=T0, by="张三")
    with pytest.raises(LifecycleError, match="needs who"):
        make_event(s, "dismiss", at=T0, by="", note="x")
    with pytest.raises(LifecycleError, match="done by the system"):
        make_event(s, "escalate", at=T0, by="张三")
    with pytest.raises(LifecycleError, match="unknown action"):
        make_event(s, "close", at=T0, by="张三")
    with pytest.raises(LifecycleError, match="no history"):
        make_event(AlertState(alert_id="zz"), "rectify", at=T0, by="张三", note="x")
    with pytest.raises(LifecycleError, match="no history"):  # open only once
        make_event(s, "open", at=T0, by=SYSTEM, level="red")


def test_escalation_chain_and_its_top():
    y = opened("yellow")
    assert y.top_role == "secretary" and roles_for("yellow", 0) == ["secretary"]
    y = apply_event(y, make_event(y, "escalate", at=T0 + 30 * DAY, by=SYSTEM))
    assert (y.state, y.escalation, y.top_role) == ("open", 1, "town_discipline")
    y = apply_event(y, make_event(y, "escalate", at=T0 + 60 * DAY, by=SYSTEM))
    assert y.top_role == "county_discipline" and not y.can_escalate
    with pytest.raises(LifecycleError, match="top of the chain"):
        make_event(y, "escalate", at=T0 + 90 * DAY, by=SYSTEM)
    r = opened("red")  # red starts at the town: one step left
    assert roles_for("red", 0) == ["secretary", "town_discipline"]
    r = apply_event(r, make_event(r, "escalate", at=T0, by=SYSTEM))
    assert r.top_role == "county_discipline" and not r.can_escalate
    rect = act(opened("red"), "rectify", T0, note="x")
    with pytest.raises(LifecycleError, match="escalate needs open"):
        make_event(rect, "escalate", at=T0, by=SYSTEM)


# ------------------------------------------------------------------ deadlines and the clock

def test_escalation_due_only_after_the_deadline():
    s = opened("red", at=T0)
    assert due_escalations(s, 10, T0 + 10 * DAY - 1) == []
    evs = due_escalations(s, 10, T0 + 10 * DAY)
    assert [(e.action, e.at, e.by) for e in evs] == [("escalate", T0 + 10 * DAY, SYSTEM)]


def test_yellow_left_alone_climbs_twice_at_the_deadline_instants():
    s = opened("yellow", at=T0)
    evs = due_escalations(s, 30, T0 + 75 * DAY)  # event time: an as-of long after
    assert [e.at for e in evs] == [T0 + 30 * DAY, T0 + 60 * DAY]
    s = fold([*s.history, *evs])
    assert s.escalation == 2 and s.top_role == "county_discipline"
    assert due_escalations(s, 30, T0 + 999 * DAY) == []


def test_rectifying_does_not_escalate_and_reopen_restarts_the_clock():
    s = act(opened("red", at=T0), "rectify", T0 + DAY, note="x")
    assert due_escalations(s, 10, T0 + 50 * DAY) == []
    s = act(s, "reopen", T0 + 20 * DAY)
    assert due_escalations(s, 10, T0 + 29 * DAY) == []
    assert [e.at for e in due_escalations(s, 10, T0 + 31 * DAY)] == [T0 + 30 * DAY]


def test_deadlines_per_rule_and_level():
    lp = LifecyclePolicy(red_days=7, rules={"payment.cash": {"yellow": 5}})
    assert lp.days("payment.cash", "yellow") == 5 and lp.days("payment.cash", "red") == 7
    assert lp.days("fuel.gps_gap", "yellow") == 30
    lp2, _ = policies_from_dict({"lifecycle": {"yellow_days": 12}})
    assert lp2.days("x", "yellow") == 12
    with pytest.raises(PolicyError):
        policies_from_dict({"lifecycle": {"red_days": -1}})
    with pytest.raises(PolicyError):
        policies_from_dict({"notify": {"quiet_start": "25h"}})


# ------------------------------------------------------------------ the log in the store

def test_actions_append_to_the_store_and_show_reads_them(clean):
    lc = Lifecycle(clean)
    a = mk(1)
    lc.observe([a], T0 + 60)
    lc.act(a.alert_id, "rectify", at=T0 + DAY, by="张三", note="已整改", evidence_ref="DOC-1")
    lc.act(a.alert_id, "verify", at=T0 + 2 * DAY, by="李四")
    h = load_history(clean, a.alert_id)
    assert [r["action"] for r in h] == ["open", "rectify", "verify"]
    assert [r["state"] for r in h] == ["open", "rectifying", "closed"]
    assert {"at", "action", "state", "by", "note"} <= set(h[0])
    assert h[0]["at"] == "2026-03-02T08:00:00+08:00" and h[0]["by"] == SYSTEM
    assert h[1]["evidence_ref"] == "DOC-1" and h[1]["note"] == "已整改"
    assert h[2]["display_level"] == "green"
    with pytest.raises(LifecycleError, match="it is closed"):
        lc.act(a.alert_id, "rectify", at=T0 + 3 * DAY, by="张三", note="x")
    assert len(load_history(clean, a.alert_id)) == 3  # a refusal writes nothing


def test_derived_state_equals_rebuild_from_history(clean):
    rng = random.Random(7)
    lc = Lifecycle(clean, LifecyclePolicy(red_days=2, yellow_days=3))
    alerts = [mk(i, level=rng.choice(["red", "yellow"])) for i in range(12)]
    live = {}
    lc.observe(alerts, T0)
    for a in alerts:
        live[a.alert_id] = fold(HistoryLog(clean).events([a.alert_id])[a.alert_id])
    t = T0
    for _ in range(120):
        t += rng.uniform(0.1, 1.5) * DAY
        a = rng.choice(alerts)
        s = live[a.alert_id]
        action = rng.choice(["rectify", "verify", "dismiss", "reopen", "tick"])
        if action == "tick":
            states = {a.alert_id: s}
            lc.escalate_due({a.alert_id: a}, t, states)
            live[a.alert_id] = states[a.alert_id]
            continue
        try:
            e, after = lc.act(a.alert_id, action, at=t, by="值班员", note="n")
        except LifecycleError:
            with pytest.raises(LifecycleError):
                make_event(s, action, at=t, by="值班员", note="n")
            continue
        assert e == make_event(s, action, at=t, by="值班员", note="n")
        live[a.alert_id] = apply_event(s, e)
    rebuilt = lc.states()
    assert set(rebuilt) == set(live)
    for aid, s in live.items():
        r = rebuilt[aid]
        assert r == s, aid  # every field but the history tuple …
        assert r.history == s.history  # … and that too


def test_observe_opens_once_and_raises_with_the_level(clean):
    lc = Lifecycle(clean)
    y = mk(5, level="yellow", rule="project.overdue_start", detected=T0)
    assert [e.action for e in lc.observe([y], T0 + 10)] == ["open"]
    assert lc.observe([y], T0 + 20) == []  # re-delivered: nothing
    assert lc.observe([y.model_copy(update={"version": 2})], T0 + 30) == []
    red = y.model_copy(update={"level": "red", "version": 3,
                               "detected_at": format_ts(T0 + 23 * DAY)})
    evs = lc.observe([red], T0 + 24 * DAY)
    assert [(e.action, e.at) for e in evs] == [("raise", T0 + 23 * DAY)]
    s = lc.state(y.alert_id)
    assert (s.level, s.clock_from, s.top_role) == ("red", T0 + 23 * DAY, "town_discipline")


def test_escalation_in_event_time_is_recorded_once(clean):
    lc = Lifecycle(clean)
    a = mk(9, level="red", detected=T0)
    as_of = T0 + 14 * DAY  # a replay's as-of: the event clock, not the wall clock
    lc.observe([a], as_of)
    states = lc.states([a.alert_id])
    evs = lc.escalate_due({a.alert_id: a}, as_of, states)
    assert [(e.action, e.at, e.by) for e in evs] == [("escalate", T0 + 10 * DAY, SYSTEM)]
    assert lc.escalate_due({a.alert_id: a}, as_of, lc.states([a.alert_id])) == []  # again: none
    h = load_history(clean, a.alert_id)
    assert [r["action"] for r in h] == ["open", "escalate"]
    assert h[1]["at"] == format_ts(T0 + 10 * DAY) and h[1]["escalation"] == 1


def test_resolve_alert_id_by_prefix(clean):
    a, b = mk(1), mk(2)
    clean.write_alerts([a, b])
    assert resolve_alert_id(clean, a.alert_id[:8]) == a.alert_id
    assert resolve_alert_id(clean, a.alert_id.upper()) == a.alert_id
    with pytest.raises(LifecycleError, match="no alert"):
        resolve_alert_id(clean, "ffffffffff")
    with pytest.raises(LifecycleError, match="too short"):
        resolve_alert_id(clean, "ab")


# ------------------------------------------------------------------ the CLI

def test_cli_actions(clean, monkeypatch, capsys):
    from lianwatch.cli import main

    monkeypatch.setattr("lianwatch.commands.wiring.open_configured_store",
                        lambda settings, **kw: clean)  # the test's store
    a = mk(3)
    clean.write_alerts([a])
    code = a.alert_id[:8]
    assert main(["alerts", "rectify", code, "--note", "已退回油款", "--by", "张三",
                 "--evidence", "整改报告-001"]) == 0
    out = capsys.readouterr().out
    assert "open → 整改中 rectifying" in out and "张三" in out
    assert main(["alerts", "rectify", code, "--note", "again", "--by", "张三"]) == 1
    assert "it is rectifying" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --reason is required
        main(["alerts", "dismiss", code, "--by", "李四"])
    capsys.readouterr()
    assert main(["alerts", "verify", code, "--by", "李四"]) == 0
    assert main(["alerts", "reopen", code, "--note", "复查发现未整改到位", "--by", "王五"]) == 0
    assert main(["alerts", "dismiss", code, "--reason", "加油站坐标有误", "--by", "王五"]) == 0
    capsys.readouterr()
    assert main(["alerts", "show", a.alert_id]) == 0
    out = capsys.readouterr().out
    assert "处置记录 history" in out
    for word in ("rectify", "verify", "reopen", "dismiss", "加油站坐标有误", "张三"):
        assert word in out
    assert [r["state"] for r in load_history(clean, a.alert_id)] == \
           ["open", "rectifying", "closed", "open", "dismissed"]
