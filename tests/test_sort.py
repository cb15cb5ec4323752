"""The external sort: any input order, any memory budget, the same total order."""

from __future__ import annotations

import random

import pytest

from lianwatch.models.order import ExternalSorter, sort_key


def events(n: int, seed: int = 1):
    rng = random.Random(seed)
    streams = ["gps", "fuel", "payments", "progress"]
    return [{"t": float(rng.randrange(0, 200_000)), "_s": rng.choice(streams),
             "_id": f"X{rng.randrange(50)}", "n": i} for i in range(n)]


@pytest.mark.parametrize("memory,bucket", [(10**7, 3600.0), (5000, 3600.0), (5000, 10**7),
                                           (1, 600.0)])
def test_same_order_whatever_the_budget(memory, bucket):
    evs = events(40_000 if memory > 1 else 3000)
    want = sorted(evs, key=lambda e: (sort_key(e), e["n"]))
    s = ExternalSorter(max_in_memory=memory, bucket_seconds=bucket)
    got = list(s.sorted(evs))
    assert [sort_key(e) for e in got] == [sort_key(e) for e in want]
    assert sorted(e["n"] for e in got) == list(range(len(evs)))  # nothing lost or doubled
    assert (s.runs_spilled > 0) is (memory < len(evs))


def test_input_order_does_not_matter_for_distinct_keys():
    evs = [dict(e, _id=f"{e['_id']}-{e['n']}") for e in events(20_000, 2)]
    a = [e["n"] for e in ExternalSorter(3000).sorted(evs)]
    b = [e["n"] for e in ExternalSorter(3000).sorted(list(reversed(evs)))]
    assert a == b


@pytest.mark.parametrize("memory,bucket", [(10**7, 3600.0), (3000, 3600.0), (3000, 10**7)])
def test_records_equal_in_time_stream_and_id_come_in_content_order(memory, bucket):
    # the same id at the same instant with other content (fault 5), and two fixes of one
    # car in one second: the order must not be the files' (the last budget merges a bucket)
    evs = events(20_000, 3)
    for e in evs:
        e["amount_yuan"] = float(e.pop("n") % 7)
    evs.append({"t": 5.0, "_s": "gps", "_id": "V1", "lat": 10.5, "lon": 120.0})
    evs.append({"t": 5.0, "_s": "gps", "_id": "V1", "lat": 9.5, "lon": 121.0})
    outs = []
    for order in (evs, evs[::-1], random.Random(4).sample(evs, len(evs))):
        outs.append(list(ExternalSorter(max_in_memory=memory, bucket_seconds=bucket).sorted(order)))
    assert outs[0] == outs[1] == outs[2]
    pings = [e for e in outs[0] if e["_s"] == "gps" and e["_id"] == "V1" and e["t"] == 5.0]
    assert [p["lat"] for p in pings] == [9.5, 10.5]  # numbers as numbers, as chDB sorts pings
