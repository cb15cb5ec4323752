"""Reference data (vehicles, villages, officials, projects; in version 2 persons,
companies and contracts) and its look-ups.

Slowly changing: loaded from files before replay, or from compacted topics in
streaming. A later record with the same id replaces the earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lianwatch.models.records import (
    Company, Contract, Official, Person, Project, Vehicle, Village,
)

__all__ = ["Reference"]


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
        # village_id → payee_id → person_ids of that village's officials tied to the payee
        self.related: dict[str, dict[str, list[str]]] = {}

    # ------------------------------------------------------------------ updates
    def add(self, kind: str, rec: Any) -> None:
        if kind == "vehicles":
            old = self.vehicles.get(rec.vehicle_id)
            if old is not None:
                for c in old.card_ids:
                    if self.card_vehicle.get(c) == old.vehicle_id:
                        del self.card_vehicle[c]
            self.vehicles[rec.vehicle_id] = rec
            for c in rec.card_ids:
                self.card_vehicle[c] = rec.vehicle_id
        elif kind == "villages":
            self.villages[rec.village_id] = rec
        elif kind == "officials":
            self.officials[rec.person_id] = rec
            self._reindex_related()
        elif kind == "projects":
            self.projects[rec.project_id] = rec
        elif kind in ("persons", "companies", "contracts"):
            getattr(self, kind)[rec.key] = rec
        else:
            raise KeyError(kind)

    def add_all(self, kind: str, recs: Iterable[Any]) -> None:
        for r in recs:
            self.add(kind, r)

    def _reindex_related(self) -> None:
        related: dict[str, dict[str, list[str]]] = {}
        for off in self.officials.values():
            if not off.village_id:
                continue
            by_payee = related.setdefault(off.village_id, {})
            for payee in off.related_payee_ids:
                by_payee.setdefault(payee, []).append(off.person_id)
        self.related = related

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
        ids = self.related.get(village_id, {}).get(payee_id, ())
        return [self.officials[i] for i in ids]

    def approval_threshold(self, village_id: str, default: float) -> float:
        v = self.villages.get(village_id)
        return v.approval_threshold_yuan if v is not None else default
