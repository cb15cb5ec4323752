"""Turn one raw record (bytes of a JSON line) into a validated event, or a reason.

``parse_event`` is the single gate through which every event passes, in replay
and in streaming alike. It never raises for bad input: it returns
``(None, reason)``, and the caller sets the record aside (dead letter).

An event is a plain dict: the contract's fields with their validated values
(``ts`` as given), plus ``t`` (epoch seconds), the stream name under ``_s``
and the record's id under ``_id`` (for a ping, its vehicle: time and vehicle
identify a ping).

>>> ev, why = parse_event("gps", b'{"vehicle_id":"V1","ts":"2026-03-02 08:00:00",'
...                               b'"lat":30.2,"lon":120.1}')
>>> ev["t"], ev["_s"], why
(1772409600.0, 'gps', None)
>>> parse_event("gps", b'{"vehicle_id":"V1","ts":"soon","lat":91,"lon":120.1}')[1]
'ts: String should have at least 10 characters; lat: Input should be less than or equal to 90'
>>> parse_event("gps", b'{"vehicle_id":"V1","ts":"2026-02-30 08:00","lat":30,"lon":120.1}')[1]
'ts: not an RFC 3339 or local timestamp (day is out of range for month)'
>>> parse_event("fuel", b'{"txn_id": ')[1]
'bad JSON: unexpected end of data: line 1 column 12 (char 11)'
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from .clock import parse_ts
from .records import DEFAULT_TZ, EVENT_MODELS, REFERENCE_MODELS

__all__ = ["parse_event", "parse_reference", "event_id", "validation_reason", "STREAMS"]

STREAMS = tuple(EVENT_MODELS)
_ADAPTERS = {name: TypeAdapter(model) for name, model in EVENT_MODELS.items()}
# the compiled validators themselves: skips a Python wrapper per record
_VALIDATORS = {name: ta.validator for name, ta in _ADAPTERS.items()}
_ID_FIELD = {"fuel": "txn_id", "payments": "payment_id", "progress": "report_id"}
_KEY_FIELD = {"gps": "vehicle_id", "fuel": "txn_id", "payments": "payment_id",
              "progress": "report_id"}
_MAX_REASON = 400


def validation_reason(exc: ValidationError) -> str:
    """A short, human-readable reason: ``field: message; field: message``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err.get("loc", ())) or "record"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    reason = "; ".join(parts)
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"


def parse_event(
    stream: str, raw: bytes | str | dict[str, Any], tz: tzinfo = DEFAULT_TZ
) -> tuple[dict[str, Any] | None, str | None]:
    """Validate one record of ``stream``; return ``(event, None)`` or ``(None, reason)``."""
    adapter = _VALIDATORS[stream]
    try:
        if isinstance(raw, dict):
            ev = adapter.validate_python(raw)
        else:
            ev = adapter.validate_json(raw)
    except ValidationError as exc:
        if exc.errors(include_url=False)[0].get("type") == "json_invalid":
            return None, _json_reason(raw)
        return None, validation_reason(exc)
    try:
        ev["t"] = parse_ts(ev["ts"], tz)
    except ValueError as exc:
        return None, f"ts: not an RFC 3339 or local timestamp ({exc})"
    ev["_s"] = stream
    ev["_id"] = ev[_KEY_FIELD[stream]]
    return ev, None


def fast_parser(stream: str, tz: tzinfo = DEFAULT_TZ):
    """A parser for the hot loop of one stream: ``parse(raw) -> event | None``.

    It does what :func:`parse_event` does for a good record, with fewer calls;
    for a bad one it returns None and :func:`parse_event` gives the reason.
    """
    validate = _VALIDATORS[stream].validate_json
    key = _KEY_FIELD[stream]

    def parse(raw: bytes) -> dict[str, Any] | None:
        try:
            ev = validate(raw)
            ev["t"] = parse_ts(ev["ts"], tz)
        except (ValidationError, ValueError):
            return None
        ev["_s"] = stream
        ev["_id"] = ev[key]
        return ev

    return parse


def _json_reason(raw: bytes | str | dict[str, Any]) -> str:
    try:
        orjson.loads(raw)  # type: ignore[arg-type]
    except orjson.JSONDecodeError as exc:
        return f"bad JSON: {exc}"
    return "bad JSON: not an object"


def event_id(ev: dict[str, Any]) -> str:
    """The id a record is known by (``txn_id``…; for a ping, vehicle and time)."""
    field = _ID_FIELD.get(ev["_s"])
    if field is not None:
        return ev[field]
    return f"{ev['vehicle_id']}@{ev['t']:.3f}"


def parse_reference(kind: str, raw: bytes | str | dict[str, Any]):
    """Validate one reference record; return ``(model, None)`` or ``(None, reason)``."""
    model = REFERENCE_MODELS[kind]
    try:
        if isinstance(raw, dict):
            return model.model_validate(raw), None
        return model.model_validate_json(raw), None
    except ValidationError as exc:
        if exc.errors(include_url=False)[0].get("type") == "json_invalid":
            return None, _json_reason(raw)
        return None, validation_reason(exc)
