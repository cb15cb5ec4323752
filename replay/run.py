"""``lianwatch replay``: a contract directory in, alerts out, in event time, no broker, no server.

Reference data is loaded first; events from every file are validated (bad
lines are set aside with their reason), put in event-time order (external
sort: bounded memory), and fed to the one engine loop. At the end the clock
moves to ``--as-of`` (default: the newest event time) and each alert is
written once, in its final state.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import IO, Any

import orjson

from lianwatch.detectors import default_detectors
from lianwatch.engine import Engine
from lianwatch.models.alert import Alert
from lianwatch.models.clock import DEFAULT_TZ, format_ts
from lianwatch.models.parse import fast_parser, parse_event
from lianwatch.reference import Reference
from lianwatch.replay.files import (
    EVENT_STREAMS, find_files, open_chunks, reference_records,
)
from lianwatch.replay.sort import ExternalSorter
from lianwatch.rules import RuleSet

__all__ = ["replay_dir", "ReplayResult", "DeadLetters", "load_reference", "deadletter_path"]


def deadletter_path(output: str | Path) -> Path:
    p = Path(output)
    name = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(name + ".deadletter.jsonl")


class DeadLetters:
    """Records set aside, with their reason: a JSONL file and counts."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._f: IO[bytes] | None = open(path, "wb") if path is not None else None
        self.counts: Counter[str] = Counter()
        self.items: list[dict[str, Any]] = []  # kept for the store (bounded by input errors)

    def add(self, stream: str, source: str, reason: str, raw: bytes | str | dict) -> None:
        if isinstance(raw, bytes):
            raw_s = raw.decode("utf-8", "replace")
        elif isinstance(raw, dict):
            raw_s = orjson.dumps(raw).decode()
        else:
            raw_s = raw
        rec = {"stream": stream, "source": source, "reason": reason, "raw": raw_s}
        self.counts[stream] += 1
        if len(self.items) < 100_000:
            self.items.append(rec)
        if self._f is not None:
            self._f.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


@dataclass
class ReplayResult:
    alerts: list[Alert]
    read: Counter = field(default_factory=Counter)
    set_aside: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    as_of: float | None = None
    after_as_of: int = 0
    runs_spilled: int = 0

    @property
    def events(self) -> int:
        return sum(v for k, v in self.read.items() if k in EVENT_STREAMS)

    def by_rule(self) -> Counter:
        return Counter((a.rule, a.level) for a in self.alerts)


def load_reference(files: dict[str, Path], dead: DeadLetters, tz: tzinfo) -> tuple[Reference, Counter]:
    ref = Reference()
    read: Counter[str] = Counter()
    for kind, source, line, rec, why in reference_records(files):
        if rec is None:
            dead.add(kind, source, why or "invalid", line)
            continue
        ref.add(kind, rec)
        read[kind] += 1
    return ref, read


def _events(files: dict[str, Path], dead: DeadLetters, tz: tzinfo, read: Counter,
            progress: Callable[[int], None] | None,
            archive: Callable[[str, dict, bytes], None] | None) -> Iterator[dict[str, Any]]:
    done_before = 0
    for stream in EVENT_STREAMS:
        p = files.get(stream)
        if p is None:
            continue
        n = 0
        parse = fast_parser(stream, tz)
        lean = stream == "gps"
        for first, lines, done in open_chunks(p):
            for i, line in enumerate(lines):
                ev = parse(line)
                if ev is None:
                    if not line.strip():
                        continue
                    ev, why = parse_event(stream, line, tz)
                    if ev is None:
                        dead.add(stream, f"{p.name}:{first + i}", why or "invalid", line)
                        continue
                if lean:  # pings are most of the input: keep what the detectors read
                    ev = {"t": ev["t"], "_s": "gps", "_id": ev["_id"], "vehicle_id": ev["vehicle_id"],
                          "lat": ev["lat"], "lon": ev["lon"]}
                n += 1
                if archive is not None:
                    archive(stream, ev, line)
                yield ev
            if progress is not None:
                progress(done_before + done)
        read[stream] += n
        done_before += p.stat().st_size


def replay_dir(
    input_dir: str | Path,
    output: str | Path | None = None,
    *,
    rules: RuleSet | None = None,
    as_of: float | None = None,
    tz: tzinfo = DEFAULT_TZ,
    max_in_memory: int = 1_000_000,
    progress: bool | None = None,
    store: Any = None,
    archive_batch: int = 100_000,
) -> ReplayResult:
    """Replay a contract directory; write alerts to ``output`` (JSONL) if given.

    ``store``: an :class:`~lianwatch.sinks.store.AlertStore` to write alerts,
    dead letters and the raw-event archive to (the demo does).
    """
    t0 = time.perf_counter()
    rules = rules or RuleSet()
    files = find_files(input_dir)
    dead = DeadLetters(deadletter_path(output) if output is not None else None)
    ref, read = load_reference(files, dead, tz)
    engine = Engine(default_detectors(), rules, ref, tz=tz)
    engine.start()
    if store is not None:
        store.write_reference(ref)

    bar = None
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm import tqdm

        total = sum(files[s].stat().st_size for s in EVENT_STREAMS if s in files)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="replay", file=sys.stderr,
                   mininterval=0.5)

    def tick(done: int) -> None:
        assert bar is not None
        bar.update(done - bar.n)

    archive_fn = None
    pending: dict[str, list[tuple[dict, bytes]]] = {}
    if store is not None:
        def archive_fn(stream: str, ev: dict, raw: bytes) -> None:
            buf = pending.setdefault(stream, [])
            buf.append((ev, raw))
            if len(buf) >= archive_batch:
                store.archive(stream, buf, subject_of=ref.vehicle_of)
                buf.clear()

    current: dict[str, Alert] = {}

    def collect(alerts: list[Alert]) -> None:
        for a in alerts:
            cur = current.get(a.alert_id)
            if cur is None or a.version >= cur.version:
                current[a.alert_id] = a

    sorter = ExternalSorter(max_in_memory=max_in_memory)
    after = 0
    process = engine.process
    for ev in sorter.sorted(_events(files, dead, tz, read, tick if bar else None, archive_fn)):
        if as_of is not None and ev["t"] > as_of:
            after += 1
            continue
        alerts = process(ev)
        if alerts:
            collect(alerts)
        if engine.ctx.set_aside:
            for sa in engine.drain_set_aside():
                dead.add(sa.stream, "engine", sa.reason, sa.record)
    collect(engine.finish(as_of))
    for sa in engine.drain_set_aside():
        dead.add(sa.stream, "engine", sa.reason, sa.record)
    if bar is not None:
        bar.close()
    for stream, buf in pending.items():
        if buf:
            store.archive(stream, buf, subject_of=ref.vehicle_of)
    end = as_of if as_of is not None else (engine.max_t if engine.max_t > float("-inf") else None)
    alerts = sorted(current.values(), key=lambda a: (a.event_ts, a.rule, a.alert_id))
    if output is not None:
        write_alerts_jsonl(output, alerts)
    if store is not None:
        store.write_alerts(alerts)
        received = time.time()  # when they were set aside (the dead-letter TTL counts from it)
        store.write_deadletters(dict(it, received_t=received) for it in dead.items)
    dead.close()
    return ReplayResult(alerts=alerts, read=read, set_aside=dead.counts,
                        seconds=time.perf_counter() - t0, as_of=end, after_as_of=after,
                        runs_spilled=sorter.runs_spilled)


def write_alerts_jsonl(output: str | Path, alerts: list[Alert]) -> None:
    tmp = Path(str(output) + ".tmp")
    with open(tmp, "wb") as f:
        for a in alerts:
            f.write(orjson.dumps(a.to_json_dict(), option=orjson.OPT_APPEND_NEWLINE))
    tmp.replace(output)


def summary_lines(res: ReplayResult, tz: tzinfo = DEFAULT_TZ) -> list[str]:
    lines = [f"events read: {res.events:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(res.read.items()))})",
             f"set aside: {sum(res.set_aside.values()):,}"
             + (f" ({', '.join(f'{k} {v}' for k, v in sorted(res.set_aside.items()))})"
                if res.set_aside else ""),
             f"alerts: {len(res.alerts):,}",
             f"as of: {format_ts(res.as_of, tz) if res.as_of is not None else '-'}",
             f"time: {res.seconds:.2f} s"]
    return lines
