"""Ties to officials: the contract's definitions, and incremental updates equal to a rebuild."""

from __future__ import annotations

import random
from types import SimpleNamespace as R

from lianwatch.ties import Ties


def off(pid, village="VL1", scope=(), payees=(), relatives=(), name="官", role="director"):
    return R(person_id=pid, name=name, role=role, village_id=village,
             scope_village_ids=list(scope), related_payee_ids=list(payees),
             related_person_ids=list(relatives))


def comp(cid, rep=None, holders=()):
    return R(company_id=cid, legal_rep_id=rep, shareholder_ids=list(holders))


def hows(ties):
    return [(t.official_id, t.how, t.via) for t in ties]


def test_power_defaults_to_own_village_and_scope_replaces_it():
    t = Ties()
    t.set_official(off("O1", "VL1"))
    t.set_official(off("O2", None, scope=["VL2", "VL3"]))
    t.set_official(off("O3", None))  # town staff with no scope: power over nothing
    assert t.officials_over("VL1") == {"O1"}
    assert t.officials_over("VL3") == {"O2"}
    assert t.has_power("O2", "VL2") and not t.has_power("O2", "VL1")
    assert not t.has_power("O3", None) and t.officials_over(None) == frozenset()


def test_person_ties_self_and_relatives_only_where_the_official_has_power():
    t = Ties()
    t.set_official(off("O1", "VL1", relatives=["R1", "R2"]))
    assert hows(t.person_ties("O1", "VL1")) == [("O1", "self", None)]
    assert hows(t.person_ties("R2", "VL1")) == [("O1", "relative", None)]
    assert t.person_ties("R2", "VL9") == []  # a relative of an official of another village
    assert t.person_ties("R9", "VL1") == []


def test_company_ties_through_payees_legal_rep_and_shareholders():
    t = Ties()
    t.set_official(off("O1", "VL1", payees=["C1"], relatives=["R1"]))
    t.set_company(comp("C2", rep="R1"))
    t.set_company(comp("C3", rep="X", holders=["O1", "R1"]))
    t.set_company(comp("C4", rep="R1", holders=["R1"]))  # both roles: both ties listed
    assert hows(t.company_ties("C1", "VL1")) == [("O1", "related_payee", None)]
    assert hows(t.company_ties("C2", "VL1")) == [("O1", "legal_rep_relative", "R1")]
    assert hows(t.company_ties("C3", "VL1")) == [("O1", "shareholder_relative", "R1"),
                                                  ("O1", "shareholder_self", "O1")]
    assert hows(t.company_ties("C4", "VL1")) == [("O1", "legal_rep_relative", "R1"),
                                                  ("O1", "shareholder_relative", "R1")]
    assert t.company_ties("C2", "VL2") == []
    assert t.companies_of("R1") == {"C2": ("legal_rep",), "C3": ("shareholder",),
                                    "C4": ("legal_rep", "shareholder")}


def test_v1_conflict_rule_is_the_payee_list_of_an_official_of_the_same_village():
    t = Ties()
    t.set_official(off("O1", "VL1", payees=["C1"]))
    assert [x.how for x in t.payee_ties("C1", "VL1")] == ["related_payee"]
    assert t.payee_ties("C1", "VL2") == []
    assert [x.how for x in t.payee_ties("O1", "VL1")] == ["self"]  # v2: the official's own id


def test_updates_report_what_changed_and_undo_old_entries():
    t = Ties()
    t.set_official(off("O1", "VL1", relatives=["R1"]))
    t.set_company(comp("C1", rep="R1"))
    ch = t.set_official(off("O1", "VL1", relatives=["R2"]))  # R1 no longer a relative
    assert ch.persons == {"O1", "R1", "R2"} and "C1" in ch.companies
    assert t.person_ties("R1", "VL1") == [] and t.company_ties("C1", "VL1") == []
    ch = t.set_company(comp("C1", rep="R2"))
    assert ch.persons == {"R1", "R2"} and ch.companies == {"C1"}
    assert hows(t.company_ties("C1", "VL1")) == [("O1", "legal_rep_relative", "R2")]
    t.remove_official("O1")
    assert t.company_ties("C1", "VL1") == [] and t.officials_over("VL1") == frozenset()


def _answers(t: Ties, persons, companies, villages):
    return ({(p, v): hows(t.person_ties(p, v)) for p in persons for v in villages},
            {(c, v): hows(t.company_ties(c, v)) for c in companies for v in villages},
            {p: t.companies_of(p) for p in persons})


def test_incremental_updates_equal_a_rebuild_from_the_final_registers():
    rnd = random.Random(5)
    persons = [f"R{i}" for i in range(12)] + [f"O{i}" for i in range(5)]
    companies = [f"C{i}" for i in range(8)]
    villages = ["VL1", "VL2", "VL3", None]
    t = Ties()
    final_off: dict[str, R] = {}
    final_comp: dict[str, R] = {}
    for _ in range(400):
        if rnd.random() < 0.5:
            oid = f"O{rnd.randrange(5)}"
            if rnd.random() < 0.15:
                t.remove_official(oid)
                final_off.pop(oid, None)
                continue
            o = off(oid, rnd.choice(["VL1", "VL2", None]),
                    scope=rnd.sample(["VL1", "VL2", "VL3"], rnd.randrange(3)),
                    payees=rnd.sample(companies, rnd.randrange(3)),
                    relatives=rnd.sample(persons, rnd.randrange(4)))
            t.set_official(o)
            final_off[oid] = o
        else:
            cid = rnd.choice(companies)
            if rnd.random() < 0.15:
                t.remove_company(cid)
                final_comp.pop(cid, None)
                continue
            c = comp(cid, rnd.choice([None, *persons]), rnd.sample(persons, rnd.randrange(3)))
            t.set_company(c)
            final_comp[cid] = c
    fresh = Ties()
    fresh.load(final_off.values(), final_comp.values())
    assert _answers(t, persons, companies, villages) == _answers(fresh, persons, companies,
                                                                 villages)
