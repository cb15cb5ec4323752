"""Reference data from the compacted ``ref.*`` topics: a full copy in every worker.

Reference data is small and every engine needs all of it (a fuel card may
belong to any vehicle), so it is not partitioned among workers: each worker
reads every partition of every ``ref.*`` topic from the beginning (no consumer
group), first to the end before it starts processing (:meth:`RefFollower.bootstrap`),
then follows it in a background thread. Updates are queued and applied to the
shared :class:`~lianwatch.reference.Reference` by the event loop, between
batches (:meth:`RefFollower.apply_pending`), so an engine never sees the
reference change under it. :meth:`RefFollower.sync` catches up to the current
end of the topics on demand — called when an event names an id the reference
does not know yet (reference records published just before the events).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from lianwatch.errors import BrokerError
from lianwatch.models.parse import parse_reference
from lianwatch.reference import Reference

from .kafka_errors import broker_errors
from .topics import Topics

__all__ = ["RefFollower", "FollowerSync"]

log = logging.getLogger("lianwatch.streams.ref")


class RefFollower:
    def __init__(self, bootstrap: str, topics: Topics, ref: Reference | None = None,
                 on_bad: Any = None) -> None:
        self.servers = bootstrap
        self.topics = topics
        self.ref = ref if ref is not None else Reference()
        self.kind_of = {t: k for k, t in topics.ref_topics.items()}
        self._q: queue.SimpleQueue[tuple[str, bytes | None, bytes | None, str]] = queue.SimpleQueue()
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the consumer is not thread-safe
        self.counts: Counter[str] = Counter()
        self.bad: list[tuple[str, str, bytes, str]] = []  # (kind, source, raw, reason)
        self.on_bad = on_bad
        self.changed_kinds: set[str] = set()
        self._last_sync = 0.0

    # ------------------------------------------------------------------ set-up
    def _open(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.servers, client_id="lianwatch-ref",
                          enable_auto_commit=False, group_id=None,
                          auto_offset_reset="earliest", fetch_max_wait_ms=100,
                          consumer_timeout_ms=200)
        tps = []
        for t in self.kind_of:
            parts = c.partitions_for_topic(t)
            deadline = time.monotonic() + 10
            while not parts and time.monotonic() < deadline:
                time.sleep(0.2)
                c.topics()  # a metadata request: the topic may be new
                parts = c.partitions_for_topic(t)
            for p in sorted(parts or ()):
                tps.append(TopicPartition(t, p))
        c.assign(tps)
        c.seek_to_beginning(*tps)
        self._tps = tps
        return c

    def bootstrap(self, timeout_s: float = 60.0) -> Reference:
        """Read every ref topic to its current end; apply it. Call before processing.
        A broker that cannot be reached raises :class:`~lianwatch.errors.BrokerError`."""
        with broker_errors(f"reading the reference topics from {self.servers}"):
            self._consumer = self._open()
            self._catch_up(timeout_s)
        self.apply_pending()
        return self.ref

    def start(self) -> None:
        """Follow the ref topics in a background thread."""
        if self._consumer is None:
            with broker_errors(f"reading the reference topics from {self.servers}"):
                self._consumer = self._open()
        self._thread = threading.Thread(target=self._run, name="lianwatch-ref", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    # ------------------------------------------------------------------ reading
    def _poll_once(self, timeout_ms: int) -> int:
        n = 0
        recs = self._consumer.poll(timeout_ms=timeout_ms, max_records=5000)
        for tp, msgs in recs.items():
            kind = self.kind_of[tp.topic]
            for m in msgs:
                self._q.put((kind, m.key, m.value, f"{tp.topic}:{tp.partition}:{m.offset}"))
                n += 1
        return n

    def _catch_up(self, timeout_s: float) -> bool:
        """Poll until every partition's position reaches its end offset (as of now)."""
        with self._lock:
            c = self._consumer
            end = c.end_offsets(self._tps)
            deadline = time.monotonic() + timeout_s
            while True:
                if all(c.position(tp) >= off for tp, off in end.items()):
                    return True
                if time.monotonic() > deadline:
                    log.warning("reference topics: catch-up timed out")
                    return False
                self._poll_once(100)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock, broker_errors("following the reference topics"):
                    if self._consumer is None:
                        return
                    self._poll_once(200)
            except BrokerError as exc:  # keep following; the broker may come back
                log.warning("%s", exc)
                time.sleep(1.0)
            time.sleep(0.01)

    def sync(self, timeout_s: float = 5.0, min_interval_s: float = 1.0) -> bool:
        """Catch up to the current end of the ref topics (blocking; run in an executor).

        Rate-limited: a call within ``min_interval_s`` of the last returns at once.
        """
        now = time.monotonic()
        if now - self._last_sync < min_interval_s:
            return False
        self._last_sync = now
        if self._consumer is None:
            return False
        try:
            with broker_errors("catching up with the reference topics"):
                return self._catch_up(timeout_s)
        except BrokerError as exc:  # the background thread keeps following
            log.warning("%s", exc)
            return False

    # ------------------------------------------------------------------ applying
    def apply_pending(self) -> set[str]:
        """Apply queued updates to the reference (event-loop thread); return kinds changed."""
        changed: set[str] = set()
        while True:
            try:
                kind, key, value, source = self._q.get_nowait()
            except queue.Empty:
                break
            if value is None:  # a tombstone: the record was deleted
                self._delete(kind, key)
                changed.add(kind)
                continue
            rec, why = parse_reference(kind, value)
            if rec is None:
                self.counts["bad"] += 1
                if len(self.bad) < 10_000:
                    self.bad.append((kind, source, value, why or "invalid"))
                if self.on_bad is not None:
                    self.on_bad(kind, source, value, why or "invalid")
                continue
            self.ref.add(kind, rec)
            self.counts[kind] += 1
            changed.add(kind)
        self.changed_kinds |= changed
        return changed

    def _delete(self, kind: str, key: bytes | None) -> None:
        if key is not None:
            self.ref.remove(kind, key.decode("utf-8", "replace"))


class FollowerSync:
    """A :class:`RefFollower` as the batch runner's reference sync.

    :meth:`apply` applies what the follower received (between batches) and
    tells ``on_change`` (the processors re-index their subjects);
    :meth:`sync` catches up with the topics now, off the event loop.
    """

    def __init__(self, follower: RefFollower, on_change: Callable[[], None]) -> None:
        self.follower = follower
        self.on_change = on_change

    def apply(self) -> None:
        if self.follower.apply_pending():
            self.on_change()

    async def sync(self) -> None:
        if await asyncio.get_running_loop().run_in_executor(None, self.follower.sync):
            self.apply()
