"""Reference data (vehicles, villages, officials, projects; in version 2 persons,
companies and contracts) and its look-ups.

Slowly changing: loaded from files before replay, or from compacted topics in
streaming. A later record with the same id replaces the earlier one, and a
deleted one (a tombstone on its compacted topic) is dropped with :meth:`Reference.remove`.

>>> ref = Reference.from_raw({"villages": [b'{"village_id": "VL1", "name": "x", "town": "t"}',
...                                        b'not json']}.get)
>>> sorted(ref.villages), ref.remove("villages", "VL1"), sorted(ref.villages)
(['VL1'], True, [])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lianwatch.models.parse import parse_reference
from lianwatch.models.records import (
    REFERENCE_MODELS, Company, Contract, Official, Person, Project, Vehicle, Village,
)
from lianwatch.ties import Changed, Ties

__all__ = ["Reference", "REFERENCE_KINDS"]

#: the reference kinds, in the order they are loaded
REFERENCE_KINDS = tuple(REFERENCE_MODELS)


class Reference:
    def __init__(self) -> None:
        self.vehicles: dict[str, Vehicle] = {}
        self.villages: dict[str, Village] = {}
        self.officials: dict[str, Official] = {}
        self.projects: dict[str, Project] = {}
        self.persons: dict[str, Person] = {}
        self.companies: dict[str, Company] = {}
        self.contracts: dict[str, Contract] = {}
        self.card_vehicle: dict[str, str] = {}
        #: ties to officials (officials × the company register), kept current by add/remove
        self.ties = Ties()

    # ------------------------------------------------------------------ updates
    def add(self, kind: str, rec: Any) -> Changed | None:
        """Add or replace one record. For officials and companies: the persons and
        companies whose ties to officials may have changed (late register facts)."""
        if kind == "vehicles":
            self._drop_cards(self.vehicles.get(rec.vehicle_id))
            self.vehicles[rec.vehicle_id] = rec
            for c in rec.card_ids:
                self.card_vehicle[c] = rec.vehicle_id
        elif kind == "officials":
            self.officials[rec.person_id] = rec
            return self.ties.set_official(rec)
        elif kind == "companies":
            self.companies[rec.company_id] = rec
            return self.ties.set_company(rec)
        elif kind in ("villages", "projects", "persons", "contracts"):
            getattr(self, kind)[rec.key] = rec
        else:
            raise KeyError(kind)
        return None

    def add_all(self, kind: str, recs: Iterable[Any]) -> None:
        for r in recs:
            self.add(kind, r)

    def remove(self, kind: str, key: str) -> bool:
        """Forget the record of ``kind`` with id ``key`` (and what was derived from it:
        a vehicle's cards, an official's or a company's ties). False when there was none."""
        if kind not in REFERENCE_KINDS:
            raise KeyError(kind)
        old = getattr(self, kind).pop(key, None)
        if old is None:
            return False
        if kind == "vehicles":
            self._drop_cards(old)
        elif kind == "officials":
            self.ties.remove_official(key)
        elif kind == "companies":
            self.ties.remove_company(key)
        return True

    def _drop_cards(self, old: Vehicle | None) -> None:
        if old is not None:
            for c in old.card_ids:
                if self.card_vehicle.get(c) == old.vehicle_id:
                    del self.card_vehicle[c]

    @classmethod
    def from_raw(cls, lines_of: Callable[[str], Iterable[bytes] | None],
                 kept: list[bytes] | None = None) -> "Reference":
        """The reference data from raw JSON lines: ``lines_of(kind)`` gives a kind's
        lines (the store's rows, a directory's file; None: none). A line that cannot be
        read is skipped; ``kept`` collects the lines that were used."""
        ref = cls()
        for kind in REFERENCE_KINDS:
            for raw in lines_of(kind) or ():
                rec, _ = parse_reference(kind, raw)
                if rec is not None:
                    ref.add(kind, rec)
                    if kept is not None:
                        kept.append(raw)
        return ref

    # ------------------------------------------------------------------ look-ups
    def vehicle_of(self, ev: dict[str, Any]) -> str | None:
        """The vehicle a fuel transaction belongs to (its own id, else its card's)."""
        vid = ev.get("vehicle_id")
        if vid:
            return vid
        return self.card_vehicle.get(ev.get("card_id", ""))

    def unit_of_vehicle(self, vehicle_id: str) -> str | None:
        v = self.vehicles.get(vehicle_id)
        return v.unit_id if v else None

    def related_officials(self, village_id: str, payee_id: str) -> list[Official]:
        """Officials of the village listing the payee among their ``related_payee_ids``
        (the version 1 reading of ``payment.conflict_of_interest``), by person id."""
        ids = {t.official_id for t in self.ties.company_ties(payee_id, village_id)
               if t.how == "related_payee"}
        return [self.officials[i] for i in sorted(ids)]

    def approval_threshold(self, village_id: str, default: float) -> float:
        v = self.villages.get(village_id)
        return v.approval_threshold_yuan if v is not None else default
