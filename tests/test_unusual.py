"""payment.unusual: the per-village online model, its threshold, snapshots, and its worth."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from lianwatch.detectors.unusual import (
    SNAPSHOT_VERSION, PaymentProfile, SnapshotError, UnusualPaymentDetector, VillageModel,
    ZScoreBaseline, _step, payment_features, restore, score_payments, snapshot)
from lianwatch.engine import Engine
from lianwatch.models.parse import parse_event
from lianwatch.reference import Reference
from lianwatch.rules import RuleSet
from tests.helpers import ts

DAY = 86400.0
HOUR = 3600.0
MON = 1767542400.0  # 2026-01-05 00:00 +08:00, a Monday
CATS = ["engineering", "procurement", "labor", "services", "office", "other"]


def synthetic(seed: int, n: int = 600, outliers: str = "mixed", rate: float = 0.02,
              vid: str = "VL1", start_outliers: int = 60):
    """One village's payments: regular payees in office hours on weekdays, 10 % new
    payees; outliers (labelled) are 15× amounts to a regular payee ("amount") or a
    new payee paid at night ("time"), or either ("mixed")."""
    rng = random.Random(seed)
    regular = [(f"R{i}", rng.choice(CATS), math.exp(rng.uniform(math.log(300), math.log(30000))))
               for i in range(15)]
    evs, labels = [], {}
    day = 0
    for k in range(n):
        day += rng.choice((0, 0, 1, 1, 2))
        d = day + (7 - day % 7 if day % 7 >= 5 else 0)  # a weekend day moves to Monday
        hour = min(max(rng.gauss(13, 2.2), 8.5), 17.5)
        if rng.random() < 0.1:
            payee, cat = f"N{seed}-{k}", rng.choice(CATS)
            amount = math.exp(rng.uniform(math.log(300), math.log(20000)))
        else:
            payee, cat, typ = rng.choice(regular)
            amount = typ * math.exp(rng.gauss(0, 0.3))
        label = 0
        if k >= start_outliers and rng.random() < rate:
            label = 1
            kind = outliers if outliers != "mixed" else rng.choice(("amount", "time"))
            if kind == "amount":
                amount *= 15
            else:
                payee, hour = f"X{seed}-{k}", rng.uniform(1.0, 4.5)
        pid = f"PM-{vid}-{k:05d}"
        labels[pid] = label
        evs.append({"_s": "payments", "payment_id": pid, "village_id": vid,
                    "t": MON + d * DAY + round(hour * HOUR), "amount_yuan": round(amount, 2),
                    "channel": "transfer", "payee_id": payee, "payee_name": payee,
                    "category": cat, "approval_id": "AP"})
    evs.sort(key=lambda e: (e["t"], e["payment_id"]))
    return evs, labels


def precision_at_k(rows, labels):
    rows = [r for r in rows if r["warm"]]
    k = sum(labels[r["payment_id"]] for r in rows)
    top = sorted(rows, key=lambda r: (-r["score"], r["payment_id"]))[:k]
    return sum(labels[r["payment_id"]] for r in top) / k


def run_engine(evs, rules=None, det=None, order=None, lateness=0.0):
    det = det or UnusualPaymentDetector()
    eng = Engine([det], rules or RuleSet(), Reference(), lateness=lateness)
    out = []
    for ev in (order or sorted(evs, key=lambda e: (e["t"], e["payment_id"]))):
        out += eng.process(dict(ev))
    out += eng.finish()
    return out, eng


def regular_payment(i, t, amount=1000.0, payee="R1", hour=10.0):
    return {"_s": "payments", "payment_id": f"PM-{i:04d}", "village_id": "VL1",
            "t": MON + t * DAY + hour * HOUR, "amount_yuan": amount, "channel": "transfer",
            "payee_id": payee, "category": "office", "approval_id": "AP"}


def flat_stream(n, outlier_at=(), jitter_seed=1):
    rng = random.Random(jitter_seed)
    evs = []
    for i in range(n):
        if i in outlier_at:
            evs.append(regular_payment(i, i, amount=400000.0, payee=f"NEW{i}", hour=3.2))
            evs[-1]["category"] = "reception"
        else:
            evs.append(regular_payment(i, i, amount=round(1000 * math.exp(rng.gauss(0, 0.2)), 2),
                                       payee=f"R{i % 5}", hour=9 + rng.random() * 7))
    return evs


# ------------------------------------------------------------------- the engine
def test_events_from_the_contract_parse_and_alert():
    evs = flat_stream(80)
    raw = {"payment_id": "PM-9999", "village_id": "VL1", "ts": ts(MON + 81 * DAY + 3 * HOUR),
           "amount_yuan": 250000.0, "channel": "cash", "payee_id": "ZZ", "payee_name": "某公司",
           "category": "reception", "approval_id": None}
    ev, why = parse_event("payments", raw)
    assert ev is not None, why
    out, _ = run_engine(evs + [ev])
    (a,) = [a for a in out if a.source_event_ids == ["PM-9999"]]
    assert a.rule == "payment.unusual" and a.level == "yellow" and a.subject_type == "village"
    assert a.village_id == "VL1" and a.event_ts == ts(ev["t"])
    e = a.evidence
    assert e["score"] > e["threshold"] and e["quantile"] == 0.99 and e["model"] == "profile"
    assert len(e["top_features"]) == 3
    assert {f["feature"] for f in e["top_features"]} <= {
        "amount", "amount_vs_category", "hour", "new_payee", "category", "weekend"}
    assert all(f["surprise"] > 0 for f in e["top_features"])
    assert "村务卡支付异常" in a.title and "某公司" in a.title and "¥250,000.00" in a.title
    assert a.title_en.startswith("Unusual payment of ¥250,000.00 to 某公司")


def test_deterministic_across_runs_and_arrival_order():
    evs, _ = synthetic(3, n=400)
    one, _ = run_engine(evs)
    two, _ = run_engine(evs)
    key = lambda out: [(a.alert_id, a.evidence["score"], a.evidence["threshold"]) for a in out]
    assert key(one) == key(two) and len(one) >= 3
    shuffled = list(evs)
    random.Random(5).shuffle(shuffled)
    # out of order within the engine's lateness: scored in event time all the same
    three, _ = run_engine(evs, order=shuffled, lateness=10000 * DAY)
    assert sorted(key(three)) == sorted(key(one))


@pytest.mark.parametrize("at,fires", [(10, False), (39, False), (40, True), (60, True)])
def test_warmup_no_alert_before_warmup_payments(at, fires):
    # payment #41 (index 40) is the first judged after 40 learned ones
    rules = RuleSet.from_toml_text("[payment.unusual]\nwarmup = 40")
    out, eng = run_engine(flat_stream(100, outlier_at={at}), rules=rules)
    assert [a.source_event_ids for a in out] == ([[f"PM-{at:04d}"]] if fires else [])
    assert eng.stores["unusual"]["VL1"].learned == (99 if fires else 100)


def test_warmup_per_village_override():
    rules = RuleSet.from_toml_text("[village.VL1.payment.unusual]\nwarmup = 200")
    out, _ = run_engine(flat_stream(150, outlier_at={60, 120}), rules=rules)
    assert out == []


def test_flagged_payments_do_not_train_the_model():
    out, eng = run_engine(flat_stream(120, outlier_at={60, 90}))
    assert [a.source_event_ids for a in out] == [["PM-0060"], ["PM-0090"]]
    st = eng.stores["unusual"]["VL1"]
    assert st.flagged == 2 and st.learned == 118
    assert "NEW60" not in st.model.payees and "NEW90" not in st.model.payees
    assert st.model.cat_n.get("reception") is None
    # scoring and flagging an outlier leaves the model exactly as it was
    ur = RuleSet().payment.unusual
    x = payment_features(flat_stream(1, outlier_at={0})[0])
    model_before = pickle.dumps(st.model)
    score, _, flagged = _step(st, x, ur)
    assert flagged and st.learned == 118 and st.flagged == 3
    assert pickle.dumps(st.model) == model_before and st.model.score_one(x) == score


def test_redelivered_payment_is_scored_once():
    evs = flat_stream(80, outlier_at={70})
    out, eng = run_engine(evs + [dict(evs[70]), dict(evs[5])])
    assert [a.source_event_ids for a in out] == [["PM-0070"]]
    st = eng.stores["unusual"]["VL1"]
    assert st.learned + st.flagged == 80


def test_late_payment_is_still_scored_and_ids_are_bounded():
    evs = flat_stream(200)
    out, eng = run_engine(evs[:150] + evs[160:] + evs[150:160])  # 10 behind the watermark
    st = eng.stores["unusual"]["VL1"]
    assert st.learned + st.flagged == 200 and not st.pending
    assert len(st.seen) <= 32  # one payment a day, kept 30 days behind the watermark


# -------------------------------------------------------------------- snapshots
def test_snapshot_restore_round_trip_gives_identical_scores():
    evs = flat_stream(300, outlier_at={200, 250})
    ur = RuleSet().payment.unusual
    st = VillageModel("VL1", PaymentProfile(), ur.window)
    for ev in evs[:150]:
        _step(st, payment_features(ev), ur)
    blob = snapshot(st)
    assert blob[:4] == b"LWUN" and int.from_bytes(blob[4:6], "big") == SNAPSHOT_VERSION
    copy = restore(blob)
    a = [_step(st, payment_features(ev), ur) for ev in evs[150:]]
    b = [_step(copy, payment_features(ev), ur) for ev in evs[150:]]
    assert a == b and any(f for _, _, f in a)
    assert snapshot(st) == snapshot(copy)


def test_snapshot_of_engine_state_restores_into_a_new_engine():
    evs, _ = synthetic(12, n=300)
    det = UnusualPaymentDetector()
    whole, _ = run_engine(evs)
    eng = Engine([det], RuleSet(), Reference())
    first = [a for ev in evs[:200] for a in eng.process(dict(ev))]
    eng.finish()  # drains the event-time buffer
    blob = det.snapshot(eng.stores["unusual"]["VL1"])
    eng2 = Engine([UnusualPaymentDetector()], RuleSet(), Reference())
    eng2.stores["unusual"]["VL1"] = UnusualPaymentDetector.restore(blob)
    rest = [a for ev in evs[200:] for a in eng2.process(dict(ev))] + eng2.finish()
    ids = lambda out: [(a.alert_id, a.evidence["score"]) for a in out]
    assert ids(first) + ids(rest) == ids(whole)


@pytest.mark.parametrize("blob,msg", [
    (b"LWUN\x00\x63" + b"rest", "format version 99 is not supported"),
    (b"XXXX\x00\x01" + b"rest", "not an unusual-model snapshot"),
    (b"LW", "too short")])
def test_unknown_snapshot_refused(blob, msg):
    with pytest.raises(SnapshotError, match=msg):
        restore(blob)


# ------------------------------------------------------------- is it any good?
def test_injected_outliers_rank_high():
    hits = []
    for seed in range(3):
        evs, labels = synthetic(seed, outliers="mixed")
        rows = score_payments(evs)
        hits.append(precision_at_k(rows, labels))
        top = sorted(rows, key=lambda r: -r["score"])[:5]
        assert sum(labels[r["payment_id"]] for r in top) >= 3  # mostly outliers on top
    assert sum(hits) / len(hits) >= 0.5


def test_beats_zscore_when_the_outlier_is_in_hour_and_payee_novelty():
    prof, base = [], []
    for seed in range(3):
        evs, labels = synthetic(seed, outliers="time")
        prof.append(precision_at_k(score_payments(evs), labels))
        base.append(precision_at_k(score_payments(evs, model="zscore"), labels))
    assert sum(prof) / 3 >= 0.5 and sum(base) / 3 <= 0.2
    assert all(p > b for p, b in zip(prof, base))


def test_zscore_baseline_catches_amount_outliers_too():
    evs, labels = synthetic(4, outliers="amount")
    assert precision_at_k(score_payments(evs, model="zscore"), labels) >= 0.4
    assert precision_at_k(score_payments(evs), labels) >= 0.4


def test_alternative_models_run_through_the_detector():
    evs = flat_stream(120, outlier_at={100})
    out, eng = run_engine(evs, det=UnusualPaymentDetector(model="zscore"))
    assert [a.source_event_ids for a in out] == [["PM-0100"]]
    assert isinstance(eng.stores["unusual"]["VL1"].model, ZScoreBaseline)
    out, _ = run_engine(evs, det=UnusualPaymentDetector(model="hst"))  # runs, deterministic
    again, _ = run_engine(evs, det=UnusualPaymentDetector(model="hst"))
    assert [a.alert_id for a in out] == [a.alert_id for a in again]
    with pytest.raises(ValueError):
        UnusualPaymentDetector(model="nope")


def test_disabled_rule_still_learns_but_is_silent():
    rules = RuleSet.from_toml_text('[disabled]\nrules = ["payment.unusual"]')
    out, eng = run_engine(flat_stream(100, outlier_at={70}), rules=rules)
    assert out == [] and eng.stores["unusual"]["VL1"].learned == 99
