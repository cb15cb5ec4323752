"""The payment.* rules (except unusual) at their boundaries, on the real engine loop."""

from __future__ import annotations

import pytest

from lianwatch.detectors.payments import PaymentDetector, cents, yuan
from lianwatch.engine import Engine
from lianwatch.models.parse import parse_event
from lianwatch.rules import RuleSet
from tests.helpers import T0, ref_with, run_sorted, ts

DAY = 86400.0
PER_RECORD = ("payment.no_approval", "payment.cash", "payment.conflict_of_interest")
WINDOW = ("payment.split", "payment.duplicate")


def village(vid="VL1", threshold=50000):
    return ("villages", {"village_id": vid, "name": "兴裕村", "approval_threshold_yuan": threshold,
                         "contacts": []})


def official(pid="P1", vid="VL1", payees=("CO-1",), name="王五", role="director"):
    return ("officials", {"person_id": pid, "name": name, "village_id": vid, "role": role,
                          "related_payee_ids": list(payees)})


REF = [village("VL1"), village("VL2", 30000), official("P1", "VL1", ["CO-1"]),
       official("P2", "VL2", ["CO-9"], name="赵六", role="accountant")]


def pay(pid, t, amount, payee="CO-2", channel="transfer", approval="AP-1", vid="VL1",
        category="engineering", name=None):
    rec = {"payment_id": pid, "village_id": vid, "ts": ts(t), "amount_yuan": amount,
           "channel": channel, "payee_id": payee, "payee_name": name or f"{payee} 公司",
           "category": category, "purpose": "测试", "approval_id": approval}
    ev, why = parse_event("payments", rec)
    assert ev is not None, why
    return ev


def run(events, rules=None, ref=None, **kw):
    return run_sorted([PaymentDetector()], ref or ref_with(*REF), events, rules=rules, **kw)


def of(alerts, rule):
    return sorted((a for a in alerts.values() if a.rule == rule), key=lambda a: a.source_event_ids)


def test_money_helpers():
    assert cents(0.1 + 0.2) == cents(0.3) == 30
    assert yuan(80000) == "¥80,000.00" and yuan(50000, False) == "¥50,000"
    assert yuan(5000.01, False) == "¥5,000.01"


# ------------------------------------------------------------------ no_approval
@pytest.mark.parametrize("amount,approval,fires", [
    (50000.0, None, True), (49999.99, None, False), (50000.0, "AP-7", False), (80000.0, None, True)])
def test_no_approval_threshold(amount, approval, fires):
    alerts, _ = run([pay("PM-1", T0, amount, approval=approval)])
    hits = of(alerts, "payment.no_approval")
    assert bool(hits) is fires
    if fires:
        (a,) = hits
        assert a.level == "red" and a.subject_type == "village" and a.subject_id == "VL1"
        assert a.village_id == "VL1" and a.source_event_ids == ["PM-1"]
        assert a.evidence["approval_threshold_yuan"] == 50000
        assert a.evidence["amount_yuan"] == amount and a.evidence["payee_id"] == "CO-2"
        assert a.title == f"村务卡大额支付未经审批：{yuan(amount)}（审批线 ¥50,000）"
        assert a.title_en == f"Payment of {yuan(amount)} without approval (line ¥50,000)"
        assert a.event_ts == ts(T0)


def test_no_approval_uses_the_villages_own_threshold_and_default():
    evs = [pay("PM-1", T0, 30000, vid="VL2", approval=None),
           pay("PM-2", T0, 29999.99, vid="VL2", approval=None),
           pay("PM-3", T0, 30000, vid="VL-UNKNOWN", approval=None),  # not in reference: 50000
           pay("PM-4", T0, 50000, vid="VL-UNKNOWN", approval=None)]
    alerts, _ = run(evs)
    assert [a.source_event_ids for a in of(alerts, "payment.no_approval")] == [["PM-1"], ["PM-4"]]


def test_blank_approval_id_counts_as_none():
    ev, _ = parse_event("payments", {"payment_id": "PM-1", "village_id": "VL1", "ts": ts(T0),
                                     "amount_yuan": 60000, "channel": "card", "payee_id": "X",
                                     "approval_id": "  "})
    alerts, _ = run([ev])
    assert len(of(alerts, "payment.no_approval")) == 1


# ------------------------------------------------------------------------ cash
@pytest.mark.parametrize("amount,channel,fires", [
    (5000.0, "cash", False), (5000.01, "cash", True), (9000.0, "card", False)])
def test_cash_limit(amount, channel, fires):
    alerts, _ = run([pay("PM-1", T0, amount, channel=channel)])
    hits = of(alerts, "payment.cash")
    assert bool(hits) is fires
    if fires:
        assert hits[0].level == "yellow" and hits[0].evidence["cash_limit_yuan"] == 5000
        assert "现金" in hits[0].title and "¥5,000.01" in hits[0].title


def test_cash_limit_per_village_override():
    rules = RuleSet.from_toml_text("[village.VL2.payment]\ncash_limit_yuan = 2000")
    evs = [pay("PM-1", T0, 2500, channel="cash", vid="VL2"),
           pay("PM-2", T0, 2500, channel="cash", vid="VL1")]
    alerts, _ = run(evs, rules=rules)
    assert [a.source_event_ids for a in of(alerts, "payment.cash")] == [["PM-1"]]


def test_disabled_rule_is_silent():
    rules = RuleSet.from_toml_text('[disabled]\nrules = ["payment.cash"]')
    alerts, _ = run([pay("PM-1", T0, 9000, channel="cash")], rules=rules)
    assert not of(alerts, "payment.cash")


# ---------------------------------------------------------- conflict of interest
def test_conflict_of_interest_same_village_only():
    evs = [pay("PM-1", T0, 18600, payee="CO-1", name="杭州某建设有限公司"),
           pay("PM-2", T0, 18600, payee="CO-9", vid="VL1"),  # tied to an official of VL2
           pay("PM-3", T0, 100, payee="CO-9", vid="VL2")]
    alerts, _ = run(evs)
    hits = of(alerts, "payment.conflict_of_interest")
    assert [a.source_event_ids for a in hits] == [["PM-1"], ["PM-3"]]
    a = hits[0]
    assert a.level == "red" and a.village_id == "VL1"
    assert a.evidence["officials"] == [{"person_id": "P1", "name": "王五", "role": "director"}]
    assert "王五（主任）" in a.title and "杭州某建设有限公司" in a.title
    assert hits[1].evidence["officials"][0]["person_id"] == "P2"


def test_conflict_lists_every_tied_official():
    ref = ref_with(*REF, official("P3", "VL1", ["CO-1"], name="钱七", role="accountant"))
    alerts, _ = run([pay("PM-1", T0, 500, payee="CO-1")], ref=ref)
    (a,) = of(alerts, "payment.conflict_of_interest")
    assert [o["person_id"] for o in a.evidence["officials"]] == ["P1", "P3"]
    assert "等 2 人" in a.title


# ----------------------------------------------------------------------- split
@pytest.mark.parametrize("second,fires", [(25000.0, True), (24999.99, False)])
def test_split_total_at_threshold(second, fires):
    alerts, _ = run([pay("PM-1", T0, 25000), pay("PM-2", T0 + 3 * DAY, second)])
    hits = of(alerts, "payment.split")
    assert bool(hits) is fires
    if fires:
        (a,) = hits
        assert a.level == "red" and a.source_event_ids == ["PM-1", "PM-2"]
        assert a.evidence["total_yuan"] == 50000 and a.evidence["count"] == 2
        assert a.evidence["approval_threshold_yuan"] == 50000 and a.evidence["window_days"] == 30
        assert a.evidence["payee_id"] == "CO-2" and a.event_ts == ts(T0 + 3 * DAY)
        assert "拆分" in a.title and "合计 ¥50,000.00" in a.title


@pytest.mark.parametrize("gap,fires", [(30 * DAY, True), (30 * DAY + 1, False)])
def test_split_30_day_window_edge(gap, fires):
    alerts, _ = run([pay("PM-1", T0, 30000), pay("PM-2", T0 + gap, 30000)])
    assert bool(of(alerts, "payment.split")) is fires


def test_split_needs_each_payment_below_threshold_and_one_payee():
    evs = [pay("PM-1", T0, 50000), pay("PM-2", T0 + DAY, 10000),  # the first is not below
           pay("PM-3", T0, 30000, payee="A"), pay("PM-4", T0 + DAY, 30000, payee="B")]
    alerts, _ = run(evs)
    assert not of(alerts, "payment.split")


def test_split_group_grows_same_id_next_version():
    evs = [pay("PM-1", T0, 20000), pay("PM-2", T0 + 5 * DAY, 20000),
           pay("PM-3", T0 + 10 * DAY, 20000), pay("PM-4", T0 + 20 * DAY, 5000)]
    eng = Engine([PaymentDetector()], RuleSet(), ref_with(*REF))
    seen = []
    for ev in evs:
        seen += eng.process(ev)
    seen += eng.finish()
    splits = [a for a in seen if a.rule == "payment.split"]
    assert [(a.version, a.source_event_ids) for a in splits] == [
        (1, ["PM-1", "PM-2", "PM-3"]), (2, ["PM-1", "PM-2", "PM-3", "PM-4"])]
    assert len({a.alert_id for a in splits}) == 1
    assert splits[-1].evidence["total_yuan"] == 65000 and splits[-1].evidence["count"] == 4


def test_split_payment_is_in_one_group_and_later_groups_start_fresh():
    # 20k every 10 days: the first group spans 30 days, the next starts after it
    evs = [pay(f"PM-{i}", T0 + 10 * i * DAY, 20000) for i in range(7)]
    alerts, _ = run(evs)
    groups = [a.source_event_ids for a in of(alerts, "payment.split")]
    assert groups == [["PM-0", "PM-1", "PM-2", "PM-3"], ["PM-4", "PM-5", "PM-6"]]


# ------------------------------------------------------------------- duplicate
@pytest.mark.parametrize("gap,fires", [(7 * DAY, True), (7 * DAY + 1, False)])
def test_duplicate_7_day_window_edge(gap, fires):
    alerts, _ = run([pay("PM-1", T0, 18600), pay("PM-2", T0 + gap, 18600)])
    hits = of(alerts, "payment.duplicate")
    assert bool(hits) is fires
    if fires:
        (a,) = hits
        assert a.level == "yellow" and a.source_event_ids == ["PM-1", "PM-2"]
        assert a.evidence["amount_yuan"] == 18600 and a.evidence["count"] == 2
        assert "重复" in a.title and "¥18,600.00" in a.title


def test_duplicate_compares_cents_and_payee():
    evs = [pay("PM-1", T0, 0.1 + 0.2), pay("PM-2", T0 + 60, 0.3),  # same in cents
           pay("PM-3", T0, 1000.00, payee="B"), pay("PM-4", T0 + 60, 1000.01, payee="B"),
           pay("PM-5", T0, 700, payee="C"), pay("PM-6", T0 + 60, 700, payee="D")]
    alerts, _ = run(evs)
    assert [a.source_event_ids for a in of(alerts, "payment.duplicate")] == [["PM-1", "PM-2"]]


def test_monthly_fee_30_days_apart_is_not_a_duplicate():
    evs = [pay(f"PM-{i}", T0 + 30 * i * DAY, 1200, payee="CLEAN") for i in range(6)]
    alerts, _ = run(evs)
    assert not of(alerts, "payment.duplicate") and not of(alerts, "payment.split")


def test_duplicate_group_of_three_is_one_alert_anchored_on_the_earliest():
    evs = [pay("PM-1", T0, 800), pay("PM-2", T0 + DAY, 800), pay("PM-3", T0 + 2 * DAY, 800)]
    eng = Engine([PaymentDetector()], RuleSet(), ref_with(*REF))
    out = [a for ev in evs for a in eng.process(ev)] + eng.finish()
    dups = [a for a in out if a.rule == "payment.duplicate"]
    assert len({a.alert_id for a in dups}) == 1
    assert dups[-1].version == 2 and dups[-1].source_event_ids == ["PM-1", "PM-2", "PM-3"]


# -------------------------------------------------------------------- the traps
def test_redelivered_record_gives_one_alert():
    a1 = pay("PM-1", T0, 80000, approval=None, channel="cash")
    alerts, eng = run([a1, dict(a1), dict(a1)])
    assert len(of(alerts, "payment.no_approval")) == 1 and len(of(alerts, "payment.cash")) == 1
    assert not of(alerts, "payment.duplicate")  # a record is not a duplicate of itself


def test_redelivery_emits_nothing_the_second_time():
    eng = Engine([PaymentDetector()], RuleSet(), ref_with(*REF))
    ev = pay("PM-1", T0, 80000, approval=None)
    assert len(eng.process(ev)) == 1
    assert eng.process(dict(ev)) == []
    eng.process(pay("PM-2", T0 + DAY, 10))
    assert eng.process(dict(ev)) == []


def _scenario():
    evs = [pay("PM-01", T0, 80000, approval=None),                       # no_approval
           pay("PM-02", T0 + 1 * DAY, 6000, channel="cash"),             # cash
           pay("PM-03", T0 + 2 * DAY, 300, payee="CO-1"),                # conflict
           pay("PM-04", T0 + 3 * DAY, 20000, payee="S"),                 # split S: 04,05,06,07
           pay("PM-05", T0 + 9 * DAY, 21000, payee="S"),
           pay("PM-06", T0 + 12 * DAY, 15000, payee="S"),
           pay("PM-07", T0 + 20 * DAY, 1000, payee="S"),
           pay("PM-08", T0 + 40 * DAY, 30000, payee="S"),                # next group 08,09
           pay("PM-09", T0 + 45 * DAY, 31000, payee="S"),
           pay("PM-10", T0 + 4 * DAY, 555.5, payee="D"),                 # dup D: 10,11,12
           pay("PM-11", T0 + 6 * DAY, 555.5, payee="D"),
           pay("PM-12", T0 + 8 * DAY, 555.5, payee="D"),
           pay("PM-13", T0 + 13 * DAY, 555.5, payee="D"),                # dup of 12 (new group)
           pay("PM-14", T0 + 5 * DAY, 2000, payee="M"),                  # monthly: nothing
           pay("PM-15", T0 + 35 * DAY, 2000, payee="M"),
           pay("PM-16", T0 + 3 * DAY, 10000, payee="T"), pay("PM-17", T0 + 3 * DAY, 10000, payee="T")]
    return evs


def _ids(alerts, rules):
    return sorted((a.rule, a.alert_id, tuple(a.source_event_ids), a.level)
                  for a in alerts.values() if a.rule in rules)


def test_reversed_order_gives_the_same_alerts():
    evs = _scenario()
    ref = ref_with(*REF)
    fwd, _ = run_sorted([PaymentDetector()], ref, evs)
    rev_order = sorted(evs, key=lambda e: (e["t"], e["payment_id"]), reverse=True)
    # within the engine's lateness: per-record and window rules agree exactly
    rev, _ = run_sorted([PaymentDetector()], ref, rev_order, sort=False, lateness=60 * DAY)
    assert _ids(rev, PER_RECORD + WINDOW) == _ids(fwd, PER_RECORD + WINDOW)
    rules = {a.rule for a in fwd.values()}
    assert rules == set(PER_RECORD + WINDOW)
    groups = {a.source_event_ids[0]: a.source_event_ids for a in of(fwd, "payment.split")}
    assert groups == {"PM-04": ["PM-04", "PM-05", "PM-06", "PM-07"], "PM-08": ["PM-08", "PM-09"]}
    dups = [a.source_event_ids for a in of(fwd, "payment.duplicate")]
    assert dups == [["PM-10", "PM-11", "PM-12"], ["PM-12", "PM-13"], ["PM-16", "PM-17"]]
    # no lateness at all: the per-record rules still agree
    rev0, _ = run_sorted([PaymentDetector()], ref, rev_order, sort=False, lateness=0.0)
    assert _ids(rev0, PER_RECORD) == _ids(fwd, PER_RECORD)


def test_same_timestamp_in_any_order_is_the_same():
    a = [pay("PM-B", T0, 30000), pay("PM-A", T0, 30000), pay("PM-C", T0, 30000)]
    ref = ref_with(*REF)
    one, _ = run_sorted([PaymentDetector()], ref, a, sort=False)
    two, _ = run_sorted([PaymentDetector()], ref, a[::-1], sort=False)
    assert _ids(one, WINDOW) == _ids(two, WINDOW)
    (s,) = of(one, "payment.split")
    assert s.source_event_ids == ["PM-A", "PM-B", "PM-C"]


def test_record_later_than_lateness_joins_the_open_group_keeping_its_id():
    ref = ref_with(*REF)
    eng = Engine([PaymentDetector()], RuleSet(), ref)
    out = []
    for ev in [pay("PM-2", T0 + 5 * DAY, 30000), pay("PM-3", T0 + 8 * DAY, 30000),
               pay("PM-X", T0 + 12 * DAY, 1, payee="other")]:
        out += eng.process(ev)
    first = [a for a in out if a.rule == "payment.split"]
    assert [a.source_event_ids for a in first] == [["PM-2", "PM-3"]]
    late = eng.process(pay("PM-1", T0 + 1 * DAY, 10000))  # behind the watermark
    (grown,) = [a for a in late if a.rule == "payment.split"]
    assert grown.alert_id == first[0].alert_id and grown.version == 2
    assert grown.source_event_ids == ["PM-1", "PM-2", "PM-3"]


def test_state_is_bounded_by_the_windows():
    evs = [pay(f"PM-{i:04d}", T0 + i * 3600 * 6, 100 + i, payee=f"P{i % 7}") for i in range(1600)]
    _, eng = run(evs)
    st = eng.stores["payments"]["VL1"]
    kept = sum(len(v) for v in st.payees.values())
    assert kept <= 4 * 32 and len(st.seen) <= 4 * 32  # ~31 days at 4 payments a day
    assert not st.pending and st.wake is None


def test_window_rules_wait_for_the_watermark_and_a_tick_releases_them():
    eng = Engine([PaymentDetector()], RuleSet(), ref_with(*REF), lateness=600.0)
    assert eng.process(pay("PM-2", T0 + 60, 30000.5)) == []
    assert eng.process(pay("PM-1", T0, 30000)) == []  # within lateness: buffered, in order
    st = eng.stores["payments"]["VL1"]
    assert [x[1] for x in st.pending] == ["PM-1", "PM-2"] and st.wake == T0
    out = eng.tick(watermark=T0 + 60)  # an inclusive tick: that instant is complete
    assert [(a.rule, a.source_event_ids) for a in out] == [("payment.split", ["PM-1", "PM-2"])]
    assert not st.pending and st.wake is None


# ------------------------------------------------- same id, other content (fault 5)
CARD = dict(amount=649.55, channel="card")
CASH = dict(amount=90000, channel="cash", approval=None)


def _both(first, second, t2=T0):
    from lianwatch.detectors.unusual import UnusualPaymentDetector

    eng = Engine([PaymentDetector(), UnusualPaymentDetector()], RuleSet(), ref_with(*REF))
    a1 = eng.process(pay("PM-X", T0, first["amount"], channel=first["channel"],
                         approval=first.get("approval", "AP-1")))
    a2 = eng.process(pay("PM-X", t2, second["amount"], channel=second["channel"],
                         approval=second.get("approval", "AP-1")))
    return a1, a2, eng.drain_set_aside()


@pytest.mark.parametrize("first,second", [(CARD, CASH), (CASH, CARD)])
def test_same_payment_id_with_other_content_is_set_aside_and_the_first_stays(first, second):
    a1, a2, aside = _both(first, second)
    assert a2 == []  # the copy with other content is not judged
    assert bool(a1) == (first is CASH)  # the first one taken is, as it came
    (sa,) = aside  # once, though both payment detectors took it
    assert sa.record["amount_yuan"] == second["amount"]
    assert sa.reason == ("conflicts with payment_id PM-X seen with other content; kept the first "
                         f"seen (at {ts(T0)})")


def test_an_equal_copy_is_silently_dropped_and_a_reformatted_ts_is_equal():
    ev = pay("PM-1", T0, 80000, approval=None)
    eng = Engine([PaymentDetector()], RuleSet(), ref_with(*REF))
    assert len(eng.process(ev)) == 1
    again = dict(ev, ts=ts(T0).replace("T", " "))  # the same instant, written otherwise
    assert eng.process(again) == [] and eng.drain_set_aside() == []


def _replay_lines(tmp_path, lines):
    import orjson

    from lianwatch.replay.run import replay_dir

    d = tmp_path / "in"
    d.mkdir(parents=True)
    (d / "villages.jsonl").write_bytes(orjson.dumps(village()[1]) + b"\n")
    (d / "payments.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    out = tmp_path / "alerts.jsonl"
    res = replay_dir(d, out, progress=False)
    dead = (tmp_path / "alerts.deadletter.jsonl").read_bytes()
    return out.read_bytes(), [orjson.loads(x) for x in dead.splitlines()], res


@pytest.mark.parametrize("same_instant", [True, False])
def test_replay_keeps_the_same_one_whatever_the_line_order(tmp_path, same_instant):
    card = {"payment_id": "PM-0001", "village_id": "VL1", "ts": ts(T0), "amount_yuan": 649.55,
            "channel": "card", "payee_id": "CO-2", "approval_id": "AP-1"}
    cash = dict(card, amount_yuan=90000.0, channel="cash", approval_id=None,
                ts=ts(T0 if same_instant else T0 - 600))
    one, dead1, r1 = _replay_lines(tmp_path / "a", [card, cash])
    two, dead2, r2 = _replay_lines(tmp_path / "b", [cash, card])
    assert one == two and dead1 == dead2
    (dl,) = dead1
    assert dl["stream"] == "payments"
    assert dl["reason"].startswith("conflicts with payment_id PM-0001 seen with other content")
    # the earlier one is kept; at one instant, the one first in content order (¥649.55)
    kept_cash = not same_instant
    assert (b"payment.cash" in one) == kept_cash
    assert ('"amount_yuan": 649.55' in dl["raw"] or '"amount_yuan":649.55' in dl["raw"]) == kept_cash
