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

__all__ = ["FuelRules", "PaymentRules", "ProjectRules", "SubsidyRules", "LaborRules", "TenderRules",
           "ContractRules", "VehicleRules", "RuleSet", "RULES", "RulesError", "rule_name",
           "rule_ids", "V1_RULES"]


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
    over_budget_factor: float = Field(1.10, gt=0, description="project.paid_over_budget")


class SubsidyRules(_Rules):
    """``subsidy.*`` (CONTRACT v2)."""

    orphan_max_age: int = Field(18, ge=1, description="orphan payouts end at this birthday")
    elderly_min_age: int = Field(80, ge=1, description="elderly payouts start at this birthday")
    #: programmes checked against the company register and ties to officials
    hardship_programmes: tuple[str, ...] = ("dibao", "tekun", "temporary")
    retention_days: float = Field(400.0, ge=400.0, description="payouts kept per person")


class LaborRules(_Rules):
    """``labor.*`` (CONTRACT v2)."""

    max_days_per_year: float = Field(300.0, gt=0, description="labor.excess_days")
    max_days_per_date: float = Field(1.0, gt=0, description="labor.double_booked")
    retention_days: float = Field(400.0, ge=400.0, description="work records kept per person")


class TenderRules(_Rules):
    """``tender.*`` (CONTRACT v2)."""

    min_period_days: float = Field(20.0, ge=0, description="tender.short_period")
    min_bids: int = Field(3, ge=1, description="tender.too_few_bids")
    close_price_ratio: float = Field(0.001, ge=0, description="tender.close_prices")
    tender_threshold_yuan: float = Field(400000.0, gt=0, description="when the village has none")
    split_window_days: float = Field(90.0, gt=0, description="tender.split")
    cobid_window_days: float = Field(365.0, gt=0, description="tender.cobidding")
    cobid_min_tenders: int = Field(4, ge=2, description="tender.cobidding")
    win_min_count: int = Field(10, ge=1, description="tender.win_concentration")
    win_min_share: float = Field(0.30, gt=0, le=1, description="tender.win_concentration")
    retention_days: float = Field(400.0, ge=400.0, description="tenders kept per subject")


class ContractRules(_Rules):
    """``contract.*`` (CONTRACT v2)."""

    overdue_yellow_days: float = Field(30.0, ge=0, description="contract.receivable_overdue")
    overdue_red_days: float = Field(60.0, ge=0, description="raised to red")
    expired_grace_days: float = Field(30.0, ge=0, description="contract.expired")
    overlong_years: int = Field(20, ge=1, description="contract.overlong (leases)")
    flat_min_years: int = Field(10, ge=1, description="contract.flat_rent")
    flat_min_instalments: int = Field(2, ge=2, description="contract.flat_rent")


class VehicleRules(_Rules):
    """``vehicle.*`` and the second-tier ``fuel.*`` rules (CONTRACT v2)."""

    card_speed_kmh: float = Field(120.0, gt=0, description="fuel.card_velocity")
    card_min_km: float = Field(5.0, ge=0, description="fuel.card_velocity")
    consumption_margin_l: float = Field(30.0, ge=0, description="fuel.consumption")
    consumption_factor: float = Field(1.3, gt=0, description="fuel.consumption")
    holiday_min_km: float = Field(30.0, ge=0, description="vehicle.holiday_use")
    overclaim_ratio: float = Field(0.15, ge=0, description="vehicle.mileage_overclaim")
    overclaim_min_km: float = Field(100.0, ge=0, description="vehicle.mileage_overclaim")
    distance_retention_days: float = Field(400.0, ge=400.0, description="GPS km per day kept")
    #: units whose cars may drive on holidays (e.g. emergency services)
    holiday_exempt_units: tuple[str, ...] = ()
    #: dates (YYYY-MM-DD) the office adds as holidays / as working days to the official calendar
    extra_holidays: tuple[str, ...] = ()
    extra_workdays: tuple[str, ...] = ()


_FAMILIES = {"fuel": FuelRules, "payment": PaymentRules, "project": ProjectRules,
             "subsidy": SubsidyRules, "labor": LaborRules, "tender": TenderRules,
             "contract": ContractRules, "vehicle": VehicleRules}
#: families whose settings a ``[village.ID.family]`` table may change; the rest: ``[unit.ID.family]``
_VILLAGE_FAMILIES = ("payment", "project", "subsidy", "labor", "tender", "contract")
_UNIT_FAMILIES = ("fuel", "project", "vehicle", "tender")

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
    # ------------------------------------------------------------ contract v2
    "subsidy.deceased": {"family": "subsidy", "subject": "person", "level": "red", "since": 2,
                    "zh": "向已故人员发放补助", "en": "payout to a deceased person"},
    "subsidy.age_ineligible": {"family": "subsidy", "subject": "person", "level": "red", "since": 2,
                    "zh": "补助对象年龄不符", "en": "payout outside the programme's age"},
    "subsidy.company_owner": {"family": "subsidy", "subject": "person", "level": "red", "since": 2,
                    "zh": "企业主领取困难救助", "en": "hardship aid to a company owner"},
    "subsidy.official_related": {"family": "subsidy", "subject": "person", "level": "red", "since": 2,
                    "zh": "干部关联人员领取困难救助", "en": "hardship aid to an official's relative"},
    "subsidy.duplicate": {"family": "subsidy", "subject": "person", "level": "yellow", "since": 2,
                    "zh": "同期重复发放补助", "en": "paid twice for one period"},
    "labor.excess_days": {"family": "labor", "subject": "person", "level": "yellow", "since": 2,
                    "zh": "年度用工天数超限", "en": "over 300 work-days in a year"},
    "labor.double_booked": {"family": "labor", "subject": "person", "level": "red", "since": 2,
                    "zh": "同日重复记工", "en": "more than a day's work on one date"},
    "labor.official_related": {"family": "labor", "subject": "person", "level": "yellow", "since": 2,
                    "zh": "干部关联人员参与村级用工", "en": "village labour by a person tied to an official"},
    "tender.short_period": {"family": "tender", "subject": "tender", "level": "yellow", "since": 2,
                    "zh": "招标公告期过短", "en": "tender period too short"},
    "tender.too_few_bids": {"family": "tender", "subject": "tender", "level": "red", "since": 2,
                    "zh": "投标人不足三家", "en": "too few bids"},
    "tender.close_prices": {"family": "tender", "subject": "tender", "level": "red", "since": 2,
                    "zh": "投标报价异常接近", "en": "bid prices too close"},
    "tender.related_bidders": {"family": "tender", "subject": "tender", "level": "red", "since": 2,
                    "zh": "投标人之间存在关联", "en": "related bidders"},
    "tender.official_bidder": {"family": "tender", "subject": "tender", "level": "red", "since": 2,
                    "zh": "干部关联企业投标", "en": "bidder tied to an official"},
    "tender.split": {"family": "tender", "subject": "village", "level": "red", "since": 2,
                    "zh": "疑似拆分项目规避招标", "en": "works split to stay under the tender line"},
    "tender.cobidding": {"family": "tender", "subject": "company", "level": "red", "since": 2,
                    "zh": "疑似围标串标", "en": "co-bidding ring"},
    "tender.win_concentration": {"family": "tender", "subject": "company", "level": "yellow", "since": 2,
                    "zh": "中标过度集中", "en": "one company winning too much"},
    "project.paid_over_budget": {"family": "project", "subject": "project", "level": "red", "since": 2,
                    "zh": "资金拨付超预算", "en": "paid over budget"},
    "project.started_before_award": {"family": "project", "subject": "project", "level": "yellow", "since": 2,
                    "zh": "先开工后定标", "en": "started before the award"},
    "contract.receivable_overdue": {"family": "contract", "subject": "contract", "level": "yellow", "since": 2,
                    "zh": "合同款逾期未收", "en": "contract payment overdue"},
    "contract.expired": {"family": "contract", "subject": "contract", "level": "yellow", "since": 2,
                    "zh": "合同到期未续签", "en": "contract expired, asset not re-let"},
    "contract.overlong": {"family": "contract", "subject": "contract", "level": "red", "since": 2,
                    "zh": "租赁期限超过二十年", "en": "lease over 20 years"},
    "contract.flat_rent": {"family": "contract", "subject": "contract", "level": "yellow", "since": 2,
                    "zh": "长期合同租金未递增", "en": "long contract with flat rent"},
    "contract.related_party": {"family": "contract", "subject": "contract", "level": "red", "since": 2,
                    "zh": "干部关联方承租承包", "en": "contract with a party tied to an official"},
    "fuel.card_velocity": {"family": "fuel", "subject": "vehicle", "level": "red", "since": 2,
                    "zh": "油卡异地连刷", "en": "fuel card used too far apart too fast"},
    "fuel.card_mismatch": {"family": "fuel", "subject": "vehicle", "level": "red", "since": 2,
                    "zh": "油卡与车辆不符", "en": "card not the car's"},
    "fuel.consumption": {"family": "fuel", "subject": "vehicle", "level": "yellow", "since": 2,
                    "zh": "油耗超出定额", "en": "fuel over the car's norm"},
    "vehicle.holiday_use": {"family": "vehicle", "subject": "vehicle", "level": "yellow", "since": 2,
                    "zh": "节假日公车出行", "en": "official car driven on a holiday"},
    "vehicle.mileage_overclaim": {"family": "vehicle", "subject": "vehicle", "level": "red", "since": 2,
                    "zh": "虚报里程补助", "en": "inflated mileage claim"},
}


#: the rules of contract version 1 (a v1 directory gives only these)
V1_RULES: tuple[str, ...] = tuple(r for r, m in RULES.items() if m.get("since", 1) == 1)


def rule_ids(family: str | None = None) -> tuple[str, ...]:
    """The catalogue's rule ids, in catalogue order (of one family when given)."""
    return tuple(r for r, m in RULES.items() if family is None or m["family"] == family)


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
            self._defaults = {fam: cls(**self._base[fam]) for fam, cls in _FAMILIES.items()}
            for uid in self._units:
                for fam in _UNIT_FAMILIES:
                    self.get(fam, unit_id=uid)
            for vid in self._villages:
                for fam in _VILLAGE_FAMILIES:
                    self.get(fam, village_id=vid)
        except Exception as exc:  # pydantic.ValidationError → RulesError
            raise RulesError(f"invalid rules ({source}): {exc}") from exc
        self.fuel: FuelRules = self._defaults["fuel"]  # type: ignore[assignment]
        self.payment: PaymentRules = self._defaults["payment"]  # type: ignore[assignment]
        self.project: ProjectRules = self._defaults["project"]  # type: ignore[assignment]
        self.subsidy: SubsidyRules = self._defaults["subsidy"]  # type: ignore[assignment]
        self.labor: LaborRules = self._defaults["labor"]  # type: ignore[assignment]
        self.tender: TenderRules = self._defaults["tender"]  # type: ignore[assignment]
        self.contract: ContractRules = self._defaults["contract"]  # type: ignore[assignment]
        self.vehicle: VehicleRules = self._defaults["vehicle"]  # type: ignore[assignment]

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

    def get(self, family: str, village_id: str | None = None, unit_id: str | None = None) -> Any:
        """A family's settings for a subject: the village's overrides (``[village.ID.family]``)
        first, then the unit's (``[unit.ID.family]``), else the family's defaults."""
        if village_id and village_id in self._villages and family in _VILLAGE_FAMILIES:
            return self._lookup(family, "village", village_id)
        if unit_id and unit_id in self._units and family in _UNIT_FAMILIES:
            return self._lookup(family, "unit", unit_id)
        return self._defaults[family]

    def fuel_for(self, unit_id: str | None) -> FuelRules:
        return self.get("fuel", unit_id=unit_id)

    def payment_for(self, village_id: str | None) -> PaymentRules:
        return self.get("payment", village_id=village_id)

    def project_for(self, village_id: str | None, unit_id: str | None) -> ProjectRules:
        return self.get("project", village_id=village_id, unit_id=unit_id)

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled

    def fingerprint(self) -> str:
        """A short hash of the effective settings (recorded with replays and incidents)."""
        import json

        blob = json.dumps(
            {**{fam: r.model_dump() for fam, r in self._defaults.items()}, "unit": self._units,
             "village": self._villages, "disabled": sorted(self.disabled)},
            sort_keys=True, ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
