"""The conformance suite (:mod:`lianwatch.detectors.checks`) over every detector.

Every check runs over every detector of ``default_detectors()`` (parametrized
by name: a detector added there is checked with no edit here), on a small
county from the generator. Below, a well-behaved toy passes every check, and a
toy broken in one way per check fails it, so no check passes vacuously.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pytest

from lianwatch.detectors import checks, default_detectors
from lianwatch.engine import Ctx, Detector, Step
from lianwatch.engine.detector import redelivery

NAMES = [d.name for d in default_detectors()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return checks.county_corpus(tmp_path_factory.mktemp("county"))


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", NAMES)
def test_every_detector_passes_every_check(name, check, corpus):
    check(checks.default_factory(name), corpus)


def test_the_corpus_has_every_stream_of_every_detector(corpus):
    wanted = {s for d in default_detectors() for s in d.streams}
    assert wanted <= {s for s, evs in corpus.events.items() if evs}


# ------------------------------------------------------------------ the toys
@dataclass
class Village:
    village_id: str
    seen: dict[str, Any] = field(default_factory=dict)
    big: list[tuple[float, str]] = field(default_factory=list)
    wake: float | None = None


class BigPayments(Detector[Village]):
    """A well-behaved toy: a yellow alert per payment of ¥5,000 or more."""

    name = "toy.big"
    streams = ("payments",)
    rules = ("payment.cash",)

    def key(self, ev: dict[str, Any], ctx: Ctx) -> str | None:
        return ev["village_id"]

    def new_state(self, key: str, ctx: Ctx) -> Village:
        return Village(key)

    def on_event(self, st: Village, ev: dict[str, Any], ctx: Ctx) -> Step[Village]:
        fp, again = redelivery(st.seen, ev, ctx, "payment_id")
        if again is not None:
            return Step(st, (), again)
        pid = ev["payment_id"]
        st.seen[pid] = (ev["t"], fp)
        if ev["amount_yuan"] < 5000:
            return Step(st)
        return Step(st, [self.alert(st, ev, ctx, [pid], {"amount_yuan": ev["amount_yuan"]})])

    def alert(self, st: Village, ev: dict[str, Any], ctx: Ctx, anchor: list[str],
              evidence: dict[str, Any], sources: list[str] | None = None, version: int = 1):
        return ctx.alert("payment.cash", "yellow", "village", st.village_id, anchor, ev["t"],
                         ("大额支付", "big payment"), evidence, sources or anchor,
                         village_id=st.village_id, version=version)


def run_all(make, corpus):
    for check in checks.CHECKS:
        if check is checks.check_stable_ids:
            check(make, corpus, other_process=False)
        else:
            check(make, corpus)


# (a) state round trip
class HiddenCounter(BigPayments):
    """Keeps a count outside its state: a restart on the stored states forgets it."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def on_event(self, st, ev, ctx):
        step = super().on_event(st, ev, ctx)
        n = self.count[st.village_id] = self.count.get(st.village_id, 0) + 1
        for a in step.alerts:
            a.evidence["nth"] = n
        return step


@dataclass
class WithLambda(Village):
    judge: Any = None


class UnpicklableState(BigPayments):
    def new_state(self, key, ctx):
        return WithLambda(key, judge=lambda x: x >= 5000)


@pytest.mark.parametrize("toy,msg", [(HiddenCounter, "after a restart on pickled states"),
                                     (UnpicklableState, "does not pickle")])
def test_state_round_trip_fails_for_state_outside_the_store_or_unpicklable(toy, msg, corpus):
    with pytest.raises(AssertionError, match=msg):
        checks.check_state_round_trip(toy, corpus)


# (b) redelivery
class NoDedupe(BigPayments):
    def on_event(self, st, ev, ctx):
        st.seen.pop(ev["payment_id"], None)  # forgets what it took
        return super().on_event(st, ev, ctx)


class CountsDeliveries(BigPayments):
    def on_event(self, st, ev, ctx):
        st.big.append((ev["t"], ev["payment_id"]))  # state grows on a redelivery
        return super().on_event(st, ev, ctx)


@pytest.mark.parametrize("toy,msg", [(NoDedupe, "raised"), (CountsDeliveries, "changed the state")])
def test_redelivery_fails_when_a_copy_alerts_or_changes_state(toy, msg, corpus):
    with pytest.raises(AssertionError, match=msg):
        checks.check_redelivery(toy, corpus)


# (c) order
class Grouped(BigPayments):
    """One growing alert per village over its big payments, as they arrive."""

    def on_event(self, st, ev, ctx):
        step = super().on_event(st, ev, ctx)
        if not step.alerts:
            return step
        st.big.append((ev["t"], ev["payment_id"]))
        first = {"t": min(st.big)[0]}
        return Step(st, [self.alert(st, first, ctx, self.anchor(st), {"count": len(st.big)},
                                    self.sources(st), version=len(st.big))])

    def anchor(self, st):
        return [st.village_id]

    def sources(self, st):
        return [pid for _, pid in sorted(st.big)]


class FirstComeAnchor(Grouped):
    """Anchored on the first big payment to *arrive*."""

    def anchor(self, st):
        return [st.big[0][1]]


def test_order_fails_when_arrival_order_picks_the_anchor(corpus):
    with pytest.raises(AssertionError, match="shuffled within"):
        checks.check_order(FirstComeAnchor, corpus)


@pytest.mark.parametrize("toy", [BigPayments, Grouped])
def test_well_behaved_toys_pass_every_check(toy, corpus):
    run_all(toy, corpus)
    checks.check_stable_ids(toy, corpus)  # pickled into another process too


# (d) stable ids
_serial = itertools.count()


class SerialIds(BigPayments):
    def on_event(self, st, ev, ctx):
        step = super().on_event(st, ev, ctx)
        return Step(st, [self.alert(st, ev, ctx, [f"#{next(_serial)}"], a.evidence)
                         for a in step.alerts])


class SetOrderSources(Grouped):
    """Lists its sources in a set's order: the same in one process, not in another."""

    def sources(self, st):
        return list({pid for _, pid in st.big})


def test_stable_ids_fails_for_ids_from_a_counter(corpus):
    with pytest.raises(AssertionError, match="second fresh run"):
        checks.check_stable_ids(SerialIds, corpus, other_process=False)


def test_stable_ids_fails_for_output_that_follows_the_hash_seed(corpus):
    checks.check_stable_ids(SetOrderSources, corpus, other_process=False)  # one process: fine
    with pytest.raises(AssertionError, match="another process"):
        checks.check_stable_ids(SetOrderSources, corpus)


# (e) wall clock
READS = {"time.time": time.time, "time.monotonic": time.monotonic,
         "datetime.now": datetime.now, "date.today": date.today}


def clock_toy(read):
    class ReadsTheClock(BigPayments):
        def on_event(self, st, ev, ctx):
            step = super().on_event(st, ev, ctx)
            for a in step.alerts:
                try:  # swallowing the error does not help: the read is recorded
                    a.evidence["at"] = str(read())
                except Exception:
                    pass
            return step
    return ReadsTheClock


@pytest.mark.parametrize("what", READS)
def test_no_wall_clock_fails_for_every_clock_read(what, corpus):
    with pytest.raises(AssertionError, match=rf"read the wall clock: {re.escape(what)}\(\)"):
        checks.check_no_wall_clock(clock_toy(READS[what]), corpus)


def test_no_wall_clock_passes_a_toy_that_reads_ctx(corpus):
    class ReadsCtx(BigPayments):
        def on_event(self, st, ev, ctx):
            step = super().on_event(st, ev, ctx)
            for a in step.alerts:
                a.evidence["at"] = ctx.ts(ctx.watermark) if ctx.watermark > 0 else None
            return step
    checks.check_no_wall_clock(ReadsCtx, corpus)


# (f) I/O
def _open():
    with open(os.devnull, "rb"):
        pass


def _socket():
    socket.socket().close()


def _listdir():
    os.listdir(".")


def _spawn():
    subprocess.run(["true"], check=False)


def _import():
    import this  # noqa: F401  (loading a module reads files)


IO = {"open": (_open, "open"), "socket": (_socket, "socket"), "os file call": (_listdir, "os.listdir"),
      "subprocess": (_spawn, "subprocess"), "import": (_import, "import")}


@pytest.mark.parametrize("what", IO)
def test_no_io_fails_for_every_kind_of_io(what, corpus):
    act, event = IO[what]

    class DoesIO(BigPayments):
        def on_event(self, st, ev, ctx):
            step = super().on_event(st, ev, ctx)
            if step.alerts:
                act()
            return step

    with pytest.raises(AssertionError, match=rf"did I/O: {event}"):
        checks.check_no_io(DoesIO, corpus)


# the corpus itself
class SubsidyToy(BigPayments):
    name = "toy.subsidy"
    streams = ("payments", "subsidies")


class Silent(BigPayments):
    def on_event(self, st, ev, ctx):
        return Step(super().on_event(st, ev, ctx).state)


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_a_stream_the_corpus_lacks_fails_every_check_loudly(check, corpus):
    with pytest.raises(AssertionError, match="no events for stream 'subsidies' in the corpus"):
        check(SubsidyToy, corpus)


def test_a_corpus_that_raises_no_alert_fails(corpus):
    with pytest.raises(AssertionError, match="raises no alert"):
        checks.check_corpus_exercises(Silent, corpus)


# the engine applies a step
def test_a_step_without_a_state_discards_the_subject_and_its_timer(corpus):
    from lianwatch.engine import Engine

    fired = []

    class OneShot(BigPayments):
        def on_event(self, st, ev, ctx):
            step = super().on_event(st, ev, ctx)
            if step.alerts:
                return Step(None, step.alerts)  # discard the subject
            st.wake = ev["t"] + 100.0
            return step

        def on_timer(self, st, key, ctx):
            fired.append((key, st.wake))
            st.wake = None
            return Step(st)

    def pay(pid, vid, t, amount):
        return {"_s": "payments", "_id": pid, "payment_id": pid, "village_id": vid, "t": t,
                "amount_yuan": amount}

    eng = Engine([OneShot()], corpus.rules, corpus.ref)
    assert eng.process(pay("P1", "VL1", 0.0, 10.0)) == []  # a timer at 100
    assert len(eng.process(pay("P2", "VL1", 50.0, 9000.0))) == 1  # discarded
    assert "VL1" not in eng.stores["toy.big"]
    eng.process(pay("P3", "VL2", 200.0, 10.0))  # the clock passes 100: nothing to fire
    eng.process(pay("P4", "VL1", 300.0, 10.0))  # VL1 anew
    eng.finish(as_of=1000.0)
    assert fired == [("VL2", 300.0), ("VL1", 400.0)]
