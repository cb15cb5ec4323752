"""Turn one raw record (bytes of a JSON line) into a validated event, or a reason.

``parse_event`` is the single gate through which every event passes, in replay
and in streaming alike. It never raises for bad input: it returns
``(None, reason)``, and the caller sets the record aside (dead letter).

An event is a plain dict: the contract's fields with their validated values
(``ts`` as given), plus ``t`` (epoch seconds), the stream name under ``_s``
and the record's id under ``_id`` (for a ping, its vehicle: time and vehicle
identify a ping). Which field is a stream's id comes from
:data:`lianwatch.models.streams.SPECS`.

The caller says which times are plausible (a :class:`~lianwatch.models.clock.TimeWindow`,
e.g. ``TimeWindow.around(time.time())``); a record outside is set aside, so no
record moves the clock to the year 9999. Without one, :data:`DEFAULT_WINDOW`.

>>> ev, why = parse_event("gps", b'{"vehicle_id":"V1","ts":"2026-03-02 08:00:00",'
...                               b'"lat":30.2,"lon":120.1}')
>>> ev["t"], ev["_s"], why
(1772409600.0, 'gps', None)
>>> parse_event("gps", b'{"vehicle_id":"V1","ts":"soon","lat":91,"lon":120.1}')[1]
'ts: String should have at least 10 characters; lat: Input should be less than or equal to 90'
>>> parse_event("gps", b'{"vehicle_id":"V1","ts":"2026-02-30 08:00","lat":30,"lon":120.1}')[1]
'ts: not an RFC 3339 or local timestamp (day is out of range for month)'
>>> parse_event("gps", b'{"vehicle_id":"V1","ts":"2026-03-02 08:00","lat":true,"lon":120.1}')[1]
'lat: Input should be a valid number'
>>> parse_event("fuel", b'{"txn_id": ')[1]
'bad JSON: unexpected end of data: line 1 column 12 (char 11)'
>>> now = TimeWindow.around(1772409600.0)  # the caller's clock: 2026-03-02 08:00 +08:00
>>> parse_event("gps", b'{"vehicle_id":"V1","ts":"2027-03-02 08:00","lat":30,"lon":120.1}',
...             window=now)[1]
'ts: 2027-03-02 08:00 is after the latest accepted time 2026-03-03T08:00:00+08:00'
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from .clock import DEFAULT_WINDOW, TimeWindow, parse_ts
from .records import DEFAULT_TZ, EVENT_MODELS, REFERENCE_MODELS
from .streams import EVENT_STREAMS, REFERENCE_KINDS, SPECS, record_id

__all__ = ["parse_event", "parse_reference", "fast_parser", "event_id", "validation_reason",
           "STREAMS", "TimeWindow", "DEFAULT_WINDOW"]

assert tuple(EVENT_MODELS) == EVENT_STREAMS and tuple(REFERENCE_MODELS) == REFERENCE_KINDS

STREAMS = EVENT_STREAMS
_ADAPTERS = {name: TypeAdapter(model) for name, model in EVENT_MODELS.items()}
# the compiled validators themselves: skips a Python wrapper per record
_VALIDATORS = {name: ta.validator for name, ta in _ADAPTERS.items()}
#: the field whose value becomes ``_id`` (the record's id; a ping's vehicle)
_ID_KEY = {s: SPECS[s].id_field or SPECS[s].key_field for s in EVENT_STREAMS}
_MAX_REASON = 400


def validation_reason(exc: ValidationError) -> str:
    """A short, human-readable reason: ``field: message; field: message``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        if not loc and err.get("type") == "contract":  # a check across fields says it all
            parts.append(msg)
        else:
            parts.append(f"{loc or 'record'}: {msg}")
    reason = "; ".join(parts)
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"


def _time(ev: dict[str, Any], field: str, tz: tzinfo, window: TimeWindow) -> float | str:
    """Epoch seconds of ``ev[field]``, or the reason it cannot be used."""
    text = ev[field]
    try:
        t = parse_ts(text, tz)
    except (ValueError, OverflowError) as exc:
        return f"{field}: not an RFC 3339 or local timestamp ({exc})"
    why = window.reason(t, tz)
    if why is not None:
        return f"{field}: {text} is {why}"
    return t


def _tender(ev: dict[str, Any], tz: tzinfo, window: TimeWindow) -> str | None:
    """A tender's checks across fields; adds ``notice_t`` and ``deadline_t``."""
    notice = _time(ev, "notice_ts", tz, window)
    if isinstance(notice, str):
        return notice
    deadline = _time(ev, "deadline_ts", tz, window)
    if isinstance(deadline, str):
        return deadline
    if deadline < notice:
        return "deadline_ts: before notice_ts"
    seen: set[str] = set()
    for i, bid in enumerate(ev["bids"]):
        if bid["company_id"] in seen:
            return f"bids.{i}.company_id: {bid['company_id']} bids twice in one tender"
        seen.add(bid["company_id"])
    winner = ev.get("winner_company_id")
    if winner is not None and winner not in seen:
        return f"winner_company_id: {winner} is not among the bidders"
    if (winner is None) != (ev.get("award_yuan") is None):
        return ("award_yuan: given without a winner" if winner is None
                else "award_yuan: missing for the winner")
    ev["notice_t"] = notice
    ev["deadline_t"] = deadline
    return None


#: checks that need more than one field, or the zone: ``check(ev, tz, window) -> reason``
_CHECKS: dict[str, Callable[[dict[str, Any], tzinfo, TimeWindow], str | None]] = {
    "tenders": _tender,
}


def parse_event(
    stream: str, raw: bytes | str | dict[str, Any], tz: tzinfo = DEFAULT_TZ,
    window: TimeWindow = DEFAULT_WINDOW,
) -> tuple[dict[str, Any] | None, str | None]:
    """Validate one record of ``stream``; return ``(event, None)`` or ``(None, reason)``.

    ``window``: the times accepted (``ts``, and a tender's notice and deadline).
    """
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
    t = _time(ev, "ts", tz, window)
    if isinstance(t, str):
        return None, t
    ev["t"] = t
    check = _CHECKS.get(stream)
    if check is not None:
        why = check(ev, tz, window)
        if why is not None:
            return None, why
    ev["_s"] = stream
    ev["_id"] = ev[_ID_KEY[stream]]
    return ev, None


def fast_parser(stream: str, tz: tzinfo = DEFAULT_TZ, window: TimeWindow = DEFAULT_WINDOW):
    """A parser for the hot loop of one stream: ``parse(raw) -> event | None``.

    It does what :func:`parse_event` does for a good record, with fewer calls;
    for a bad one it returns None and :func:`parse_event` gives the reason.
    """
    if stream in _CHECKS:  # few records, more checks: the one gate
        def parse_checked(raw: bytes) -> dict[str, Any] | None:
            return parse_event(stream, raw, tz, window)[0]

        return parse_checked
    validate = _VALIDATORS[stream].validate_json
    key = _ID_KEY[stream]
    lo, hi = window.earliest, window.latest

    def parse(raw: bytes) -> dict[str, Any] | None:
        try:
            ev = validate(raw)
            t = ev["t"] = parse_ts(ev["ts"], tz)
        except (ValidationError, ValueError, OverflowError):
            return None
        if not lo <= t <= hi:
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
    return record_id(ev["_s"], ev)


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
