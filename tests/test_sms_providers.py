"""Aliyun and Tencent SMS through their official SDKs, without a network.

The SDKs build and sign the real requests; a fake transport (a ``requests``
adapter) takes them instead of the carrier. The tests check what would go on
the wire and recompute the signatures independently, from the carriers'
published algorithms (Aliyun ACS3-HMAC-SHA256, Tencent TC3-HMAC-SHA256).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

pytest.importorskip("alibabacloud_dysmsapi20170525")
pytest.importorskip("tencentcloud.sms.v20210111")

from lianwatch.lifecycle.config import LifecyclePolicy, NotifyPolicy  # noqa: E402
from lianwatch.lifecycle.notify import Notifier  # noqa: E402
from lianwatch.lifecycle.providers import (  # noqa: E402
    AliyunSmsProvider, Message, OutboxProvider, ProviderError, TencentSmsProvider, make_provider,
)
from lianwatch.models.alert import Alert, alert_id  # noqa: E402
from lianwatch.models.clock import format_ts  # noqa: E402
from lianwatch.models.parse import parse_reference  # noqa: E402
from lianwatch.reference import Reference  # noqa: E402
from lianwatch.settings import (  # noqa: E402
    AliyunSmsSettings, NotifySettings, Settings, TencentSmsSettings,
)

NOW = 1772409600.0 + 7200  # 2026-03-02 10:00+08:00
PARAMS = {"level": "红色", "rule": "加油时车辆不在加油站", "subject": "浙A·1234X",
          "time": "03-02 09:02", "code": "b1f0c2e4", "note": "请10日内核查整改。"}


class FakeTransport(BaseAdapter):
    """A ``requests`` transport that answers from a script and keeps the requests."""

    def __init__(self, *answers: tuple[int, dict]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        r = requests.Response()
        r.status_code, r.reason, r.url, r.request = status, "X", request.url, request
        r._content = json.dumps(body).encode()
        r.headers["Content-Type"] = "application/json"
        return r

    def close(self) -> None:
        pass


def msg(template: str = "alert", params: dict | None = None) -> Message:
    return Message(phone="13800000012", template=template, params=params or PARAMS,
                   text="(rendered)", ref="ref-0001", at=NOW)


# ------------------------------------------------------------------ Aliyun

ALI_OK = (200, {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0",
                "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"})


def aliyun_cfg(**kw) -> AliyunSmsSettings:
    base = dict(access_key_id="LTAI5tTestKeyId", access_key_secret="testSecret123",
                sign_name="廉情监督", template_alert="SMS_460001", template_digest="SMS_460002")
    return AliyunSmsSettings(**{**base, **kw})


def aliyun_over(monkeypatch, transport: BaseAdapter) -> AliyunSmsProvider:
    """An Aliyun provider whose HTTP sessions (the SDK's own) use ``transport``."""
    from darabonba.core import DaraCore

    def session(*args, **kwargs):
        s = requests.Session()
        s.mount("https://", transport)
        s.mount("http://", transport)
        return s

    monkeypatch.setattr(DaraCore, "_get_session", staticmethod(session))
    return AliyunSmsProvider(aliyun_cfg())


@pytest.fixture
def aliyun(monkeypatch):
    """An Aliyun provider whose HTTP sessions use a fake transport."""
    fake = FakeTransport(ALI_OK)
    return aliyun_over(monkeypatch, fake), fake


def _rfc3986(s: str) -> str:
    return quote(s, safe="-_.~")


def acs3_signature(req: requests.PreparedRequest, secret: str) -> tuple[str, str]:
    """(signed headers, signature) per Aliyun's V3 request signature (ACS3-HMAC-SHA256)."""
    u = urlsplit(req.url)
    query = sorted(parse_qsl(u.query, keep_blank_values=True))
    canonical_query = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in query)
    auth = req.headers["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0]
    headers = {k.lower(): v for k, v in req.headers.items()}
    canonical_headers = "".join(f"{h}:{headers[h].strip()}\n" for h in signed.split(";"))
    payload = hashlib.sha256(req.body or b"").hexdigest()
    canonical = "\n".join([req.method, u.path or "/", canonical_query, canonical_headers,
                           signed, payload])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    return signed, hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def test_aliyun_request_is_built_and_signed(aliyun):
    p, fake = aliyun
    res = p.send(msg())
    assert res.ok and res.provider_id == "900619746936498440^0"
    (req,) = fake.requests
    u = urlsplit(req.url)
    assert (req.method, u.scheme, u.netloc, u.path) == ("POST", "https", "dysmsapi.aliyuncs.com",
                                                       "/")
    q = dict(parse_qsl(u.query))
    assert q["PhoneNumbers"] == "13800000012" and q["SignName"] == "廉情监督"
    assert q["TemplateCode"] == "SMS_460001" and q["OutId"] == "ref-0001"
    assert json.loads(q["TemplateParam"]) == PARAMS  # the variables as JSON
    h = req.headers
    assert h["x-acs-action"] == "SendSms" and h["x-acs-version"] == "2017-05-25"
    assert h["x-acs-content-sha256"] == hashlib.sha256(b"").hexdigest()
    assert h["x-acs-signature-nonce"] and h["x-acs-date"].endswith("Z")
    auth = h["Authorization"]
    assert auth.startswith("ACS3-HMAC-SHA256 Credential=LTAI5tTestKeyId,")
    signed, sig = acs3_signature(req, "testSecret123")
    assert {"host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce",
            "x-acs-version", "x-acs-content-sha256"} <= set(signed.split(";"))
    assert auth.endswith(f",Signature={sig}")
    _, wrong = acs3_signature(req, "anotherSecret")
    assert not auth.endswith(wrong)


def test_aliyun_digest_template_and_carrier_refusal(aliyun):
    p, fake = aliyun
    fake.answers = [(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL",
                           "Message": "触发号码天级流控 13800000012", "RequestId": "R"})]
    res = p.send(msg("digest", {"title": "每日汇总", "count": "3", "summary": "黄色3条",
                                "codes": "a1、b2、c3"}))
    assert not res.ok and "isv.BUSINESS_LIMIT_CONTROL" in res.error
    assert "13800000012" not in res.error and "138****0012" in res.error
    q = dict(parse_qsl(urlsplit(fake.requests[0].url).query))
    assert q["TemplateCode"] == "SMS_460002" and json.loads(q["TemplateParam"])["count"] == "3"


def test_aliyun_server_error_raises(aliyun):
    p, fake = aliyun
    fake.answers = [(503, {"Code": "ServiceUnavailable", "Message": "busy", "RequestId": "R"})]
    with pytest.raises(ProviderError, match="ServiceUnavailable") as e:
        p.send(msg())
    assert e.value.code == "ServiceUnavailable"


# ------------------------------------------------------------------ Tencent

TC_OK = (200, {"Response": {"SendStatusSet": [{
    "SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": "+8613800000012", "Fee": 1,
    "SessionContext": "ref-0001", "Code": "Ok", "Message": "send success", "IsoCode": "CN"}],
    "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279"}})


def tencent(*answers) -> tuple[TencentSmsProvider, FakeTransport]:
    p = TencentSmsProvider(TencentSmsSettings(
        secret_id="AKIDtestSecretId", secret_key="tencentSecretKey", sdk_app_id="1400787878",
        sign_name="廉情监督", template_alert="1890001", template_digest="1890002"))
    fake = FakeTransport(*(answers or (TC_OK,)))
    p.client.request.conn._session.mount("https://", fake)  # the SDK's own HTTP session
    return p, fake


def _bytes(b: bytes | str | None) -> bytes:
    return b.encode() if isinstance(b, str) else (b or b"")


def tc3_signature(req: requests.PreparedRequest, secret: str, service: str = "sms") -> str:
    """Tencent Cloud API 3.0 signature (TC3-HMAC-SHA256) of a captured request."""
    ts = req.headers["X-TC-Timestamp"]
    day = datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%d")
    canonical = "\n".join([
        req.method, "/", "",
        f"content-type:{req.headers['Content-Type']}\nhost:{req.headers['Host']}\n",
        "content-type;host", hashlib.sha256(_bytes(req.body)).hexdigest()])
    to_sign = "\n".join(["TC3-HMAC-SHA256", ts, f"{day}/{service}/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])

    def h(key: bytes, m: str) -> bytes:
        return hmac.new(key, m.encode(), hashlib.sha256).digest()

    k = h(h(h(("TC3" + secret).encode(), day), service), "tc3_request")
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()


def test_tencent_request_is_built_and_signed():
    p, fake = tencent()
    res = p.send(msg())
    assert res.ok and res.provider_id.startswith("5000:")
    (req,) = fake.requests
    assert req.method == "POST" and req.url == "https://sms.tencentcloudapi.com/"
    h = req.headers
    assert h["X-TC-Action"] == "SendSms" and h["X-TC-Version"] == "2021-01-11"
    assert h["X-TC-Region"] == "ap-guangzhou" and h["Host"] == "sms.tencentcloudapi.com"
    body = json.loads(req.body)
    assert body["PhoneNumberSet"] == ["+8613800000012"]
    assert body["SmsSdkAppId"] == "1400787878" and body["SignName"] == "廉情监督"
    assert body["TemplateId"] == "1890001" and body["SessionContext"] == "ref-0001"
    # positional template variables, in the documented order
    assert body["TemplateParamSet"] == ["红色", "加油时车辆不在加油站", "浙A·1234X", "03-02 09:02",
                                        "b1f0c2e4", "请10日内核查整改。"]
    day = datetime.fromtimestamp(int(h["X-TC-Timestamp"]), timezone.utc).strftime("%Y-%m-%d")
    assert h["Authorization"] == (
        f"TC3-HMAC-SHA256 Credential=AKIDtestSecretId/{day}/sms/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={tc3_signature(req, 'tencentSecretKey')}")


def test_tencent_refusals():
    p, _ = tencent((200, {"Response": {"SendStatusSet": [{
        "SerialNo": "", "PhoneNumber": "+8613800000012", "Fee": 0, "SessionContext": "",
        "Code": "LimitExceeded.PhoneNumberDailyLimit", "Message": "单个手机号日下发短信条数超过设定的上限",
        "IsoCode": "CN"}], "RequestId": "x"}}))
    res = p.send(msg())
    assert not res.ok and "LimitExceeded.PhoneNumberDailyLimit" in res.error
    p, _ = tencent((200, {"Response": {"Error": {"Code": "AuthFailure.SignatureFailure",
                                                 "Message": "bad"}, "RequestId": "x"}}))
    with pytest.raises(ProviderError, match="AuthFailure") as e:
        p.send(msg())
    assert e.value.code == "AuthFailure.SignatureFailure"


# ------------------------------------------------------------------ configuration

def test_configuration_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LIANWATCH_ALIYUN_SMS_ACCESS_KEY_ID", "envKeyId")
    monkeypatch.setenv("LIANWATCH_ALIYUN_SMS_ACCESS_KEY_SECRET", "envSecret")
    monkeypatch.setenv("LIANWATCH_ALIYUN_SMS_SIGN_NAME", "廉情监督")
    monkeypatch.setenv("LIANWATCH_ALIYUN_SMS_TEMPLATE_ALERT", "SMS_1")
    cfg = AliyunSmsSettings()
    assert cfg.access_key_secret.get_secret_value() == "envSecret"
    assert "envSecret" not in repr(cfg) and "envSecret" not in str(cfg.model_dump())
    with pytest.raises(ProviderError, match="LIANWATCH_ALIYUN_SMS_TEMPLATE_DIGEST"):
        AliyunSmsProvider(AliyunSmsSettings())
    monkeypatch.setenv("LIANWATCH_ALIYUN_SMS_TEMPLATE_DIGEST", "SMS_2")
    monkeypatch.setenv("LIANWATCH_NOTIFY_PROVIDER", "aliyun")
    assert isinstance(make_provider(NotifySettings().provider, aliyun=AliyunSmsSettings()),
                      AliyunSmsProvider)
    with pytest.raises(ProviderError, match="LIANWATCH_TENCENT_SMS_SECRET_ID"):
        TencentSmsProvider(TencentSmsSettings())
    # the commands' wiring: the provider the environment names, the outbox by default
    from types import SimpleNamespace

    from lianwatch.commands.wiring import make_notifier

    where = SimpleNamespace(db="lw_nowhere")  # the notifier only names its tables here
    monkeypatch.setenv("LIANWATCH_NOTIFY_PHONE_HASH_KEY", "k" * 40)  # no embedded store: its own key
    n = make_notifier(where, None, Settings(data_dir=str(tmp_path)))
    assert isinstance(n.provider, AliyunSmsProvider) and n.provider.cfg.template_digest == "SMS_2"
    monkeypatch.delenv("LIANWATCH_NOTIFY_PROVIDER")
    box = make_notifier(where, None, Settings(data_dir=str(tmp_path))).provider
    assert isinstance(box, OutboxProvider) and box.path == tmp_path / "outbox.jsonl"


# ------------------------------------------------------------------ through the notifier

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module, in a database of its own. chDB serves one data directory
    per process: when one is open already (the session's demo store), share it rather
    than close it under its owner."""
    from lianwatch.sinks import chdb_backend
    from lianwatch.sinks.store import AlertStore

    path = next(iter(chdb_backend._SESSIONS), None) or tmp_path_factory.mktemp("sms") / "store"
    s = AlertStore(chdb_backend.ChdbBackend(path), database="lw_test_sms")
    s.migrate()
    return s


def _ref() -> Reference:
    ref = Reference()
    v, why = parse_reference("villages", {
        "village_id": "VL1", "name": "兴裕村", "town": "益农镇",
        "contacts": [{"role": "secretary", "name": "张三", "phone": "13800000012"},
                     {"role": "town_discipline", "name": "李四", "phone": "13900000001"}]})
    assert v is not None, why
    ref.add("villages", v)
    return ref


def test_provider_errors_are_retried_and_logged_never_lost(store, monkeypatch):
    """Aliyun throttles every try of the first round, then accepts: nothing is lost."""
    store.truncate_all()
    fake = FakeTransport((500, {"Code": "Throttling", "Message": "busy", "RequestId": "R"}))
    provider = aliyun_over(monkeypatch, fake)
    naps: list[float] = []
    n = Notifier(store, _ref(), provider,
                 policy=NotifyPolicy(retry_inline=3, retry_backoff_s=2, retry_later_s=600),
                 lifecycle_policy=LifecyclePolicy(), sleep=naps.append, phone_hash_key="test-key-0123456789abcdef0123456789")
    a = Alert(alert_id=alert_id("payment.no_approval", "village", "VL1", ["PM-1"]),
              rule="payment.no_approval", level="red", subject_type="village",
              subject_id="VL1", village_id="VL1", event_ts=format_ts(NOW - 600),
              detected_at=format_ts(NOW), title="大额支付未经审批", source_event_ids=["PM-1"])
    n.on_alerts([a], NOW)
    rep = n.tick(NOW + 60)
    assert rep.failed == 2 and rep.sms == 0
    assert len(fake.requests) == 6 and naps == [2, 4, 2, 4]  # 3 tries each, backoff doubling
    st = store.query(f"SELECT status, count() AS n FROM {store.db}.notifications GROUP BY status")
    assert {r["status"]: int(r["n"]) for r in st} == {"pending": 2, "failed": 6}
    errs = store.query(f"SELECT DISTINCT error FROM {store.db}.notifications "
                       "WHERE status='failed'")
    assert all("Throttling" in e["error"] for e in errs)
    fake.answers = [ALI_OK]
    n.tick(NOW + 60 + 599)
    assert len(fake.requests) == 6  # backing off
    rep = n.tick(NOW + 60 + 600)
    assert rep.sms == 2 and len(fake.requests) == 8
    sent = [dict(parse_qsl(urlsplit(r.url).query)) for r in fake.requests[6:]]
    assert sorted(q["PhoneNumbers"] for q in sent) == ["13800000012", "13900000001"]
    assert all(json.loads(q["TemplateParam"])["code"] == a.alert_id[:8] for q in sent)
    last = store.query(
        "SELECT splitByChar('/', notification_id)[1] AS nid, argMax(status, attempt) AS st, "
        f"max(attempt) AS n FROM {store.db}.notifications GROUP BY nid")
    assert Counter((r["st"], int(r["n"])) for r in last) == {("sent", 4): 2}


def test_the_outbox_shows_what_the_carriers_get(store, aliyun, monkeypatch, tmp_path):
    """The same alerts through the outbox (with a carrier's limits) and through the carrier's
    SDK give the same variables, each within the documented cap (Aliyun 35, Tencent 6)."""
    from lianwatch.lifecycle.providers import ALIYUN_LIMITS, TENCENT_LIMITS

    alerts = [Alert(alert_id=alert_id("payment.no_approval", "village", "VL1", [f"PM-{i}"]),
                    rule="payment.no_approval", level="red", subject_type="village",
                    subject_id="VL1", village_id="VL1", event_ts=format_ts(NOW - 600),
                    detected_at=format_ts(NOW), title="大额支付未经审批", source_event_ids=[f"PM-{i}"])
              for i in range(9)]

    def run(provider):
        store.truncate_all()
        n = Notifier(store, _ref(), provider, policy=NotifyPolicy(),
                     lifecycle_policy=LifecyclePolicy(), sleep=lambda s: None, phone_hash_key="test-key-0123456789abcdef0123456789")
        n.on_alerts(alerts, NOW)
        n.tick(NOW + 60)

    ali, fake = aliyun
    run(ali)
    wire = sorted((dict(parse_qsl(urlsplit(r.url).query)) for r in fake.requests),
                  key=lambda q: (q["PhoneNumbers"], q["OutId"]))
    run(box := OutboxProvider(tmp_path / "a.jsonl", limits=ALIYUN_LIMITS))
    boxed = sorted(box.read(), key=lambda x: (x["to"], x["ref"]))
    assert [json.loads(q["TemplateParam"]) for q in wire] == [x["params"] for x in boxed]
    assert len(wire) == 6 and all(len(v) <= 35 for q in wire for v in json.loads(q["TemplateParam"]).values())
    tc, tfake = tencent()
    run(tc)
    tcs = [json.loads(r.body)["TemplateParamSet"] for r in tfake.requests]
    assert tcs and all(len(v) <= TENCENT_LIMITS.param_max_len for ps in tcs for v in ps)
    run(box := OutboxProvider(tmp_path / "t.jsonl", limits=TENCENT_LIMITS))
    from lianwatch.lifecycle.texts import PARAM_ORDER

    assert sorted(tcs) == sorted([x["params"][k] for k in PARAM_ORDER[x["template"]]] for x in box.read())
