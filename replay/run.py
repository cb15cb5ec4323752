"""``lianwatch replay``: a contract directory in, alerts out, in event time, no broker, no server.

Reference data is loaded first; events from every file are validated (bad
lines, times outside the caller's window and the damaged rest of a compressed
file are set aside with their reason), put in event-time order (external
sort: bounded memory), and fed to the one engine loop. At the end the clock
moves to ``--as-of`` (default: the newest event time) and each alert is
written once, in its final state.

What a run spills (chDB's sort of the pings, the event sorter) goes to its own
scratch directory under ``scratch_root`` (:mod:`lianwatch.replay.scratch`),
removed at the end; a run also removes what killed runs left there.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import IO, Any

import orjson

from lianwatch.detectors import default_detectors
from lianwatch.engine import Engine
from lianwatch.errors import InputError
from lianwatch.models.alert import Alert, keep_newest
from lianwatch.models.clock import DEFAULT_TZ, DEFAULT_WINDOW, TimeWindow, format_ts
from lianwatch.models.files import find_files, open_chunks, reference_records
from lianwatch.models.parse import fast_parser, parse_event
from lianwatch.models.streams import EVENT_STREAMS
from lianwatch.reference import Reference
from lianwatch.replay.pings import PingFile
from lianwatch.replay.scratch import ScratchDir
from lianwatch.models.order import ExternalSorter
from lianwatch.rules import RuleSet

__all__ = ["replay_dir", "ReplayResult", "DeadLetters", "load_reference", "deadletter_path"]

_INF = float("inf")
log = logging.getLogger(__name__)


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


def _lean(ev: dict[str, Any]) -> dict[str, Any]:
    # pings are most of the input: keep what the detectors read
    return {"t": ev["t"], "_s": "gps", "_id": ev["_id"], "vehicle_id": ev["vehicle_id"],
            "lat": ev["lat"], "lon": ev["lon"]}


def _events(files: dict[str, Path], dead: DeadLetters, tz: tzinfo, window: TimeWindow,
            read: Counter, archive: Callable[[str, dict, bytes], None] | None
            ) -> Iterator[dict[str, Any]]:
    """Every event of the files, validated (the bad ones to ``dead``), in file order."""
    for stream in EVENT_STREAMS:
        p = files.get(stream)
        if p is None:
            continue
        n = 0
        parse = fast_parser(stream, tz, window)
        lean = stream == "gps"

        def damaged(lineno: int, partial: bytes, why: str, stream: str = stream,
                    name: str = p.name) -> None:
            dead.add(stream, f"{name}:{lineno}", why, partial)

        for first, lines, _ in open_chunks(p, on_damage=damaged):
            for i, line in enumerate(lines):
                ev = parse(line)
                if ev is None:
                    if not line.strip():
                        continue
                    ev, why = parse_event(stream, line, tz, window)
                    if ev is None:
                        dead.add(stream, f"{p.name}:{first + i}", why or "invalid", line)
                        continue
                if lean:
                    ev = _lean(ev)
                n += 1
                if archive is not None:
                    archive(stream, ev, line)
                yield ev
        read[stream] += n


def _rescued(pings: PingFile, dead: DeadLetters, tz: tzinfo, read: Counter
             ) -> Iterator[dict[str, Any]]:
    """The ping lines the SQL did not pass, through the pydantic gate."""
    name = pings.path.name
    for lineno, line in pings.rest():
        if not line.strip():
            continue
        ev, why = parse_event("gps", line, tz, pings.window)
        if ev is None:
            dead.add("gps", f"{name}:{lineno}", why or "invalid", line)
            continue
        read["gps"] += 1
        yield _lean(ev)


class _Loop:
    """The replay loop's bookkeeping: alerts in their final version, set-aside
    records, events after ``--as-of``, the progress bar."""

    def __init__(self, engine: Engine, dead: DeadLetters, as_of: float | None, bar: Any) -> None:
        self.engine = engine
        self.dead = dead
        self.limit = as_of if as_of is not None else _INF
        self.bar = bar
        self.after = 0
        self.n = 0
        self.current: dict[str, Alert] = {}

    def collect(self, alerts: list[Alert]) -> None:
        keep_newest(self.current, alerts)

    def set_aside(self) -> None:
        for sa in self.engine.drain_set_aside():
            self.dead.add(sa.stream, "engine", sa.reason, sa.record)

    def advance(self, n: int) -> None:
        self.n += n
        if self.bar is not None and self.n - self.bar.n >= 65536:
            self.bar.update(self.n - self.bar.n)

    def events(self, events: Iterable[dict[str, Any]]) -> None:
        """Events in replay order, through :meth:`Engine.process`."""
        process = self.engine.process
        aside = self.engine.set_aside
        limit = self.limit
        for ev in events:
            if ev["t"] > limit:
                self.after += 1
                continue
            alerts = process(ev)
            if alerts:
                self.collect(alerts)
            if aside:
                self.set_aside()
            if self.bar is not None:
                self.advance(1)

    def pings(self, pings: PingFile, others: Iterator[dict[str, Any]]) -> None:
        """Pings in order (column batches from chDB) merged with the other events in
        order, by (time, stream, id), the order of :data:`~lianwatch.models.order.sort_key`.
        Pings go through the fuel detector's direct entry (no dict per ping)."""
        engine = self.engine
        clock_to = engine.clock_to
        limit = self.limit
        one: list[Any] = [None]
        ctx = engine.ctx
        hot = engine.hot("gps")
        if hot is not None and hot.fields == ("lat", "lon"):
            states, new, add = hot.states, hot.new, hot.add
            get = states.get
        else:  # another set of detectors: the general path, a dict per ping
            new = None

            def get(vid: str) -> str:
                return vid  # what add() below gets as its "state"

            def add(vid: str, t: float, la: float, lo: float, ctx: Any) -> None:
                one[0] = {"t": t, "_s": "gps", "_id": vid, "vehicle_id": vid, "lat": la, "lon": lo}
                self.events(one)

        if self.bar is not None:  # chDB reads, checks and sorts before the first ping comes out
            self.bar.set_description_str("replay: sorting pings", refresh=True)
        nxt = next(others, None)
        ot = nxt["t"] if nxt is not None else _INF
        max_t = engine.max_t
        for ts, vs, las, los in pings.batches():
            for t, v, la, lo in zip(ts, vs, las, los):
                if ot <= t:
                    while ot <= t and (ot < t or (nxt["_s"], nxt["_id"]) < ("gps", v)):  # type: ignore[index]
                        one[0] = nxt
                        self.events(one)
                        nxt = next(others, None)
                        ot = nxt["t"] if nxt is not None else _INF
                    max_t = engine.max_t
                if t > max_t:  # (events up to max_t are all within --as-of)
                    if t > limit:
                        self.after += 1
                        continue
                    max_t = t
                    alerts = clock_to(t)
                    if alerts:
                        self.collect(alerts)
                st = get(v)
                if st is None and new is not None:
                    st = states[v] = new(v)
                if (sa := add(st, t, la, lo, ctx)) is not None:  # a conflicting ping
                    self.dead.add(sa.stream, "engine", sa.reason, sa.record)
            if self.bar is not None:
                self.bar.desc = "replay"
                self.advance(len(ts))
        if nxt is not None:
            self.events(chain((nxt,), others))


def replay_dir(
    input_dir: str | Path,
    output: str | Path | None = None,
    *,
    rules: RuleSet | None = None,
    as_of: float | None = None,
    tz: tzinfo = DEFAULT_TZ,
    window: TimeWindow = DEFAULT_WINDOW,
    max_in_memory: int = 1_000_000,
    progress: bool | None = None,
    store: Any = None,
    archive_batch: int = 100_000,
    sql_pings: bool | None = None,
    scratch_root: str | Path | None = None,
) -> ReplayResult:
    """Replay a contract directory; write alerts to ``output`` (JSONL) if given.

    ``window``: the event times accepted (the command gives
    ``TimeWindow.around(time.time())``); a record outside is set aside with its reason.
    ``store``: an :class:`~lianwatch.sinks.store.AlertStore` to write alerts,
    dead letters and the raw-event archive to (the demo does).
    ``sql_pings``: check and sort the GPS file in chDB (:mod:`lianwatch.replay.pings`);
    default: yes, unless pings are archived to a store (that needs each raw line).
    ``scratch_root``: where the run's scratch directory goes (the command gives the
    data directory's ``tmp``); default: next to ``output``, else the system's temp dir.
    Raises :class:`~lianwatch.errors.InputError` when a file cannot be read at all.
    """
    t0 = time.perf_counter()
    files = find_files(input_dir)
    if scratch_root is None:
        scratch_root = (Path(output).resolve().parent if output is not None
                        else Path(tempfile.gettempdir()))
    with ScratchDir(scratch_root) as scratch:
        assert scratch.path is not None
        try:
            res = _replay(files, output, rules=rules or RuleSet(), as_of=as_of, tz=tz,
                          window=window, max_in_memory=max_in_memory, progress=progress,
                          store=store, archive_batch=archive_batch, sql_pings=sql_pings,
                          scratch=scratch.path)
        finally:
            from lianwatch.sinks.chdb_backend import close_session

            close_session(scratch.path / "chdb")
    res.seconds = time.perf_counter() - t0
    return res


def _ping_file(files: dict[str, Path], sort_bytes: int, window: TimeWindow,
               workdir: Path) -> PingFile | None:
    """The GPS file through chDB, its query started; None when chDB cannot read it
    (a damaged ``.gz``: the Python reader then reads it up to the damage)."""
    p = files.get("gps")
    if p is None or not PingFile.can_read(p):
        return None
    pings = PingFile(p, sort_bytes=sort_bytes, window=window, workdir=workdir)
    try:
        pings.start()
    except InputError as exc:
        log.warning("%s; reading it in Python instead", exc)
        return None
    return pings


def _replay(files: dict[str, Path], output: str | Path | None, *, rules: RuleSet,
            as_of: float | None, tz: tzinfo, window: TimeWindow, max_in_memory: int,
            progress: bool | None, store: Any, archive_batch: int, sql_pings: bool | None,
            scratch: Path) -> ReplayResult:
    dead = DeadLetters(deadletter_path(output) if output is not None else None)
    ref, read = load_reference(files, dead, tz)
    engine = Engine(default_detectors(), rules, ref, tz=tz)
    engine.start()
    if store is not None:
        store.write_reference(ref)
    if sql_pings is None:
        sql_pings = store is None
    pings = _ping_file(files, max_in_memory * 64, window, scratch / "chdb") if sql_pings else None

    archive_fn = None
    pending: dict[str, list[tuple[dict, bytes]]] = {}
    if store is not None:
        def archive_fn(stream: str, ev: dict, raw: bytes) -> None:
            buf = pending.setdefault(stream, [])
            buf.append((ev, raw))
            if len(buf) >= archive_batch:
                store.archive(stream, buf, subject_of=ref.vehicle_of)
                buf.clear()

    if progress is None:
        progress = sys.stderr.isatty()
    loop = _Loop(engine, dead, as_of, _progress_bar(files, scratch / "chdb") if progress else None)
    sorter = ExternalSorter(max_in_memory=max_in_memory, tmpdir=str(scratch))
    if pings is None:
        loop.events(sorter.sorted(_events(files, dead, tz, window, read, archive_fn)))
    else:
        others = _events({k: v for k, v in files.items() if k != "gps"}, dead, tz, window, read,
                         archive_fn)
        loop.pings(pings, sorter.sorted(chain(_rescued(pings, dead, tz, read), others)))
    loop.collect(engine.finish(as_of))
    loop.set_aside()
    if pings is not None:
        read["gps"] += pings.passed
    if loop.bar is not None:
        loop.bar.update(loop.n - loop.bar.n)
        loop.bar.close()
    for s, buf in pending.items():
        if buf:
            store.archive(s, buf, subject_of=ref.vehicle_of)
    end = as_of if as_of is not None else (engine.max_t if engine.max_t > float("-inf") else None)
    alerts = sorted(loop.current.values(), key=lambda a: (a.event_ts, a.rule, a.alert_id))
    if output is not None:
        write_alerts_jsonl(output, alerts)
    if store is not None:
        store.write_alerts(alerts)
        received = time.time()  # when they were set aside (the dead-letter TTL counts from it)
        store.write_deadletters(dict(it, received_t=received) for it in dead.items)
    dead.close()
    return ReplayResult(alerts=alerts, read=read, set_aside=dead.counts, as_of=end,
                        after_as_of=loop.after, runs_spilled=sorter.runs_spilled)


def _progress_bar(files: dict[str, Path], workdir: Path) -> Any:
    """Events replayed, out of the event files' non-blank lines (counted by chDB, fast)."""
    from tqdm import tqdm

    paths = [files[s] for s in EVENT_STREAMS if s in files]
    total = None  # unknown: a count, no bar end
    if all(PingFile.can_read(p) for p in paths):
        try:
            total = sum(PingFile(p, workdir=workdir).count_lines() for p in paths)
        except InputError:  # a damaged file: it is read up to the damage, and said so
            total = None
    return tqdm(total=total, unit=" events", unit_scale=True, desc="replay", file=sys.stderr,
                mininterval=0.5)


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
