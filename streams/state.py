"""Persisted state of a partition: detector states and the partition's clocks.

A family's state lives in one backend (a Faust table in the worker,
:class:`DictBackend` in tests): per partition, every detector subject's
pickled state, and one *clocks* record (engine watermark and now, input
frontiers, pending end-of-data ticks, and the offsets processed — where a
restart resumes).

States are written by reassignment, once per checkpoint, only those changed
(:class:`PartitionStore` remembers which). The clocks record is a pickled
dict; its format (version :data:`META_VERSION`) is read back by
:func:`decode_clocks` and by :func:`resume_offset` / :func:`ended` without
building an engine.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["StateBackend", "DictBackend", "PartitionStore", "META_VERSION", "load_stores",
           "write_states", "encode_clocks", "decode_clocks", "resume_offset", "ended"]

_PICKLE = pickle.HIGHEST_PROTOCOL
META_VERSION = 1


class StateBackend(Protocol):
    """Where a family's partition state is persisted (a Faust table in the worker)."""

    def load(self, partition: int) -> tuple[dict[str, dict[str, bytes]], bytes | None]:
        """``({detector: {subject: pickled state}}, pickled clocks or None)`` of a partition."""
        ...

    def load_meta(self, partition: int) -> bytes | None:
        """The partition's pickled clocks (None: nothing persisted yet)."""
        ...

    def put(self, partition: int, anchor: Any, detector: str, subject: str,
            value: bytes | None) -> None:
        """Write (or, with ``None``, delete) one subject's state. ``anchor``: a message
        of the partition (the worker's table picks its changelog partition by it)."""
        ...

    def put_meta(self, partition: int, anchor: Any, value: bytes) -> None: ...


class DictBackend:
    """An in-memory backend (tests, and to see what the worker would persist)."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, dict[str, bytes]]] = {}
        self.meta: dict[int, bytes] = {}
        self.writes = 0

    def load(self, partition: int) -> tuple[dict[str, dict[str, bytes]], bytes | None]:
        return ({d: dict(v) for d, v in self.data.get(partition, {}).items()},
                self.meta.get(partition))

    def load_meta(self, partition: int) -> bytes | None:
        return self.meta.get(partition)

    def put(self, partition: int, anchor: Any, detector: str, subject: str,
            value: bytes | None) -> None:
        self.writes += 1
        d = self.data.setdefault(partition, {}).setdefault(detector, {})
        if value is None:
            d.pop(subject, None)
        else:
            d[subject] = value

    def put_meta(self, partition: int, anchor: Any, value: bytes) -> None:
        self.meta[partition] = value


class PartitionStore(dict):
    """A detector's states of one partition: a dict that remembers which keys changed.

    The engine writes a state back by reassignment after every call
    (``store[key] = st``); the key is then dirty, and the state is pickled and
    written to the backend once per checkpoint, whatever the number of events.
    """

    __slots__ = ("dirty",)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.dirty: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self.dirty.add(key)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key)
        self.dirty.add(key)

    def mark_all_dirty(self) -> None:
        self.dirty.update(self.keys())


def load_stores(raw_states: dict[str, dict[str, bytes]],
                detectors: Iterable[str]) -> dict[str, PartitionStore]:
    """One :class:`PartitionStore` per detector, filled with its persisted states."""
    stores: dict[str, PartitionStore] = {}
    for name in detectors:
        st = PartitionStore()
        for k, v in (raw_states.get(name) or {}).items():
            dict.__setitem__(st, k, pickle.loads(v))
        stores[name] = st
    return stores


def write_states(backend: StateBackend, partition: int, anchor: Any,
                 stores: dict[str, PartitionStore]) -> int:
    """Write every changed state (a deleted one as a deletion); return how many."""
    n = 0
    for name, st in stores.items():
        if not st.dirty:
            continue
        for k in st.dirty:
            v = st.get(k)
            backend.put(partition, anchor, name, k,
                        None if v is None and k not in st else pickle.dumps(v, _PICKLE))
            n += 1
        st.dirty.clear()
    return n


def encode_clocks(*, max_t: float, watermark: float, now: float, frontier: dict[str, float],
                  eod: dict[str, tuple[float, list[str]]], eod_done: list[str],
                  acked: dict[str, int], skip: dict[str, list[int]]) -> bytes:
    return pickle.dumps({"v": META_VERSION, "max_t": max_t, "watermark": watermark, "now": now,
                         "frontier": frontier, "eod": eod, "eod_done": eod_done[-50:],
                         "acked": acked, "skip": skip}, _PICKLE)


def decode_clocks(raw: bytes) -> dict[str, Any]:
    m = pickle.loads(raw)
    return {"max_t": m.get("max_t", float("-inf")), "watermark": m.get("watermark", float("-inf")),
            "now": m.get("now", float("-inf")), "frontier": dict(m.get("frontier") or {}),
            "eod": dict(m.get("eod") or {}), "eod_done": list(m.get("eod_done") or []),
            "acked": dict(m.get("acked") or {}), "skip": dict(m.get("skip") or {})}


def resume_offset(raw: bytes | None, topic: str, partition: int) -> int | None:
    """Where the persisted clocks say a topic partition resumes (None: they do not say)."""
    if raw is None:
        return None
    pos = (pickle.loads(raw).get("acked") or {}).get(f"{topic}:{partition}")
    return pos if pos is not None and pos >= 0 else None


def ended(raw: bytes | None) -> bool:
    """Whether the persisted clocks have been through an end-of-data tick."""
    return raw is not None and bool(pickle.loads(raw).get("eod_done"))
