"""Ties to officials (CONTRACT.md §3, "Ties to officials"), answered in one place.

An official *has power over* a village when it is in their ``scope_village_ids``
(default: their own ``village_id``). A *person* is tied to an official when
they are that official (the same ``person_id``) or among the official's
``related_person_ids``. A *company* is tied to an official when it is among
the official's ``related_payee_ids``, or its legal representative or one of
its shareholders is a person tied to that official.

:class:`Ties` keeps indexes so that each question costs a few dict look-ups
(O(1) in the size of the registers), and is updated incrementally: setting or
removing one official or one company touches only that record's entries and
says which persons and companies changed, so callers can judge them again
(late register facts, CONTRACT.md §6).

>>> from types import SimpleNamespace as R
>>> t = Ties()
>>> ch = t.set_official(R(person_id="P1", name="王五", role="director", village_id="VL1",
...                       scope_village_ids=["VL1", "VL2"], related_payee_ids=["C9"],
...                       related_person_ids=["R7"]))
>>> sorted(ch.persons), sorted(ch.companies)
(['P1', 'R7'], ['C9'])
>>> [x.how for x in t.person_ties("R7", "VL2")], t.person_ties("R7", "VL3")
(['relative'], [])
>>> _ = t.set_company(R(company_id="C5", legal_rep_id="R7", shareholder_ids=[]))
>>> [(x.official_id, x.how, x.via) for x in t.company_ties("C5", "VL1")]
[('P1', 'legal_rep_relative', 'R7')]
>>> [x.how for x in t.payee_ties("C9", "VL1")], [x.how for x in t.payee_ties("P1", "VL1")]
(['related_payee'], ['self'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Ties", "Tie", "Changed", "TIE_ZH"]

#: how a person or company is tied, in words (evidence, case pages)
TIE_ZH = {
    "self": "本人",
    "relative": "近亲属",
    "related_payee": "登记关联企业",
    "legal_rep_self": "本人任法定代表人",
    "legal_rep_relative": "近亲属任法定代表人",
    "shareholder_self": "本人为股东",
    "shareholder_relative": "近亲属为股东",
}


@dataclass(frozen=True, order=True)
class Tie:
    """One official with power over the village, and how the subject is tied to them."""

    official_id: str
    how: str  # a key of TIE_ZH
    via: str | None = None  # the person through whom a company is tied
    official_name: str = ""
    role: str = ""

    def as_evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"person_id": self.official_id, "name": self.official_name,
                               "role": self.role, "tie": self.how}
        if self.via is not None:
            out["via_person_id"] = self.via
        return out


class Changed(NamedTuple):
    """Persons and companies whose ties may have changed with one register update."""

    persons: frozenset[str]
    companies: frozenset[str]


def _scope(off: Any) -> tuple[str, ...]:
    scope = list(getattr(off, "scope_village_ids", None) or ())
    if not scope and getattr(off, "village_id", None):
        scope = [off.village_id]
    return tuple(dict.fromkeys(scope))


def _relatives(off: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(getattr(off, "related_person_ids", None) or ()))


def _payees(off: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(getattr(off, "related_payee_ids", None) or ()))


def _company_roles(comp: Any) -> dict[str, tuple[str, ...]]:
    """person_id → the roles ("legal_rep", "shareholder") they hold in the company."""
    roles: dict[str, list[str]] = {}
    rep = getattr(comp, "legal_rep_id", None)
    if rep:
        roles.setdefault(rep, []).append("legal_rep")
    for p in getattr(comp, "shareholder_ids", None) or ():
        if p and "shareholder" not in roles.get(p, ()):
            roles.setdefault(p, []).append("shareholder")
    return {p: tuple(r) for p, r in roles.items()}


class Ties:
    """Indexes over officials and the company register (see the module doc)."""

    def __init__(self) -> None:
        self._officials: dict[str, Any] = {}
        #: village_id → official ids with power over it
        self._power: dict[str, set[str]] = {}
        #: person_id → {official_id: "self" | "relative"}
        self._person: dict[str, dict[str, str]] = {}
        #: company/payee id → official ids listing it in related_payee_ids
        self._payee: dict[str, set[str]] = {}
        #: company_id → {person_id: roles}; person_id → {company_id: roles}
        self._company_people: dict[str, dict[str, tuple[str, ...]]] = {}
        self._person_companies: dict[str, dict[str, tuple[str, ...]]] = {}

    # ---------------------------------------------------------------- updates
    def set_official(self, off: Any) -> Changed:
        """Add or replace one official; returns who may now be tied differently."""
        before = self._drop_official(off.person_id)
        self._officials[off.person_id] = off
        oid = off.person_id
        for v in _scope(off):
            self._power.setdefault(v, set()).add(oid)
        self._person.setdefault(oid, {})[oid] = "self"
        for p in _relatives(off):
            if p != oid:
                self._person.setdefault(p, {})[oid] = "relative"
        for c in _payees(off):
            self._payee.setdefault(c, set()).add(oid)
        return self._merge(before, self._touched(off))

    def remove_official(self, person_id: str) -> Changed:
        return self._drop_official(person_id)

    def set_company(self, comp: Any) -> Changed:
        """Add or replace one company of the register."""
        before = self._drop_company(comp.company_id)
        cid = comp.company_id
        roles = _company_roles(comp)
        if roles:
            self._company_people[cid] = roles
            for p, r in roles.items():
                self._person_companies.setdefault(p, {})[cid] = r
        return self._merge(before, Changed(frozenset(roles), frozenset({cid})))

    def remove_company(self, company_id: str) -> Changed:
        return self._drop_company(company_id)

    def _drop_official(self, oid: str) -> Changed:
        off = self._officials.pop(oid, None)
        if off is None:
            return Changed(frozenset(), frozenset())
        for v in _scope(off):
            _discard(self._power, v, oid)
        for p in (oid, *_relatives(off)):
            m = self._person.get(p)
            if m is not None:
                m.pop(oid, None)
                if not m:
                    del self._person[p]
        for c in _payees(off):
            _discard(self._payee, c, oid)
        return self._touched(off)

    def _drop_company(self, cid: str) -> Changed:
        roles = self._company_people.pop(cid, {})
        for p in roles:
            m = self._person_companies.get(p)
            if m is not None:
                m.pop(cid, None)
                if not m:
                    del self._person_companies[p]
        return Changed(frozenset(roles), frozenset({cid}))

    def _touched(self, off: Any) -> Changed:
        persons = {off.person_id, *_relatives(off)}
        companies = set(_payees(off))
        for p in persons:
            companies.update(self._person_companies.get(p, ()))
        return Changed(frozenset(persons), frozenset(companies))

    @staticmethod
    def _merge(a: Changed, b: Changed) -> Changed:
        return Changed(a.persons | b.persons, a.companies | b.companies)

    # ---------------------------------------------------------------- look-ups
    def has_power(self, official_id: str, village_id: str | None) -> bool:
        return bool(village_id) and official_id in self._power.get(village_id, ())

    def officials_over(self, village_id: str | None) -> frozenset[str]:
        """The officials with power over the village."""
        return frozenset(self._power.get(village_id or "", ()))

    def person_ties(self, person_id: str, village_id: str | None) -> list[Tie]:
        """How ``person_id`` is tied to officials with power over the village (sorted)."""
        if not village_id:
            return []
        power = self._power.get(village_id)
        if not power:
            return []
        return sorted(self._tie(o, how) for o, how in self._person.get(person_id, {}).items()
                      if o in power)

    def company_ties(self, company_id: str, village_id: str | None) -> list[Tie]:
        """How the company is tied to officials with power over the village (sorted)."""
        if not village_id:
            return []
        power = self._power.get(village_id)
        if not power:
            return []
        out = {self._tie(o, "related_payee") for o in self._payee.get(company_id, ()) if o in power}
        for p, roles in self._company_people.get(company_id, {}).items():
            for o, how in self._person.get(p, {}).items():
                if o in power:
                    for r in roles:
                        out.add(self._tie(o, f"{r}_{how}", via=p))
        return sorted(out)

    def payee_ties(self, payee_id: str, village_id: str | None) -> list[Tie]:
        """A payee (a company, or a person by register id) tied to an official with
        power over the village, or such an official's own person id (sorted, unique)."""
        return sorted(set(self.company_ties(payee_id, village_id))
                      | set(self.person_ties(payee_id, village_id)))

    def companies_of(self, person_id: str) -> dict[str, tuple[str, ...]]:
        """The companies whose legal representative or shareholder the person is."""
        return dict(self._person_companies.get(person_id, {}))

    def people_of(self, company_id: str) -> dict[str, tuple[str, ...]]:
        """The persons holding a role in the company (legal representative, shareholder)."""
        return dict(self._company_people.get(company_id, {}))

    def official(self, person_id: str) -> Any | None:
        return self._officials.get(person_id)

    def _tie(self, oid: str, how: str, via: str | None = None) -> Tie:
        off = self._officials[oid]
        return Tie(oid, how, via, getattr(off, "name", "") or "", getattr(off, "role", "") or "")

    def load(self, officials: Iterable[Any] = (), companies: Iterable[Any] = ()) -> None:
        for o in officials:
            self.set_official(o)
        for c in companies:
            self.set_company(c)


def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    s = index.get(key)
    if s is not None:
        s.discard(value)
        if not s:
            del index[key]
