"""The records of the data contract (CONTRACT.md §1) as strict pydantic schemas.

Validation is strict where the contract is: coordinates in range, litres and
money ≥ 0, known enums, RFC 3339 timestamps, real calendar dates. Types are
strict too: a number is a JSON number (``true`` and ``"30.2"`` are not), a
flag is ``true``/``false`` (``1`` is not), a text or an id is a JSON string
(an id sent as a number is not). What the contract allows stays accepted:
naive local timestamps, fuel grades ``92``, ``"92"``, ``"92#"``. Unknown extra
fields are ignored (feeds grow fields; that must not break us).

Reference records (vehicles, villages, officials, projects; in version 2
persons, companies, contracts) are pydantic models. Events are TypedDicts
validated by pydantic into plain dicts of JSON values: see
:mod:`lianwatch.models.parse`, which also turns a naive timestamp into local
time in the configured zone, adds ``t`` (epoch seconds) and makes the checks
that need more than one field (a tender's bids, its deadline after its notice).

>>> Vehicle.model_validate({"vehicle_id": "V1", "unit_id": "U1", "tank_liters": 70,
...                         "fuel_type": "0#"}).fuel_type
'0'
>>> Village.model_validate({"village_id": "VL1", "approval_threshold_yuan": None}
...                        ).tender_threshold_yuan
400000.0
>>> Official.model_validate({"person_id": "P1", "village_id": "VL1"}).scope
('VL1',)
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict

from .clock import DEFAULT_TZ
from .streams import SPECS

__all__ = [
    "DEFAULT_TZ", "STARTED_STAGES", "EVENT_MODELS", "REFERENCE_MODELS", "PROGRAMMES",
    "FIRST_DAY", "LAST_DAY", "contract_error", "shift_years",
    "Vehicle", "Depot", "Village", "Contact", "Official", "Project", "Person", "Company",
    "Contract", "Instalment",
    "Gps", "Fuel", "Payment", "Progress", "Subsidy", "Labor", "Tender", "Bid", "Receipt", "Mileage",
]

#: calendar dates the contract's records may carry (birth dates to the end of long leases)
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)


def contract_error(message: str, **ctx: Any) -> PydanticCustomError:
    """A validation error whose message is the whole reason (no ``Value error,`` prefix)."""
    return PydanticCustomError("contract", message, ctx or None)


# --------------------------------------------------------------------- field types
def _number(**kw: Any) -> Any:
    # strict: an int or float JSON number; not a bool, not a numeric string, not NaN/inf
    return Annotated[float, Field(strict=True, allow_inf_nan=False, **kw)]


Lat = _number(ge=-90.0, le=90.0)
Lon = _number(ge=-180.0, le=180.0)
NonNeg = _number(ge=0.0)
Positive = _number(gt=0.0)
Id = Annotated[str, Field(strict=True, min_length=1, max_length=128)]
Text = Annotated[str, Field(strict=True)]
Flag = Annotated[bool, Field(strict=True)]
Ts = Annotated[str, Field(strict=True, min_length=10, max_length=40)]
TankLiters = _number(gt=0.0, le=2000.0)
FuelNorm = _number(gt=0.0, le=100.0)  # litres per 100 km
Speed = _number(ge=0.0, le=400.0)
Percent = _number(ge=0.0, le=100.0)
WorkDays = _number(gt=0.0, le=1.0)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def _day_value(v: Any) -> date:
    if isinstance(v, str) and _DAY.fullmatch(v):
        try:
            d = date.fromisoformat(v)
        except ValueError as exc:
            raise contract_error("not a real date ({why})", why=str(exc)) from None
    elif isinstance(v, date) and type(v) is date:  # a Python caller's date object
        d = v
    else:
        raise contract_error("a date is text YYYY-MM-DD")
    if not FIRST_DAY <= d <= LAST_DAY:
        raise contract_error("date {d} is outside 1900-01-01 … 2199-12-31", d=d.isoformat())
    return d


def _day_text(v: str) -> str:
    _day_value(v)
    return v


def _month_text(v: str) -> str:
    m = _MONTH.fullmatch(v)
    if m is None:
        raise contract_error("a month is text YYYY-MM")
    if not FIRST_DAY.year <= int(m.group(1)) <= LAST_DAY.year:
        raise contract_error("month {m} is outside 1900-01 … 2199-12", m=v)
    return v


#: a calendar date as a :class:`datetime.date` (reference records)
Day = Annotated[date, BeforeValidator(_day_value)]
#: a calendar date kept as its ``YYYY-MM-DD`` text (events stay JSON values)
DayText = Annotated[str, Field(strict=True), AfterValidator(_day_text)]
#: a month, ``YYYY-MM``
Month = Annotated[str, Field(strict=True), AfterValidator(_month_text)]

FuelGrade = Literal["0", "89", "90", "92", "93", "95", "97", "98", "E92", "E95"]
Datum = Literal["wgs84", "gcj02", "bd09"]
Channel = Literal["card", "transfer", "cash"]
Category = Literal[
    "engineering", "procurement", "labor", "subsidy", "services",
    "travel", "reception", "office", "other",
]
Stage = Literal[
    "approved", "tendered", "contracted", "started", "in_progress", "completed", "suspended",
]
Role = Literal[
    "secretary", "director", "accountant", "supervisor", "town_discipline", "county_discipline",
]
Programme = Literal["dibao", "tekun", "orphan", "elderly", "disability", "pension", "temporary"]
PROGRAMMES: tuple[str, ...] = Programme.__args__  # type: ignore[attr-defined]
Method = Literal["open", "invited", "inquiry", "direct"]
ContractKind = Literal["lease", "contracting"]

#: stages at which a project counts as started (for ``project.overdue_start``)
STARTED_STAGES = frozenset({"started", "in_progress", "completed", "suspended"})


def _strip_fuel_type(v: Any) -> Any:
    # card companies send 92, "92", "92#" or "0#"; normalise to the bare grade
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if isinstance(v, str):
        v = v.strip().rstrip("#").upper()
        if v.endswith("号"):
            v = v[:-1]
    return v


#: a fuel grade: "0" is diesel; "92#", 92 and "92号" all read as "92"
FuelType = Annotated[FuelGrade, BeforeValidator(_strip_fuel_type)]


def _blank_is_none(v: Any) -> Any:
    return None if isinstance(v, str) and not v.strip() else v


def _none_is(default: float):  # noqa: ANN202 - a before-validator: null → the contract's default
    return BeforeValidator(lambda v: default if v is None else v)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    #: a reference kind's id field (from :data:`~lianwatch.models.streams.SPECS`)
    id_field: ClassVar[str] = ""

    @property
    def key(self) -> str:
        """The record's id (``vehicle_id``, ``person_id``…)."""
        return getattr(self, self.id_field)


# --------------------------------------------------------------------- reference


class Depot(_Record):
    lat: Lat
    lon: Lon
    radius_m: NonNeg = 150.0


class Vehicle(_Record):
    vehicle_id: Id
    plate: Text = ""
    unit_id: Id
    unit_name: Text = ""
    tank_liters: TankLiters
    fuel_type: FuelType = "92"
    depot: Depot | None = None
    card_ids: list[Id] = Field(default_factory=list)
    #: version 2: the unit's fuel norm for the car, litres per 100 km
    norm_l_per_100km: FuelNorm | None = None


class Contact(_Record):
    role: Role
    name: Text
    phone: Annotated[str, Field(strict=True, pattern=r"^\+?\d[\d\- ]{4,19}$")]


class Village(_Record):
    village_id: Id
    name: Text = ""
    town: Text = ""
    county: Text = ""
    approval_threshold_yuan: Annotated[Positive, _none_is(50000.0)] = 50000.0
    #: version 2: village works at or above it must be tendered publicly
    tender_threshold_yuan: Annotated[Positive, _none_is(400000.0)] = 400000.0
    contacts: list[Contact] = Field(default_factory=list)


class Official(_Record):
    person_id: Id
    name: Text = ""
    #: may be null for town staff who handle several villages (``scope_village_ids``)
    village_id: Id | None = None
    role: Text = ""
    related_payee_ids: list[Id] = Field(default_factory=list)
    #: version 2: close relatives, by their register ``person_id``
    related_person_ids: list[Id] = Field(default_factory=list)
    #: version 2: the villages this official has power over (default: ``[village_id]``)
    scope_village_ids: list[Id] | None = None
    town: Text = ""

    @property
    def scope(self) -> tuple[str, ...]:
        """The villages this official has power over (CONTRACT §3, "ties to officials")."""
        if self.scope_village_ids is not None:
            return tuple(self.scope_village_ids)
        return (self.village_id,) if self.village_id else ()


class Project(_Record):
    project_id: Id
    name: Text = ""
    village_id: Id | None = None
    unit_id: Id | None = None
    budget_yuan: Positive
    planned_start: Day
    planned_end: Day


class Person(_Record):
    """The population register (version 2): one person, by a pseudonymous id."""

    person_id: Id
    name: Text = ""
    village_id: Id | None = None
    birth_date: Day | None = None
    death_date: Day | None = None

    @model_validator(mode="after")
    def _dead_after_born(self) -> "Person":
        if self.birth_date and self.death_date and self.death_date < self.birth_date:
            raise contract_error("death_date: before birth_date")
        return self


class Company(_Record):
    """The market-regulation register (version 2): one company."""

    company_id: Id
    name: Text = ""
    legal_rep_id: Id | None = None
    shareholder_ids: list[Id] = Field(default_factory=list)
    address: Text = ""
    phone: Text = ""


class Instalment(_Record):
    due: Day
    amount_yuan: NonNeg


def shift_years(d: date, years: int) -> date:
    """The same day ``years`` later (or earlier); 29 February becomes 1 March in a
    common year, as the contract's terms count."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        return date(d.year + years, 3, 1)


class Contract(_Record):
    """A village asset contract (version 2): a lease or a contracting-out, with what it owes.

    Checked: ``start`` ≤ ``end``; ``signed_date`` not after ``end``; every
    instalment due no earlier than a year before the signing (``start`` when there
    is no ``signed_date``) and no later than a year after ``end`` (a deposit before
    the term, arrears settled after it: more is a typo in a year); no two
    instalments due on one date (an instalment is known as ``contract_id#due``).
    """

    contract_id: Id
    village_id: Id
    asset: Text = ""
    kind: ContractKind
    counterparty_id: Id | None = None
    counterparty_name: Text = ""
    signed_date: Day | None = None
    start: Day
    end: Day
    schedule: list[Instalment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "Contract":
        if self.end < self.start:
            raise contract_error("end: before start")
        if self.signed_date is not None and self.signed_date > self.end:
            raise contract_error("signed_date: after end")
        first = shift_years(self.signed_date or self.start, -1)
        last = shift_years(self.end, 1)
        seen: set[date] = set()
        for i, inst in enumerate(self.schedule):
            if not first <= inst.due <= last:
                raise contract_error(
                    "schedule.{i}.due: {due} is not within a year of the term "
                    "({first} … {last})", i=i, due=inst.due.isoformat(),
                    first=first.isoformat(), last=last.isoformat())
            if inst.due in seen:
                raise contract_error("schedule.{i}.due: a second instalment due {due}",
                                     i=i, due=inst.due.isoformat())
            seen.add(inst.due)
        return self


# ------------------------------------------------------------------------ events
#
# Events are validated by pydantic into plain dicts (TypedDicts): ten times as
# many GPS pings as anything else pass here, and a dict of JSON scalars is what
# the engine sorts, spills, keeps in Faust tables and archives. ``parse_event``
# then adds ``t`` (epoch seconds, float) from ``ts``.


_EVENT_CONFIG = ConfigDict(extra="ignore", str_strip_whitespace=True, strict=True)


class Gps(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]

    vehicle_id: Id
    ts: Ts
    lat: Lat
    lon: Lon
    speed_kmh: NotRequired[Speed]
    ignition: NotRequired[Flag | None]
    odometer_km: NotRequired[NonNeg | None]


class Fuel(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    txn_id: Id
    card_id: Id
    vehicle_id: NotRequired[Id | None]
    ts: Ts
    station_id: Id
    station_name: NotRequired[Text]
    station_lat: Lat
    station_lon: Lon
    station_coord: NotRequired[Datum]
    liters: NonNeg
    amount_yuan: NonNeg
    fuel_type: NotRequired[FuelType | None]
    #: version 2: the driver who used the card
    driver_id: NotRequired[Id | None]


class Payment(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    payment_id: Id
    village_id: Id
    ts: Ts
    amount_yuan: NonNeg
    channel: Channel
    payee_id: Id
    payee_name: NotRequired[Text]
    category: NotRequired[Category]
    purpose: NotRequired[Text]
    approval_id: NotRequired[Annotated[Text | None, BeforeValidator(_blank_is_none)]]


class Progress(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    report_id: Id
    project_id: Id
    ts: Ts
    stage: Stage
    percent_complete: Percent
    disbursed_yuan: NotRequired[NonNeg]


class Subsidy(TypedDict):
    """A welfare payout to a person (version 2)."""

    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    payout_id: Id
    person_id: Id
    village_id: Id
    programme: Programme
    period: Month
    ts: Ts
    amount_yuan: NonNeg


class Labor(TypedDict):
    """Village temporary labour credited to a person for one date (version 2)."""

    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    work_id: Id
    person_id: Id
    village_id: Id
    date: DayText
    days: WorkDays
    task: NotRequired[Text]
    project_id: NotRequired[Id | None]
    pay_yuan: NotRequired[NonNeg | None]
    ts: Ts


class Bid(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    company_id: Id
    price_yuan: NonNeg


class Tender(TypedDict):
    """The published result of one tender, with every bid (version 2). The checks across
    fields (deadline not before notice, each bidder once, the winner among them) are
    :func:`lianwatch.models.parse.parse_event`'s, which knows the time zone."""

    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    tender_id: Id
    project_id: NotRequired[Id | None]
    village_id: NotRequired[Id | None]
    unit_id: NotRequired[Id | None]
    method: Method
    notice_ts: Ts
    deadline_ts: Ts
    ts: Ts
    estimate_yuan: NotRequired[NonNeg | None]
    bids: list[Bid]
    winner_company_id: NotRequired[Id | None]
    award_yuan: NotRequired[NonNeg | None]


class Receipt(TypedDict):
    """Money a village received under a contract (version 2)."""

    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    receipt_id: Id
    village_id: Id
    contract_id: Id
    ts: Ts
    amount_yuan: NonNeg


class Mileage(TypedDict):
    """A driver's monthly mileage-allowance claim for a car (version 2)."""

    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    claim_id: Id
    vehicle_id: Id
    driver_id: Id
    month: Month
    km_claimed: NonNeg
    ts: Ts


#: stream name → model, in the contract's order (the names of ``models.streams.SPECS``)
EVENT_MODELS: dict[str, type] = {
    "gps": Gps,
    "fuel": Fuel,
    "payments": Payment,
    "progress": Progress,
    "subsidies": Subsidy,
    "labor": Labor,
    "tenders": Tender,
    "receipts": Receipt,
    "mileage": Mileage,
}
REFERENCE_MODELS: dict[str, type[_Record]] = {
    "vehicles": Vehicle,
    "villages": Village,
    "officials": Official,
    "projects": Project,
    "persons": Person,
    "companies": Company,
    "contracts": Contract,
}
for _kind, _model in REFERENCE_MODELS.items():
    _model.id_field = SPECS[_kind].id_field  # type: ignore[misc]
