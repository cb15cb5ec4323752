"""A validated record's identity and content: the replay order, made total, and
the fingerprint a detector compares redelivered records by.

Two records with the same id are the same record when their content is equal:
every field but the internal ones (``_s``, ``_id``…) and ``ts`` (its instant is
``t``; how it was written does not matter). Replay takes records in the order
``(t, stream, id)`` and, for two records equal in all three (the same id seen
twice with other content, or two fixes of one car in one second), by content,
so the same records give the same order whatever order the files held them in.

>>> a = {"_s": "payments", "_id": "P1", "t": 0.0, "ts": "2026-03-02T08:00:00+08:00",
...      "payment_id": "P1", "amount_yuan": 90000.0, "channel": "cash"}
>>> b = dict(a, amount_yuan=649.55, channel="card")
>>> fingerprint(a) == fingerprint(dict(a, ts="2026-03-02 08:00:00")), fingerprint(a) == fingerprint(b)
(True, False)
>>> evs = [a, b]
>>> settle_ties(evs)
>>> [e["amount_yuan"] for e in evs]
[649.55, 90000.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from hashlib import blake2b
from itertools import compress, count, groupby, islice
from operator import eq, itemgetter
from typing import Any

import orjson

__all__ = ["sort_key", "content_key", "fingerprint", "settle_ties", "settled"]

#: event time, stream name, the record's id (``_id``, set by ``parse_event``)
sort_key = itemgetter("t", "_s", "_id")
_OPTS = orjson.OPT_SORT_KEYS


def _content(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k[0] != "_" and k != "ts"}


def fingerprint(ev: dict[str, Any]) -> int:
    """A record's content as 64 bits, the same in every process (BLAKE2b, 8 bytes,
    of its canonical JSON): equal for a redelivered copy, different for other content."""
    raw = orjson.dumps(_content(ev), option=_OPTS)
    return int.from_bytes(blake2b(raw, digest_size=8).digest(), "big")


def _rank(v: Any) -> tuple:
    if v is None:
        return (0, 0)
    if isinstance(v, (bool, int, float)):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, orjson.dumps(v, option=_OPTS))


def content_key(ev: dict[str, Any]) -> tuple:
    """The content order: field by field (by name), numbers as numbers (two pings
    of one car in one second: by latitude, then longitude, as the SQL sorts them)."""
    return tuple((k, *_rank(v)) for k, v in sorted(_content(ev).items()))


def settle_ties(evs: list[dict[str, Any]]) -> None:
    """In a list sorted by :data:`sort_key`, put the records equal by it in content
    order (in place; one pass in C when there are no ties)."""
    ties = list(compress(count(1), map(eq, map(sort_key, evs), map(sort_key, islice(evs, 1, None)))))
    i, n = 0, len(ties)
    while i < n:
        start = end = ties[i]
        while i + 1 < n and ties[i + 1] == end + 1:
            i += 1
            end += 1
        evs[start - 1:end + 1] = sorted(evs[start - 1:end + 1], key=content_key)
        i += 1


def settled(evs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The records of an iterable sorted by :data:`sort_key`, ties in content order."""
    for _, group in groupby(evs, key=sort_key):
        first = next(group)
        rest = list(group)
        if rest:
            yield from sorted([first, *rest], key=content_key)
        else:
            yield first
