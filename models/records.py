"""The records of the data contract (CONTRACT.md §1) as strict pydantic schemas.

Validation is strict where the contract is: coordinates in range, litres and
money ≥ 0, known enums, RFC 3339 timestamps. Unknown extra fields are ignored
(feeds grow fields; that must not break us).

Reference records (vehicles, villages, officials, projects) are pydantic
models. Events are TypedDicts validated by pydantic into plain dicts: see
:mod:`lianwatch.models.parse`, which also turns a naive timestamp into local
time in the configured zone and adds ``t`` (epoch seconds).

>>> Vehicle.model_validate({"vehicle_id": "V1", "unit_id": "U1", "tank_liters": 70,
...                         "fuel_type": "0#"}).fuel_type
'0'
>>> Village.model_validate({"village_id": "VL1", "approval_threshold_yuan": None}
...                        ).approval_threshold_yuan
50000.0
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from typing_extensions import NotRequired, TypedDict

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")

Lat = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Lon = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Id = Annotated[str, Field(min_length=1, max_length=128)]

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


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


# --------------------------------------------------------------------- reference


class Depot(_Record):
    lat: Lat
    lon: Lon
    radius_m: NonNeg = 150.0


class Vehicle(_Record):
    vehicle_id: Id
    plate: str = ""
    unit_id: Id
    unit_name: str = ""
    tank_liters: Annotated[float, Field(gt=0, le=2000)]
    fuel_type: FuelType = "92"
    depot: Depot | None = None
    card_ids: list[Id] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return self.vehicle_id


class Contact(_Record):
    role: Role
    name: str
    phone: Annotated[str, Field(pattern=r"^\+?\d[\d\- ]{4,19}$")]


class Village(_Record):
    village_id: Id
    name: str = ""
    town: str = ""
    county: str = ""
    approval_threshold_yuan: Annotated[float, Field(gt=0)] = 50000.0
    contacts: list[Contact] = Field(default_factory=list)

    @field_validator("approval_threshold_yuan", mode="before")
    @classmethod
    def _default_threshold(cls, v: Any) -> Any:
        return 50000.0 if v is None else v

    @property
    def key(self) -> str:
        return self.village_id


class Official(_Record):
    person_id: Id
    name: str = ""
    village_id: Id | None = None
    role: str = ""
    related_payee_ids: list[Id] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return self.person_id


class Project(_Record):
    project_id: Id
    name: str = ""
    village_id: Id | None = None
    unit_id: Id | None = None
    budget_yuan: Annotated[float, Field(gt=0)]
    planned_start: date
    planned_end: date

    @property
    def key(self) -> str:
        return self.project_id


# ------------------------------------------------------------------------ events
#
# Events are validated by pydantic into plain dicts (TypedDicts): ten times as
# many GPS pings as anything else pass here, and a dict of JSON scalars is what
# the engine sorts, spills, keeps in Faust tables and archives. ``to_event``
# then replaces the ``ts`` datetime by ``t`` (epoch seconds, float).


_EVENT_CONFIG = ConfigDict(extra="ignore", str_strip_whitespace=True)


class Gps(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]

    vehicle_id: Id
    ts: Annotated[str, Field(min_length=10, max_length=40)]
    lat: Lat
    lon: Lon
    speed_kmh: NotRequired[Annotated[float, Field(ge=0.0, le=400.0, allow_inf_nan=False)]]
    ignition: NotRequired[bool | None]
    odometer_km: NotRequired[NonNeg | None]


class Fuel(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    txn_id: Id
    card_id: Id
    vehicle_id: NotRequired[Id | None]
    ts: Annotated[str, Field(min_length=10, max_length=40)]
    station_id: Id
    station_name: NotRequired[str]
    station_lat: Lat
    station_lon: Lon
    station_coord: NotRequired[Datum]
    liters: NonNeg
    amount_yuan: NonNeg
    fuel_type: NotRequired[FuelType | None]


class Payment(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    payment_id: Id
    village_id: Id
    ts: Annotated[str, Field(min_length=10, max_length=40)]
    amount_yuan: NonNeg
    channel: Channel
    payee_id: Id
    payee_name: NotRequired[str]
    category: NotRequired[Category]
    purpose: NotRequired[str]
    approval_id: NotRequired[Annotated[str | None, BeforeValidator(_blank_is_none)]]


class Progress(TypedDict):
    __pydantic_config__ = _EVENT_CONFIG  # type: ignore[misc]
    report_id: Id
    project_id: Id
    ts: Annotated[str, Field(min_length=10, max_length=40)]
    stage: Stage
    percent_complete: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
    disbursed_yuan: NotRequired[NonNeg]


#: stream name → model, in the contract's order
EVENT_MODELS: dict[str, type] = {
    "gps": Gps,
    "fuel": Fuel,
    "payments": Payment,
    "progress": Progress,
}
REFERENCE_MODELS: dict[str, type[_Record]] = {
    "vehicles": Vehicle,
    "villages": Village,
    "officials": Official,
    "projects": Project,
}
