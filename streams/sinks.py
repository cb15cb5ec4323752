"""Where a batch's output goes: the output topics and the alert store.

Each batch (:meth:`WorkerSinks.write`): alerts to ``lw.alerts`` (keyed by
alert id), dead letters to ``lw.deadletter`` (the original bytes, the reason
in headers), re-keyed fuel to ``fuel.by-vehicle`` — through an injected
:class:`Publisher` — and alert and dead-letter rows to the store through the
retrying, spilling :class:`~lianwatch.sinks.writer.Writer`. Raw events for the
archive wait here until the checkpoint's step 2.

Nothing here waits for the store: a store that is down or slow makes the
writer retry with backoff and spill to disk (under the worker's data
directory), so the worker keeps consuming within its memory bound and catches
up when the store is back. What a checkpoint needs is *durability*
(:meth:`outputs_durable`, :meth:`archive_durable`): the topic sends
delivered, and the rows accepted by the store or on disk.

Alerts are handed to the notifier once the store has accepted them (the
writer's ``on_sent``), on a thread of their own: a notification problem never
stops detection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from lianwatch.models.alert import Alert

from .batch import BatchOutput, DeadLetter
from .topics import Topics

__all__ = ["Publisher", "WorkerSinks", "claim_spill_dir"]

log = logging.getLogger("lianwatch.streams")


class Publisher(Protocol):
    """Sends one message; the awaitable it returns resolves once the broker has it."""

    async def send(self, topic: str, key: bytes | None, value: bytes, *,
                   partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Awaitable[Any]: ...


def _index(names: Sequence[str], *wanted: str) -> tuple[int, ...]:
    return tuple(names.index(w) for w in wanted)


class WorkerSinks:
    """The worker's outputs: topics through ``publisher``, store rows through ``writer``."""

    def __init__(self, publisher: Publisher, topics: Topics, writer: Any = None, *,
                 archive: bool = True, notifier: Any = None, latency_log: str | None = None,
                 persist_timeout: float = 1.0, wall: Callable[[], float] = time.time) -> None:
        self.publisher = publisher
        self.topics = topics
        self.writer = writer
        self.archive = archive and writer is not None
        self.notifier = notifier
        self.persist_timeout = persist_timeout
        self.wall = wall
        self.ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lianwatch-store")
        self.notify_ex = (concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="lianwatch-notify") if notifier is not None else None)
        self.counts: Counter[str] = Counter()
        self.pending_archive: dict[str, list[tuple[dict[str, Any], bytes]]] = {}
        self.pending_rows = 0
        self._sends: list[Awaitable[Any]] = []
        self._lock = threading.Lock()
        self._to_notify: dict[tuple[str, int], Alert] = {}
        self._lat = open(latency_log, "a", buffering=1) if latency_log else None  # noqa: SIM115
        if writer is not None:
            from lianwatch.sinks.schema import TABLES

            self._cols = _index(TABLES["alerts"].names, "alert_id", "version", "source_event_ids")
            writer.on_sent = self._on_sent

    # ------------------------------------------------------------ each batch
    async def write(self, out: BatchOutput) -> None:
        """Send the batch's messages and queue its rows; nothing here waits for delivery."""
        send = self.publisher.send
        t = self.topics
        sends = self._sends
        for a in out.alerts.values():
            sends.append(await send(t.alerts, a.alert_id.encode(), orjson.dumps(a.to_json_dict())))
        for d in out.deadletters:
            sends.append(await send(t.deadletter, d.stream.encode(), d.raw, headers=[
                ("lw-stream", d.stream.encode()), ("lw-source", d.source.encode()),
                ("lw-reason", d.reason.encode("utf-8"))]))
        for p, key, value, headers in out.forwards:
            sends.append(await send(t.fuel_by_vehicle, key, value, partition=p,
                                    headers=list(headers.items())))
        if self.writer is not None and (out.alerts or out.deadletters):
            await self._in_store_thread(self._queue_rows, list(out.alerts.values()),
                                        out.deadletters, self.wall())
        if self.archive:
            for stream, rows in out.archive.items():
                self.pending_archive.setdefault(stream, []).extend(rows)
                self.pending_rows += len(rows)
        self.counts["alerts"] += len(out.alerts)
        self.counts["deadletters"] += len(out.deadletters)
        self.counts["forwards"] += len(out.forwards)

    async def write_deadletters(self, dead: list[DeadLetter]) -> None:
        out = BatchOutput()
        out.deadletters = dead
        await self.write(out)

    def _queue_rows(self, alerts: list[Alert], dead: list[DeadLetter], now: float) -> None:
        w = self.writer
        if dead:
            w.write_deadletters({"received_t": now, "stream": d.stream, "source": d.source,
                                 "reason": d.reason, "raw": d.raw.decode("utf-8", "replace")}
                                for d in dead)
        if alerts:
            if self.notifier is not None:
                with self._lock:
                    for a in alerts:
                        self._to_notify[(a.alert_id, int(a.version))] = a
            w.write_alerts(alerts)

    async def _in_store_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.ex, fn, *args)

    # ------------------------------------------------------------ checkpoint steps
    async def outputs_durable(self) -> None:
        """Step 1: the topic sends delivered; alert and dead-letter rows stored or spilled."""
        if self._sends:
            sends, self._sends = self._sends, []
            await asyncio.gather(*sends)
        if self.writer is not None:
            await self._in_store_thread(self.writer.persist, self.persist_timeout)

    async def archive_durable(self) -> None:
        """Step 2: the archive rows queued and stored or spilled."""
        if not self.pending_rows:
            return
        pending, self.pending_archive, self.pending_rows = self.pending_archive, {}, 0
        await self._in_store_thread(self._archive_rows, pending)
        await self._in_store_thread(self.writer.persist, self.persist_timeout)

    def _archive_rows(self, pending: dict[str, list[tuple[dict[str, Any], bytes]]]) -> None:
        for stream, rows in pending.items():
            if rows:
                self.counts["archived"] += self.writer.archive(stream, rows)

    # ------------------------------------------------------------ store feedback
    def _on_sent(self, table: str, rows: Sequence[tuple]) -> None:
        """The writer's thread: rows the store accepted (latency log, notifications)."""
        if table != "alerts":
            return
        i_id, i_ver, i_src = self._cols
        if self._lat is not None:
            now = time.time()
            self._lat.write("".join(f"{r[i_id]}\t{r[i_ver]}\t{','.join(r[i_src])}\t{now:.6f}\n"
                                    for r in rows))
        if self.notifier is not None:
            with self._lock:
                got = [a for r in rows if (a := self._to_notify.pop((r[i_id], int(r[i_ver])), None))]
            if got:
                self.run_notifier(lambda: self.notifier.on_alerts(got, time.time()),
                                  f"notifying {len(got)} alerts (they stay in the store; "
                                  "the next tick retries)")

    def run_notifier(self, fn: Callable[[], Any], what: str) -> concurrent.futures.Future | None:
        """Run a notifier call on its thread; its failure is logged, never raised."""
        def call() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a notification problem never stops detection
                log.exception("notifier failed: %s", what)
        return self.notify_ex.submit(call) if self.notify_ex is not None else None

    # ------------------------------------------------------------ status, end
    def store_pending(self) -> bool:
        """Rows not yet in the store (in the writer's memory or on disk)."""
        w = self.writer
        return w is not None and bool(w.pending() or (w.spill is not None and w.spill.pending))

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        w = self.writer
        if w is not None:
            out["store"] = {**w.stats, "pending": w.pending(), "failing": w.failing,
                            "last_error": w.last_error}
        return out

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the threads; the writer sends what it can in ``timeout`` and keeps the rest
        on disk. True when everything reached the store."""
        self.ex.shutdown(wait=True)
        if self.notify_ex is not None:
            self.notify_ex.shutdown(wait=True)
        ok = True
        if self.writer is not None:
            ok = self.writer.close(timeout)
        if self._lat is not None:
            self._lat.close()
        return ok


def claim_spill_dir(base: str | Path, name: str) -> tuple[Path, IO[bytes]]:
    """A spill directory under ``base`` for one worker process: ``name``, else ``name.1``, …

    Each is held by an exclusive lock (released when the process ends, however it
    ends), so two workers on one data directory never share one, and a worker
    started after one that was killed takes over its directory — and sends what
    that one left on disk first. Returns the directory and the open lock file.
    """
    root = Path(base)
    for i in range(64):
        d = root / (name if i == 0 else f"{name}.{i}")
        d.mkdir(parents=True, exist_ok=True)
        f = open(d / ".lock", "ab")  # noqa: SIM115 - held for the life of the worker
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        return d, f
    raise OSError(f"no free spill directory under {root} (64 workers hold one)")
