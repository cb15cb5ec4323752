"""``project.*`` rules: progress reports against the plan, judged by the clock.

One state per project, created for every project of the reference before any
event (:meth:`ProjectDetector.initial_subjects`), so a project that never
reports is still caught: its ``wake`` is its next deadline and the engine
calls :meth:`~ProjectDetector.on_timer` when ``ctx.now`` reaches it.

Deadlines (local midnight of the planned date in ``ctx.tz``, plus the days):

* ``project.overdue_start``: at ``planned_start + start_grace_days`` (7) a
  yellow alert if no report with a started stage (``started``,
  ``in_progress``, ``completed``, ``suspended``) is dated on or before the
  deadline; at ``planned_start + start_red_days`` (30) the same alert (same
  id, ``version`` + 1) is raised to red if that is still so.
* ``project.stalled``: started, not completed, and no report at all dated
  within ``stall_days`` (60) after a report: fires at
  ``that report + stall_days``. The incident is anchored on that report, so a
  report after the silence re-arms a new incident with a new id; a report
  dated after the deadline that arrives before the clock has passed it (within
  the engine's lateness) does not undo the silence.
* ``project.overdue_completion``: no ``completed`` report dated on or before
  ``planned_end + completion_grace_days`` (30).
* ``project.disbursement_mismatch`` (at a report, no clock):
  ``disbursed_yuan / budget_yuan − percent_complete / 100 > disbursement_gap``
  (compared at 6 decimals). One alert per project; it is re-emitted
  (``version`` + 1) when a later report sets a new worst gap, listing the
  reports that set one. Which reports those are depends only on the reports'
  dates, not on the order they arrive in.

A report judged "on or before the deadline" is judged by its own date: one
that arrives late but is dated in time stops an alert whose timer has not
fired yet. The evidence describes the project as of the deadline (or the
report) it rests on: the reports dated by then, whatever arrived since. Redelivered reports (same ``report_id``, same content) are ignored,
one with other content is set aside (the first one taken stays); a report of
a project missing from the reference cannot be placed and is set aside.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from lianwatch.engine.detector import Ctx, Detector, Step, redelivery
from lianwatch.models.alert import Alert
from lianwatch.models.records import STARTED_STAGES

__all__ = ["ProjectDetector", "ProjectState"]

DAY = 86400.0
OVERDUE_START = "project.overdue_start"
STALLED = "project.stalled"
OVERDUE_COMPLETION = "project.overdue_completion"
MISMATCH = "project.disbursement_mismatch"

STAGE_ZH = {
    "approved": "已立项", "tendered": "已招标", "contracted": "已签约", "started": "已开工",
    "in_progress": "施工中", "completed": "已完工", "suspended": "已暂停",
}


@dataclass
class ProjectState:
    project_id: str
    #: (name, village_id, unit_id, budget, planned_start, planned_end) as last seen
    plan: tuple | None = None
    start_t: float | None = None  # local midnight of planned_start
    end_t: float | None = None  # local midnight of planned_end
    #: report_id → (t, content fingerprint, stage, percent_complete) of every report taken
    reports: dict[str, tuple[float, int, str | None, float | None]] = field(default_factory=dict)
    started_t: float | None = None
    started_id: str | None = None
    completed_t: float | None = None
    start_level: str | None = None  # overdue_start emitted: None, "yellow", "red"
    start_version: int = 0
    stall_fired_for: str | None = None  # the latest report whose silence already fired
    completion_done: bool = False
    #: reports that set a new worst gap, in time order: (t, report_id, gap, disbursed, pct)
    chain: list = field(default_factory=list)
    chain_emitted: tuple = ()
    mismatch_version: int = 0
    wake: float | None = None

    def __setstate__(self, d: dict[str, Any]) -> None:
        last = d.pop("last", None)  # a state from before the reports kept their stage
        if any(v.__class__ is float for v in d.get("reports", {}).values()):
            d["reports"] = {k: (v, 0, *(last[2:] if last and last[1] == k else (None, None)))
                            for k, v in d["reports"].items()}
        self.__dict__.update(d)

    def upto(self, t: float, rid: str = "\U0010ffff") -> tuple[int, tuple | None]:
        """How many reports are dated up to ``(t, rid)``, and the latest of them:
        ``(t, report_id, stage, percent_complete)``."""
        n, last = 0, None
        for k, (rt, _, stage, pct) in self.reports.items():
            if (rt, k) <= (t, rid):
                n += 1
                if last is None or (rt, k) > last[:2]:
                    last = (rt, k, stage, pct)
        return n, last


def _midnight(d: date, ctx: Ctx) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=ctx.tz).timestamp()


def _pct(x: float) -> str:
    return f"{x:.0f}%" if float(x).is_integer() else f"{x:.1f}%"


class ProjectDetector(Detector[ProjectState]):
    name = "projects"
    streams = ("progress",)
    rules = (OVERDUE_START, STALLED, OVERDUE_COMPLETION, MISMATCH)
    timer_clock = "now"
    # the deadline rules say how long overdue or silent a project is when judged
    clock_fields = frozenset({"title", "title_en", "as_of", "days_overdue", "days_silent"})

    def key(self, ev: dict[str, Any], ctx: Ctx) -> str | None:
        pid = ev.get("project_id")
        return pid if pid in ctx.ref.projects else None

    def unplaced_reason(self, ev: dict[str, Any]) -> str:
        return f"{self.name}: unknown project {ev.get('project_id')!r}"

    def initial_subjects(self, ctx: Ctx):
        return iter(sorted(ctx.ref.projects))

    def new_state(self, key: str, ctx: Ctx) -> ProjectState:
        st = ProjectState(project_id=key)
        self._refresh(st, ctx)
        st.wake = self._next(st, self._rules(st, ctx))[0]
        return st

    # ----------------------------------------------------------------- hooks
    def on_event(self, st: ProjectState, ev: dict[str, Any], ctx: Ctx) -> Step[ProjectState]:
        fp, again = redelivery(st.reports, ev, ctx, "report_id")
        if again is not None:
            return Step(st, (), again)
        rid = ev["report_id"]
        t = ev["t"]
        st.reports[rid] = (t, fp, ev["stage"], ev["percent_complete"])
        self._refresh(st, ctx)
        stage = ev["stage"]
        if stage in STARTED_STAGES and (st.started_t is None or (t, rid) < (st.started_t, st.started_id)):
            st.started_t, st.started_id = t, rid
        if stage == "completed" and (st.completed_t is None or t < st.completed_t):
            st.completed_t = t
        alerts: list[Alert] = []
        r = self._rules(st, ctx)
        disbursed = ev.get("disbursed_yuan")
        if disbursed is not None and st.plan is not None and ctx.rules.enabled(MISMATCH):
            budget = st.plan[3]
            gap = disbursed / budget - ev["percent_complete"] / 100.0
            if round(gap, 6) > r.disbursement_gap:
                a = self._mismatch(st, (t, rid, gap, disbursed, ev["percent_complete"]), r, ctx)
                if a is not None:
                    alerts.append(a)
        st.wake = self._next(st, r)[0]
        return Step(st, alerts)

    def on_timer(self, st: ProjectState, key: str, ctx: Ctx) -> Step[ProjectState]:
        self._refresh(st, ctx)
        r = self._rules(st, ctx)
        alerts: list[Alert] = []
        # The engine found ``entry`` due (a tick counts the instant itself, an event does
        # not); a later deadline is judged here only if strictly past, else the engine
        # calls again under its own rule, so replay and ticks agree on the boundary.
        entry = st.wake
        while True:
            due, kind = self._next(st, r)
            if due is None or not (due < ctx.now or (entry is not None and due <= entry)):
                break
            a = self._judge(st, kind, due, r, ctx)
            if a is not None:
                alerts.append(a)
        st.wake = due
        return Step(st, alerts)

    # ----------------------------------------------------------------- plan
    def _refresh(self, st: ProjectState, ctx: Ctx) -> None:
        p = ctx.ref.projects.get(st.project_id)
        if p is None:
            return  # dropped from the reference: keep what was known
        plan = (p.name, p.village_id, p.unit_id, p.budget_yuan, p.planned_start, p.planned_end)
        if plan != st.plan:
            st.plan = plan
            st.start_t = _midnight(p.planned_start, ctx)
            st.end_t = _midnight(p.planned_end, ctx)

    def _rules(self, st: ProjectState, ctx: Ctx):
        if st.plan is None:
            return ctx.rules.project
        return ctx.rules.project_for(st.plan[1], st.plan[2])

    def _started_by(self, st: ProjectState, t: float) -> bool:
        return st.started_t is not None and st.started_t <= t

    def _next(self, st: ProjectState, r) -> tuple[float | None, str | None]:
        """The earliest deadline still to judge, and which."""
        cands: list[tuple[float, str]] = []
        if st.start_t is not None:
            dy = st.start_t + r.start_grace_days * DAY
            dr = st.start_t + r.start_red_days * DAY
            if st.start_level is None and not self._started_by(st, dy):
                cands.append((dy, "start_yellow"))
            elif st.start_level == "yellow" and not self._started_by(st, dr):
                cands.append((max(dr, dy), "start_red"))
        if st.end_t is not None and not st.completion_done:
            dc = st.end_t + r.completion_grace_days * DAY
            if not (st.completed_t is not None and st.completed_t <= dc):
                cands.append((dc, "completion"))
        stall = self._stall(st, r)
        if stall is not None:
            cands.append((stall[0], "stall"))
        if not cands:
            return None, None
        return min(cands)

    # ---------------------------------------------------------------- alerts
    def _alert(self, st: ProjectState, ctx: Ctx, rule: str, level: str, anchor: list[str],
               event_t: float, title: tuple[str, str], evidence: dict[str, Any],
               sources: list[str], version: int = 1) -> Alert:
        village_id = st.plan[1] if st.plan else None
        unit_id = st.plan[2] if st.plan else None
        return ctx.alert(rule, level, "project", st.project_id, anchor, event_t, title, evidence,
                         sources, unit_id=unit_id, village_id=village_id, version=version)

    def _stall(self, st: ProjectState, r) -> tuple[float, str] | None:
        """The earliest silence not judged yet: ``(deadline, report_id)`` of a report
        with none dated within ``stall_days`` after it, the project started by then
        and not completed."""
        if st.started_t is None:
            return None
        fired = st.reports.get(st.stall_fired_for) if st.stall_fired_for else None
        done = (fired[0], st.stall_fired_for) if fired else None
        reps = sorted((v[0], k) for k, v in st.reports.items())
        window = r.stall_days * DAY
        for i, (t, rid) in enumerate(reps):
            if st.completed_t is not None and st.completed_t <= t:
                return None
            if (t, rid) < (st.started_t, st.started_id) or (done is not None and (t, rid) <= done):
                continue
            if i + 1 == len(reps) or reps[i + 1][0] > t + window:
                return t + window, rid
        return None

    def _base(self, st: ProjectState, ctx: Ctx, upto: tuple) -> dict[str, Any]:
        """The project as of ``upto`` (``(t,)`` or ``(t, report_id)``)."""
        name, vid, uid, budget, ps, pe = st.plan if st.plan else ("", None, None, None, None, None)
        n, last = st.upto(*upto)
        return {
            "project_id": st.project_id, "project_name": name, "budget_yuan": budget,
            "planned_start": ps.isoformat() if ps else None,
            "planned_end": pe.isoformat() if pe else None,
            "as_of": ctx.ts(ctx.now) if math.isfinite(ctx.now) else None,
            "reports_received": n,
            "last_report_id": last[1] if last else None,
            "last_report_ts": ctx.ts(last[0]) if last else None,
            "last_stage": last[2] if last else None,
            "last_percent_complete": last[3] if last else None,
        }

    def _judge(self, st: ProjectState, kind: str, due: float, r, ctx: Ctx) -> Alert | None:
        name = (st.plan[0] if st.plan else "") or st.project_id
        now = ctx.now if math.isfinite(ctx.now) else due
        if kind in ("start_yellow", "start_red"):
            red = kind == "start_red"
            st.start_level = "red" if red else "yellow"
            st.start_version += 1
            if not ctx.rules.enabled(OVERDUE_START):
                return None
            ps = st.plan[4].isoformat()
            days = int((now - st.start_t) // DAY)
            started = st.started_t if st.started_t is not None and st.started_t <= due else None
            ev = {**self._base(st, ctx, (due,)), "deadline_ts": ctx.ts(due), "days_overdue": days,
                  "start_grace_days": r.start_grace_days, "start_red_days": r.start_red_days,
                  "started_report_ts": ctx.ts(started) if started is not None else None}
            if red:
                title = (f"项目逾期未开工超 {r.start_red_days:g} 天：「{name}」计划 {ps} 开工，已逾期 {days} 天",
                         f"Project not started {r.start_red_days:g}+ days late: {name}, planned start {ps}, "
                         f"{days} days overdue")
            else:
                title = (f"项目逾期未开工：「{name}」计划 {ps} 开工，已逾期 {days} 天",
                         f"Project not started: {name}, planned start {ps}, {days} days overdue")
            return self._alert(st, ctx, OVERDUE_START, "red" if red else "yellow", [st.project_id],
                               due, title, ev, [st.project_id], version=st.start_version)
        if kind == "completion":
            st.completion_done = True
            if not ctx.rules.enabled(OVERDUE_COMPLETION):
                return None
            pe = st.plan[5].isoformat()
            days = int((now - st.end_t) // DAY)
            last = st.upto(due)[1]
            prog_zh = f"（最近进度 {_pct(last[3])}）" if last else "（无进度报告）"
            prog_en = f" (last reported {_pct(last[3])})" if last else " (no report)"
            ev = {**self._base(st, ctx, (due,)), "deadline_ts": ctx.ts(due), "days_overdue": days,
                  "completion_grace_days": r.completion_grace_days}
            return self._alert(
                st, ctx, OVERDUE_COMPLETION, "yellow", [st.project_id], due,
                (f"项目逾期未完工：「{name}」计划 {pe} 完工，已逾期 {days} 天{prog_zh}",
                 f"Project not completed: {name}, planned end {pe}, {days} days overdue{prog_en}"),
                ev, [st.project_id])
        # stall: the silence after the report _next found
        _, rid = self._stall(st, r)  # type: ignore[misc]
        t, _, stage, pct = st.reports[rid]
        last = (t, rid, stage, pct)
        st.stall_fired_for = rid
        if not ctx.rules.enabled(STALLED):
            return None
        since = ctx.ts(last[0])[:10]
        silent = int((now - last[0]) // DAY)
        stage_zh = STAGE_ZH.get(last[2], last[2])
        ev = {**self._base(st, ctx, (due,)), "deadline_ts": ctx.ts(due), "days_silent": silent,
              "stall_days": r.stall_days}
        return self._alert(
            st, ctx, STALLED, "yellow", [last[1]], due,
            (f"项目停滞：「{name}」自 {since} 起 {silent} 天无进度报告（最近：{stage_zh} {_pct(last[3])}）",
             f"Project stalled: {name}, no progress report for {silent} days since {since} "
             f"(last: {last[2]} {_pct(last[3])})"),
            ev, [st.project_id, last[1]])

    def _mismatch(self, st: ProjectState, item: tuple, r, ctx: Ctx) -> Alert | None:
        i = bisect.bisect_left(st.chain, item[:2], key=lambda x: x[:2])
        st.chain.insert(i, item)
        chain, worst = [], -math.inf
        for x in st.chain:  # keep the reports that set a new worst gap
            if x[2] > worst:
                chain.append(x)
                worst = x[2]
        st.chain = chain
        ids = tuple(x[1] for x in chain)
        if ids == st.chain_emitted:
            return None
        st.chain_emitted = ids
        st.mismatch_version += 1
        t, rid, gap, disbursed, pct = chain[-1]
        budget = st.plan[3]
        name = st.plan[0] or st.project_id
        ratio = disbursed / budget
        return self._alert(
            st, ctx, MISMATCH, "red", [st.project_id], t,
            (f"项目资金拨付超进度：「{name}」已拨付 {ratio:.0%} 预算（¥{disbursed:,.0f}），完成 {_pct(pct)}",
             f"Disbursement ahead of progress: {name}, {ratio:.0%} of budget paid "
             f"(¥{disbursed:,.0f}), {_pct(pct)} complete"),
            {**self._base(st, ctx, (t, rid)), "report_id": rid, "report_ts": ctx.ts(t),
             "disbursed_yuan": disbursed, "disbursed_ratio": round(ratio, 4),
             "percent_complete": pct, "gap": round(gap, 4), "gap_limit": r.disbursement_gap,
             "reports": [{"report_id": x[1], "ts": ctx.ts(x[0]), "gap": round(x[2], 4)} for x in chain]},
            [st.project_id, *ids], version=st.mismatch_version)
