"""The chDB gate for GPS pings (replay/pings.py) is never more lenient than the pydantic one.

Every line the SQL passes must be accepted by ``parse_event`` with the same time,
vehicle and position; every line it does not pass must come back (with its line
number) for ``parse_event`` to judge; and the pings come out in replay order.
Both gates get the same :class:`TimeWindow` (the default one, or a caller's).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from lianwatch.errors import InputError
from lianwatch.models.clock import TimeWindow, parse_ts
from lianwatch.models.parse import parse_event
from lianwatch.replay.pings import PingFile

OK = b'{"vehicle_id":"V1","ts":"2026-03-02T08:00:05+08:00","lat":30.2,"lon":120.1}'


def ping(**kw: object) -> bytes:
    """A line from ``OK`` with fields replaced (raw JSON text per field)."""
    fields = {"vehicle_id": b'"V1"', "ts": b'"2026-03-02T08:00:05+08:00"', "lat": b"30.2",
              "lon": b"120.1"}
    fields.update({k: v if isinstance(v, bytes) else str(v).encode() for k, v in kw.items()})
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()
                           if v != b"<absent>") + b"}"


# lines the SQL must leave to pydantic (each is odd in one way; some are valid)
LEAVE = {
    "naive local time": ping(ts=b'"2026-03-02 08:00:05"'),
    "fraction of a second": ping(ts=b'"2026-03-02T08:00:05.250+08:00"'),
    "lower-case t": ping(ts=b'"2026-03-02t08:00:05+08:00"'),
    "day 30 of February": ping(ts=b'"2026-02-30T08:00:05+08:00"'),
    "hour 24": ping(ts=b'"2026-03-02T24:00:05+08:00"'),
    "second 60": ping(ts=b'"2026-03-02T08:00:60+08:00"'),
    "offset +24:00": ping(ts=b'"2026-03-02T08:00:05+24:00"'),
    "before 1970": ping(ts=b'"1969-12-31T23:00:00+00:00"'),
    "before 2000": ping(ts=b'"1999-12-31T23:59:59Z"'),
    "year 9999": ping(ts=b'"9999-12-31T23:59:59Z"'),
    "year 9999 at +08:00": ping(ts=b'"9999-12-31T23:59:59+08:00"'),
    "year 9999 at -05:00": ping(ts=b'"9999-12-31T20:00:00-05:00"'),
    "year 0001 at +14:00": ping(ts=b'"0001-01-01T00:00:00+14:00"'),
    "past DateTime's end (wraps to 1970 there)": ping(ts=b'"2106-02-07T06:28:16Z"'),
    "a second past the default window": ping(ts=b'"2100-01-01T00:00:01Z"'),
    "ts missing": ping(ts=b"<absent>"),
    "ts a number": ping(ts=b"1772409605"),
    "lat as text": ping(lat=b'"30.2"'),
    "lat out of range": ping(lat=b"90.0000001"),
    "lat -0.0": ping(lat=b"-0.0"),
    "lat true": ping(lat=b"true"),
    "lat false": ping(lat=b"false"),
    "lon as text": ping(lon=b'"120.1"'),
    "lat null": ping(lat=b"null"),
    "lon out of range": ping(lon=b"-180.5"),
    "repeated key": OK[:-1] + b',"lat":31.0}',
    "repeated key, escaped": OK[:-1] + b',"l\\u0061t":95}',
    "repeated optional key": ping(speed_kmh=b"5")[:-1] + b',"speed_kmh":500}',
    "id with a leading space": ping(vehicle_id=b'" V1"'),
    "id with a trailing space": ping(vehicle_id=b'"V1 "'),
    "empty id": ping(vehicle_id=b'""'),
    "id of 129 characters": ping(vehicle_id=b'"' + b"V" * 129 + b'"'),
    "id not ASCII": ping(vehicle_id='"浙A12345"'.encode()),
    "id a number": ping(vehicle_id=b"1"),
    "speed null": ping(speed_kmh=b"null"),
    "speed over 400": ping(speed_kmh=b"400.5"),
    "speed negative": ping(speed_kmh=b"-1"),
    "speed as text": ping(speed_kmh=b'"5"'),
    "speed true": ping(speed_kmh=b"true"),
    "ignition 1": ping(ignition=b"1"),
    "ignition as text": ping(ignition=b'"yes"'),
    "ignition as text true": ping(ignition=b'"true"'),
    "odometer negative": ping(odometer_km=b"-0.1"),
    "odometer as text": ping(odometer_km=b'"12"'),
    "odometer true": ping(odometer_km=b"true"),
    "truncated": OK[:40],
    "trailing comma": OK[:-1] + b",}",
    "single quotes": OK.replace(b'"', b"'"),
    "NaN": ping(lat=b"NaN"),
    "byte-order mark": b"\xef\xbb\xbf" + OK,
    "form feed before": b"\x0c" + OK,
    "NUL after": OK + b"\x00",
    "number too large in an extra field": OK[:-1] + b',"x":1e400}',
    "escaped space first in the id": ping(vehicle_id=b'"\\u0020V1"'),
    "escaped tab in the id": ping(vehicle_id=b'"V\\t1"'),
    "escaped non-ASCII id": ping(vehicle_id=b'"\\u6d59A1"'),
    "an array": b"[" + OK + b"]",
    "null": b"null",
    "not JSON": b"ping",
    "invalid UTF-8 in an extra field": OK[:-1] + b',"note":"\xff\xfe"}',
    "lone surrogate in an extra field": OK[:-1] + b',"note":"\\ud800"}',
    "blank": b"   ",
}

# lines the SQL passes (and pydantic accepts, with the same values)
PASS = {
    "plain": OK,
    "Z": ping(ts=b'"2026-03-02T00:00:05Z"'),
    "negative offset": ping(ts=b'"2026-03-01T18:30:05-05:30"'),
    "space instead of T": ping(ts=b'"2026-03-02 08:00:05+08:00"'),
    "integer lat": ping(lat=b"30"),
    "exponent": ping(lat=b"3.02e1", lon=b"1201E-1"),
    "edges": ping(lat=b"-90", lon=b"180"),
    "id of 128 characters": ping(vehicle_id=b'"' + b"V" * 128 + b'"'),
    "id with punctuation": ping(vehicle_id=b'"U-3/V:1.a_b"'),
    "optional fields": ping(speed_kmh=b"400", ignition=b"false", odometer_km=b"null"),
    "odometer 0": ping(odometer_km=b"0", ignition=b"null"),
    "the default window's first second": ping(ts=b'"2000-01-01T00:00:00Z"'),
    "the default window's last second": ping(ts=b'"2100-01-01T00:00:00Z"'),
    "spaces": b'  { "vehicle_id" : "V1", "ts": "2026-03-02T08:00:05+08:00", "lat": 30.2 ,"lon":120.1 } ',
    "key order": b'{"lon":120.1,"lat":30.2,"ts":"2026-03-02T08:00:05+08:00","vehicle_id":"V1"}',
    "extra nested field": OK[:-1] + b',"extra":{"a":[1,2,{"b":null}],"c":"x\\"y"}}',
    "extra text field": OK[:-1] + ',"note":"停车场"}'.encode(),
    "an unknown key twice": OK[:-1] + b',"x":1,"x":2}',
    "CRLF": OK + b"\r",
    # the JSON parser hands these over normalised; pydantic reads the same values
    "integer -0": ping(lat=b"-0"),
    "id with an escape": ping(vehicle_id=b'"V\\u0031"'),
}


def run(tmp_path: Path, lines: list[bytes], name: str = "gps.jsonl", **kw):
    p = tmp_path / name
    data = b"\n".join(lines) + b"\n"
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    f = PingFile(p, workdir=tmp_path / "chdb", **kw)
    rest = dict(f.rest())
    passed = [row for cols in f.batches() for row in zip(*cols)]
    return rest, passed


def test_every_line_is_passed_or_returned_and_passes_agree_with_pydantic(tmp_path):
    names = list(LEAVE) + list(PASS)
    lines = list(LEAVE.values()) + list(PASS.values())
    rest, passed = run(tmp_path, lines)
    assert len(rest) + len(passed) == len(lines)
    left = {names[n - 1] for n in rest}
    assert left == set(LEAVE), set(LEAVE) ^ left
    for n, raw in rest.items():
        assert raw == lines[n - 1]  # the bytes as read, for the dead letter
    want = []
    for name in PASS:
        ev, why = parse_event("gps", PASS[name])
        assert ev is not None, (name, why)
        want.append((ev["t"], ev["vehicle_id"], ev["lat"], ev["lon"]))
    assert sorted(map(repr, passed)) == sorted(map(repr, want))  # repr: -0.0 is not 0.0
    for got in passed:
        assert all(type(x) is float for x in (got[0], got[2], got[3]))


def test_lines_left_to_pydantic_get_its_verdict(tmp_path):
    # the valid odd ones are accepted there; the invalid ones get a reason
    accepted = {k for k, v in LEAVE.items() if parse_event("gps", v)[0] is not None}
    assert {"naive local time", "fraction of a second", "lower-case t",
            "id with a leading space", "id not ASCII", "escaped non-ASCII id"} <= accepted
    assert {"day 30 of February", "hour 24", "lat out of range", "empty id", "speed null",
            "truncated", "NaN", "null"}.isdisjoint(accepted)
    # strict types (a number is a JSON number, a flag is true/false) and a plausible time
    refused = {"lat as text", "lat true", "lat false", "lon as text", "speed as text",
               "speed true", "ignition 1", "ignition as text true", "odometer as text",
               "odometer true", "before 1970", "before 2000", "year 9999", "year 9999 at +08:00",
               "year 9999 at -05:00", "year 0001 at +14:00",
               "past DateTime's end (wraps to 1970 there)", "a second past the default window"}
    assert refused.isdisjoint(accepted), refused & accepted
    assert parse_event("gps", LEAVE["year 9999 at -05:00"])[1] == (
        "ts: 9999-12-31T20:00:00-05:00 is after the latest accepted time 2100-01-01T08:00:00+08:00")
    assert parse_event("gps", LEAVE["lat true"])[1] == "lat: Input should be a valid number"


NOW = parse_ts("2026-03-02T08:00:05+08:00")


def test_a_callers_window_is_the_same_in_both_gates(tmp_path):
    """With the window the replay command gives (a day past its clock), the SQL passes
    only what pydantic accepts with the same window, to the second."""
    w = TimeWindow.around(NOW, ahead_s=86400, earliest=NOW - 3600)
    times = {"now": NOW, "a day ahead": NOW + 86400, "a day and a second ahead": NOW + 86401,
             "an hour back": NOW - 3600, "an hour and a second back": NOW - 3601,
             "a year ahead": NOW + 366 * 86400}
    from lianwatch.models.clock import format_ts

    lines = [ping(ts=f'"{format_ts(t)}"'.encode()) for t in times.values()]
    rest, passed = run(tmp_path, lines, window=w)
    names = list(times)
    assert {names[n - 1] for n in rest} == {"a day and a second ahead",
                                            "an hour and a second back", "a year ahead"}
    assert sorted(p[0] for p in passed) == [NOW - 3600, NOW, NOW + 86400]
    for n, raw in rest.items():
        ev, why = parse_event("gps", raw, window=w)
        assert ev is None and "accepted time" in why, why
    for raw in lines:
        ev, _ = parse_event("gps", raw, window=w)
        assert (ev is not None) == (ev is not None and ev["t"] in w)


def test_a_byte_order_mark_starts_the_file_and_costs_nothing(tmp_path):
    rest, passed = run(tmp_path, [b"\xef\xbb\xbf" + OK, ping(vehicle_id=b'"V2"')])
    assert rest == {1: OK}  # handed to pydantic without the mark, which accepts it
    assert parse_event("gps", rest[1])[0] is not None and len(passed) == 1


@pytest.mark.parametrize("damage", ["cut", "corrupt"])
def test_a_damaged_gz_fails_at_start_with_an_input_error(tmp_path, damage):
    data = gzip.compress(b"".join(ping(lat=str(30 + i / 1e5).encode()) + b"\n"
                                  for i in range(20000)))
    data = data[: len(data) // 2] if damage == "cut" else (
        data[:2000] + bytes(64) + data[2064:])
    p = tmp_path / "gps.jsonl.gz"
    p.write_bytes(data)
    f = PingFile(p, workdir=tmp_path / "chdb")
    with pytest.raises(InputError, match="gps.jsonl.gz"):
        f.start()


def test_order_is_time_then_vehicle_then_position(tmp_path):
    lines = [ping(vehicle_id=b'"V2"'), ping(vehicle_id=b'"V1"', lat=b"30.3"),
             ping(vehicle_id=b'"V1"'), ping(ts=b'"2026-03-02T08:00:04+08:00"', vehicle_id=b'"V9"')]
    _, passed = run(tmp_path, lines)
    assert [(p[1], p[2]) for p in passed] == [("V9", 30.2), ("V1", 30.2), ("V1", 30.3), ("V2", 30.2)]


@pytest.mark.parametrize("name", ["gps.jsonl.gz", "gps.jsonl"])
def test_a_generated_track_passes_whole_and_exactly(demo, tmp_path, name):
    lines = (demo.input / "gps.jsonl").read_bytes().splitlines()
    rest, passed = run(tmp_path, lines, name=name, sort_bytes=1 << 20)  # sort spills past 1 MiB
    want = []
    for raw in lines:
        ev, _ = parse_event("gps", raw)
        if ev is not None:
            want.append((ev["t"], ev["vehicle_id"], ev["lat"], ev["lon"]))
    assert len(rest) <= 10  # the generator's few malformed lines, nothing else
    assert [parse_event("gps", lines[n - 1])[0] for n in rest if lines[n - 1].strip()] == \
        [None] * len([n for n in rest if lines[n - 1].strip()])
    assert passed == sorted(want)
