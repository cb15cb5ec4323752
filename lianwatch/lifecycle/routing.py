"""Who receives an alert: its village's contacts by role, or its unit's.

Scope of an alert:

* ``village`` alerts (payments): ``village_id`` (else the subject);
* ``project`` alerts: the alert's ``village_id``, else the project's village;
  a project of a unit (no village) routes like a unit;
* ``vehicle`` alerts: the vehicle's unit (the alert's ``unit_id``, else the
  vehicle record's).

Contacts of a scope, by role:

* a village: its ``contacts``; a role it lacks is taken from the villages of
  the same town (``town_discipline``: the town's inspector serves all its
  villages) or county (``county_discipline``), then from the policy's
  ``county_contacts``;
* a unit: the policy's ``units.<unit_id>`` list (``secretary`` = the unit's
  head, ``town_discipline`` = the discipline group stationed in it,
  ``county_discipline`` = the county commission), then ``unit_default``, then
  ``county_contacts``, then the ``county_discipline`` contact named in the
  village records. So with nothing configured a unit's alerts reach the
  county discipline commission rather than nobody.

A wanted role with no contact passes its duty up the chain (secretary →
town_discipline → county_discipline): an alert is never dropped for a
missing contact while anyone above can be reached.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lianwatch.lifecycle.config import NotifyPolicy
from lianwatch.lifecycle.machine import CHAIN
from lianwatch.lifecycle.texts import PhoneHasher, mask_phone, normalize_phone
from lianwatch.models.alert import Alert

__all__ = ["Recipient", "Router"]


@dataclass(frozen=True)
class Recipient:
    phone: str  # normalized digits; only ever kept in memory
    role: str
    name: str
    phone_hash: str
    phone_masked: str


class Router:
    def __init__(self, ref: Any, policy: NotifyPolicy, hasher: PhoneHasher) -> None:
        self.ref = ref
        self.policy = policy
        self.hasher = hasher

    # ------------------------------------------------------------------ scope
    def scope(self, a: Alert) -> tuple[str, str | None]:
        ref = self.ref
        if a.subject_type == "village":
            return "village", a.village_id or a.subject_id
        if a.subject_type == "project":
            if a.village_id:
                return "village", a.village_id
            p = ref.projects.get(a.subject_id) if ref is not None else None
            if p is not None and p.village_id:
                return "village", p.village_id
            unit = a.unit_id or (p.unit_id if p is not None else None)
            return ("unit", unit) if unit else ("none", None)
        unit = a.unit_id
        if not unit and ref is not None:
            unit = ref.unit_of_vehicle(a.subject_id)
        if unit:
            return "unit", unit
        if a.village_id:
            return "village", a.village_id
        return "none", None

    # ------------------------------------------------------------------ contacts
    def contacts(self, a: Alert) -> dict[str, list[Any]]:
        kind, sid = self.scope(a)
        out: dict[str, list[Any]] = {}
        if kind == "village":
            v = self.ref.villages.get(sid) if self.ref is not None else None
            if v is not None:
                _add(out, v.contacts)
                if "town_discipline" not in out:
                    _add(out, self._from_villages("town_discipline", town=v.town))
                if "county_discipline" not in out:
                    _add(out, self._from_villages("county_discipline", county=v.county))
        elif kind == "unit":
            _add(out, self.policy.units.get(sid or "", []))
            have = set(out)
            _add(out, [c for c in self.policy.unit_default if c.role not in have])
        if "county_discipline" not in out:
            _add(out, self.policy.county_contacts)
        if "county_discipline" not in out and kind in ("unit", "none"):
            _add(out, self._from_villages("county_discipline"))
        return out

    def _from_villages(self, role: str, town: str | None = None,
                       county: str | None = None) -> list[Any]:
        """The most common contact with ``role`` among the (town's / county's) villages."""
        if self.ref is None:
            return []
        seen: Counter[str] = Counter()
        first: dict[str, Any] = {}
        for v in self.ref.villages.values():
            if town is not None and v.town != town:
                continue
            if county is not None and v.county != county:
                continue
            for c in v.contacts:
                if c.role == role:
                    k = normalize_phone(c.phone)
                    seen[k] += 1
                    first.setdefault(k, c)
        if not seen:
            return []
        best = max(seen.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return [first[best]]

    def recipients(self, a: Alert, roles: Sequence[str]) -> list[Recipient]:
        """The people for ``roles``; a role without anyone passes up the chain."""
        by_role = self.contacts(a)
        out: list[Recipient] = []
        seen: set[str] = set()
        for role in roles:
            cs = by_role.get(role)
            if not cs and role in CHAIN:
                for up in CHAIN[CHAIN.index(role) + 1:]:
                    if by_role.get(up):
                        cs, role = by_role[up], up
                        break
            for c in cs or ():
                p = normalize_phone(c.phone)
                if not p or p in seen:
                    continue
                seen.add(p)
                out.append(Recipient(phone=p, role=role, name=c.name, phone_hash=self.hasher(p),
                                     phone_masked=mask_phone(p)))
        return out

    def directory(self) -> dict[str, Recipient]:
        """Every reachable contact by phone hash (to find a number again for a retry)."""
        out: dict[str, Recipient] = {}

        def put(c: Any) -> None:
            p = normalize_phone(c.phone)
            if p:
                h = self.hasher(p)
                out.setdefault(h, Recipient(p, c.role, c.name, h, mask_phone(p)))

        if self.ref is not None:
            for v in self.ref.villages.values():
                for c in v.contacts:
                    put(c)
        for cs in self.policy.units.values():
            for c in cs:
                put(c)
        for c in (*self.policy.unit_default, *self.policy.county_contacts):
            put(c)
        return out

    # ------------------------------------------------------------------ labels
    def subject_label(self, a: Alert, max_len: int = 14) -> str:
        """What the SMS names: a vehicle's plate, a village's or a project's name."""
        ref = self.ref
        label = a.subject_id
        if ref is not None:
            if a.subject_type == "vehicle":
                v = ref.vehicles.get(a.subject_id)
                label = (v.plate or label) if v is not None else label
            elif a.subject_type == "village":
                v = ref.villages.get(a.subject_id)
                label = (v.name or label) if v is not None else label
            elif a.subject_type == "project":
                p = ref.projects.get(a.subject_id)
                label = (p.name or label) if p is not None else label
        return label if len(label) <= max_len else label[: max_len - 1] + "…"


def _add(out: dict[str, list[Any]], contacts: Sequence[Any]) -> None:
    for c in contacts:
        out.setdefault(c.role, []).append(c)
