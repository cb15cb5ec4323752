"""Late register facts: a reference change re-judges the subjects a detector names."""

from __future__ import annotations

from dataclasses import dataclass, field

from lianwatch.engine import Engine
from lianwatch.engine.detector import Detector, Step
from lianwatch.models.parse import parse_event, parse_reference
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet


@dataclass
class Work:
    person: str
    ids: list[str] = field(default_factory=list)
    wake: float | None = None


class TiedLabour(Detector[Work]):
    """A toy: labour of a person tied to an official of the work's village alerts."""

    name = "toy-tied"
    streams = ("labor",)

    def key(self, ev, ctx):
        return ev["person_id"]

    def new_state(self, key, ctx):
        return Work(key)

    def on_event(self, st, ev, ctx):
        st.ids.append(ev["work_id"])
        return self._judge(st, ctx)

    def affected(self, kind, key, changed, ctx):
        return sorted(changed.persons) if changed is not None else ()

    def on_reference(self, st, key, ctx):
        return Step(None) if st is None else self._judge(st, ctx)

    def _judge(self, st, ctx):
        if not ctx.ref.ties.person_ties(st.person, "VL1"):
            return Step(st)
        a = ctx.alert("labor.official_related", "yellow", "person", st.person, ["x"], 0.0,
                      ("关联", "tied"), {"work_ids": list(st.ids)}, list(st.ids), village_id="VL1",
                      version=len(st.ids))
        return Step(st, [a])


def _off(relatives):
    rec, why = parse_reference("officials", {"person_id": "O1", "village_id": "VL1",
                                             "related_person_ids": relatives})
    assert rec is not None, why
    return rec


def _work(i, person="R1"):
    ev, why = parse_event("labor", {"work_id": f"W{i}", "person_id": person, "village_id": "VL1",
                                    "date": "2026-03-02", "days": 1.0,
                                    "ts": "2026-03-02T18:00:00+08:00"})
    assert ev is not None, why
    return ev


def test_a_new_relative_re_judges_the_persons_work_with_the_same_id():
    ref = Reference()
    ref.add("officials", _off([]))
    eng = Engine([TiedLabour()], RuleSet(), ref)
    assert eng.process(_work(1)) == [] and eng.process(_work(2)) == []
    changed = ref.add("officials", _off(["R1"]))  # the register learns of the relative
    (a,) = eng.reference_changed("officials", "O1", changed)
    assert a.subject_id == "R1" and a.evidence["work_ids"] == ["W1", "W2"]
    (b,) = eng.process(_work(3))
    assert b.alert_id == a.alert_id and b.version == 3
    # a person with no state is left without one
    assert eng.reference_changed("officials", "O1", ref.add("officials", _off(["R1", "R9"]))) \
        and "R9" not in eng.stores["toy-tied"]


def test_the_default_detector_ignores_reference_changes():
    ref = Reference()
    eng = Engine([Detector()], RuleSet(), ref)
    eng.stores["detector"]["k"] = Work("k")
    assert eng.reference_changed("officials", "O1", ref.add("officials", _off(["R1"]))) == []
