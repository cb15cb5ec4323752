"""The project.* rules: deadlines driven by the clock alone, reports, dedupe."""

from __future__ import annotations

from datetime import datetime

import pytest

from lianwatch.detectors.projects import ProjectDetector
from lianwatch.engine import Engine
from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.parse import parse_event
from lianwatch.rules import RuleSet
from tests.helpers import ref_with, run_sorted, ts

DAY = 86400.0
S = datetime(2026, 3, 1, tzinfo=DEFAULT_TZ).timestamp()  # PJ1 planned start, local midnight
E = datetime(2026, 9, 30, tzinfo=DEFAULT_TZ).timestamp()  # PJ1 planned end


def project(pid="PJ1", start="2026-03-01", end="2026-09-30", budget=1_000_000, vid="VL1",
            unit=None, name="岭脚段道路硬化"):
    return ("projects", {"project_id": pid, "name": name, "village_id": vid, "unit_id": unit,
                         "budget_yuan": budget, "planned_start": start, "planned_end": end})


def prog(rid, t, stage="in_progress", pct=10.0, disbursed=None, pid="PJ1"):
    rec = {"report_id": rid, "project_id": pid, "ts": ts(t), "stage": stage,
           "percent_complete": pct}
    if disbursed is not None:
        rec["disbursed_yuan"] = disbursed
    ev, why = parse_event("progress", rec)
    assert ev is not None, why
    return ev


def wall_engine(*projects, rules=None):
    eng = Engine([ProjectDetector()], rules or RuleSet(), ref_with(*(projects or (project(),))),
                 clock="wall")
    eng.start()
    return eng


def run(events, as_of, *projects, rules=None):
    alerts, eng = run_sorted([ProjectDetector()], ref_with(*(projects or (project(),))), events,
                             rules=rules, as_of=as_of)
    return alerts, eng


def of(alerts, rule):
    return [a for a in alerts.values() if a.rule == rule]


# --------------------------------------------------------------- overdue_start
def test_project_that_never_reports_yellow_then_red_same_id_by_ticks_alone():
    eng = wall_engine()
    assert eng.tick(now=S + 7 * DAY - 1) == []
    (y,) = eng.tick(now=S + 7 * DAY)
    assert (y.rule, y.level, y.version) == ("project.overdue_start", "yellow", 1)
    assert y.subject_type == "project" and y.subject_id == "PJ1" and y.village_id == "VL1"
    assert y.source_event_ids == ["PJ1"] and y.event_ts == ts(S + 7 * DAY)
    assert y.title == "项目逾期未开工：「岭脚段道路硬化」计划 2026-03-01 开工，已逾期 7 天"
    assert y.evidence["planned_start"] == "2026-03-01" and y.evidence["days_overdue"] == 7
    assert y.evidence["reports_received"] == 0
    assert eng.tick(now=S + 30 * DAY - 1) == []
    (r,) = eng.tick(now=S + 30 * DAY)
    assert (r.alert_id, r.level, r.version) == (y.alert_id, "red", 2)
    assert r.event_ts == ts(S + 30 * DAY) and "已逾期 30 天" in r.title
    assert eng.tick(now=S + 100 * DAY) == []  # nothing more to say about the start


def test_never_reports_finish_as_of_gives_the_raised_alert():
    eng = Engine([ProjectDetector()], RuleSet(), ref_with(project()))
    out = eng.finish(as_of=S + 35 * DAY)
    assert [(a.level, a.version) for a in out] == [("yellow", 1), ("red", 2)]
    assert out[0].alert_id == out[1].alert_id and "已逾期 35 天" in out[1].title


def test_started_within_grace_no_alert():
    alerts, _ = run([prog("R1", S + 3 * DAY, "started", 1)], S + 40 * DAY)
    assert alerts == {}


@pytest.mark.parametrize("when,level", [(7 * DAY, None), (7 * DAY + 1, "yellow"),
                                        (30 * DAY, "yellow"), (30 * DAY + 1, "red")])
def test_start_report_dated_at_the_deadlines(when, level):
    alerts, _ = run([prog("R1", S + when, "started", 1)], S + 50 * DAY)
    hits = of(alerts, "project.overdue_start")
    assert [a.level for a in hits] == ([level] if level else [])


def test_early_stages_do_not_count_as_started():
    evs = [prog("R1", S - 20 * DAY, "approved", 0), prog("R2", S + 2 * DAY, "contracted", 0)]
    alerts, _ = run(evs, S + 31 * DAY)
    (a,) = of(alerts, "project.overdue_start")
    assert a.level == "red" and a.evidence["last_stage"] == "contracted"


def test_project_planned_in_the_future_no_alert():
    alerts, _ = run([], S + 6 * DAY)
    assert alerts == {}
    eng = wall_engine(project(start="2027-01-01", end="2027-12-31"))
    assert eng.tick(now=S + 200 * DAY) == []


def test_start_report_dated_in_time_but_arriving_late_stops_the_alert():
    eng = wall_engine()
    assert eng.tick(now=S + 5 * DAY) == []
    assert eng.process(prog("R1", S + 6 * DAY, "started", 1)) == []  # arrives at ~S+8d
    assert eng.tick(now=S + 40 * DAY) == []


def test_per_village_grace_override():
    rules = RuleSet.from_toml_text("[village.VL2.project]\nstart_grace_days = 3")
    eng = wall_engine(project("PJ1"), project("PJ2", vid="VL2"), rules=rules)
    out = eng.tick(now=S + 3 * DAY)
    assert [(a.subject_id, a.level) for a in out] == [("PJ2", "yellow")]


def test_unit_project_carries_unit_id():
    eng = wall_engine(project("PJ9", vid=None, unit="U03"))
    (a,) = eng.tick(now=S + 8 * DAY)
    assert a.unit_id == "U03" and a.village_id is None


# --------------------------------------------------------------------- stalled
def test_stalled_fires_at_last_report_plus_60_days_and_rearms():
    eng = wall_engine()
    eng.process(prog("R1", S + 1 * DAY, "started", 1))
    eng.process(prog("R2", S + 20 * DAY, "in_progress", 40))
    assert eng.tick(now=S + 80 * DAY - 1) == []
    (a,) = eng.tick(now=S + 80 * DAY)
    assert (a.rule, a.level) == ("project.stalled", "yellow")
    assert a.source_event_ids == ["PJ1", "R2"] and a.event_ts == ts(S + 80 * DAY)
    assert a.evidence["last_report_id"] == "R2" and a.evidence["days_silent"] == 60
    assert "60 天无进度报告" in a.title and "施工中 40%" in a.title
    assert eng.tick(now=S + 85 * DAY) == []
    eng.process(prog("R3", S + 90 * DAY, "in_progress", 45))
    assert eng.tick(now=S + 150 * DAY - 1) == []
    (b,) = eng.tick(now=S + 150 * DAY)
    assert b.rule == "project.stalled" and b.alert_id != a.alert_id
    assert b.source_event_ids == ["PJ1", "R3"]


def test_report_before_the_stall_deadline_moves_it():
    alerts, _ = run([prog("R1", S + 1 * DAY, "started", 1),
                     prog("R2", S + 60 * DAY, "in_progress", 30)], S + 120 * DAY - 1)
    assert of(alerts, "project.stalled") == []


def test_no_stall_when_completed_or_never_started():
    evs = [prog("R1", S + 1 * DAY, "started", 1), prog("R2", S + 10 * DAY, "completed", 100)]
    alerts, _ = run(evs, S + 200 * DAY)
    assert alerts == {}
    eng = wall_engine()
    eng.process(prog("R1", S - 10 * DAY, "tendered", 0))
    out = eng.tick(now=S + 100 * DAY)
    assert {a.rule for a in out} == {"project.overdue_start"}


# ---------------------------------------------------------- overdue_completion
@pytest.mark.parametrize("done_at,fires", [(29 * DAY, False), (30 * DAY, False),
                                           (30 * DAY + 1, True), (None, True)])
def test_overdue_completion(done_at, fires):
    evs = [prog("R1", S + DAY, "started", 1)]
    evs += [prog(f"R{i}", S + i * 30 * DAY, "in_progress", 10 * i) for i in range(2, 10)]
    if done_at is not None:
        evs.append(prog("RX", E + done_at, "completed", 100))
    alerts, _ = run(evs, E + 40 * DAY)
    hits = of(alerts, "project.overdue_completion")
    assert bool(hits) is fires
    if fires:
        (a,) = hits
        assert a.level == "yellow" and a.event_ts == ts(E + 30 * DAY)
        assert a.source_event_ids == ["PJ1"] and "计划 2026-09-30 完工" in a.title
        assert a.evidence["completion_grace_days"] == 30


# ------------------------------------------------------- disbursement_mismatch
@pytest.mark.parametrize("disbursed,fires", [(350_000, False), (360_000, True)])
def test_disbursement_gap_boundary(disbursed, fires):
    # 35 % paid vs 5 % done is a gap of exactly 0.30: not over it; 36 % is
    alerts, _ = run([prog("R1", S + DAY, "started", 5, disbursed)], S + 2 * DAY)
    hits = of(alerts, "project.disbursement_mismatch")
    assert bool(hits) is fires
    if fires:
        (a,) = hits
        assert a.level == "red" and a.source_event_ids == ["PJ1", "R1"]
        assert a.evidence["gap"] == 0.31 and a.evidence["disbursed_ratio"] == 0.36
        assert a.evidence["percent_complete"] == 5 and a.evidence["budget_yuan"] == 1_000_000
        assert a.event_ts == ts(S + DAY) and "36%" in a.title and "完成 5%" in a.title


def test_mismatch_reemitted_only_when_worse_and_order_does_not_matter():
    evs = [prog("R1", S + 1 * DAY, "started", 5, 400_000),       # gap 0.35
           prog("R2", S + 30 * DAY, "in_progress", 10, 600_000),  # gap 0.50: worse
           prog("R3", S + 60 * DAY, "in_progress", 30, 650_000)]  # gap 0.35: not worse
    eng = Engine([ProjectDetector()], RuleSet(), ref_with(project()))
    out = [a for ev in evs for a in eng.process(ev)]
    mm = [a for a in out if a.rule == "project.disbursement_mismatch"]
    assert [(a.version, a.source_event_ids) for a in mm] == [
        (1, ["PJ1", "R1"]), (2, ["PJ1", "R1", "R2"])]
    assert mm[0].alert_id == mm[1].alert_id and mm[1].evidence["gap"] == 0.5
    rev, _ = run_sorted([ProjectDetector()], ref_with(project()), evs[::-1], sort=False,
                        as_of=S + 61 * DAY)
    (last,) = of(rev, "project.disbursement_mismatch")
    assert last.alert_id == mm[0].alert_id and last.source_event_ids == ["PJ1", "R1", "R2"]


def test_report_without_disbursement_is_not_judged_for_mismatch():
    alerts, _ = run([prog("R1", S + DAY, "started", 0)], S + 2 * DAY)
    assert alerts == {}


# -------------------------------------------------------------------- the traps
def test_redelivered_report_gives_one_alert():
    r = prog("R1", S + DAY, "started", 5, 900_000)
    eng = Engine([ProjectDetector()], RuleSet(), ref_with(project()))
    assert len(eng.process(r)) == 1
    assert eng.process(dict(r)) == []
    assert list(eng.stores["projects"]["PJ1"].reports) == ["R1"]
    assert eng.stores["projects"]["PJ1"].reports["R1"][0] == S + DAY
    assert eng.drain_set_aside() == []  # an equal copy: silently dropped


def test_progress_for_an_unknown_project_is_set_aside():
    eng = Engine([ProjectDetector()], RuleSet(), ref_with(project()))
    assert eng.process(prog("R1", S, "started", 1, pid="PJ404")) == []
    (s,) = eng.drain_set_aside()
    assert s.stream == "progress" and "unknown project" in s.reason and "PJ404" in s.reason
    assert "PJ404" not in eng.stores["projects"]


def test_every_reference_project_has_state_from_the_start():
    eng = wall_engine(project("PJ1"), project("PJ2", start="2026-05-01"))
    assert set(eng.stores["projects"]) == {"PJ1", "PJ2"}
    assert eng.stores["projects"]["PJ2"].wake == datetime(2026, 5, 8, tzinfo=DEFAULT_TZ).timestamp()


def test_disabled_rule_is_silent_but_does_not_stall_the_timers():
    rules = RuleSet.from_toml_text('[disabled]\nrules = ["project.overdue_start"]')
    eng = wall_engine(rules=rules)
    assert eng.tick(now=S + 40 * DAY) == []
    out = eng.tick(now=E + 30 * DAY)
    assert [a.rule for a in out] == ["project.overdue_completion"]


def test_report_id_with_other_content_is_set_aside_and_the_first_stays():
    eng = Engine([ProjectDetector()], RuleSet(), ref_with(project()))
    assert len(eng.process(prog("R1", S + DAY, "started", 5, 900_000))) == 1
    assert eng.process(prog("R1", S + DAY, "started", 50, 100_000)) == []
    (sa,) = eng.drain_set_aside()
    assert sa.record["percent_complete"] == 50
    assert sa.reason.startswith("conflicts with report_id R1 seen with other content")


# ------------------------------------ streaming order within the lateness = replay
def test_a_report_after_the_stall_deadline_that_arrives_early_does_not_undo_the_stall():
    evs = [prog("R1", S + 2 * DAY, "started", 5), prog("R2", S + 62 * DAY + 1800, "in_progress", 20)]
    replayed, _ = run_sorted([ProjectDetector()], ref_with(project()), evs, as_of=S + 100 * DAY)
    # streaming with 2 h of lateness: R2 is taken before the clock passes R1's deadline
    streamed, _ = run_sorted([ProjectDetector()], ref_with(project()), evs, as_of=S + 100 * DAY,
                             lateness=7200.0)
    (r,), (s,) = of(replayed, "project.stalled"), of(streamed, "project.stalled")
    assert r.alert_id == s.alert_id and r.source_event_ids == ["PJ1", "R1"]
    assert r.evidence["last_report_id"] == s.evidence["last_report_id"] == "R1"


def test_deadline_evidence_is_the_project_as_of_the_deadline():
    deadline = E + 30 * DAY
    evs = [prog("R1", S + 2 * DAY, "started", 5), prog("R2", S + 50 * DAY, "in_progress", 60),
           prog("R3", deadline + 3600, "in_progress", 95)]
    replayed, _ = run_sorted([ProjectDetector()], ref_with(project()), evs, as_of=deadline + DAY)
    streamed, _ = run_sorted([ProjectDetector()], ref_with(project()), evs, as_of=deadline + DAY,
                             lateness=7200.0)
    (r,), (s,) = of(replayed, "project.overdue_completion"), of(streamed, "project.overdue_completion")
    keys = ("reports_received", "last_report_id", "last_percent_complete")
    assert [r.evidence[k] for k in keys] == [s.evidence[k] for k in keys] == [2, "R2", 60]
