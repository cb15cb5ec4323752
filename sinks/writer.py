"""The store writer: batches, retries with backoff, spills to disk, replays in order.

Rows (canonical, see :mod:`lianwatch.sinks.schema`) enter a FIFO in memory and are
sent to the store in batches:

- a batch goes when ``max_rows`` rows wait or the oldest has waited ``max_delay``
  seconds (defaults 500 rows / 0.2 s: an alert is in the store well under a
  second after it is raised); under load a batch takes up to ``max_batch_rows``;
- a failed send (server down, timeout, refusal) is retried after an exponential
  backoff (``retry_initial`` doubling up to ``retry_max``); the rows stay at the
  head of the queue, so order is kept; rows of a table already accepted in a
  partly failed batch are not sent again;
- the memory queue holds at most ``max_buffer_rows`` rows; when it is full (a long
  outage) new rows go to the on-disk queue (:mod:`lianwatch.sinks.spill`) and, once
  the store is back, come back in the order they were written, after the rows in
  memory. At :meth:`Writer.close` whatever could not be sent is written to disk
  too, and the next writer on the same ``spill_dir`` sends it first;
- a row the store refuses as bad data (not a transient error) is isolated by
  halving its batch and set aside in ``rejected-*.lws`` (same format), counted and
  logged: it never blocks the rows behind it.

Nothing is doubled in the store's current view: a batch re-sent after an
ambiguous failure (the server took it but the answer was lost) holds the same
(alert id, version) rows, which ``ReplacingMergeTree`` folds to one (``FINAL``,
``alerts_current``); archive tables fold on (subject, time, event id).

Time comes only from ``clock`` (monotonic seconds, injectable); with
``background=False`` nothing runs by itself and a test drives :meth:`poll`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from lianwatch.models.alert import Alert
from lianwatch.sinks.base import StoreError
from lianwatch.sinks.spill import SpillQueue, encode_record

__all__ = ["Writer", "WriterConfig"]

log = logging.getLogger(__name__)

# a chunk of the memory queue: [first seq, table, rows, segment path or None, time it came in]
# (rows of one put, or consecutive rows of one table read back from a segment)
_Chunk = list

class WriterConfig:
    """Tunables (defaults tuned for sub-second alert latency)."""

    def __init__(self, *, max_rows: int = 500, max_delay: float = 0.2,
                 max_batch_rows: int = 50_000, max_buffer_rows: int = 200_000,
                 retry_initial: float = 0.1, retry_max: float = 10.0,
                 block_timeout: float = 2.0, segment_bytes: int = 4 << 20,
                 fsync: bool = False) -> None:
        self.max_rows = max(1, int(max_rows))
        self.max_delay = float(max_delay)
        self.max_batch_rows = max(self.max_rows, int(max_batch_rows))
        self.max_buffer_rows = max(self.max_batch_rows, int(max_buffer_rows))
        self.retry_initial = float(retry_initial)
        self.retry_max = float(retry_max)
        self.block_timeout = float(block_timeout)
        self.segment_bytes = int(segment_bytes)
        self.fsync = fsync


class Writer:
    """Writes alerts, archived events and dead letters to an :class:`AlertStore`."""

    def __init__(self, store: Any, *, spill_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic, background: bool = True,
                 config: WriterConfig | None = None, **tunables: Any) -> None:
        self.store = store
        self.cfg = config or WriterConfig(**tunables)
        self.clock = clock
        self.spill = (SpillQueue(spill_dir, self.cfg.segment_bytes, self.cfg.fsync)
                      if spill_dir is not None else None)
        self._mem: deque[_Chunk] = deque()
        self._nrows = 0  # rows in memory
        self._seg_left: dict[Any, int] = {}  # loaded segment → rows of it not yet sent
        self._seq = self.spill.next_seq() if self.spill else 1
        self._failures = 0  # consecutive
        self._retry_at = float("-inf")
        self._cond = threading.Condition(threading.RLock())
        self._send_lock = threading.Lock()
        self._stop = False
        self._forcing = 0
        self.stats: dict[str, int] = dict.fromkeys(
            ("rows_in", "rows_sent", "batches", "send_failures", "rows_spilled",
             "rows_replayed", "rows_rejected"), 0)
        self.last_error: str | None = None
        #: called with (table, rows) after each accepted insert (tests, metrics)
        self.on_sent: Callable[[str, Sequence[tuple]], None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="lianwatch-writer",
                                            daemon=True)
            self._thread.start()

    def __repr__(self) -> str:
        return (f"Writer({self.store!r}, pending={self._nrows}, "
                f"spill={str(self.spill.dir) if self.spill else None!r})")

    # ------------------------------------------------------------------ producers
    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        self.put("alerts", self.store.rows_for_alerts(alerts))

    def archive(self, stream: str, records: Iterable[tuple[dict[str, Any], bytes]],
                subject_of: Any = None) -> int:
        rows = self.store.rows_for_archive(stream, records, subject_of)
        self.put(f"events_{stream}", rows)
        return len(rows)

    def write_deadletters(self, items: Iterable[dict[str, Any]]) -> None:
        self.put("deadletters", self.store.rows_for_deadletters(items))

    def put(self, table: str, rows: Sequence[tuple]) -> None:
        """Queue canonical rows of ``table`` (they keep their order, across tables too)."""
        if not rows:
            return
        step = max(1, self.cfg.max_buffer_rows // 2)
        for i in range(0, len(rows), step):
            self._put(table, list(rows[i:i + step]))

    def _put(self, table: str, rows: list[tuple]) -> None:
        n = len(rows)
        with self._cond:
            self.stats["rows_in"] += n
            if self._full(n) and self._healthy():
                # the store keeps up but we are ahead of it: wait a little for room (not when
                # a backlog drains from disk: new rows go behind it at once)
                if self._thread is not None:
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: not self._full(n) or not self._healthy()
                                        or self._stop, timeout=self.cfg.block_timeout)
                else:
                    while self._full(n) and self._healthy():
                        self._cond.release()
                        try:
                            self._send_batch(force=True)
                        finally:
                            self._cond.acquire()
            was_empty = not self._mem
            seq0 = self._seq
            self._seq += n
            to_disk = not self._has_room(n) and self.spill is not None
            if to_disk:
                assert self.spill is not None
                try:
                    self.spill.append(seq0, ((table, r) for r in rows))
                    self.stats["rows_spilled"] += n
                except OSError as exc:  # a full or broken disk: memory is the last resort
                    log.error("cannot spill %d rows to %s (%s): keeping them in memory", n,
                              self.spill.dir, exc)
                    to_disk = False
            if not to_disk:
                # (no disk queue configured, or it failed: memory is the only place, unbounded)
                self._mem.append([seq0, table, rows, None, self.clock()])
                self._nrows += n
            if was_empty or self._nrows >= self.cfg.max_rows:
                self._cond.notify_all()  # the thread recomputes when a batch is due

    def _full(self, n: int) -> bool:
        """Memory has no room for ``n`` more rows and no backlog waits on disk."""
        return (self._nrows + n > self.cfg.max_buffer_rows and bool(self._mem)
                and not (self.spill is not None and self.spill.pending))

    def _has_room(self, n: int) -> bool:
        if self.spill is not None and self.spill.pending:
            return False  # older rows wait on disk: these go behind them
        return self._nrows + n <= self.cfg.max_buffer_rows

    def _healthy(self) -> bool:
        return self._failures == 0

    @property
    def failing(self) -> bool:
        """The last send failed (the writer retries with backoff, and spills)."""
        return self._failures > 0

    # ------------------------------------------------------------------ sending
    def pending(self) -> int:
        """Rows not yet in the store (in memory + on disk, when known)."""
        with self._cond:
            disk = self.spill.pending_rows() if self.spill else 0
            return self._nrows + (disk or 0)

    def _due(self, now: float) -> bool:
        if not self._mem:
            return False
        return (self._nrows >= self.cfg.max_rows or now - self._mem[0][4] >= self.cfg.max_delay
                or bool(self.spill and self.spill.pending))  # a backlog goes at once

    def _next_wakeup(self, now: float) -> float:
        """Seconds until something is due (the thread sleeps that long at most)."""
        if now < self._retry_at:
            return self._retry_at - now
        spilled = bool(self.spill and self.spill.pending)
        if spilled or (self._forcing and self._mem):
            return 0.0
        if not self._mem:
            return 0.0 if spilled else 3600.0
        if self._nrows >= self.cfg.max_rows:
            return 0.0
        return max(0.0, self._mem[0][4] + self.cfg.max_delay - now)

    def _load_spill(self) -> None:
        """Bring the oldest segments into memory while there is room (under the lock)."""
        sp = self.spill
        while sp is not None and sp.pending and (
                not self._mem or self._nrows <= self.cfg.max_buffer_rows // 2):
            got = sp.load_next()
            if got is None:  # pragma: no cover
                return
            path, seq0, rows = got
            if not rows:
                sp.remove(path)
                continue
            self._seg_left[path] = len(rows)
            # consecutive rows of one table make a chunk; rows read back are due at once
            i = 0
            for table, grp in itertools.groupby(rows, key=lambda tr: tr[0]):
                rs = [r for _, r in grp]
                self._mem.append([seq0 + i, table, rs, path, float("-inf")])
                i += len(rs)
            self._nrows += len(rows)
            self.stats["rows_replayed"] += len(rows)

    def poll(self) -> int:
        """One step: send a batch if one is due and no backoff runs. Returns rows sent."""
        return self._send_batch(force=False)

    def _take_batch(self) -> list[_Chunk]:
        """The head chunks, up to ``max_batch_rows`` rows (a chunk is split if need be)."""
        limit = self.cfg.max_batch_rows
        mem = self._mem
        n = k = 0
        while k < len(mem) and n < limit:
            ch = mem[k]
            m = len(ch[2])
            if n + m > limit:  # split: the first part goes now, the rest stays at the head
                cut = limit - n
                mem.insert(k, [ch[0], ch[1], ch[2][:cut], ch[3], ch[4]])
                ch[0] += cut
                ch[2] = ch[2][cut:]
                m = cut
            n += m
            k += 1
        return list(itertools.islice(mem, k))

    def _send_batch(self, force: bool) -> int:
        with self._send_lock:
            with self._cond:
                now = self.clock()
                if now < self._retry_at:
                    return 0
                self._load_spill()
                if not (force or self._forcing) and not self._due(now):
                    return 0
                batch = self._take_batch()
            if not batch:
                return 0
            done = [False] * len(batch)
            error: StoreError | None = None
            groups: dict[str, list[int]] = {}
            for i, ch in enumerate(batch):
                groups.setdefault(ch[1], []).append(i)
            sent = 0
            for table, idx in groups.items():
                rows = (batch[idx[0]][2] if len(idx) == 1
                        else [r for i in idx for r in batch[i][2]])
                try:
                    rejected = self._send_table(table, rows)
                except StoreError as exc:
                    error = exc
                    break
                for i in idx:
                    done[i] = True
                sent += len(rows) - rejected
            with self._cond:
                self._settle(batch, done)
                self.stats["rows_sent"] += sent
                if error is None:
                    self.stats["batches"] += 1
                    if self._failures:
                        log.info("store reachable again after %d failed attempts",
                                 self._failures)
                    self._failures = 0
                    self._retry_at = float("-inf")
                else:
                    self._failures += 1
                    self.stats["send_failures"] += 1
                    delay = min(self.cfg.retry_max,
                                self.cfg.retry_initial * 2 ** min(self._failures - 1, 30))
                    self._retry_at = self.clock() + delay
                    self.last_error = str(error)
                    (log.warning if self._failures in (1, 10, 100) or self._failures % 1000 == 0
                     else log.debug)(
                        "store write failed (attempt %d, %d rows waiting in memory%s): %s; "
                        "retry in %.2fs", self._failures, self._nrows,
                        ", more on disk" if self.spill and self.spill.pending else "",
                        error, delay)
                self._cond.notify_all()
            return sent

    def _send_table(self, table: str, rows: list[tuple]) -> int:
        """Insert rows; bad data is isolated by halving and set aside. Returns rows rejected."""
        try:
            self.store.insert_rows(table, rows)
        except StoreError as exc:
            if exc.transient:
                raise
            if len(rows) == 1:
                self._reject(table, rows, exc)
                return 1
            mid = len(rows) // 2
            return self._send_table(table, rows[:mid]) + self._send_table(table, rows[mid:])
        if self.on_sent is not None:
            self.on_sent(table, rows)
        return 0

    def _reject(self, table: str, rows: list[tuple], exc: Exception) -> None:
        self.stats["rows_rejected"] += len(rows)
        log.error("store refused a row of %s (%s): set aside", table, exc)
        if self.spill is not None:
            p = self.spill.dir / f"rejected-{self._seq:020d}.lws"
            with open(p, "ab") as f:
                f.write(b"".join(encode_record(table, r) for r in rows))

    def _settle(self, batch: list[_Chunk], done: list[bool]) -> None:
        """Drop the sent head chunks; keep the others at the head, in order (under the lock)."""
        mem = self._mem
        for _ in batch:
            mem.popleft()
        keep = [ch for ch, d in zip(batch, done) if not d]
        mem.extendleft(reversed(keep))
        for ch, d in zip(batch, done):
            if not d:
                continue
            self._nrows -= len(ch[2])
            seg = ch[3]
            if seg is not None:
                left = self._seg_left[seg] - len(ch[2])
                if left > 0:
                    self._seg_left[seg] = left
                else:
                    del self._seg_left[seg]
                    assert self.spill is not None
                    self.spill.remove(seg)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                wait = self._next_wakeup(self.clock())
                if wait > 0:
                    self._cond.wait(min(wait, 1.0))
                if self._stop:
                    return
            try:
                self._send_batch(force=False)
            except Exception:  # pragma: no cover - a bug must not kill the writer silently
                log.exception("store writer: unexpected error")
                with self._cond:
                    self._failures += 1
                    self._retry_at = self.clock() + self.cfg.retry_max

    def _empty(self) -> bool:
        return not self._mem and not (self.spill and self.spill.pending)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything (memory and disk) now. True when all of it is in the store.

        With a background thread: wait up to ``timeout`` seconds (None: no limit) for it.
        Without: send until a send fails (then False; :meth:`poll` retries after backoff).
        """
        if self._thread is None:
            while True:
                with self._cond:
                    if self._empty():
                        return True
                if self.clock() < self._retry_at:
                    return False
                failures = self.stats["send_failures"]
                self._send_batch(force=True)
                if self.stats["send_failures"] != failures:
                    return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._forcing += 1
            self._cond.notify_all()
            try:
                while not self._empty():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(0.05 if left is None else min(left, 0.05))
                return True
            finally:
                self._forcing -= 1

    def close(self, timeout: float = 5.0) -> bool:
        """Flush (up to ``timeout`` s), stop, and keep whatever is left on disk.

        Returns True when everything reached the store.
        """
        ok = self.flush(timeout if self._thread is not None else None)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._cond:
            left = self._persist_fresh(sync=True)
            if left and self.spill is not None:
                log.warning("store writer closed with %d rows unsent: kept in %s", left,
                            self.spill.dir)
            elif left:
                log.error("store writer closed with %d rows unsent and no spill directory: "
                          "they are lost", left)
            self._mem.clear()
            self._nrows = 0
            if self.spill is not None:
                self.spill.close()
        return ok and not left and not (self.spill and self.spill.pending)

    def _persist_fresh(self, sync: bool) -> int:
        """Write the rows only memory holds to disk (under the lock); return how many.

        Rows read back from disk are still on disk; fresh ones are persisted as runs
        of consecutive sequence numbers, each a segment named by its first: it sorts
        between the segments it came between. The chunks stay in memory (the caller
        drops them). Without a spill directory nothing is written.
        """
        left = 0
        runs: list[list[_Chunk]] = []
        for ch in self._mem:
            if ch[3] is not None:
                continue
            if runs and runs[-1][-1][0] + len(runs[-1][-1][2]) == ch[0]:
                runs[-1].append(ch)
            else:
                runs.append([ch])
            left += len(ch[2])
        if left and self.spill is not None:
            for run in runs:
                self.spill.write_run(run[0][0], [(ch[1], r) for ch in run for r in ch[2]],
                                     sync=sync)
            self.stats["rows_spilled"] += left
        return left

    # ------------------------------------------------------------------ durability
    def persist(self, timeout: float = 1.0) -> bool:
        """Make every row put so far durable: accepted by the store, or on disk.

        Sends at once (no ``max_delay``) and waits up to ``timeout`` seconds while
        the store keeps up. Whatever only memory holds after that — the store is
        down, refusing or slower than ``timeout`` — is written to the spill
        directory, read back and sent once the store takes it again. Returns True
        when every row reached the store. The stream worker calls this before it
        acknowledges the input the rows came from.

        Rows spilled here may reach the store after newer rows read back from disk
        earlier; every table folds repeated rows (alert versions, archive keys), so
        the order across a persist does not change what the store shows.
        """
        with self._cond:
            target = self._seq
            if self._durable(target, sent=True):
                return True
        if self._healthy() and self._wait_sent(target, timeout):
            return True
        if self.spill is None:
            return False
        with self._send_lock:  # no batch in flight: its rows are still at the head
            with self._cond:
                n = self._persist_fresh(sync=self.cfg.fsync)
                if n:
                    self._mem = deque(ch for ch in self._mem if ch[3] is not None)
                    self._nrows -= n
                    log.info("store not keeping up (%s): %d rows written to %s",
                             self.last_error or "slow", n, self.spill.dir)
                self._cond.notify_all()
        return False

    def _durable(self, target: int, sent: bool = False) -> bool:
        """No row below sequence ``target`` is only in memory (``sent``: nor on disk)."""
        for ch in self._mem:
            if ch[0] < target and (sent or ch[3] is None):
                return False
        return not (sent and self.spill is not None and self.spill.pending
                    and self.spill.first_seq() < target)

    def _wait_sent(self, target: int, timeout: float) -> bool:
        """Send until no row below ``target`` waits in memory; False on a failure or timeout."""
        failures = self.stats["send_failures"]
        if self._thread is None:
            while not self._durable(target):
                if self.clock() < self._retry_at:
                    return False
                self._send_batch(force=True)
                if self.stats["send_failures"] != failures:
                    return False
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            self._forcing += 1
            self._cond.notify_all()
            try:
                while not self._durable(target):
                    left = deadline - time.monotonic()
                    if left <= 0 or self.stats["send_failures"] != failures or self._stop:
                        return False
                    self._cond.wait(min(left, 0.05))
                return True
            finally:
                self._forcing -= 1

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
