"""Every stream of the contract (CONTRACT.md §1–2) in one table.

What used to be repeated per module (the id field of a record, the field a
topic is keyed by, the subject the raw-event archive files it under) is read
from here: the parser, the store, the topics and the worker's runtime all ask
:data:`SPECS`.

>>> SPECS["fuel"].id_field, SPECS["fuel"].key_field, SPECS["fuel"].topic
('txn_id', 'vehicle_id', 'fuel')
>>> [s.name for s in EVENT_SPECS][:4]
['gps', 'fuel', 'payments', 'progress']
>>> SPECS["persons"].topic, SPECS["persons"].kind
('ref.persons', 'reference')
>>> record_id("gps", {"vehicle_id": "V1", "t": 12.5})
'V1@12.500'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["StreamSpec", "SPECS", "EVENT_SPECS", "REFERENCE_SPECS", "EVENT_STREAMS",
           "REFERENCE_KINDS", "record_id"]


@dataclass(frozen=True)
class StreamSpec:
    """One stream or reference kind of the contract."""

    #: the contract's name: the file stem (``fuel.jsonl``) and the topic suffix
    name: str
    kind: Literal["event", "reference"]
    #: the field holding the record's own id (None: a GPS ping, identified by vehicle and time)
    id_field: str | None
    #: the field the stream's topic is keyed (and partitioned) by
    key_field: str
    #: the field the raw-event archive files a record under (its subject)
    subject_field: str
    #: the contract version that added it
    since: int = 1

    @property
    def topic(self) -> str:
        """The topic name without the prefix (``lw.`` + this)."""
        return self.name if self.kind == "event" else f"ref.{self.name}"


def _ev(name: str, id_field: str | None, key: str, subject: str | None = None,
        since: int = 1) -> StreamSpec:
    return StreamSpec(name, "event", id_field, key, subject or key, since)


def _ref(name: str, id_field: str, since: int = 1) -> StreamSpec:
    return StreamSpec(name, "reference", id_field, id_field, id_field, since)


#: event streams, in the contract's order (replay breaks ties in time by this order's names)
EVENT_SPECS: tuple[StreamSpec, ...] = (
    _ev("gps", None, "vehicle_id"),
    _ev("fuel", "txn_id", "vehicle_id"),
    _ev("payments", "payment_id", "village_id"),
    _ev("progress", "report_id", "project_id"),
    _ev("subsidies", "payout_id", "person_id", since=2),
    _ev("labor", "work_id", "person_id", since=2),
    _ev("tenders", "tender_id", "tender_id", "tender_id", since=2),
    _ev("receipts", "receipt_id", "contract_id", since=2),
    _ev("mileage", "claim_id", "vehicle_id", since=2),
)

#: reference kinds (compacted topics keyed by the record's id), in the contract's order
REFERENCE_SPECS: tuple[StreamSpec, ...] = (
    _ref("vehicles", "vehicle_id"),
    _ref("villages", "village_id"),
    _ref("officials", "person_id"),
    _ref("projects", "project_id"),
    _ref("persons", "person_id", since=2),
    _ref("companies", "company_id", since=2),
    _ref("contracts", "contract_id", since=2),
)

SPECS: dict[str, StreamSpec] = {s.name: s for s in (*EVENT_SPECS, *REFERENCE_SPECS)}
EVENT_STREAMS: tuple[str, ...] = tuple(s.name for s in EVENT_SPECS)
REFERENCE_KINDS: tuple[str, ...] = tuple(s.name for s in REFERENCE_SPECS)


def record_id(stream: str, rec: dict[str, Any]) -> str:
    """The id a validated record is known by: its id field, or for a ping
    ``vehicle@epoch`` (time and vehicle identify a ping)."""
    f = SPECS[stream].id_field
    if f is not None:
        return rec[f]
    return f"{rec['vehicle_id']}@{rec['t']:.3f}"
