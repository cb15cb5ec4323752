"""Topic names, subject families, partitioning and topic creation for the live pipeline.

Topics (names are ``prefix + name``, prefix ``lw.`` by default, CONTRACT §2)::

    gps, fuel, payments, progress         input events (raw JSON bytes)
    ref.vehicles … ref.projects           reference data, compacted, keyed by id
    fuel.by-vehicle                       internal: fuel re-keyed by vehicle
    alerts                                alerts, keyed by alert_id
    deadletter                            unreadable / set-aside records

Every per-stream fact (the topic suffix, the field a topic is keyed by) comes
from :data:`lianwatch.models.streams.SPECS`; which streams the worker runs,
and how, is the one table :data:`FAMILIES`: a family is the set of streams
one engine takes (co-partitioned topics, keyed by the same subject), the
reference kinds they need, and the streams re-keyed before the engine (a fuel
transaction may name only its card: it is re-keyed by vehicle through the
card table into ``fuel.by-vehicle``). Adding a family is one entry there.

Keys: gps by ``vehicle_id``; fuel by ``vehicle_id`` (``card_id`` when the
record has none: ``rekeyed``); payments by ``village_id``; progress by ``project_id``.
Partitions are chosen with Kafka's default partitioner (murmur2 of the key),
so any client that keys records this way lands them where the worker expects.

>>> partition_for("V0007", 4) == partition_for(b"V0007", 4)
True
>>> FAMILIES["vehicles"].inputs, FAMILIES["payments"].key_field
(('gps', 'fuel.by-vehicle'), 'village_id')
>>> sorted(Topics().ref_topics.values())[:2]
['lw.ref.officials', 'lw.ref.projects']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from lianwatch.errors import BrokerError, ConfigError
from lianwatch.models.streams import REFERENCE_SPECS, SPECS

from .kafka_errors import already_exists, broker_errors

__all__ = [
    "Topics", "Family", "FAMILIES", "STREAM_FAMILY", "EVENT_STREAMS", "REFERENCE_KINDS",
    "partition_for", "ensure_topics", "changelog_specs", "topic_key",
]


def _murmur2(data: bytes) -> int:
    from kafka.partitioner.default import murmur2

    return murmur2(data)


@lru_cache(maxsize=1 << 16)
def partition_for(key: str | bytes, partitions: int) -> int:
    """Kafka's default partitioner: ``toPositive(murmur2(key)) % partitions``."""
    b = key.encode("utf-8") if isinstance(key, str) else key
    return (_murmur2(b) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Family:
    """One subject family: the streams its engine consumes (co-partitioned topics)."""

    name: str
    #: event streams the family's engine takes (each keyed by the same subject field)
    streams: tuple[str, ...]
    #: the reference kind the family's subjects are (a key the reference does not know
    #: makes the worker catch up with the reference topics first)
    subject: str
    #: reference kinds its detectors need (the worker follows their compacted topics)
    reference: tuple[str, ...]
    #: streams whose records may lack the key: re-keyed into ``<stream>.by-<subject>``
    #: through the reference; each with the field such a record is keyed by instead
    rekeyed: dict[str, str] = field(default_factory=dict)

    @property
    def key_field(self) -> str:
        return SPECS[self.streams[0]].key_field

    def input_of(self, stream: str) -> str:
        """The logical topic the engine reads a stream from."""
        if stream in self.rekeyed:
            return f"{SPECS[stream].topic}.by-{self.key_field.removesuffix('_id')}"
        return SPECS[stream].topic

    @property
    def inputs(self) -> tuple[str, ...]:
        """Logical input topics of the family's engine (the re-keyed ones, not the raw)."""
        return tuple(self.input_of(s) for s in self.streams)


def _families(*fams: Family) -> dict[str, Family]:
    for f in fams:
        keys = {SPECS[s].key_field for s in f.streams}
        if len(keys) != 1:
            raise ValueError(f"family {f.name}: its streams are keyed by {sorted(keys)}")
    return {f.name: f for f in fams}


#: the streams the worker runs: one entry per engine family
FAMILIES: dict[str, Family] = _families(
    Family("vehicles", ("gps", "fuel"), subject="vehicles", reference=("vehicles",),
           rekeyed={"fuel": "card_id"}),
    Family("payments", ("payments",), subject="villages", reference=("villages", "officials")),
    Family("projects", ("progress",), subject="projects", reference=("projects",)),
)
#: event stream → family
STREAM_FAMILY: dict[str, str] = {s: f.name for f in FAMILIES.values() for s in f.streams}
#: the event streams on Kafka, in the contract's order
EVENT_STREAMS: tuple[str, ...] = tuple(s for s in SPECS if s in STREAM_FAMILY)
#: the reference kinds on Kafka (compacted topics), in the contract's order
REFERENCE_KINDS: tuple[str, ...] = tuple(
    s.name for s in REFERENCE_SPECS if any(s.name in f.reference for f in FAMILIES.values()))


def topic_key(stream: str, rec: dict[str, Any]) -> str:
    """The key a record of ``stream`` is published with (the family's subject field, or
    for a re-keyed stream's record without it, its fallback field)."""
    fam = FAMILIES[STREAM_FAMILY[stream]]
    key = rec.get(fam.key_field)
    if not key and stream in fam.rekeyed:
        key = rec.get(fam.rekeyed[stream])
    return str(key) if key else ""


@dataclass
class Topics:
    """Concrete topic names and partition counts."""

    prefix: str = "lw."
    partitions: int = 4
    #: per-family partition counts (default: ``partitions``)
    family_partitions: dict[str, int] = field(default_factory=dict)
    #: the worker group the internal topics belong to (two groups on one prefix
    #: must not share them: each re-keys every transaction)
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
        return {s: self.name(SPECS[s].topic) for s in EVENT_STREAMS}

    @property
    def ref_topics(self) -> dict[str, str]:
        return {k: self.name(SPECS[k].topic) for k in REFERENCE_KINDS}

    def rekeyed_topic(self, stream: str) -> str:
        """The internal re-keyed topic of a stream (another app id than the default:
        ``….<app_id>``)."""
        base = self.name(FAMILIES[STREAM_FAMILY[stream]].input_of(stream))
        return base if self.app_id == "lianwatch" else f"{base}.{self.app_id}"

    @property
    def fuel_by_vehicle(self) -> str:
        """``lw.fuel.by-vehicle``."""
        return self.rekeyed_topic("fuel")

    def input_topic(self, family: str, stream: str) -> str:
        """The concrete topic a family's engine reads a stream from."""
        fam = FAMILIES[family]
        return self.rekeyed_topic(stream) if stream in fam.rekeyed else self.name(
            fam.input_of(stream))

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
        for fam in FAMILIES.values():
            for s in fam.rekeyed:
                specs[self.rekeyed_topic(s)] = (self.family_n(fam.name), {})
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
    the configured one is an error: co-partitioning depends on it. Broker
    errors leave as :class:`~lianwatch.errors.BrokerError`.
    """
    with broker_errors(f"setting up topics on {bootstrap}"):
        from kafka.admin import KafkaAdminClient, NewTopic

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
                    with broker_errors("creating topics"):
                        admin.create_topics(missing, timeout_ms=int(timeout_s * 1000))
                    created = [t.name for t in missing]
                except BrokerError as exc:
                    if not already_exists(exc):
                        raise
                    # a concurrent worker created them
                _wait_leaders(admin, [t.name for t in missing], timeout_s)
            present = [n for n in specs if n in existing]
            if present:
                _check_partitions(admin, present, specs)
            return created
        finally:
            admin.close()


def _check_partitions(admin: Any, names: list[str],
                      specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    for desc in admin.describe_topics(names):
        name = desc.get("name") or desc.get("topic")
        n = len(desc.get("partitions") or [])
        want = specs[name][0]
        if n and n != want:
            raise ConfigError(f"topic {name} has {n} partitions, configured {want}: "
                             "co-partitioned topics must have the configured count")


def _wait_leaders(admin: Any, names: list[str], timeout_s: float) -> None:
    """New topics: wait until every partition has a leader (no NotLeader retries later)."""
    deadline = time.monotonic() + min(timeout_s, 15.0)
    while time.monotonic() < deadline:
        try:
            with broker_errors("describing new topics"):
                descs = admin.describe_topics(names)
        except BrokerError:  # not visible yet
            descs = []
        ok = len(descs) == len(names) and all(
            d.get("partitions") and all(p.get("leader_id", p.get("leader", -1)) not in (-1, None)
                                        for p in d["partitions"]) for d in descs)
        if ok:
            return
        time.sleep(0.1)

