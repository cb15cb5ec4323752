"""The notifier: routing, grouping, digests, quiet hours, caps, repeats, escalation, idempotence."""

from __future__ import annotations

import logging
from pathlib import Path
from collections import Counter

import orjson
import pytest

from tests.conftest import module_store

from lianwatch.errors import ProviderError
from lianwatch.lifecycle.config import ContactCfg, LifecyclePolicy, NotifyPolicy
from lianwatch.lifecycle.log import Lifecycle, load_history
from lianwatch.lifecycle.notify import Notifier
from lianwatch.lifecycle.providers import OutboxProvider, SendResult
from lianwatch.lifecycle.hashkey import phone_hash_key
from lianwatch.lifecycle.texts import PhoneHasher, normalize_phone, sms_segments
from lianwatch.models.alert import Alert, alert_id
from lianwatch.models.clock import format_ts, parse_ts
from lianwatch.models.parse import parse_reference
from lianwatch.reference import Reference
from lianwatch.settings import Settings

T0 = 1772409600.0  # Monday 2026-03-02 08:00:00+08:00
H, DAY = 3600.0, 86400.0
NOW = T0 + 2 * H  # 10:00 local: outside quiet hours, after the 08:30 digest

SEC1, DIR1, TOWN, COUNTY = "13800000001", "13800000009", "13900000001", "13700000001"
SEC2, UNIT_HEAD, UNIT_DISC = "13800000002", "13600000001", "13600000002"


def _ref() -> Reference:
    ref = Reference()
    recs = [
        ("villages", {"village_id": "VL1", "name": "兴裕村", "town": "益农镇", "county": "萧山区",
                      "contacts": [{"role": "secretary", "name": "张三", "phone": SEC1},
                                   {"role": "director", "name": "赵六", "phone": DIR1},
                                   {"role": "town_discipline", "name": "李四", "phone": TOWN},
                                   {"role": "county_discipline", "name": "钱七",
                                    "phone": COUNTY}]}),
        # no town or county contact of its own: taken from its town's / county's villages
        ("villages", {"village_id": "VL2", "name": "东岳村", "town": "益农镇", "county": "萧山区",
                      "contacts": [{"role": "secretary", "name": "孙八", "phone": SEC2}]}),
        ("vehicles", {"vehicle_id": "V1", "plate": "浙A·1234X", "unit_id": "U1",
                      "tank_liters": 70, "card_ids": ["C1"]}),
        ("vehicles", {"vehicle_id": "V9", "plate": "浙A·9999X", "unit_id": "U9",
                      "tank_liters": 70, "card_ids": ["C9"]}),
        ("projects", {"project_id": "PJ1", "name": "岭脚段道路硬化", "village_id": "VL1",
                      "budget_yuan": 1e6, "planned_start": "2026-03-01",
                      "planned_end": "2026-09-30"}),
        ("projects", {"project_id": "PJ2", "name": "区政府办公楼维修", "unit_id": "U2",
                      "budget_yuan": 1e6, "planned_start": "2026-03-01",
                      "planned_end": "2026-09-30"}),
    ]
    for kind, rec in recs:
        m, why = parse_reference(kind, rec)
        assert m is not None, why
        ref.add(kind, m)
    return ref


REF = _ref()


def hasher(store) -> PhoneHasher:
    """The install's hasher of the test store (its key file)."""
    return PhoneHasher(phone_hash_key("", store.backend.path))


def mk(n: int = 1, level: str = "red", rule: str = "payment.no_approval",
       subject_type: str = "village", subject: str = "VL1", village: str | None = "VL1",
       unit: str | None = None, detected: float = NOW) -> Alert:
    src = f"SRC-{n}"
    return Alert(alert_id=alert_id(rule, subject_type, subject, [src]), rule=rule, level=level,
                 subject_type=subject_type, subject_id=subject, unit_id=unit, village_id=village,
                 event_ts=format_ts(detected - 1800), detected_at=format_ts(detected),
                 title="标题", source_event_ids=[src])


class Recorder:
    """A provider that keeps what it is given; ``fail`` = how many next tries fail."""

    name = "test"
    sign_name = "廉情监督"
    param_max_len = None

    def __init__(self) -> None:
        self.sent: list = []
        self.tries = 0
        self.fail = 0

    def send(self, msg):
        self.tries += 1
        if self.fail > 0:
            self.fail -= 1
            raise ProviderError(f"network down while sending to {msg.phone}")
        self.sent.append(msg)
        return SendResult(True, provider_id=f"id{len(self.sent)}")

    def to(self, phone: str) -> list:
        return [m for m in self.sent if m.phone == phone]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return module_store(tmp_path_factory, "lw_test_notify")


@pytest.fixture
def clean(store):
    store.truncate_all()
    return store


def notifier(store, ref=REF, provider=None, **policy) -> Notifier:
    return Notifier(store, ref, provider or Recorder(), policy=NotifyPolicy(**policy),
                    lifecycle_policy=LifecyclePolicy(), sleep=lambda s: None,
                    phone_hash_key=phone_hash_key("", store.backend.path))


def rows(store, where: str = "1") -> list[dict]:
    return store.query(f"SELECT notification_id, attempt, toUnixTimestamp64Milli(at_time) AS ms, "
                       f"alert_id, phone_masked, phone_hash, role, level, kind, provider, status, "
                       f"text, error FROM {store.db}.notifications WHERE {where} "
                       f"ORDER BY notification_id, attempt")


def latest(store) -> dict[str, dict]:
    """The last attempt of each notice (ids are ``<notice>/<attempt>``)."""
    out: dict[str, dict] = {}
    for r in sorted(rows(store), key=lambda r: r["attempt"]):
        notice, attempt = r["notification_id"].split("/")
        assert int(attempt) == r["attempt"]
        out[notice] = r
    return out


# ------------------------------------------------------------------ routing

@pytest.mark.parametrize("alert,level,phones", [
    (mk(1, "red"), "red", {SEC1, TOWN}),
    (mk(2, "yellow"), "yellow", {SEC1}),
    (mk(3, "red", subject="VL2", village="VL2"), "red", {SEC2, TOWN}),  # town borrowed
    (mk(4, "red", rule="fuel.not_at_station", subject_type="vehicle", subject="V1",
        village=None, unit="U1"), "red", {UNIT_HEAD, UNIT_DISC}),
    (mk(5, "red", rule="fuel.not_at_station", subject_type="vehicle", subject="V9",
        village=None, unit=None), "red", {COUNTY}),  # unit without contacts → county
    (mk(6, "red", rule="project.disbursement_mismatch", subject_type="project",
        subject="PJ1", village=None), "red", {SEC1, TOWN}),  # the project's village
    (mk(7, "yellow", rule="project.stalled", subject_type="project", subject="PJ2",
        village=None), "yellow", {COUNTY}),  # a unit's project, no unit contacts
])
def test_routing(clean, alert, level, phones):
    units = {"U1": [ContactCfg(role="secretary", name="王主任", phone=UNIT_HEAD),
                    ContactCfg(role="town_discipline", name="派驻组", phone=UNIT_DISC)]}
    n = notifier(clean, units=units)
    got = {r.phone for r in n.router.recipients(alert, ["secretary"] + (
        ["town_discipline"] if level == "red" else []))}
    assert got == phones


def test_unroutable_is_recorded_not_lost(clean):
    n = notifier(clean, ref=Reference())
    rep = n.on_alerts([mk(1)], NOW)
    assert rep.unroutable == 1
    (r,) = rows(clean)
    assert r["status"] == "unroutable" and "no contact" in r["error"]
    assert n.on_alerts([mk(1)], NOW + 5).unroutable == 0  # once


# ------------------------------------------------------------------ red: group wait, grouping

def test_red_goes_to_secretary_and_town_after_the_group_wait(clean):
    p = Recorder()
    n = notifier(clean, provider=p)
    a = mk(1)
    rep = n.on_alerts([a], NOW)
    assert rep.opened == 1 and rep.planned == 2 and p.sent == []
    n.tick(NOW + 59)
    assert p.sent == []
    rep = n.tick(NOW + 60)
    assert rep.sms == 2 and {m.phone for m in p.sent} == {SEC1, TOWN}
    m = p.to(SEC1)[0]
    assert m.template == "alert" and m.params["code"] == a.alert_id[:8]
    assert m.text == (f"红色预警：大额支付未经审批，兴裕村，03-02 09:30，编号{a.alert_id[:8]}。"
                      "请10日内核查整改。")
    assert sms_segments("【廉情监督】" + m.text) == 1
    by_role = {r["role"]: r for r in latest(clean).values()}
    assert set(by_role) == {"secretary", "town_discipline"}
    assert all(r["status"] == "sent" and r["kind"] == "alert" for r in by_role.values())


def test_alerts_within_the_group_wait_share_one_sms(clean):
    p = Recorder()
    n = notifier(clean, provider=p, group_wait_s=60)
    a1, a2, a3 = mk(1), mk(2), mk(3)
    n.on_alerts([a1], NOW)
    n.on_alerts([a2], NOW + 30)  # joins the group started at NOW
    n.tick(NOW + 60)
    n.on_alerts([a3], NOW + 90)  # after the group went: a new group
    n.tick(NOW + 120)
    assert p.to(SEC1) and len(p.to(SEC1)) == 1
    n.tick(NOW + 150)
    first, second = p.to(SEC1)
    assert first.template == "digest" and first.params["count"] == "2"
    assert first.params["summary"] == "红色2条"
    assert {a1.alert_id[:8], a2.alert_id[:8]} <= set(first.params["codes"].split("、"))
    assert second.template == "alert" and second.params["code"] == a3.alert_id[:8]
    assert len(p.to(TOWN)) == 2


def test_long_groups_are_split_within_the_segment_limit(clean):
    p = Recorder()
    n = notifier(clean, provider=p, max_segments=2)
    alerts = [mk(i) for i in range(30)]
    n.on_alerts(alerts, NOW)
    n.tick(NOW + 60)
    ms = p.to(SEC1)
    assert len(ms) > 1 and all(sms_segments("【廉情监督】" + m.text) <= 2 for m in ms)
    assert sum(int(m.params["count"]) for m in ms) == 30  # every alert in exactly one SMS
    codes = [c for m in ms for c in m.params["codes"].split("、")]
    assert sorted(codes) == sorted(a.alert_id[:8] for a in alerts)
    assert [m.params["title"] for m in ms] == [f"预警通知（{i}/{len(ms)}）" for i in range(1, len(ms) + 1)]
    assert {r["status"] for r in latest(clean).values()} == {"sent"}


def test_outbox_applies_the_carrier_caps_and_splits_digests(clean, tmp_path):
    """Issue 20 #8: the outbox shows what a carrier takes: no variable over its cap (the
    digest's codes reached 107 characters), long digests split, each SMS within the caps."""
    from lianwatch.lifecycle.providers import ALIYUN_LIMITS, TENCENT_LIMITS

    for limits in (ALIYUN_LIMITS, TENCENT_LIMITS):
        clean.truncate_all()
        box = OutboxProvider(tmp_path / f"{limits.name}.jsonl", limits=limits)
        n = notifier(clean, provider=box, daily_cap=20)
        alerts = [mk(i) for i in range(12)] + [mk(99, rule="fuel.not_at_station", subject_type="vehicle",
                                                   subject="V9", village=None)]
        n.on_alerts(alerts, NOW)
        n.tick(NOW + 60)
        lines = box.read()
        assert lines and all(x["problems"] == [] and x["limits"] == limits.name for x in lines)
        for x in lines:
            assert all(len(v) <= limits.param_max_len for v in x["params"].values()), x["params"]
            assert len(x["text"]) <= limits.max_chars
        sec1 = [x for x in lines if x["to"] == "138****0001"]
        got = [c for x in sec1 for c in (x["params"].get("codes") or x["params"]["code"]).split("、")]
        want = [a.alert_id[:limits.param_max_len if limits.param_max_len < 8 else 8] for a in alerts[:12]]
        assert sorted(got) == sorted(want)  # every alert's code reaches the secretary
        assert len(sec1) > 1 and {x["part"] for x in sec1 if "part" in x} >= {f"1/{len(sec1)}"}
    # Aliyun: 35 characters take four 8-character codes; Tencent's 6 take one code prefix
    ali = [x for x in OutboxProvider(tmp_path / "aliyun.jsonl").read() if x["to"] == "138****0001"]
    assert max(len(x["params"].get("codes", "").split("、")) for x in ali) == 4


def test_split_digests_respect_the_daily_cap(clean):
    p = Recorder()
    n = notifier(clean, provider=p, daily_cap=2, max_segments=1)
    alerts = [mk(i) for i in range(20)]
    n.on_alerts(alerts, NOW)
    n.tick(NOW + 60)
    assert len(p.to(SEC1)) == 2  # the cap; the rest waits for tomorrow's digest
    held = [r for r in latest(clean).values() if r["status"] == "held" and r["phone_hash"] == hasher(clean)(SEC1)]
    assert held and all("daily cap 2" in r["error"] for r in held)
    n.tick(parse_ts("2026-03-03T08:30:00+08:00"))
    sent = {c for m in p.to(SEC1) for c in (m.params.get("codes") or m.params["code"]).split("、")}
    assert len(p.to(SEC1)) == 4 and len(sent) < 20  # two more the next day, still capped


# ------------------------------------------------------------------ idempotence

def test_the_same_alerts_twice_send_nothing_the_second_time(clean):
    p = Recorder()
    n = notifier(clean, provider=p)
    alerts = [mk(1), mk(2, "yellow"), mk(3, subject="VL2", village="VL2")]
    n.on_alerts(alerts, NOW)
    n.tick(NOW + 60)
    n.tick(T0 + DAY + 0.5 * H)  # the yellow digest
    sent, count = len(p.sent), len(rows(clean))
    assert sent == 4  # SEC1 (2 red grouped), TOWN (2 red grouped), SEC2, SEC1's digest
    # re-delivered, replayed again, even by a fresh notifier (no memory but the store)
    n.on_alerts(alerts, NOW + 120)
    n2 = notifier(clean, provider=p)
    n2.on_alerts(alerts, T0 + DAY + H)
    n2.on_alerts([a.model_copy(update={"version": 2}) for a in alerts], T0 + DAY + H)
    n2.tick(T0 + DAY + 2 * H)
    assert len(p.sent) == sent and len(rows(clean)) == count
    assert [h["action"] for h in load_history(clean, alerts[0].alert_id)] == ["open"]


# ------------------------------------------------------------------ yellow: digest, quiet hours

def test_yellow_waits_for_the_daily_digest(clean):
    p = Recorder()
    n = notifier(clean, provider=p)
    y1, y2 = mk(1, "yellow"), mk(2, "yellow", rule="payment.cash")
    rep = n.on_alerts([y1], NOW)
    n.on_alerts([y2], NOW + 5 * H)
    assert rep.held == 1
    n.tick(NOW + 6 * H)
    assert p.sent == []
    digest = parse_ts("2026-03-03T08:30:00+08:00")
    n.tick(digest - 1)
    assert p.sent == []
    n.tick(digest)
    (m,) = p.sent
    assert m.phone == SEC1 and m.params["title"] == "每日汇总" and m.params["count"] == "2"


def test_quiet_hours_hold_yellow_but_not_red(clean):
    p = Recorder()
    n = notifier(clean, provider=p, yellow="immediate")
    night = parse_ts("2026-03-02T23:00:00+08:00")
    y, r = mk(1, "yellow", subject="VL2", village="VL2"), mk(2, "red")
    n.on_alerts([y, r], night)
    n.tick(night + 60)
    assert {m.phone for m in p.sent} == {SEC1, TOWN}  # red at night
    held = [x for x in latest(clean).values() if x["level"] == "yellow"]
    assert [x["status"] for x in held] == ["held"]
    assert held[0]["ms"] / 1000 == parse_ts("2026-03-03T07:00:00+08:00")
    n.tick(parse_ts("2026-03-03T06:59:00+08:00"))
    assert len(p.sent) == 2
    n.tick(parse_ts("2026-03-03T07:00:00+08:00"))
    assert p.to(SEC2) and len(p.sent) == 3


def test_yellow_immediate_after_group_wait_in_the_day(clean):
    p = Recorder()
    n = notifier(clean, provider=p, yellow="immediate")
    n.on_alerts([mk(1, "yellow")], NOW)
    n.tick(NOW + 60)
    assert [m.phone for m in p.sent] == [SEC1]


# ------------------------------------------------------------------ caps

def test_daily_cap_folds_the_rest_into_the_next_digest(clean):
    p = Recorder()
    n = notifier(clean, provider=p, daily_cap=2, group_wait_s=0)
    alerts = [mk(i) for i in range(4)]
    for i, a in enumerate(alerts):
        n.on_alerts([a], NOW + i * H)
    assert len(p.to(SEC1)) == 2 and len(p.to(TOWN)) == 2
    capped = [r for r in latest(clean).values() if r["status"] == "held"]
    assert len(capped) == 4 and all("daily cap" in r["error"] for r in capped)
    digest = parse_ts("2026-03-03T08:30:00+08:00")
    n.tick(digest - 60)
    assert len(p.sent) == 4
    n.tick(digest)
    last = p.to(SEC1)[-1]
    assert last.template == "digest" and last.params["count"] == "2"
    assert all(r["status"] == "sent" for r in latest(clean).values())
    # the cap counts SMS per local day: the new day starts again
    n.on_alerts([mk(9)], digest + H)
    assert len(p.to(SEC1)) == 4


# ------------------------------------------------------------------ repeats

def test_unrectified_red_is_repeated_every_interval(clean):
    p = Recorder()
    n = notifier(clean, provider=p, repeat_red_days=3)
    a = mk(1)
    n.on_alerts([a], NOW)
    n.tick(NOW + 60)
    t1 = NOW + 60
    assert len(p.sent) == 2
    n.tick(t1 + 3 * DAY - 120)
    assert len(p.sent) == 2
    n.tick(t1 + 3 * DAY)  # planned now, sent after the group wait
    n.tick(t1 + 3 * DAY + 60)
    assert len(p.sent) == 4
    assert p.to(SEC1)[-1].params["note"] == "尚未整改，请尽快处理。"
    n.tick(t1 + 3 * DAY + H)
    n.tick(t1 + 3 * DAY + 2 * H)
    assert len(p.sent) == 4  # once per interval
    # rectified: no more repeats (the state notice goes out instead)
    Lifecycle(clean).act(a.alert_id, "rectify", at=t1 + 4 * DAY, by="张三", note="已整改")
    n.tick(t1 + 4 * DAY + 10)
    n.tick(t1 + 4 * DAY + 70)
    assert [m.params["note"] for m in p.sent[4:]] == ["已报整改，待核实。"] * 2
    n.tick(t1 + 7 * DAY)
    n.tick(t1 + 7 * DAY + 60)
    assert len(p.sent) == 6


# ------------------------------------------------------------------ escalation and state notices

def test_overdue_red_escalates_to_the_county(clean):
    p = Recorder()
    n = notifier(clean, provider=p, repeat_red_days=0)
    a = mk(1, detected=NOW)
    n.on_alerts([a], NOW)
    n.tick(NOW + 60)
    assert len(p.sent) == 2
    n.tick(NOW + 10 * DAY - 1)
    assert len(p.sent) == 2
    rep = n.tick(NOW + 10 * DAY)
    assert rep.escalated == 1
    n.tick(NOW + 10 * DAY + 60)
    assert {m.phone for m in p.sent[2:]} == {SEC1, TOWN, COUNTY}
    assert all(m.params["note"] == "逾期未整改，已报县纪委。" for m in p.sent[2:])
    kinds = Counter(r["kind"] for r in latest(clean).values())
    assert kinds == {"alert": 2, "escalation.county_discipline": 3}
    h = load_history(clean, a.alert_id)
    assert [x["action"] for x in h] == ["open", "escalate"]
    assert h[1]["at"] == format_ts(NOW + 10 * DAY)


def test_an_escalation_replaces_the_repeat_due_at_the_same_time(clean):
    p = Recorder()
    n = notifier(clean, provider=p, repeat_red_days=3)
    n.on_alerts([mk(1)], NOW)
    n.tick(NOW + 60)
    n.tick(NOW + 10 * DAY)  # repeat #3 and the escalation fall due together
    n.tick(NOW + 10 * DAY + 60)
    assert len(p.sent) == 5 and all(m.params["note"].startswith("逾期") for m in p.sent[2:])
    kinds = Counter(r["kind"] for r in latest(clean).values())
    assert kinds == {"alert": 2, "escalation.county_discipline": 3}
    n.tick(NOW + 13 * DAY + 30)  # the interval restarts at the escalation notice
    n.tick(NOW + 13 * DAY + 120)
    assert len(p.sent) == 5
    n.tick(NOW + 13 * DAY + 60 + 60)
    n.tick(NOW + 13 * DAY + 60 + 120)
    assert len(p.sent) == 8 and {m.phone for m in p.sent[5:]} == {SEC1, TOWN, COUNTY}


def test_replay_as_of_escalates_in_event_time(clean):
    """A replay/demo passes its as-of event time: old alerts arrive already overdue."""
    p = Recorder()
    n = notifier(clean, provider=p)
    detected = NOW - 12 * DAY
    a = mk(1, detected=detected)
    rep = n.on_alerts([a], NOW)
    assert rep.opened == 1 and rep.escalated == 1
    h = load_history(clean, a.alert_id)
    assert [x["at"] for x in h] == [format_ts(detected), format_ts(detected + 10 * DAY)]
    n.tick(NOW + 60)
    assert {m.phone for m in p.sent} == {SEC1, TOWN, COUNTY}  # the current state, once
    assert all(m.params["note"].startswith("逾期未整改") for m in p.sent)


def test_state_changes_are_announced_once(clean):
    p = Recorder()
    n = notifier(clean, provider=p)
    a = mk(1)
    n.on_alerts([a], NOW)
    n.tick(NOW + 60)
    lc = Lifecycle(clean)
    lc.act(a.alert_id, "rectify", at=NOW + H, by="张三", note="已退款")
    lc.act(a.alert_id, "verify", at=NOW + 2 * H, by="李四")
    n.tick(NOW + 2 * H)
    n.tick(NOW + 2 * H + 60)
    # only the current state is announced (verify superseded rectify between ticks)
    assert [m.params["note"] for m in p.sent[2:]] == ["已核实办结。"] * 2
    n.tick(NOW + 3 * H)
    assert len(p.sent) == 4


def test_raise_to_red_is_sent_at_once(clean):
    p = Recorder()
    n = notifier(clean, provider=p)
    y = mk(1, "yellow", rule="project.overdue_start", subject_type="project", subject="PJ1",
           village="VL1")
    n.on_alerts([y], NOW)
    red = y.model_copy(update={"level": "red", "version": 2,
                               "detected_at": format_ts(NOW + H)})
    rep = n.on_alerts([red], NOW + H)
    assert rep.raised == 1
    n.tick(NOW + H + 60)
    assert {m.phone for m in p.sent} == {SEC1, TOWN}
    assert p.to(SEC1)[0].params["level"] == "红色"
    assert p.to(SEC1)[0].params["subject"] == "岭脚段道路硬化"


def test_tick_alone_picks_up_alerts_written_to_the_store(clean):
    """A worker that only writes alerts, and a periodic tick: nothing is missed."""
    p = Recorder()
    n = notifier(clean, provider=p, adopt_days=30)
    y = mk(1, "yellow", rule="project.overdue_start", subject_type="project", subject="PJ1")
    old = mk(2, detected=NOW - 40 * DAY)  # before the adoption window: left alone
    clean.write_alerts([y, old])
    rep = n.tick(NOW)
    assert rep.opened == 1 and rep.held == 1
    clean.write_alerts([y.model_copy(update={"level": "red", "version": 2,
                                             "detected_at": format_ts(NOW + H)})])
    rep = n.tick(NOW + H)
    assert rep.raised == 1
    n.tick(NOW + H + 60)
    assert {m.phone for m in p.sent} == {SEC1, TOWN} and p.sent[0].params["level"] == "红色"
    assert load_history(clean, old.alert_id) == []
    assert notifier(clean, provider=p).tick(NOW + 2 * H).opened == 0


# ------------------------------------------------------------------ failures, masking

def test_a_failed_send_is_retried_later_and_never_lost(clean, caplog):
    p = Recorder()
    n = notifier(clean, provider=p, retry_inline=3, retry_later_s=300)
    a = mk(1, subject="VL2", village="VL2")
    n.on_alerts([a], NOW)
    p.fail = 6  # 3 tries for each of the two numbers
    with caplog.at_level(logging.INFO, logger="lianwatch.notify"):
        rep = n.tick(NOW + 60)
        assert rep.failed == 2 and p.sent == [] and p.tries == 6
        st = Counter(r["status"] for r in rows(clean))
        assert st == {"pending": 2, "failed": 6}  # every try recorded, per notice
        assert all(r["status"] == "failed" for r in latest(clean).values())
        n.tick(NOW + 60 + 299)
        assert p.tries == 6  # backoff
        p.fail = 1
        rep = n.tick(NOW + 60 + 300)  # one more failure, then both go
    assert rep.sms == 2 and p.tries == 9
    assert {m.phone for m in p.sent} == {SEC2, TOWN}
    assert all(r["status"] == "sent" for r in latest(clean).values())
    assert sorted(r["attempt"] for r in latest(clean).values()) == [4, 5]
    errors = [r["error"] for r in rows(clean) if r["status"] == "failed"]
    assert errors and all("138****0002" in e or "139****0001" in e for e in errors)
    assert caplog.records
    for rec in caplog.records:  # every log line masked
        assert SEC2 not in rec.getMessage() and TOWN not in rec.getMessage(), rec.getMessage()


def test_numbers_are_stored_masked_and_hashed(clean):
    n = notifier(clean)
    n.on_alerts([mk(1)], NOW)
    n.tick(NOW + 60)
    rs = rows(clean)
    assert {r["phone_masked"] for r in rs} == {"138****0001", "139****0001"}
    assert {r["phone_hash"] for r in rs} == {hasher(clean)(SEC1), hasher(clean)(TOWN)}
    blob = orjson.dumps(rs).decode()
    assert SEC1 not in blob and TOWN not in blob and SEC1[-8:] not in blob


def _old_default(phone: str) -> str:
    """The hash every install used to make: HMAC with the public key ``lianwatch-phone``."""
    import hashlib
    import hmac

    return hmac.new(b"lianwatch-phone", phone.encode(), hashlib.sha256).hexdigest()[:32]


def test_phone_hashes_cannot_be_reversed_with_a_public_key(clean, tmp_path):
    """Issue 13 fault 9: the demo's hashes used the public default key (all 46 numbers
    recovered in 0.6 s). Now each install has its own random key (0600, in the store)."""
    import stat

    from types import SimpleNamespace

    from lianwatch.commands.wiring import make_notifier
    from lianwatch.lifecycle.demo import after_demo

    alerts = [mk(1), mk(2, "yellow"), mk(3, subject="VL2", village="VL2")]
    clean.write_alerts(alerts)
    n = make_notifier(clean, REF, Settings(data_dir=str(tmp_path)), outbox=tmp_path / "outbox.jsonl")
    after_demo(n, SimpleNamespace(alerts=alerts, as_of=NOW))
    hashes = {r["phone_hash"] for r in rows(clean) if r["phone_hash"]}
    assert len(hashes) >= 3
    phones = {normalize_phone(c.phone) for v in REF.villages.values() for c in v.contacts}
    assert not hashes & {_old_default(p) for p in phones}  # the old key reverses nothing
    key = Path(clean.backend.path) / "phone-hash.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) == 64
    # a restart of the same install hashes alike: nothing is sent twice
    again = Recorder()
    n2 = notifier(clean, provider=again)
    n2.on_alerts(alerts, NOW + 600)
    n2.tick(NOW + 700)
    assert again.sent == [] and {r["phone_hash"] for r in rows(clean) if r["phone_hash"]} == hashes
    # two installs, two keys, two hashes of the same number
    a, b = phone_hash_key("", tmp_path / "a"), phone_hash_key("", tmp_path / "b")
    assert a != b and PhoneHasher(a)(SEC1) != PhoneHasher(b)(SEC1)
    assert phone_hash_key("", tmp_path / "a") == a  # and each keeps its own


def test_no_usable_default_key(tmp_path, monkeypatch):
    from lianwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="LIANWATCH_NOTIFY_PHONE_HASH_KEY is not set"):
        phone_hash_key("", None)  # a server store with no key in the environment
    with pytest.raises(ConfigError, match="public default"):
        phone_hash_key("lianwatch-phone", None)
    with pytest.raises(ConfigError, match="at least 32"):
        phone_hash_key("short", None)
    with pytest.raises(ConfigError):
        PhoneHasher("")
    good = "k" * 40
    assert phone_hash_key(good, None) == good
    key = tmp_path / "s" / "phone-hash.key"
    key.parent.mkdir()
    key.write_text("lianwatch-phone\n")
    with pytest.raises(ConfigError, match="public default"):
        phone_hash_key("", tmp_path / "s")
    import subprocess

    root = Path(__file__).resolve().parents[1]
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=root).returncode == 0


def test_outbox_provider_writes_jsonl_and_the_table(clean, tmp_path):
    box = OutboxProvider(tmp_path / "outbox.jsonl")
    n = notifier(clean, provider=box)
    n.on_alerts([mk(1), mk(2, "yellow")], NOW)
    n.tick(NOW + 60)
    lines = box.read()
    assert {x["to"] for x in lines} == {"138****0001", "139****0001"}
    assert all(x["text"].startswith("【廉情监督】红色预警") for x in lines)
    text = (tmp_path / "outbox.jsonl").read_text()
    assert "phone" not in lines[0] and SEC1 not in text and TOWN not in text
    assert {r["provider"] for r in rows(clean)} == {"outbox"}


def test_english_texts(clean):
    p = Recorder()
    n = notifier(clean, provider=p, lang="en")
    a = mk(1, rule="fuel.not_at_station", subject_type="vehicle", subject="V9", village=None)
    n.on_alerts([a], NOW)
    n.tick(NOW + 60)
    (m,) = p.sent
    assert m.text.startswith("RED alert: vehicle away from the station while fuelling, 浙A·9999X")
    assert f"ref {a.alert_id[:8]}" in m.text


# ------------------------------------------------------------------ the demo hook

def test_after_demo_counts_the_outbox(clean, tmp_path, capsys):
    from types import SimpleNamespace

    from lianwatch.commands import wiring
    from lianwatch.lifecycle.demo import after_demo

    inp = tmp_path / "demo-input"
    inp.mkdir()
    with open(inp / "villages.jsonl", "wb") as f:
        for v in REF.villages.values():
            f.write(orjson.dumps(v.model_dump(mode="json"), option=orjson.OPT_APPEND_NEWLINE))
    alerts = [mk(1), mk(2, "yellow"), mk(3, subject="VL2", village="VL2", detected=NOW - 11 * DAY)]
    clean.write_alerts(alerts)
    settings = Settings(data_dir=str(tmp_path))
    ref = wiring.load_reference_dir(inp, settings.zone)
    n = wiring.make_notifier(clean, ref, settings, outbox=tmp_path / "outbox.jsonl")
    rep = after_demo(n, SimpleNamespace(alerts=alerts, as_of=NOW))
    out = capsys.readouterr().out
    assert "secretary" in out and "town_discipline" in out and "outbox" in out
    assert rep.escalated == 1 and rep.sms >= 4
    lines = [orjson.loads(x) for x in (tmp_path / "outbox.jsonl").read_bytes().splitlines()]
    assert len(lines) == rep.sms
    roles = Counter(x["role"] for x in lines)
    assert roles["county_discipline"] == 1  # the escalated one


def test_cli_tick(clean, tmp_path, monkeypatch, capsys):
    from lianwatch.cli import main

    inp = tmp_path / "ref"
    inp.mkdir()
    with open(inp / "villages.jsonl", "wb") as f:
        for v in REF.villages.values():
            f.write(orjson.dumps(v.model_dump(mode="json"), option=orjson.OPT_APPEND_NEWLINE))
    monkeypatch.setattr("lianwatch.commands.wiring.open_configured_store",
                        lambda settings, **kw: clean)  # the test's store
    monkeypatch.setenv("LIANWATCH_NOTIFY_OUTBOX", str(tmp_path / "box.jsonl"))
    a = mk(1, detected=NOW)
    clean.write_alerts([a])
    Lifecycle(clean).observe([a], NOW)
    assert main(["alerts", "tick", "--input", str(inp), "--now", format_ts(NOW + 60)]) == 0
    assert main(["alerts", "tick", "--input", str(inp), "--now", format_ts(NOW + 120)]) == 0
    out = capsys.readouterr().out
    assert "planned 2" in out and "SMS sent 2" in out
    box = OutboxProvider(tmp_path / "box.jsonl").read()
    assert {x["to"] for x in box} == {"138****0001", "139****0001"}
    assert main(["alerts", "tick", "--input", str(tmp_path / "nope")]) == 1


def test_policy_from_a_toml_file(clean, tmp_path, monkeypatch):
    from lianwatch.commands.wiring import configured_policies, make_notifier

    f = tmp_path / "policy.toml"
    f.write_text('''
[lifecycle]
red_days = 5
[lifecycle.rules."payment.cash"]
yellow = 7

[notify]
daily_cap = 4
quiet_start = "21:30"
digest_at = "09:00"
[[notify.units.U9]]
role = "secretary"
name = "王主任"
phone = "13600000009"
[[notify.county_contacts]]
role = "county_discipline"
name = "县纪委值班室"
phone = "13700000099"
''', encoding="utf-8")
    monkeypatch.setenv("LIANWATCH_NOTIFY_POLICY_FILE", str(f))
    lp, np_ = configured_policies(Settings())
    assert lp.days("payment.no_approval", "red") == 5 and lp.days("payment.cash", "yellow") == 7
    assert np_.daily_cap == 4 and np_.quiet_start.strftime("%H:%M") == "21:30"
    n = make_notifier(clean, REF, Settings(), provider=Recorder())
    v9 = mk(1, rule="fuel.not_at_station", subject_type="vehicle", subject="V9", village=None)
    # the unit's own head, and for the missing town level the county line configured
    assert [(r.role, r.phone) for r in n.router.recipients(v9, ["secretary", "town_discipline"])] \
        == [("secretary", "13600000009"), ("county_discipline", "13700000099")]
    f.write_text("[notify]\ndaily_kap = 3\n")
    from lianwatch.lifecycle.config import PolicyError

    with pytest.raises(PolicyError, match="daily_kap"):
        configured_policies(Settings())
