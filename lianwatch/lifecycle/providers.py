"""SMS providers: the outbox (embedded default), Aliyun SMS and Tencent Cloud SMS.

A provider sends one :class:`Message` and answers a :class:`SendResult` (the
carrier took it, or refused it with a reason), or raises :class:`ProviderError`
(the carrier cannot be reached, throttles, or rejects the request): the notifier
retries with backoff and records every attempt, so a failed send is never lost.
The SDKs are imported only when their provider is used (``pip install
'lianwatch[sms]'``).

What an SDK raises never leaves this module: :func:`provider_errors` is the one
boundary (Aliyun's ``TeaException`` tree, Tencent's ``TencentCloudSDKException``,
``requests`` and socket errors → :class:`ProviderError` with the carrier's code).

Both carriers send registered templates: the message carries the template
(``alert`` or ``digest``, see :mod:`lianwatch.lifecycle.texts`) and its
variables; the template codes come with the provider's config
(:class:`AliyunSmsConfig`, :class:`TencentSmsConfig`), which the commands fill
from the environment.

Every provider has its carrier's :class:`~lianwatch.lifecycle.texts.SmsLimits`
(:data:`ALIYUN_LIMITS`, :data:`TENCENT_LIMITS`); the notifier fits every message
to the provider's limits before it hands it over (``texts.fit_params``), so the
outbox, which previews one carrier's limits, shows what that carrier would get.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, SecretStr

from lianwatch.errors import ProviderError
from lianwatch.lifecycle.texts import (
    PARAM_ORDER, SmsLimits, limit_problems, mask_numbers, normalize_phone,
)
from lianwatch.models.clock import DEFAULT_TZ, format_ts

__all__ = ["Message", "SendResult", "SmsProvider", "ProviderError", "OutboxProvider",
           "AliyunSmsProvider", "TencentSmsProvider", "AliyunSmsConfig", "TencentSmsConfig",
           "make_provider", "provider_errors", "ALIYUN_ENV_PREFIX", "TENCENT_ENV_PREFIX",
           "ALIYUN_LIMITS", "TENCENT_LIMITS", "CARRIER_LIMITS"]

#: the environment variables the commands fill the configs from (named in "not configured")
ALIYUN_ENV_PREFIX = "LIANWATCH_ALIYUN_SMS_"
TENCENT_ENV_PREFIX = "LIANWATCH_TENCENT_SMS_"

#: Aliyun SMS (dysmsapi). "在解除变量长度限制后，单个模板变量的长度可以超过默认的 35 字符上限。
#: 但整条短信（含签名 + 模板固定内容 + 所有变量替换后的内容）的总长度上限为 500 字符"
#: -- https://help.aliyun.com/zh/document_detail/3041859.html (长变量短信发送与字符限制是什么?):
#: 35 characters per variable unless lifted for the account, 500 for the whole SMS.
ALIYUN_LIMITS = SmsLimits("aliyun", 35, 500)
#: Tencent Cloud SMS. "短信正文模板中每个变量是否有字数限制？验证码短信：每个变量取值最多支持6位纯数字。
#: 非验证码短信：每个变量取值最多支持6个字符。说明：汉字、字母、数字、标点符号（不区分全角/半角）
#: 以及空格等，都按1个字符计算" -- https://cloud.tencent.com/document/product/382/13301 (模板
#: FAQ); "The total length of an SMS message (containing the actual values of the signature
#: and variables) cannot exceed 500 characters" -- https://www.tencentcloud.com/document/
#: product/382/40659 (Body Template Review Standards). 6 is what the documentation gives
#: (the earlier 35 here had no source): a template approved with longer variables sets
#: LIANWATCH_TENCENT_SMS_PARAM_MAX_LEN.
TENCENT_LIMITS = SmsLimits("tencent", 6, 500)
CARRIER_LIMITS = {"aliyun": ALIYUN_LIMITS, "tencent": TENCENT_LIMITS}


class AliyunSmsConfig(BaseModel):
    """Aliyun SMS (dysmsapi 2017-05-25)."""

    access_key_id: SecretStr = SecretStr("")
    access_key_secret: SecretStr = SecretStr("")
    sign_name: str = ""
    #: template codes (SMS_…), registered with the texts of lianwatch.lifecycle.texts
    template_alert: str = ""
    template_digest: str = ""
    endpoint: str = "dysmsapi.aliyuncs.com"
    region_id: str = "cn-hangzhou"
    connect_timeout_ms: int = 5000
    read_timeout_ms: int = 10000
    #: longest template variable value the carrier accepts
    param_max_len: int = 35


class TencentSmsConfig(BaseModel):
    """Tencent Cloud SMS (2021-01-11)."""

    secret_id: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    sdk_app_id: str = ""
    sign_name: str = ""
    template_alert: str = ""
    template_digest: str = ""
    region: str = "ap-guangzhou"
    endpoint: str = "sms.tencentcloudapi.com"
    timeout_s: int = 10
    #: longest template variable value (TENCENT_LIMITS: 6 by the documentation)
    param_max_len: int = 6


def _sdk_exceptions() -> list[tuple[type[BaseException], str]]:
    """(exception class, attribute holding the carrier's code) of the installed SDKs,
    most specific first; imported only when an error is being mapped."""
    out: list[tuple[type[BaseException], str]] = []
    try:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        out.append((TencentCloudSDKException, "code"))
    except ImportError:
        pass
    try:
        from Tea.exceptions import TeaException  # Aliyun: darabonba's tree derives from it
        out.append((TeaException, "code"))
    except ImportError:
        pass
    try:
        from requests import RequestException  # the SDKs' HTTP transport
        out.append((RequestException, ""))
    except ImportError:  # pragma: no cover - both SDKs depend on requests
        pass
    out.append((OSError, ""))  # sockets, and the outbox's file
    return out


def _sdk_error(exc: BaseException, provider: str) -> ProviderError | None:
    """The ProviderError for what a carrier's SDK (or its transport) raised; None: not theirs."""
    for cls, code_attr in _sdk_exceptions():
        if isinstance(exc, cls):
            code = getattr(exc, code_attr, None) if code_attr else None
            text = getattr(exc, "message", None) or str(exc)
            code = str(code) if code not in (None, "") else None
            msg = f"{provider} {code or type(exc).__name__}: {text}"
            return ProviderError(mask_numbers(msg)[:500], code=code)
    return None


@contextmanager
def provider_errors(provider: str) -> Iterator[None]:
    """The SMS boundary: what an SDK or its transport raises becomes a :class:`ProviderError`.

    ===================================================  ===============================
    raised                                               ProviderError ``code``
    ===================================================  ===============================
    Tencent ``TencentCloudSDKException``                 its code (``AuthFailure…``,
    (refusals, ``ClientNetworkError``, …)                ``ClientNetworkError``)
    Aliyun ``Tea.exceptions.TeaException`` and its       its code (``Throttling``,
    darabonba subclasses (``ServerException``,           ``ServiceUnavailable``…), or
    ``UnretryableException``: no connection)             None
    ``requests.RequestException``, ``OSError``           None
    ===================================================  ===============================

    Phone numbers in the carrier's text are masked. Anything else is a bug and goes
    up as it is.
    """
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        err = _sdk_error(exc, provider)
        if err is None:
            raise
        raise err from exc


@dataclass(frozen=True)
class Message:
    phone: str  # digits, mainland numbers without +86
    template: str  # "alert" | "digest"
    params: dict[str, str]
    text: str  # the template rendered with params (without the signature)
    ref: str  # our id of this SMS (Aliyun OutId, Tencent SessionContext)
    at: float
    meta: dict[str, Any] = field(default_factory=dict)  # masked phone, role, levels, alert ids


@dataclass(frozen=True)
class SendResult:
    ok: bool
    provider_id: str = ""
    error: str = ""


class SmsProvider(Protocol):
    name: str
    sign_name: str
    #: what the carrier accepts (variable and message length)
    limits: SmsLimits

    def send(self, msg: Message) -> SendResult: ...


class OutboxProvider:
    """Sends nothing: appends each SMS to a JSONL file (masked number) for review,
    with a carrier's limits applied (``limits``, default Aliyun's), so each line is
    what that carrier would be sent; ``problems`` lists anything it would refuse
    (nothing, when the notifier did its job).

    The notifier records it in the ``notifications`` table like any send.
    """

    name = "outbox"

    def __init__(self, path: str | Path, sign_name: str = "廉情监督",
                 tz: tzinfo = DEFAULT_TZ, limits: SmsLimits = ALIYUN_LIMITS) -> None:
        self.path = Path(path)
        self.sign_name = sign_name
        self.tz = tz
        self.limits = limits
        self._lock = threading.Lock()

    def send(self, msg: Message) -> SendResult:
        text = f"【{self.sign_name}】{msg.text}"
        rec = {"at": format_ts(msg.at, self.tz), "ref": msg.ref, **msg.meta,
               "template": msg.template, "params": msg.params, "text": text,
               "limits": self.limits.name,
               "problems": limit_problems(msg.params, text, self.limits)}
        rec.pop("phone", None)
        with provider_errors(self.name), self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        return SendResult(True, provider_id=f"outbox:{msg.ref}")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line]


def _params_json(params: dict[str, str]) -> str:
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"))


class AliyunSmsProvider:
    """Aliyun SMS ``SendSms`` (dysmsapi 2017-05-25) through the official SDK.

    ``TemplateParam`` is the variables as JSON; ``OutId`` our SMS id.
    """

    name = "aliyun"

    def __init__(self, cfg: AliyunSmsConfig) -> None:
        self.cfg = cfg
        self.sign_name = self.cfg.sign_name
        self.limits = SmsLimits("aliyun", self.cfg.param_max_len, ALIYUN_LIMITS.max_chars)
        missing = [n for n, v in (
            (ALIYUN_ENV_PREFIX + "ACCESS_KEY_ID", self.cfg.access_key_id.get_secret_value()),
            (ALIYUN_ENV_PREFIX + "ACCESS_KEY_SECRET",
             self.cfg.access_key_secret.get_secret_value()),
            (ALIYUN_ENV_PREFIX + "SIGN_NAME", self.cfg.sign_name),
            (ALIYUN_ENV_PREFIX + "TEMPLATE_ALERT", self.cfg.template_alert),
            (ALIYUN_ENV_PREFIX + "TEMPLATE_DIGEST", self.cfg.template_digest)) if not v]
        if missing:
            raise ProviderError(f"Aliyun SMS is not configured: set {', '.join(missing)}")
        try:
            from alibabacloud_dysmsapi20170525 import models as sms_models
            from alibabacloud_dysmsapi20170525.client import Client
            try:  # tea-openapi ≥ 0.4 (darabonba core)
                from alibabacloud_tea_openapi import utils_models as open_api_models
            except ImportError:  # older: Config in .models
                from alibabacloud_tea_openapi import models as open_api_models
        except ImportError as exc:
            raise ProviderError("Aliyun SMS needs alibabacloud-dysmsapi20170525 and "
                                f"alibabacloud-tea-openapi (pip install 'lianwatch[sms]'): {exc}"
                                ) from None
        self._models = sms_models
        self.client = Client(open_api_models.Config(
            access_key_id=self.cfg.access_key_id.get_secret_value(),
            access_key_secret=self.cfg.access_key_secret.get_secret_value(),
            endpoint=self.cfg.endpoint, region_id=self.cfg.region_id,
            connect_timeout=self.cfg.connect_timeout_ms, read_timeout=self.cfg.read_timeout_ms))

    def request(self, msg: Message) -> Any:
        """The SDK request for ``msg`` (the SDK signs it when sent)."""
        return self._models.SendSmsRequest(
            phone_numbers=normalize_phone(msg.phone), sign_name=self.cfg.sign_name,
            template_code=(self.cfg.template_digest if msg.template == "digest"
                           else self.cfg.template_alert),
            template_param=_params_json(msg.params), out_id=msg.ref)

    def send(self, msg: Message) -> SendResult:
        with provider_errors(self.name):
            resp = self.client.send_sms(self.request(msg))
        body = resp.body
        if body is not None and body.code == "OK":
            return SendResult(True, provider_id=body.biz_id or "")
        code = getattr(body, "code", None) or "NoBody"
        text = getattr(body, "message", None) or ""
        return SendResult(False, error=mask_numbers(f"aliyun {code}: {text}"))


def e164(phone: str) -> str:
    """``+8613800000012`` for a mainland mobile number; other numbers get a ``+``."""
    d = normalize_phone(phone)
    if len(d) == 11 and d.startswith("1"):
        return "+86" + d
    return "+" + d


class TencentSmsProvider:
    """Tencent Cloud SMS ``SendSms`` (2021-01-11) through the official SDK.

    ``TemplateParamSet`` is the variables in :data:`PARAM_ORDER`; ``SessionContext``
    our SMS id.
    """

    name = "tencent"

    def __init__(self, cfg: TencentSmsConfig) -> None:
        self.cfg = cfg
        self.sign_name = self.cfg.sign_name
        self.limits = SmsLimits("tencent", self.cfg.param_max_len, TENCENT_LIMITS.max_chars)
        missing = [n for n, v in (
            (TENCENT_ENV_PREFIX + "SECRET_ID", self.cfg.secret_id.get_secret_value()),
            (TENCENT_ENV_PREFIX + "SECRET_KEY", self.cfg.secret_key.get_secret_value()),
            (TENCENT_ENV_PREFIX + "SDK_APP_ID", self.cfg.sdk_app_id),
            (TENCENT_ENV_PREFIX + "SIGN_NAME", self.cfg.sign_name),
            (TENCENT_ENV_PREFIX + "TEMPLATE_ALERT", self.cfg.template_alert),
            (TENCENT_ENV_PREFIX + "TEMPLATE_DIGEST", self.cfg.template_digest)) if not v]
        if missing:
            raise ProviderError(f"Tencent Cloud SMS is not configured: set {', '.join(missing)}")
        try:
            from tencentcloud.common import credential
            from tencentcloud.common.profile.client_profile import ClientProfile
            from tencentcloud.common.profile.http_profile import HttpProfile
            from tencentcloud.sms.v20210111 import models as sms_models
            from tencentcloud.sms.v20210111 import sms_client
        except ImportError as exc:
            raise ProviderError("Tencent Cloud SMS needs tencentcloud-sdk-python-sms "
                                f"(pip install 'lianwatch[sms]'): {exc}") from None
        self._models = sms_models
        cred = credential.Credential(self.cfg.secret_id.get_secret_value(),
                                     self.cfg.secret_key.get_secret_value())
        profile = ClientProfile(httpProfile=HttpProfile(endpoint=self.cfg.endpoint,
                                                        reqTimeout=self.cfg.timeout_s))
        self.client = sms_client.SmsClient(cred, self.cfg.region, profile)

    def request(self, msg: Message) -> Any:
        req = self._models.SendSmsRequest()
        req.PhoneNumberSet = [e164(msg.phone)]
        req.SmsSdkAppId = self.cfg.sdk_app_id
        req.SignName = self.cfg.sign_name
        req.TemplateId = (self.cfg.template_digest if msg.template == "digest"
                          else self.cfg.template_alert)
        req.TemplateParamSet = [msg.params.get(k, "") for k in PARAM_ORDER[msg.template]]
        req.SessionContext = msg.ref
        return req

    def send(self, msg: Message) -> SendResult:
        with provider_errors(self.name):
            resp = self.client.SendSms(self.request(msg))
        st = (resp.SendStatusSet or [None])[0]
        if st is not None and st.Code == "Ok":
            return SendResult(True, provider_id=st.SerialNo or "")
        code = getattr(st, "Code", None) or "NoStatus"
        text = getattr(st, "Message", None) or ""
        return SendResult(False, error=mask_numbers(f"tencent {code}: {text}"))


def make_provider(kind: str = "outbox", *, outbox: str | Path | None = None,
                  aliyun: AliyunSmsConfig | None = None, tencent: TencentSmsConfig | None = None,
                  sign_name: str = "廉情监督", tz: tzinfo = DEFAULT_TZ,
                  carrier: str = "aliyun") -> SmsProvider:
    """The provider ``kind`` (``outbox``, ``aliyun``, ``tencent``) from its config.

    ``outbox``: the JSONL file (required for the outbox); ``carrier``: whose limits the
    outbox applies (``aliyun`` or ``tencent``). A carrier without its config
    is not configured (ProviderError naming what to set).
    """
    if kind == "aliyun":
        return AliyunSmsProvider(aliyun or AliyunSmsConfig())
    if kind == "tencent":
        return TencentSmsProvider(tencent or TencentSmsConfig())
    if kind != "outbox":
        raise ProviderError(f"unknown SMS provider {kind!r} (outbox, aliyun or tencent)")
    if outbox is None:
        raise ProviderError("the outbox provider needs the path of its JSONL file")
    return OutboxProvider(outbox, sign_name=sign_name, tz=tz, limits=CARRIER_LIMITS[carrier])
