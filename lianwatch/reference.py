"""Reference data (vehicles, villages, officials, projects) and its look-ups.

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
from lianwatch.models.records import REFERENCE_MODELS, Official, Project, Vehicle, Village

__all__ = ["Reference", "REFERENCE_KINDS"]

#: the reference kinds, in the order they are loaded
REFERENCE_KINDS = tuple(REFERENCE_MODELS)


class Reference:
    def __init__(self) -> None:
        self.vehicles: dict[str, Vehicle] = {}
        self.villages: dict[str, Village] = {}
        self.officials: dict[str, Official] = {}
        self.projects: dict[str, Project] = {}
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
        else:
            raise KeyError(kind)

    def add_all(self, kind: str, recs: Iterable[Any]) -> None:
        for r in recs:
            self.add(kind, r)

    def remove(self, kind: str, key: str) -> bool:
        """Forget the record of ``kind`` with id ``key`` (and what was derived from it:
        a vehicle's cards, an official's related payees). False when there was none."""
        if kind == "vehicles":
            old = self.vehicles.pop(key, None)
            if old is not None:
                for c in old.card_ids:
                    if self.card_vehicle.get(c) == key:
                        del self.card_vehicle[c]
        elif kind == "villages":
            old = self.villages.pop(key, None)
        elif kind == "officials":
            old = self.officials.pop(key, None)
            if old is not None:
                self._reindex_related()
        elif kind == "projects":
            old = self.projects.pop(key, None)
        else:
            raise KeyError(kind)
        return old is not None

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
