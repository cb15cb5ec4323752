"""Projects and their progress reports.

Report histories reach months back before the GPS window; "now" (the replay
clock) is the latest event of the whole input, i.e. the end of the last
simulated day ``E`` (day index ``cfg.days``). All day margins below are
relative to ``E``; every report lies before ``E - 1 day``.

Normal projects: started 0–4 days after ``planned_start``
[overdue_start: 7 days]; after the start a report every 15–35 days
[stalled: 60 days] until completed; completed before ``planned_end``
or ``planned_end`` still ahead [overdue_completion: +30 days];
``disbursed/budget - percent/100 <= 0.10`` [mismatch: 0.30].
"""

from __future__ import annotations

import random
import orjson

from . import names
from .county import World
from .writer import DAY, Clock

H = 3600.0

PROJECT_RULES = {
    "os_red": ("project.overdue_start", "red"),
    "os_yellow": ("project.overdue_start", "yellow"),
    "stalled": ("project.stalled", "yellow"),
    "late": ("project.overdue_completion", "yellow"),
    "dm": ("project.disbursement_mismatch", "red"),
}
LOOKALIKES = {
    "os_ok3": ("project.overdue_start", "started 3 days after planned start"),
    "future": ("project.overdue_start", "planned start after the end of the data"),
    "stalled40": ("project.stalled", "last report 40 days before the end"),
    "done_late": ("project.overdue_completion", "completed late, but within 30 days of planned end"),
    "end10": ("project.overdue_completion", "planned end 10 days before the end, not completed"),
    "dm40": ("project.disbursement_mismatch", "about 40 % disbursed at 20 % complete (diff ~0.20)"),
}


class ProjectGen:
    def __init__(self, world: World, clock: Clock, labels: list[dict], lookalikes: list[dict]):
        self.world = world
        self.cfg = world.cfg
        self.clock = clock
        self.labels = labels
        self.lookalikes = lookalikes
        self.rng = random.Random(f"{self.cfg.seed}:projects")
        self.E = self.cfg.days  # day index of the midnight ending the data

    def _kinds(self) -> list[str]:
        n = self.cfg.projects
        if n >= 30:
            k, la = max(3, round(n / 13)), max(1, round(n / 40))
        else:
            k, la = n // 8, 1 if n >= 11 else 0
        kinds = [kk for kk in PROJECT_RULES for _ in range(k)] + [kk for kk in LOOKALIKES for _ in range(la)]
        normal = ["done", "running", "running", "future_n", "done"]
        i = 0
        while len(kinds) < n:
            kinds.append(normal[i % len(normal)])
            i += 1
        kinds = kinds[:n]
        self.rng.shuffle(kinds)
        return kinds

    def _ts(self, day: float) -> tuple[int, str]:
        """A report time on calendar day floor(day), 09:00–17:30, as (t, rfc)."""
        d = int(day // 1)
        t = int(d * DAY + self.rng.uniform(9.0, 17.5) * H)
        return t, self.clock.rfc(t)

    def build(self) -> tuple[list[dict], list[tuple[int, bytes]]]:
        rng = self.rng
        w = self.world
        E = self.E
        projects: list[dict] = []
        reports: list[tuple[int, bytes]] = []
        for i, kind in enumerate(self._kinds()):
            pid = f"PJ{i + 1:04d}"
            budget = int(round(rng.uniform(2e5, 5e6), -4))
            if kind in ("done", "running", "future_n") and rng.random() < 0.2:
                unit = w.units[rng.randrange(len(w.units))]
                village_id, unit_id, owner = None, unit.unit_id, unit.name
            else:
                vil = w.villages[rng.randrange(len(w.villages))]
                village_id, unit_id, owner = vil.village_id, None, vil.name
            U = rng.uniform
            start_delay: float | None = U(0.0, 4.0)
            last_day: float = E - 1  # latest report day
            cadence = (15, 35)
            completed: float | None = None
            target_pct: float | None = None
            final_gap: tuple[float, float] | None = None  # (lo, hi) excess disbursement at the last report
            if kind == "done":
                ps = E - U(250, 500)
                pe = ps + U(90, 220)
                completed = min(pe - U(0, 25), E - 2)
            elif kind == "running":
                ps = E - U(20, 250)
                pe = max(ps + U(150, 400), E + U(20, 200))
            elif kind in ("future_n", "future"):
                ps = E + U(5, 90)
                pe = ps + U(90, 300)
                start_delay = None
            elif kind == "os_red":
                ps = E - U(40, 120)
                pe = ps + U(200, 400)
                start_delay = None
            elif kind == "os_yellow":
                ps = E - U(30, 45)
                pe = E + U(100, 300)
                start_delay = 12.0
                cadence = (15, 25)
            elif kind == "os_ok3":
                ps = E - U(40, 60)
                pe = E + U(100, 300)
                start_delay = 3.0
            elif kind == "stalled":
                ps = E - U(200, 320)
                pe = E + U(60, 200)
                last_day = E - U(72, 95)
            elif kind == "stalled40":
                ps = E - U(150, 250)
                pe = E + U(60, 200)
                last_day = E - 40
            elif kind == "late":
                ps = E - U(300, 420)
                pe = E - U(45, 80)
                last_day = E - U(1, 20)
                cadence = (15, 30)
            elif kind == "done_late":
                ps = E - U(300, 400)
                pe = E - U(90, 120)
                completed = pe + U(12, 18)
            elif kind == "end10":
                ps = E - U(200, 300)
                pe = E - 10
                last_day = E - U(2, 8)
                cadence = (15, 30)
            elif kind in ("dm", "dm40"):
                ps = E - U(80, 150)
                pe = E + U(150, 400)
                last_day = E - U(2, 20)
                cadence = (20, 30)
                target_pct = U(15, 25)
                final_gap = (0.45, 0.55) if kind == "dm" else (0.18, 0.22)
            else:
                raise ValueError(kind)
            ps_day, pe_day = int(ps), int(pe)
            name = owner + names.PROJECT_WORKS[rng.randrange(len(names.PROJECT_WORKS))]
            projects.append(
                {
                    "project_id": pid,
                    "name": name,
                    "village_id": village_id,
                    "unit_id": unit_id,
                    "budget_yuan": budget,
                    "planned_start": self.clock.date_str(ps_day),
                    "planned_end": self.clock.date_str(pe_day),
                }
            )
            # ---- reports
            seq = 0
            last_rid = ""
            last_t = 0

            def emit(day: float, stage: str, pct: float, disb: float) -> None:
                nonlocal seq, last_rid, last_t
                if day > E - 1:
                    return
                seq += 1
                t, ts = self._ts(day)
                rid = f"PR-{pid}-{seq:04d}"
                rec = {"report_id": rid, "project_id": pid, "ts": ts, "stage": stage,
                       "percent_complete": int(round(pct)), "disbursed_yuan": int(round(disb, -2))}
                reports.append((t, orjson.dumps(rec)))
                last_rid, last_t = rid, t
                if stage != "completed" and final_gap is None:
                    assert disb / budget - pct / 100 <= 0.15 + 1e-9, (pid, stage, pct, disb)

            advance = budget * rng.choice([0.0, 0.0, 0.05, 0.1])
            emit(ps_day - U(40, 70), "approved", 0, 0)
            emit(ps_day - U(20, 35), "tendered", 0, 0)
            emit(ps_day - U(5, 15), "contracted", 0, advance)
            if start_delay is not None:
                start = ps_day + start_delay
                span = max(30.0, pe_day - start)
                slow = U(0.85, 1.02)
                if target_pct is not None:
                    slow = target_pct / (100.0 * (last_day - start) / span)
                pct = U(2, 5)
                disb = max(advance, budget * pct / 100 * U(0.5, 0.9))
                emit(start, "started", pct, disb)
                day = start
                end = completed if completed is not None else last_day
                while True:
                    nxt = day + U(*cadence)
                    if target_pct is not None or kind in ("stalled", "stalled40", "late", "end10"):
                        if nxt > last_day - 3:
                            nxt = last_day
                    if nxt >= end - 1:
                        break
                    day = nxt
                    pct = max(pct + 1, min(95.0, 100.0 * (day - start) / span * slow))
                    disb = max(disb, budget * min(1.0, pct / 100 * U(0.7, 0.95) + U(0, 0.05)))
                    emit(day, "in_progress", pct, disb)
                if completed is not None:
                    emit(completed, "completed", 100, budget * U(0.95, 1.0))
                elif final_gap is not None:
                    pct = max(pct + 1, target_pct)  # type: ignore[type-var]
                    disb = max(disb, budget * (pct / 100 + U(*final_gap)))
                    emit(last_day, "in_progress", pct, disb)
                elif kind in ("stalled", "stalled40", "late", "end10"):
                    pct = max(pct + 1, min(92.0, 100.0 * (last_day - start) / span * slow))
                    disb = max(disb, budget * min(1.0, pct / 100 * U(0.7, 0.95)))
                    emit(last_day, "in_progress", pct, disb)
            if kind in PROJECT_RULES:
                rule, level = PROJECT_RULES[kind]
                ids = [pid] + ([last_rid] if kind == "dm" else [])
                note = {
                    "os_red": f"planned start {projects[-1]['planned_start']}, never started",
                    "os_yellow": f"planned start {projects[-1]['planned_start']}, started 12 days late",
                    "stalled": f"last report {(E * DAY - last_t) / DAY:.0f} days before the end",
                    "late": f"planned end {projects[-1]['planned_end']}, not completed",
                    "dm": "disbursement far ahead of progress at the last report",
                }[kind]
                # when the alert is (first) due: the yellow stage for overdue_start
                due = {
                    "os_red": ps_day * DAY + 7 * DAY,
                    "os_yellow": ps_day * DAY + 7 * DAY,
                    "stalled": last_t + 60 * DAY,
                    "late": pe_day * DAY + 30 * DAY,
                    "dm": last_t,
                }[kind]
                self.labels.append({"rule": rule, "level": level, "subject_type": "project", "subject_id": pid,
                                    "source_event_ids": ids, "event_ts": self.clock.rfc(due),
                                    "note": note, "kind": kind})
            elif kind in LOOKALIKES:
                rule, note = LOOKALIKES[kind]
                ids = [pid] + ([last_rid] if kind == "dm40" else [])
                self.lookalikes.append({"rule": rule, "subject_id": pid, "source_event_ids": ids, "note": note,
                                        "kind": kind})
        reports.sort(key=lambda x: (x[0], x[1]))
        return projects, reports
