"""Publishing a contract directory to the input topics (``lianwatch produce``).

The messages and their order come from :func:`~lianwatch.streams.plan.plan_directory`
(reference first, events in event-time order, progress and end-of-data
ticks); :class:`~lianwatch.streams.publisher.KafkaPublisher` sends them and
rides out broker restarts. ``speed`` paces event time against wall time, and
while paced a progress tick goes out at least every ``tick_interval_s``.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

from lianwatch.models.clock import DEFAULT_TZ

from .plan import Planned, plan_directory, ticks
from .publisher import KafkaPublisher
from .topics import EVENT_STREAMS, Topics

__all__ = ["Planned", "plan_directory", "ticks", "KafkaPublisher", "publish_directory",
           "PublishResult"]


@dataclass
class PublishResult:
    counts: Counter
    seconds: float
    messages: int
    #: messages sent again after a broker outage, and the outages ridden out
    resent: int = 0
    outages: int = 0

    @property
    def events(self) -> int:
        return sum(self.counts.get(s, 0) for s in EVENT_STREAMS)


def publish_directory(input_dir: str | Path, topics: Topics, bootstrap: str, *,
                      tz: tzinfo = DEFAULT_TZ, speed: float | None = None,
                      tick_every: int = 5000, tick_interval_s: float = 0.5, eod: bool = True,
                      as_of: float | None = None, compression: str | None = None,
                      linger_ms: int = 20, progress: Any = None, after: float | None = None,
                      publisher: KafkaPublisher | None = None,
                      retry_for: float = 60.0) -> PublishResult:
    """Publish a directory. ``speed``: event time runs ``speed`` × faster than wall
    time (None: as fast as possible). ``as_of`` / ``after``: only events in
    ``(after, as_of]`` (a feed published in parts). ``retry_for``: how long a
    broker may stay away before this gives up (a BrokerError)."""
    counts: Counter[str] = Counter()
    pub = publisher or KafkaPublisher(bootstrap, linger_ms=linger_ms, compression=compression,
                                      retry_for=retry_for)
    run_id = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    last_tick = t0
    first_t: float | None = None
    ref_done = False
    n = 0
    ok = False
    try:
        for m in plan_directory(input_dir, topics, tz=tz, tick_every=tick_every, eod=eod,
                                as_of=as_of, counts=counts, run_id=run_id, after=after):
            if m.kind == "event":
                if not ref_done:
                    pub.flush()  # reference data is on the broker before any event
                    ref_done = True
                if speed:
                    if first_t is None:
                        first_t = m.t
                        t0 = time.perf_counter()
                    lag = (m.t - first_t) / speed - (time.perf_counter() - t0)  # type: ignore[operator]
                    if lag > 0.002:
                        pub.sleep(lag)
                now = time.perf_counter()
                if tick_interval_s and now - last_tick >= tick_interval_s:
                    for tk in ticks(topics, "wm", wm=m.t, id=f"{run_id}-w{n}"):
                        pub.send(tk)
                    last_tick = now
            elif m.kind == "tick":
                last_tick = time.perf_counter()
            pub.send(m)
            n += 1
            if progress is not None and n % 10000 == 0:
                progress(n, counts)
        pub.flush()
        ok = True
    finally:
        if publisher is None:
            pub.close(flush=ok)
    return PublishResult(counts=counts, seconds=time.perf_counter() - t0, messages=n,
                         resent=pub.resent, outages=pub.outages)
