"""The worker's periodic chores (a Faust timer runs :meth:`Housekeeper.run_once`).

- unreadable reference records go to the dead letters;
- ``--input stream``: a family with unflushed state whose input went quiet
  is sent a flush tick through Kafka, like every clock (no table writes from
  timers); the bulk input checkpoints by itself when its fetch comes back empty;
- ``--idle-exit``: once every owned partition has been through an end of
  data, nothing is unflushed, the store writer has nothing pending and no
  input came for that long, the worker is asked to stop (cleanly);
- the status file (assignment, counters, what waits, the store writer) is
  rewritten, and counters are logged every ``stats_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from .batch import DeadLetter
from .state import ended
from .worker_state import WorkerState, status

__all__ = ["Housekeeper"]

log = logging.getLogger("lianwatch.streams")


class Housekeeper:
    def __init__(self, state: WorkerState, processors: Mapping[str, Any], rekeyer: Any,
                 sinks: Any, group: Any, *, request_stop: Callable[[], None],
                 send_flush: Callable[[str, int], Awaitable[Any]] | None = None,
                 idle_exit: float | None = None, status_file: str | None = None,
                 stats_interval: float = 0.0, state_interval: float = 1.0) -> None:
        self.state = state
        self.processors = processors
        self.rekeyer = rekeyer
        self.sinks = sinks
        self.group = group
        self.request_stop = request_stop
        #: stream input: ``send_flush(topic, partition)`` sends a flush tick there
        self.send_flush = send_flush
        self.idle_exit = idle_exit
        self.status_file = status_file
        self.stats_interval = stats_interval
        self.state_interval = state_interval
        self._last_stats = time.monotonic()

    async def run_once(self) -> None:
        await self.flush_bad_reference()
        if self.send_flush is not None:
            await self.flush_quiet_families()
        self.maybe_stop()
        if self.status_file:
            self.write_status()
        if self.stats_interval and time.monotonic() - self._last_stats >= self.stats_interval:
            self._last_stats = time.monotonic()
            log.warning("stats %s", self.status())

    def status(self) -> dict[str, Any]:
        return status(self.state, self.processors, self.rekeyer, self.sinks, self.group.assigned())

    # ------------------------------------------------------------ chores
    async def flush_bad_reference(self) -> None:
        bad, self.state.bad_reference = self.state.bad_reference, []
        if bad:
            await self.sinks.write_deadletters(
                [DeadLetter(kind, source, reason, raw) for kind, source, raw, reason in bad])

    async def flush_quiet_families(self) -> None:
        assigned = self.group.assigned()
        for name, fs in self.state.families.items():
            quiet = time.monotonic() - fs.last_batch
            if not fs.unflushed or fs.busy or quiet < self.state_interval:
                continue
            proc = self.processors[name]
            topic = proc.topic_names[0]
            futs = [await self.send_flush(topic, p)
                    for p in sorted(p for t, p in assigned if t == topic) if p < proc.partitions]
            if futs:
                await asyncio.gather(*futs)
            fs.unflushed = False

    def at_end(self) -> bool:
        """Every partition this worker owns has been through an end-of-data tick."""
        mine = self.group.assigned()
        if not mine or not self.group.recovered():
            return False
        for proc in self.processors.values():
            for p in {p for t, p in mine if t in proc.topic_names}:
                rt = proc.runtimes.get(p)
                if rt is not None:
                    if not rt.eod_done or rt.heap:
                        return False
                elif not ended(proc.backend.load_meta(p)):  # not touched since the rebalance
                    return False
        return True

    def maybe_stop(self) -> None:
        st = self.state
        if self.idle_exit is None or st.stopping:
            return
        if time.monotonic() - st.last_input <= self.idle_exit or st.unflushed():
            return
        if self.sinks.store_pending():
            return  # rows still on their way to the store
        if self.at_end():
            st.stopping = True
            log.warning("end of data and no input for %.0f s: stopping", self.idle_exit)
            self.request_stop()

    def write_status(self) -> None:
        st = self.status()
        st["time"] = time.time()
        tmp = self.status_file + ".tmp"  # type: ignore[operator]
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(st))
        os.replace(tmp, self.status_file)  # type: ignore[arg-type]

