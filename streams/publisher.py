"""A batching Kafka producer for raw bytes that survives a broker restart.

Messages are appended to one record batch per topic partition (explicit
partition, or Kafka's default partitioner on the key); a batch is sent when
full, when it is older than ``linger_ms``, or on :meth:`KafkaPublisher.flush`
(aiokafka's batch API, driven synchronously: roughly 5–10× the rate of a
per-message ``send``). Order is kept per partition.

Every batch keeps its messages until the broker has acknowledged it. When a
batch cannot be delivered (the broker went away for longer than aiokafka's
own retries, a partition has no leader, the connection is gone), the
publisher waits for every batch in flight, drops the producer, and retries
with backoff: a new producer, then the failed batches and those not yet sent,
in their order — it resumes where it was; nothing is lost, and only a batch
the broker took without answering can arrive twice (consumers dedupe by id).
A broker that stays away longer than ``retry_for`` seconds ends it with a
:class:`~lianwatch.errors.BrokerError` saying so (the command prints that one
line and exits 1).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from lianwatch.errors import BrokerError

from .kafka_errors import broker_errors, is_broker_error, to_broker_error
from .plan import Planned
from .topics import partition_for

__all__ = ["KafkaPublisher"]

log = logging.getLogger("lianwatch.streams.publisher")


class KafkaPublisher:
    """Batches raw messages to Kafka; retries and resumes across broker outages."""

    def __init__(self, bootstrap: str, *, linger_ms: int = 20, batch_size: int = 1 << 19,
                 compression: str | None = None, acks: int | str = 1, retry_for: float = 60.0,
                 request_timeout: float = 15.0, backoff_max: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap = bootstrap
        self.loop = asyncio.new_event_loop()
        self.linger = linger_ms / 1000.0
        self.batch_size = batch_size
        self.retry_for = retry_for
        self.backoff_max = backoff_max
        self.clock = clock
        self._opts = dict(bootstrap_servers=bootstrap, client_id="lianwatch-produce",
                          linger_ms=linger_ms, max_batch_size=batch_size,
                          max_request_size=max(batch_size * 2, 1 << 20),
                          compression_type=compression, acks=acks,
                          request_timeout_ms=int(request_timeout * 1000))
        self.p: Any = None
        #: topic partition → (open batch, its messages)
        self._batches: dict[tuple[str, int], tuple[Any, list[tuple[tuple[str, int], Planned]]]] = {}
        self._born: dict[tuple[str, int], float] = {}
        #: shipped batches not yet acknowledged: (future, messages), in ship order
        self._inflight: list[tuple[Any, list[tuple[tuple[str, int], Planned]]]] = []
        self._nparts: dict[str, int] = {}
        self._unshipped: list[tuple[tuple[str, int], Planned]] = []
        self.sent = 0
        self.resent = 0
        self.outages = 0
        try:
            self._start()
        except BrokerError as exc:
            self._recover(exc)

    # ------------------------------------------------------------ connection
    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _start(self) -> None:
        from aiokafka import AIOKafkaProducer

        async def start() -> Any:
            p = AIOKafkaProducer(**self._opts)  # made inside the loop it runs in
            try:
                await p.start()
            except BaseException:
                await p.stop()
                raise
            return p

        with broker_errors(f"connecting to {self.bootstrap}"):
            self.p = self._run(start())

    def _drop_producer(self) -> None:
        p, self.p = self.p, None
        if p is not None:
            try:
                self._run(p.stop())
            except Exception as exc:  # noqa: BLE001 - a dead connection; nothing to keep
                log.debug("producer stop: %r", exc)

    def _partitions(self, topic: str) -> int:
        n = self._nparts.get(topic)
        while n is None:
            try:
                with broker_errors(f"reading the partitions of {topic}"):
                    n = self._nparts[topic] = len(self._run(self.p.partitions_for(topic)))
            except BrokerError as exc:
                self._recover(exc)
        return n

    # ------------------------------------------------------------ sending
    def send(self, m: Planned) -> None:
        part = m.partition
        if part is None:
            part = partition_for(m.key or b"", self._partitions(m.topic))
        self._append((m.topic, part), m)
        self.sent += 1
        if self.sent % 512 == 0:
            self.poll()

    def _append(self, tp: tuple[str, int], m: Planned) -> None:
        entry = self._batches.get(tp)
        if entry is None:
            entry = self._new_batch(tp)
        if entry[0].append(key=m.key, value=m.value, timestamp=None, headers=m.headers) is None:
            self._ship(tp)
            entry = self._new_batch(tp)
            if entry[0].append(key=m.key, value=m.value, timestamp=None, headers=m.headers) is None:
                raise ValueError(f"record too large for a batch ({len(m.value)} bytes)")
        entry[1].append((tp, m))

    def _new_batch(self, tp: tuple[str, int]) -> tuple[Any, list[tuple[tuple[str, int], Planned]]]:
        entry = self._batches[tp] = (self.p.create_batch(), [])
        self._born[tp] = time.monotonic()
        return entry

    def _send_batch(self, tp: tuple[str, int]) -> None:
        """Hand one open batch to the producer (a BrokerError if it refuses it)."""
        batch, msgs = self._batches.pop(tp)
        self._born.pop(tp, None)
        batch.close()
        try:
            with broker_errors(f"sending to {tp[0]}[{tp[1]}]"):
                fut = self._run(self.p.send_batch(batch, tp[0], partition=tp[1]))
        except BrokerError:
            self._unshipped = msgs
            raise
        self._inflight.append((fut, msgs))

    def _ship(self, tp: tuple[str, int]) -> None:
        try:
            self._send_batch(tp)
        except BrokerError as exc:
            first, self._unshipped = self._unshipped, []
            self._recover(exc, first)

    def poll(self) -> None:
        """Ship batches older than the linger time; let the client make progress."""
        now = time.monotonic()
        for tp in [tp for tp, t in self._born.items() if now - t >= self.linger]:
            if tp in self._batches:
                self._ship(tp)
        self.sleep(0)
        if len(self._inflight) > 256:
            self._reap()

    def _reap(self) -> None:
        """Forget delivered batches; a failed one starts a recovery."""
        if any(f.done() and f.exception() is not None for f, _ in self._inflight):
            self._recover(None)
            return
        self._inflight = [(f, m) for f, m in self._inflight if not f.done()]

    def sleep(self, seconds: float) -> None:
        self._run(asyncio.sleep(seconds))

    def flush(self) -> None:
        """Send everything; return once the broker has acknowledged all of it."""
        for tp in list(self._batches):
            if tp in self._batches:
                self._ship(tp)
        failed, error = self._settle()
        if failed:
            self._recover(error, failed)

    def close(self, flush: bool = True) -> None:
        """Flush (unless ``flush`` is False: after a failure) and stop the producer."""
        try:
            if flush:
                self.flush()
        finally:
            self._drop_producer()
            self.loop.close()

    # ------------------------------------------------------------ outages
    def _settle(self) -> tuple[list[tuple[tuple[str, int], Planned]], BrokerError | None]:
        """Wait for every batch in flight; return the messages of those that failed."""
        failed: list[tuple[tuple[str, int], Planned]] = []
        error: BrokerError | None = None
        for fut, msgs in self._inflight:
            try:
                self._run(fut)
            except Exception as exc:  # noqa: BLE001 - a client error is sorted out below
                if not is_broker_error(exc):
                    raise
                failed.extend(msgs)
                error = to_broker_error(exc, "delivering a batch")
        self._inflight = []
        return failed, error

    def _unsent(self) -> list[tuple[tuple[str, int], Planned]]:
        out = [m for _, msgs in self._batches.values() for m in msgs]
        self._batches.clear()
        self._born.clear()
        return out

    def _recover(self, error: BrokerError | None,
                 first: list[tuple[tuple[str, int], Planned]] | None = None) -> None:
        """Reconnect with backoff and deliver what did not arrive, in order (see module doc)."""
        failed, err = self._settle()
        pending = failed + list(first or ()) + self._unsent()
        error = error or err
        deadline = self.clock() + self.retry_for
        delay = 0.25
        self.outages += 1
        log.warning("%s; retrying for up to %.0f s (%d messages to send again)",
                    error, self.retry_for, len(pending))
        while True:
            self._drop_producer()
            if self.clock() + delay > deadline:
                raise BrokerError(f"Kafka at {self.bootstrap} unreachable for {self.retry_for:.0f} s "
                                  f"(last: {error}); {len(pending)} messages not delivered",
                                  transient=True)
            self.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
            try:
                self._start()
                for tp, m in pending:
                    self._append_quiet(tp, m)
                for tp in list(self._batches):
                    self._send_batch(tp)
            except BrokerError as exc:  # try again, from the same messages
                error = exc
                self._inflight, self._unshipped = [], []
                self._batches.clear()
                self._born.clear()
                continue
            failed, err = self._settle()
            if not failed:
                self.resent += len(pending)
                log.warning("Kafka at %s is back: %d messages sent again", self.bootstrap,
                            len(pending))
                return
            pending, error = failed, err

    def _append_quiet(self, tp: tuple[str, int], m: Planned) -> None:
        """Append during a recovery: a full batch is handed over at once (errors go up)."""
        entry = self._batches.get(tp) or self._new_batch(tp)
        if entry[0].append(key=m.key, value=m.value, timestamp=None, headers=m.headers) is None:
            self._send_batch(tp)
            entry = self._new_batch(tp)
            entry[0].append(key=m.key, value=m.value, timestamp=None, headers=m.headers)
        entry[1].append((tp, m))
