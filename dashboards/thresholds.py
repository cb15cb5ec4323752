"""The dashboards' thresholds, read from the rules in force: the one place where a
panel's number meets its :mod:`lianwatch.rules` (or lifecycle) setting.

Panels never write a rule's number. They name the setting:

* in SQL and in titles/descriptions, a token ``{{th:family.setting}}``
  (``{{th:project.start_grace_days}}``); ``%`` after the name shows a fraction as
  a percentage (``{{th:project.disbursement_gap%}}`` → ``30``); ``@col,…`` makes
  per-village / per-unit (``project``, ``payment``, ``fuel``) or per-rule
  (``lifecycle``) overrides of the rules file visible to SQL, as a ``multiIf`` on
  those columns (``{{th:project.start_grace_days@village_id,unit_id}}``,
  ``{{th:lifecycle.red_days@a.rule}}``);
* in colour steps (``Column.thresholds``, ``Panel.thresholds``), a :class:`Th`
  (``Th("project.stall_days", 0.5)``: half the setting).

Families: ``fuel``, ``payment``, ``project`` (:class:`lianwatch.rules.RuleSet`)
and ``lifecycle`` (:class:`lianwatch.lifecycle.config.LifecyclePolicy`:
``red_days``, ``yellow_days``). Both renderers (Grafana JSON, the HTML report)
render through one :class:`Thresholds`; the CLI makes it from the rules file in
force (:meth:`Thresholds.load`).

>>> th = Thresholds(RuleSet.from_toml_text("[project]\\nstart_grace_days = 14"))
>>> th.render("addDays(planned_start, {{th:project.start_grace_days}}) > {{th:project.disbursement_gap}}")
'addDays(planned_start, 14) > 0.3'
>>> th.render("拨付超进度{{th:project.disbursement_gap%}}%以上"), th.step(Th("project.stall_days", 0.5))
('拨付超进度30%以上', 30.0)
>>> v = Thresholds(RuleSet.from_toml_text("[village.VL1.project]\\nstart_grace_days = 3"))
>>> v.render("{{th:project.start_grace_days@village_id,unit_id}}")
"multiIf(village_id = 'VL1', 3, 7)"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lianwatch.lifecycle.config import LifecyclePolicy
from lianwatch.rules import RuleSet

from .labels import sql_str

__all__ = ["Th", "Thresholds", "DEFAULT"]

_TOKEN = re.compile(r"\{\{th:([a-z]+)\.([a-z_]+)(%?)(?:@([^}]*))?\}\}")


@dataclass(frozen=True)
class Th:
    """A colour step at a rules setting (times ``factor``)."""

    key: str
    factor: float = 1.0


def _num(v: float) -> str:
    return "%.10g" % v


class Thresholds:
    def __init__(self, rules: RuleSet | None = None, lifecycle: LifecyclePolicy | None = None) -> None:
        self.rules = rules or RuleSet()
        self.lifecycle = lifecycle or LifecyclePolicy()

    @classmethod
    def load(cls, rules_file: str | None, lifecycle: LifecyclePolicy | None = None) -> "Thresholds":
        """The rules file in force (None: the contract's defaults)."""
        return cls(RuleSet.load(rules_file), lifecycle)

    # ------------------------------------------------------------------ values
    def value(self, family: str, name: str) -> float:
        if family == "lifecycle":
            return float(getattr(self.lifecycle, name))
        if family not in ("fuel", "payment", "project"):
            raise KeyError(f"no thresholds family {family!r}")
        return float(getattr(getattr(self.rules, family), name))

    def step(self, v: Any) -> Any:
        """A colour step's value: a :class:`Th` read from the rules, anything else as is."""
        if isinstance(v, Th):
            family, name = v.key.split(".", 1)
            return self.value(family, name) * v.factor
        return v

    def steps(self, steps: Any) -> Any:
        return None if steps is None else tuple((self.step(v), c) for v, c in steps)

    def _overrides(self, family: str, name: str, cols: list[str]) -> list[tuple[str, str, float]]:
        """(column, id, value) for every scope whose value differs from the default."""
        out: list[tuple[str, str, float]] = []
        default = self.value(family, name)
        if family == "lifecycle":
            for rule, per in sorted(self.lifecycle.rules.items()):
                level = name.removesuffix("_days")
                if cols and level in per and float(per[level]) != default:  # type: ignore[index]
                    out.append((cols[0], rule, float(per[level])))  # type: ignore[index]
            return out
        raw = self.rules.raw
        village_col = cols[0] if cols else None
        unit_col = cols[1] if len(cols) > 1 else (cols[0] if family == "fuel" and cols else None)
        if village_col and family in ("payment", "project"):
            for vid in sorted(raw.get("village", {})):
                r = (self.rules.payment_for(vid) if family == "payment"
                     else self.rules.project_for(vid, None))
                if float(getattr(r, name)) != default:
                    out.append((village_col, vid, float(getattr(r, name))))
        if unit_col and family in ("fuel", "project"):
            for uid in sorted(raw.get("unit", {})):
                r = self.rules.fuel_for(uid) if family == "fuel" else self.rules.project_for(None, uid)
                if float(getattr(r, name)) != default:
                    out.append((unit_col, uid, float(getattr(r, name))))
        return out

    def _token(self, m: re.Match) -> str:
        family, name, pct, at = m.group(1), m.group(2), m.group(3), m.group(4)
        scale = 100.0 if pct else 1.0
        default = _num(self.value(family, name) * scale)
        cols = [c.strip() for c in at.split(",")] if at else []
        over = self._overrides(family, name, cols) if cols else []
        if not over:
            return default
        arms = ", ".join(f"{col} = {sql_str(key)}, {_num(v * scale)}" for col, key, v in over)
        return f"multiIf({arms}, {default})"

    def render(self, text: str) -> str:
        """Every ``{{th:…}}`` token of an SQL text or a title replaced by its value."""
        return _TOKEN.sub(self._token, text) if "{{th:" in text else text


DEFAULT = Thresholds()
