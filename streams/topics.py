"""Topic names, partitioning, tick records and topic creation for the live pipeline.

Topics (names are ``prefix + name``, prefix ``lw.`` by default, CONTRACT §2)::

    gps, fuel, payments, progress         input events (raw JSON bytes)
    ref.vehicles … ref.projects           reference data, compacted, keyed by id
    fuel.by-vehicle                       internal: fuel re-keyed by vehicle
    alerts                                alerts, keyed by alert_id
    deadletter                            unreadable / set-aside records

Keys: gps by ``vehicle_id``; fuel by ``vehicle_id`` (``card_id`` when the
record has none; the worker re-keys it through the card → vehicle table);
payments by ``village_id``; progress by ``project_id``. Partitions are chosen
with Kafka's default partitioner (murmur2 of the key), so any client that
keys records this way lands them where the worker expects.

Tick records share the input topics. Each is a JSON object whose first key is
the reserved marker ``__lw_tick__``::

    {"__lw_tick__": 1, "kind": "wm",   "wm": 1772409600.0, "id": "…"}   # producer progress
    {"__lw_tick__": 1, "kind": "eod",  "as_of": 1772409600.0, "id": "…"}  # end of data
    {"__lw_tick__": 1, "kind": "wall", "now": 1772409600.0, "id": "…"}  # wall clock
    {"__lw_tick__": 1, "kind": "flush", "id": "…"}  # a worker wakes itself to persist

>>> partition_for("V0007", 4) == partition_for(b"V0007", 4)
True
>>> is_tick(encode_tick("wm", wm=1.0)), is_tick(b'{"vehicle_id": "V1"}')
(True, False)
>>> decode_tick(encode_tick("eod", as_of=5.0, id="x"))["as_of"]
5.0
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "Topics", "Family", "FAMILIES", "partition_for", "is_tick", "encode_tick", "decode_tick",
    "TICK_MARKER", "ensure_topics", "changelog_specs", "REF_ID_FIELD", "EVENT_KEY_FIELD",
]

TICK_MARKER = b'{"__lw_tick__"'
#: the field each reference kind is keyed by on its compacted topic
REF_ID_FIELD = {"vehicles": "vehicle_id", "villages": "village_id",
                "officials": "person_id", "projects": "project_id"}
#: the field each event stream is keyed by
EVENT_KEY_FIELD = {"gps": "vehicle_id", "fuel": "vehicle_id", "payments": "village_id",
                   "progress": "project_id"}


def _murmur2(data: bytes) -> int:
    from kafka.partitioner.default import murmur2

    return murmur2(data)


@lru_cache(maxsize=1 << 16)
def partition_for(key: str | bytes, partitions: int) -> int:
    """Kafka's default partitioner: ``toPositive(murmur2(key)) % partitions``."""
    b = key.encode("utf-8") if isinstance(key, str) else key
    return (_murmur2(b) & 0x7FFFFFFF) % partitions


def is_tick(raw: bytes | None) -> bool:
    return raw is not None and raw[:14] == TICK_MARKER


def encode_tick(kind: str, **fields: Any) -> bytes:
    rec: dict[str, Any] = {"__lw_tick__": 1, "kind": kind}
    rec.update(fields)
    rec.setdefault("id", uuid.uuid4().hex[:16])
    return orjson.dumps(rec)


def decode_tick(raw: bytes) -> dict[str, Any] | None:
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rec, dict) or rec.get("kind") not in ("wm", "eod", "wall", "flush"):
        return None
    return rec


@dataclass(frozen=True)
class Family:
    """One subject family: its engine consumes these (co-partitioned) topics."""

    name: str
    #: event streams the family's engine takes
    streams: tuple[str, ...]
    #: logical input topics consumed by the family's engine (not the raw fuel topic)
    inputs: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    "vehicles": Family("vehicles", ("gps", "fuel"), ("gps", "fuel.by-vehicle")),
    "payments": Family("payments", ("payments",), ("payments",)),
    "projects": Family("projects", ("progress",), ("progress",)),
}
#: event stream → family
STREAM_FAMILY = {s: f.name for f in FAMILIES.values() for s in f.streams}


@dataclass
class Topics:
    """Concrete topic names and partition counts."""

    prefix: str = "lw."
    partitions: int = 4
    #: per-family partition counts (default: ``partitions``)
    family_partitions: dict[str, int] = field(default_factory=dict)
    #: the worker group the internal topic belongs to (two groups on one prefix
    #: must not share it: each re-keys every transaction)
    app_id: str = "lianwatch"
    ref_partitions: int = 1
    out_partitions: int = 0  # alerts/deadletter; 0: same as ``partitions``
    replication: int = 1

    def name(self, logical: str) -> str:
        return self.prefix + logical

    def family_n(self, family: str) -> int:
        return self.family_partitions.get(family, self.partitions)

    def stream_n(self, stream: str) -> int:
        """Partitions of an event stream's topic (and of the family it feeds)."""
        return self.family_n(STREAM_FAMILY[stream])

    @property
    def event_topics(self) -> dict[str, str]:
        return {s: self.name(s) for s in ("gps", "fuel", "payments", "progress")}

    @property
    def ref_topics(self) -> dict[str, str]:
        return {k: self.name(f"ref.{k}") for k in REF_ID_FIELD}

    @property
    def fuel_by_vehicle(self) -> str:
        """``lw.fuel.by-vehicle`` (another app id than the default: ``….<app_id>``)."""
        base = self.name("fuel.by-vehicle")
        return base if self.app_id == "lianwatch" else f"{base}.{self.app_id}"

    @property
    def alerts(self) -> str:
        return self.name("alerts")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    def specs(self) -> dict[str, tuple[int, dict[str, str]]]:
        """Every topic the pipeline uses: name → (partitions, configs)."""
        out_n = self.out_partitions or self.partitions
        specs: dict[str, tuple[int, dict[str, str]]] = {}
        for s, t in self.event_topics.items():
            specs[t] = (self.stream_n(s), {})
        specs[self.fuel_by_vehicle] = (self.family_n("vehicles"), {})
        for t in self.ref_topics.values():
            specs[t] = (self.ref_partitions, {"cleanup.policy": "compact"})
        specs[self.alerts] = (out_n, {})
        specs[self.deadletter] = (out_n, {})
        return specs


def changelog_specs(app_id: str, topics: Topics) -> dict[str, tuple[int, dict[str, str]]]:
    """The worker's table changelogs (Faust's names), compacted, co-partitioned."""
    return {f"{app_id}-state-{fam}-changelog": (topics.family_n(fam), {"cleanup.policy": "compact"})
            for fam in FAMILIES}


def ensure_topics(bootstrap: str, topics: Topics, timeout_s: float = 30.0,
                  extra: dict[str, tuple[int, dict[str, str]]] | None = None) -> list[str]:
    """Create the missing topics (admin client); return the names created.

    Existing topics are left alone, but a partition count that differs from
    the configured one is an error: co-partitioning depends on it.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lianwatch-admin",
                             request_timeout_ms=int(timeout_s * 1000))
    try:
        specs = topics.specs()
        specs.update(extra or {})
        existing = set(admin.list_topics())
        missing = [NewTopic(name=n, num_partitions=p, replication_factor=topics.replication,
                            topic_configs=cfg)
                   for n, (p, cfg) in specs.items() if n not in existing]
        created: list[str] = []
        if missing:
            try:
                admin.create_topics(missing, timeout_ms=int(timeout_s * 1000))
                created = [t.name for t in missing]
            except TopicAlreadyExistsError:  # a concurrent worker created them
                pass
            _wait_leaders(admin, [t.name for t in missing], timeout_s)
        present = [n for n in specs if n in existing]
        if present:
            for desc in admin.describe_topics(present):
                name = desc.get("name") or desc.get("topic")
                n = len(desc.get("partitions") or [])
                want = specs[name][0]
                if n and n != want:
                    raise ValueError(f"topic {name} has {n} partitions, configured {want}: "
                                     "co-partitioned topics must have the configured count")
        return created
    finally:
        admin.close()


def _wait_leaders(admin: Any, names: list[str], timeout_s: float) -> None:
    """New topics: wait until every partition has a leader (no NotLeader retries later)."""
    import time

    deadline = time.monotonic() + min(timeout_s, 15.0)
    while time.monotonic() < deadline:
        try:
            descs = admin.describe_topics(names)
        except Exception:  # noqa: BLE001 - not visible yet
            descs = []
        ok = len(descs) == len(names) and all(
            d.get("partitions") and all(p.get("leader_id", p.get("leader", -1)) not in (-1, None)
                                        for p in d["partitions"]) for d in descs)
        if ok:
            return
        time.sleep(0.1)


def wait_topics(bootstrap: str, names: list[str], timeout_s: float = 30.0) -> None:
    """Wait until the broker's metadata lists every topic in ``names`` with leaders."""
    import time

    from kafka import KafkaConsumer

    c = KafkaConsumer(bootstrap_servers=bootstrap, client_id="lianwatch-wait")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            have = c.topics()
            missing = [n for n in names if n not in have or not c.partitions_for_topic(n)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not ready: {', '.join(missing)}")
            time.sleep(0.2)
            c._client.cluster.request_update()  # noqa: SLF001 - refresh metadata
    finally:
        c.close()
