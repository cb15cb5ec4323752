"""The conformance suite every detector passes (in the style of river's ``checks``).

Each check takes a detector factory (``make() -> Detector``, a fresh instance
per call) and a :class:`Corpus` of contract records, runs the one engine over
the events of the detector's streams and raises :class:`AssertionError` with
what went wrong:

* :func:`check_corpus_exercises`: the corpus has events of every stream the
  detector takes, and they raise alerts (else every other check would pass
  without testing anything);
* :func:`check_state_round_trip`: every state pickles; a restart mid-run (a
  fresh detector and engine on the unpickled states and the clocks) gives the
  same alerts as the run without one;
* :func:`check_redelivery`: an event delivered again changes nothing (no
  alert, no set-aside, the state pickles to the same bytes), right away or
  later within the engine's lateness;
* :func:`check_order`: input order within the contract's ordering does not
  change the alerts (their final versions) against replay's order: records of
  one instant reversed; records delayed at random within the engine's
  lateness (``Corpus.lateness``, 10 days) so that none is ever behind the
  watermark. ``detected_at`` and the fields a detector names in
  ``clock_fields`` say when it judged: left out;
* :func:`check_stable_ids`: two fresh runs, and a run in another process with
  another hash seed, give the same alerts (ids, versions, content);
* :func:`check_no_wall_clock`: no hook reads the clock (``time.time``,
  ``time.monotonic``, ``datetime.now``, ``date.today``… raise while one runs);
* :func:`check_no_io`: no hook does I/O (``open``, sockets, ``os`` file calls,
  subprocesses, imports that load a module… raise while one runs).

>>> [c.__name__ for c in CHECKS][:2]
['check_corpus_exercises', 'check_state_round_trip']

The corpus is a small county from :mod:`lianwatch.sim` (:func:`county_corpus`);
a detector whose streams it lacks fails every check ("no events for stream X
in the corpus") until the generator makes them.
"""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, tzinfo
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any

from lianwatch.engine import Ctx, Detector, Engine, Event, SetAside
from lianwatch.models.content import settle_ties, sort_key
from lianwatch.models.alert import Alert, keep_newest
from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.parse import parse_event, parse_reference
from lianwatch.models.streams import EVENT_STREAMS, REFERENCE_KINDS
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet

__all__ = ["Corpus", "county_corpus", "default_factory", "CHECKS", "yield_checks", "Forbidden",
           "check_detector", "check_corpus_exercises", "check_state_round_trip",
           "check_redelivery", "check_order", "check_stable_ids", "check_no_wall_clock",
           "check_no_io"]

Factory = Callable[[], Detector]
_SEED = 13


# ----------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    """Contract records to run detectors over: the reference, and the events of
    each stream in replay order."""

    ref: Reference
    events: dict[str, list[Event]]
    rules: RuleSet = field(default_factory=RuleSet)
    tz: tzinfo = DEFAULT_TZ
    #: how far behind the newest event the order and redelivery checks deliver records
    #: (the engine is given as much lateness): generous, past the fuel and payment windows
    lateness: float = 10 * 86400.0

    @classmethod
    def from_dir(cls, path: str | Path, rules: RuleSet | None = None,
                 tz: tzinfo = DEFAULT_TZ) -> Corpus:
        """The valid records of a contract directory (``<name>.jsonl`` files)."""
        d = Path(path)
        ref = Reference()
        for kind in REFERENCE_KINDS:
            for line in _lines(d / f"{kind}.jsonl"):
                rec, _ = parse_reference(kind, line)
                if rec is not None:
                    ref.add(kind, rec)
        events: dict[str, list[Event]] = {}
        for stream in EVENT_STREAMS:
            evs = [ev for ev in (parse_event(stream, line, tz)[0]
                                 for line in _lines(d / f"{stream}.jsonl")) if ev is not None]
            if evs:
                events[stream] = _in_order(evs)
        return cls(ref, events, rules or RuleSet(), tz)

    def for_detector(self, det: Detector) -> list[Event]:
        """The events of ``det``'s streams, in replay order (fresh copies)."""
        out: list[Event] = []
        for s in det.streams:
            evs = self.events.get(s)
            if not evs:
                raise AssertionError(f"{det.name}: no events for stream {s!r} in the corpus "
                                     f"(it has {', '.join(sorted(self.events)) or 'none'}): "
                                     "extend the generator (lianwatch.sim) for it")
            out.extend(evs)
        return [dict(ev) for ev in _in_order(out)]


def _lines(p: Path) -> Iterator[bytes]:
    if p.exists():
        with open(p, "rb") as f:
            yield from (line for line in f if line.strip())


def _in_order(evs: list[Event]) -> list[Event]:
    evs = sorted(evs, key=sort_key)
    settle_ties(evs)
    return evs


def county_corpus(out_dir: str | Path, **config: Any) -> Corpus:
    """A small synthetic county (:func:`lianwatch.sim.generate`; ``config``
    overrides :class:`~lianwatch.sim.GenConfig`), clean: no malformed lines,
    no duplicates (the checks make their own)."""
    from lianwatch.sim import GenConfig, generate

    cfg = dict(vehicles=8, villages=4, projects=12, days=7, seed=7, malformed=False,
               duplicates=False)
    cfg.update(config)
    generate(out_dir, GenConfig(**cfg))
    return Corpus.from_dir(out_dir)


def _default_named(name: str) -> Detector:
    from lianwatch.detectors import default_detectors

    for d in default_detectors():
        if d.name == name:
            return d
    raise KeyError(name)


def default_factory(name: str) -> Factory:
    """A factory of the detector ``name`` of :func:`~lianwatch.detectors.default_detectors`
    (importable in another process)."""
    return partial(_default_named, name)


# ------------------------------------------------------------------------- runs
@dataclass
class _Run:
    alerts: list[Alert]  # as emitted, in order
    set_aside: list[SetAside]
    engine: Engine


def _engine(det: Detector, corpus: Corpus, lateness: float) -> Engine:
    eng = Engine([det], corpus.rules, corpus.ref, tz=corpus.tz, lateness=lateness)
    eng.start()
    return eng


def _run(make: Factory, corpus: Corpus, events: Sequence[Event], *, lateness: float = 0.0,
         restart_at: Sequence[int] = (), wrap: Callable[[Detector], Detector] | None = None,
         ) -> _Run:
    det = make()
    eng = _engine(wrap(det) if wrap else det, corpus, lateness)
    alerts: list[Alert] = []
    aside: list[SetAside] = []
    cuts = set(restart_at)
    for i, ev in enumerate(events):
        if i in cuts:
            aside += eng.drain_set_aside()
            eng = _restarted(make, eng, corpus, lateness)
        alerts += eng.process(dict(ev))
    alerts += eng.finish()
    aside += eng.drain_set_aside()
    return _Run(alerts, aside, eng)


def _restarted(make: Factory, eng: Engine, corpus: Corpus, lateness: float) -> Engine:
    """What a worker restart does: a fresh detector and engine on states read back
    one by one (as from a changelog) and the clocks."""
    (det,) = eng.detectors
    new = Engine([make()], corpus.rules, corpus.ref, tz=corpus.tz, lateness=lateness)
    store = new.stores[det.name]
    for key, st in eng.stores[det.name].items():
        try:
            blob = pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise AssertionError(f"{det.name}: the state of {key!r} does not pickle: {exc!r}") from exc
        store[key] = pickle.loads(blob)
    new.max_t = eng.max_t
    new.ctx.watermark = eng.ctx.watermark
    new.ctx.now = eng.ctx.now
    new.start()
    return new


def _json(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    return [a.to_json_dict() for a in alerts]


def _first_difference(name: str, what: str, want: list, got: list) -> str:
    for i, (a, b) in enumerate(zip(want, got)):
        if a != b:
            return f"{name}: {what}: item {i} differs:\n  expected {a}\n  got      {b}"
    return f"{name}: {what}: {len(want)} expected, {len(got)} got"


def _same(name: str, what: str, want: list, got: list) -> None:
    if want != got:
        raise AssertionError(_first_difference(name, what, want, got))


def _asides(items: Sequence[SetAside]) -> list[tuple[str, str]]:
    return sorted((sa.stream, str(sa.record.get("_id", sa.record.get("vehicle_id")))) for sa in items)


# ----------------------------------------------------------------------- checks
def check_corpus_exercises(make: Factory, corpus: Corpus) -> None:
    """Events for every stream the detector takes, and alerts from them."""
    det = make()
    r = _run(make, corpus, corpus.for_detector(det))
    if not r.alerts:
        raise AssertionError(f"{det.name}: the corpus raises no alert, so the checks would "
                             "pass without testing anything: give it records that alert")
    undeclared = sorted({a.rule for a in r.alerts} - set(det.rules))
    if undeclared:
        raise AssertionError(f"{det.name}: raises {undeclared}, not in its `rules`")


def check_state_round_trip(make: Factory, corpus: Corpus) -> None:
    """Restarts at a quarter, half and three quarters of the input, on pickled states."""
    det = make()
    events = corpus.for_detector(det)
    plain = _run(make, corpus, events)
    n = len(events)
    restarted = _run(make, corpus, events, restart_at=[n // 4, n // 2, 3 * n // 4])
    _same(det.name, "alerts after a restart on pickled states", _json(plain.alerts),
          _json(restarted.alerts))
    _same(det.name, "set-aside records after a restart", _asides(plain.set_aside),
          _asides(restarted.set_aside))


def check_redelivery(make: Factory, corpus: Corpus, samples: int = 150) -> None:
    """An event again, right away (state and output unchanged) or later within the lateness."""
    det = make()
    events = corpus.for_detector(det)
    eng = _engine(make(), corpus, 0.0)
    (inner,) = eng.detectors
    store = eng.stores[inner.name]
    rnd = random.Random(_SEED)
    picked = set(rnd.sample(range(len(events)), min(samples, len(events))))
    for s in inner.streams:  # the first and the last of each stream too
        idx = [i for i, ev in enumerate(events) if ev["_s"] == s]
        picked.update((idx[0], idx[-1]))
    for i, ev in enumerate(events):
        eng.process(dict(ev))
        eng.drain_set_aside()
        if i not in picked:
            continue
        key = inner.key(ev, eng.ctx)
        before = pickle.dumps(store.get(key), protocol=pickle.HIGHEST_PROTOCOL)
        again = eng.process(dict(ev))
        if again:
            raise AssertionError(f"{det.name}: a redelivered {ev['_s']} record {ev['_id']!r} "
                                 f"raised {[a.rule for a in again]}")
        aside = eng.drain_set_aside()
        if aside:
            raise AssertionError(f"{det.name}: a redelivered {ev['_s']} record {ev['_id']!r} "
                                 f"was set aside: {aside[0].reason}")
        if pickle.dumps(store.get(key), protocol=pickle.HIGHEST_PROTOCOL) != before:
            raise AssertionError(f"{det.name}: a redelivered {ev['_s']} record {ev['_id']!r} "
                                 f"changed the state of {key!r}")
    # every event once more, later, anywhere within the lateness: nothing changes
    lateness = corpus.lateness
    once = _run(make, corpus, events, lateness=lateness)
    arrivals = [(ev["t"], 0, i, ev) for i, ev in enumerate(events)]
    arrivals += [(ev["t"] + rnd.random() * lateness, 1, i, ev) for i, ev in enumerate(events)]
    arrivals.sort(key=lambda a: a[:3])
    twice = _run(make, corpus, [a[3] for a in arrivals], lateness=lateness)
    _same(det.name, "alerts with every record delivered twice", _json(once.alerts),
          _json(twice.alerts))
    _same(det.name, "set-aside records with every record delivered twice",
          _asides(once.set_aside), _asides(twice.set_aside))


def _facts(alerts: Sequence[Alert], clock_fields: frozenset[str]) -> list[dict[str, Any]]:
    """The final version of each alert, without what says when it was judged."""
    cur: dict[str, Alert] = {}
    keep_newest(cur, alerts)
    out = []
    for a in sorted(cur.values(), key=lambda a: a.alert_id):
        d = a.to_json_dict()
        d.pop("detected_at")
        for f in clock_fields:
            d.pop(f, None)
            d["evidence"].pop(f, None)
        out.append(d)
    return out


def _shuffled(events: list[Event], lateness: float, far: int = 500) -> list[Event]:
    """Each record delayed at random, never past ``lateness`` (so never behind the
    watermark): ``far`` of each stream (all of a sparse one) by up to the lateness,
    the others by up to a minute (a dense stream fully shuffled costs its detector
    a quadratic re-sort and tests no more)."""
    rnd = random.Random(_SEED)
    by_stream: dict[str, list[int]] = {}
    for i, ev in enumerate(events):
        by_stream.setdefault(ev["_s"], []).append(i)
    wide = {i for idx in by_stream.values() for i in rnd.sample(idx, min(far, len(idx)))}
    arrival = [ev["t"] + rnd.random() * (lateness if i in wide else min(60.0, lateness))
               for i, ev in enumerate(events)]
    return [events[i] for i in sorted(range(len(events)), key=arrival.__getitem__)]


def check_order(make: Factory, corpus: Corpus) -> None:
    """Replay order, one instant's records reversed, records shuffled within the lateness."""
    det = make()
    events = corpus.for_detector(det)
    fields = frozenset(det.clock_fields)
    base = _run(make, corpus, events)
    want, asides = _facts(base.alerts, fields), _asides(base.set_aside)
    reversed_ties = [ev for _, g in groupby(events, key=lambda e: e["t"]) for ev in list(g)[::-1]]
    r = _run(make, corpus, reversed_ties)
    _same(det.name, "alerts with the records of each instant reversed", want,
          _facts(r.alerts, fields))
    _same(det.name, "set-aside records with the records of each instant reversed", asides,
          _asides(r.set_aside))
    lateness = corpus.lateness
    r = _run(make, corpus, _shuffled(events, lateness), lateness=lateness)
    _same(det.name, f"alerts with the records shuffled within {lateness:g} s of lateness", want,
          _facts(r.alerts, fields))
    _same(det.name, "set-aside records with the records shuffled within the lateness", asides,
          _asides(r.set_aside))


def check_stable_ids(make: Factory, corpus: Corpus, other_process: bool = True) -> None:
    """Two fresh runs, and one in another process with another hash seed: the same alerts.

    ``other_process`` needs ``make`` to pickle (a module-level function or class)."""
    det = make()
    events = corpus.for_detector(det)
    one = _json(_run(make, corpus, events).alerts)
    _same(det.name, "alerts of a second fresh run", one, _json(_run(make, corpus, events).alerts))
    if other_process:
        _same(det.name, "alerts of a run in another process (another hash seed)", one,
              _in_child(make, corpus))


def _in_child(make: Factory, corpus: Corpus) -> list[dict[str, Any]]:
    payload = pickle.dumps(sys.path) + pickle.dumps(
        (make, corpus.ref, corpus.events, corpus.rules.raw, corpus.tz))
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    code = ("import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
            "from lianwatch.detectors.checks import _child_main; _child_main()")
    p = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, check=False)
    if p.returncode != 0:
        raise AssertionError(f"the run in another process failed:\n{p.stderr.decode()[-2000:]}")
    return pickle.loads(p.stdout)


def _child_main() -> None:
    make, ref, events, rules, tz = pickle.load(sys.stdin.buffer)
    corpus = Corpus(ref, events, RuleSet(rules), tz)
    r = _run(make, corpus, corpus.for_detector(make()))
    sys.stdout.buffer.write(pickle.dumps(_json(r.alerts)))


# ------------------------------------------------------------------ the guards
class Forbidden(AssertionError):
    """A detector hook read the wall clock or did I/O."""


_CLOCK_NAMES = frozenset({"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
                          "perf_counter_ns", "process_time", "process_time_ns", "thread_time",
                          "thread_time_ns", "clock_gettime", "clock_gettime_ns"})
_DATE_NAMES = frozenset({"now", "utcnow", "today"})
_IO_EVENTS = ("open", "io.", "os.", "socket.", "subprocess.", "shutil.", "tempfile.", "sqlite3.",
              "http.", "urllib.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.",
              "telnetlib.", "webbrowser.", "glob.", "pty.", "fcntl.", "mmap.", "ctypes.dlopen",
              "import", "builtins.input", "time.sleep")


class _Guard:
    """While a hook of the wrapped detector runs (in this thread), a clock read or
    I/O raises :class:`Forbidden`; each one is also recorded (a detector that
    swallows the exception still fails)."""

    _audit_installed = False
    _active: "_Guard | None" = None  # the guard of the hook running now
    _thread = 0

    def __init__(self, clock: bool, io: bool) -> None:
        self.clock = clock
        self.io = io
        self.hits: list[str] = []
        self.hook = ""

    # -- the detector, wrapped
    def wrap(self, det: Detector) -> Detector:
        return _Guarded(det, self)  # type: ignore[return-value]

    def call(self, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
        prev_guard, prev_thread, prev_profile = _Guard._active, _Guard._thread, sys.getprofile()
        self.hook = hook
        if self.io:
            _Guard._install_audit()
            _Guard._active, _Guard._thread = self, threading.get_ident()
        if self.clock:
            sys.setprofile(self._profile)
        try:
            return fn(*args)
        finally:
            sys.setprofile(prev_profile)
            _Guard._active, _Guard._thread = prev_guard, prev_thread

    # -- the clock: every C function a hook calls goes past this profiler
    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "c_call":
            return
        owner = getattr(arg, "__self__", None)
        name = getattr(arg, "__name__", "")
        if owner is time and name in _CLOCK_NAMES:
            self._hit(f"time.{name}()")
        elif isinstance(owner, type) and issubclass(owner, date) and name in _DATE_NAMES:
            self._hit(f"{owner.__name__}.{name}()")

    # -- I/O: the interpreter's audit events (one process-wide hook, idle unless active)
    @classmethod
    def _install_audit(cls) -> None:
        if not cls._audit_installed:
            sys.addaudithook(_audit)
            cls._audit_installed = True

    def _hit(self, what: str) -> None:
        msg = f"{what} in {self.hook}"
        self.hits.append(msg)
        raise Forbidden(msg)


def _audit(event: str, args: tuple) -> None:
    g = _Guard._active
    if g is not None and event.startswith(_IO_EVENTS) and _Guard._thread == threading.get_ident():
        _Guard._active = None  # building the message must not trip it again
        try:
            detail = f" {args[0]!r}" if args else ""
            g.hits.append(f"{event}{detail[:120]} in {g.hook}")
        finally:
            _Guard._active = g
        raise Forbidden(g.hits[-1])


class _Guarded:
    """A detector whose hooks run under a :class:`_Guard`."""

    def __init__(self, det: Detector, guard: _Guard) -> None:
        self.inner = det
        self.name = det.name
        self.streams = det.streams
        self.timer_clock = det.timer_clock
        self.clock_fields = det.clock_fields
        self.g = guard

    def key(self, ev: Event, ctx: Ctx) -> str | None:
        return self.g.call("key", self.inner.key, ev, ctx)

    def unplaced_reason(self, ev: Event) -> str:
        return self.g.call("unplaced_reason", self.inner.unplaced_reason, ev)

    def new_state(self, key: str, ctx: Ctx) -> Any:
        return self.g.call("new_state", self.inner.new_state, key, ctx)

    def on_event(self, st: Any, ev: Event, ctx: Ctx) -> Any:
        return self.g.call("on_event", self.inner.on_event, st, ev, ctx)

    def on_timer(self, st: Any, key: str, ctx: Ctx) -> Any:
        return self.g.call("on_timer", self.inner.on_timer, st, key, ctx)

    def on_flush(self, st: Any, key: str, ctx: Ctx) -> Any:
        return self.g.call("on_flush", self.inner.on_flush, st, key, ctx)

    def initial_subjects(self, ctx: Ctx) -> Iterator[str]:
        return iter(self.g.call("initial_subjects", lambda c: list(self.inner.initial_subjects(c)), ctx))

    def hot(self, stream: str) -> None:
        return None


def _guarded_run(make: Factory, corpus: Corpus, clock: bool, io: bool, what: str) -> None:
    det = make()
    events = corpus.for_detector(det)
    guard = _Guard(clock=clock, io=io)
    try:
        _run(make, corpus, events, wrap=guard.wrap)
    except Forbidden:
        pass  # recorded
    if guard.hits:
        raise AssertionError(f"{det.name}: {what}: {guard.hits[0]}"
                             + (f" (and {len(guard.hits) - 1} more)" if len(guard.hits) > 1 else ""))


def check_no_wall_clock(make: Factory, corpus: Corpus) -> None:
    """No hook reads the wall clock: time comes from the engine's ``ctx``."""
    _guarded_run(make, corpus, clock=True, io=False, what="read the wall clock")


def check_no_io(make: Factory, corpus: Corpus) -> None:
    """No hook opens a file or socket, starts a process or loads a module."""
    _guarded_run(make, corpus, clock=False, io=True, what="did I/O")


CHECKS: tuple[Callable[[Factory, Corpus], None], ...] = (
    check_corpus_exercises, check_state_round_trip, check_redelivery, check_order,
    check_stable_ids, check_no_wall_clock, check_no_io)


def yield_checks() -> Iterator[Callable[[Factory, Corpus], None]]:
    """Every check, in order (each takes a factory and a corpus)."""
    yield from CHECKS


def check_detector(make: Factory, corpus: Corpus) -> None:
    """Run every check; the first failure raises."""
    for check in yield_checks():
        check(make, corpus)
