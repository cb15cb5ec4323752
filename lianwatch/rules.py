"""Rule settings: the contract's thresholds as defaults, a TOML file to change them.

A rules file has one table per family and optional per-unit / per-village
overrides::

    [fuel]
    station_radius_m = 500

    [payment]
    cash_limit_yuan = 5000

    [unit.U03.fuel]          # this unit's vehicles only
    station_radius_m = 800

    [village.VL012.payment]  # this village only
    cash_limit_yuan = 2000

    [disabled]
    rules = ["fuel.type_mismatch"]

>>> rs = RuleSet.from_toml_text('[fuel]\\nstation_radius_m = 700\\n[unit.U3.fuel]\\nmin_liters = 30')
>>> rs.fuel_for("U3").station_radius_m, rs.fuel_for("U3").min_liters, rs.fuel_for("U9").min_liters
(700.0, 30.0, 20.0)
"""

from __future__ import annotations

import hashlib
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lianwatch.errors import RulesError

__all__ = ["FuelRules", "PaymentRules", "ProjectRules", "RuleSet", "RULES", "RulesError",
           "rule_name"]


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FuelRules(_Rules):
    station_radius_m: float = Field(500.0, gt=0, description="fuel.not_at_station distance")
    position_window_min: float = Field(10.0, gt=0, description="pings used for the position")
    parked_move_m: float = Field(100.0, gt=0, description="moved less → parked")
    gap_window_min: float = Field(30.0, gt=0, description="fuel.gps_gap: no ping within ±this")
    capacity_factor: float = Field(1.05, gt=0)
    capacity_window_h: float = Field(6.0, gt=0)
    min_distance_km: float = Field(10.0, ge=0, description="fuel.no_distance")
    min_liters: float = Field(20.0, ge=0, description="fuel.no_distance: fills above this")
    jitter_m: float = Field(50.0, ge=0, description="moves below this do not add distance")
    track_retention_h: float = Field(48.0, gt=0, description="how much track is kept for late fills")
    allowed_lateness_min: float = Field(10.0, ge=0, description="streaming watermark lag")


class UnusualRules(_Rules):
    warmup: int = Field(40, ge=1, description="payments a village model learns before it may alert")
    quantile: float = Field(0.99, gt=0.5, lt=1.0, description="alert above this quantile of scores")
    min_score: float = Field(0.0, ge=0.0, description="and above this absolute score")
    window: int = Field(500, ge=50, description="recent scores kept for the quantile")
    seed: int = 42


class PaymentRules(_Rules):
    approval_threshold_yuan: float = Field(50000.0, gt=0, description="when the village has none")
    split_window_days: float = Field(30.0, gt=0)
    duplicate_window_days: float = Field(7.0, gt=0)
    cash_limit_yuan: float = Field(5000.0, ge=0)
    unusual: UnusualRules = UnusualRules()


class ProjectRules(_Rules):
    start_grace_days: float = Field(7.0, ge=0, description="overdue_start yellow")
    start_red_days: float = Field(30.0, ge=0, description="overdue_start raised to red")
    stall_days: float = Field(60.0, gt=0)
    completion_grace_days: float = Field(30.0, ge=0)
    disbursement_gap: float = Field(0.30, ge=0)


_FAMILIES = {"fuel": FuelRules, "payment": PaymentRules, "project": ProjectRules}

RULES: dict[str, dict[str, str]] = {
    "fuel.not_at_station": {"family": "fuel", "subject": "vehicle", "level": "red",
                    "zh": "加油时车辆不在加油站", "en": "vehicle away from the station while fuelling"},
    "fuel.gps_gap": {"family": "fuel", "subject": "vehicle", "level": "yellow",
                    "zh": "加油时段无车辆定位", "en": "no GPS around a fuel purchase"},
    "fuel.over_capacity": {"family": "fuel", "subject": "vehicle", "level": "red",
                    "zh": "加油量超过油箱容量", "en": "fuel over tank capacity"},
    "fuel.no_distance": {"family": "fuel", "subject": "vehicle", "level": "yellow",
                    "zh": "未行驶即加油", "en": "fuelled without driving"},
    "fuel.type_mismatch": {"family": "fuel", "subject": "vehicle", "level": "yellow",
                    "zh": "加油油品与车辆不符", "en": "wrong fuel type"},
    "payment.no_approval": {"family": "payment", "subject": "village", "level": "red",
                    "zh": "大额支付未经审批", "en": "large payment without approval"},
    "payment.split": {"family": "payment", "subject": "village", "level": "red",
                    "zh": "疑似拆分支付规避审批", "en": "split payments"},
    "payment.conflict_of_interest": {"family": "payment", "subject": "village", "level": "red",
                    "zh": "向关联方付款", "en": "payment to a related party"},
    "payment.duplicate": {"family": "payment", "subject": "village", "level": "yellow",
                    "zh": "疑似重复支付", "en": "duplicate payment"},
    "payment.cash": {"family": "payment", "subject": "village", "level": "yellow",
                    "zh": "大额现金支付", "en": "large cash payment"},
    "payment.unusual": {"family": "payment", "subject": "village", "level": "yellow",
                    "zh": "支付异常", "en": "unusual payment"},
    "project.overdue_start": {"family": "project", "subject": "project", "level": "yellow",
                    "zh": "项目逾期未开工", "en": "project not started"},
    "project.stalled": {"family": "project", "subject": "project", "level": "yellow",
                    "zh": "项目长期停滞", "en": "project stalled"},
    "project.overdue_completion": {"family": "project", "subject": "project", "level": "yellow",
                    "zh": "项目逾期未完工", "en": "project overdue"},
    "project.disbursement_mismatch": {"family": "project", "subject": "project", "level": "red",
                    "zh": "资金拨付与进度不符", "en": "disbursement ahead of progress"},
}


def rule_name(rule: str, lang: str = "zh") -> str:
    """The rule's short name for people (Chinese by default)."""
    meta = RULES.get(rule)
    return meta[lang if lang in ("zh", "en") else "zh"] if meta else rule


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class RuleSet:
    """All rule settings, with per-unit and per-village overrides resolved on demand."""

    def __init__(self, data: dict[str, Any] | None = None, source: str = "defaults"):
        data = dict(data or {})
        self.source = source
        self.raw = data
        # lifecycle / notify sections belong to the notifier's policy (lianwatch.lifecycle)
        unknown = set(data) - {*_FAMILIES, "unit", "village", "disabled", "meta", "lifecycle",
                               "notify"}
        if unknown:
            raise RulesError(f"unknown section(s) in rules: {', '.join(sorted(unknown))}")
        self._base = {fam: data.get(fam, {}) for fam in _FAMILIES}
        self._units: dict[str, dict[str, Any]] = data.get("unit", {})
        self._villages: dict[str, dict[str, Any]] = data.get("village", {})
        disabled = data.get("disabled", {}).get("rules", [])
        bad = [r for r in disabled if r not in RULES]
        if bad:
            raise RulesError(f"unknown rule id(s) in [disabled]: {', '.join(bad)}")
        self.disabled = frozenset(disabled)
        self._lookup = lru_cache(maxsize=4096)(self._resolve)
        try:  # validate everything once, up front
            self.fuel = FuelRules(**self._base["fuel"])
            self.payment = PaymentRules(**self._base["payment"])
            self.project = ProjectRules(**self._base["project"])
            for uid in self._units:
                self.fuel_for(uid)
                self.project_for(None, uid)
            for vid in self._villages:
                self.payment_for(vid)
                self.project_for(vid, None)
        except Exception as exc:  # pydantic.ValidationError → RulesError
            raise RulesError(f"invalid rules ({source}): {exc}") from exc

    @classmethod
    def from_toml_text(cls, text: str, source: str = "<text>") -> "RuleSet":
        try:
            return cls(tomllib.loads(text), source)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{source}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path | None) -> "RuleSet":
        if path is None:
            return cls()
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read rules file {p}: {exc.strerror}") from exc
        return cls.from_toml_text(text, str(p))

    def _resolve(self, family: str, scope: str | None, scope_id: str | None) -> _Rules:
        data = self._base[family]
        if scope == "unit" and scope_id in self._units:
            data = _merge(data, self._units[scope_id].get(family, {}))
        elif scope == "village" and scope_id in self._villages:
            data = _merge(data, self._villages[scope_id].get(family, {}))
        return _FAMILIES[family](**data)

    def fuel_for(self, unit_id: str | None) -> FuelRules:
        if not unit_id or unit_id not in self._units:
            return self.fuel
        return self._lookup("fuel", "unit", unit_id)  # type: ignore[return-value]

    def payment_for(self, village_id: str | None) -> PaymentRules:
        if not village_id or village_id not in self._villages:
            return self.payment
        return self._lookup("payment", "village", village_id)  # type: ignore[return-value]

    def project_for(self, village_id: str | None, unit_id: str | None) -> ProjectRules:
        if village_id and village_id in self._villages:
            return self._lookup("project", "village", village_id)  # type: ignore[return-value]
        if unit_id and unit_id in self._units:
            return self._lookup("project", "unit", unit_id)  # type: ignore[return-value]
        return self.project

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled

    def fingerprint(self) -> str:
        """A short hash of the effective settings (recorded with replays and incidents)."""
        import json

        blob = json.dumps(
            {"fuel": self.fuel.model_dump(), "payment": self.payment.model_dump(),
             "project": self.project.model_dump(), "unit": self._units,
             "village": self._villages, "disabled": sorted(self.disabled)},
            sort_keys=True, ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
