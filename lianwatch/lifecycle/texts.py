"""SMS texts: short templates (Chinese, English), rule names, lengths, phone masking.

Carriers send only registered templates with variables. The two templates
below are the ones to register (Aliyun: ``${name}``; Tencent: ``{1}``… in the
order of :data:`PARAM_ORDER`); the outbox renders the same text locally::

    alert   {level}预警：{rule}，{subject}，{time}，编号{code}。{note}
    digest  {title}：{count}条预警（{summary}），编号{codes}。请登录系统查看处理。

A message carries the rule's name, the subject (plate, village or project
name), the time and a reference code (the first 8 characters of the alert id,
which ``lianwatch alerts rectify CODE`` accepts). No names of people, payees or
amounts: the recipient opens the system for those.

>>> mask_phone("13800000012"), mask_phone("+86 138-0000-0012")
('138****0012', '138****0012')
>>> sms_segments("短" * 70), sms_segments("短" * 71), sms_segments("a" * 160), sms_segments("a" * 161)
(1, 2, 1, 2)
>>> render("alert", ALERT_PARAMS_EXAMPLE, "zh")
'红色预警：加油时车辆不在加油站，浙A·1234X，03-02 09:02，编号b1f0c2e4。请10日内核查整改。'
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from typing import Any

from lianwatch.rules import RULES

__all__ = [
    "RULE_ZH", "RULE_EN", "TEMPLATES", "PARAM_ORDER", "render", "sms_segments", "sms_length",
    "mask_phone", "normalize_phone", "PhoneHasher", "mask_numbers", "rule_name", "SmsLimits",
    "fit_params", "limit_problems", "CODE_PARAMS",
]

RULE_ZH = {rule: meta["zh"] for rule, meta in RULES.items()}
RULE_EN = {rule: meta["en"] for rule, meta in RULES.items()}

TEMPLATES = {
    "zh": {
        "alert": "{level}预警：{rule}，{subject}，{time}，编号{code}。{note}",
        "digest": "{title}：{count}条预警（{summary}），编号{codes}。请登录系统查看处理。",
    },
    "en": {
        "alert": "{level} alert: {rule}, {subject}, {time}, ref {code}. {note}",
        "digest": "{title}: {count} alerts ({summary}), refs {codes}. Please see the system.",
    },
}
#: variable order for carriers with positional templates (Tencent)
PARAM_ORDER = {"alert": ("level", "rule", "subject", "time", "code", "note"),
               "digest": ("title", "count", "summary", "codes")}

LEVEL_WORD = {"zh": {"red": "红色", "yellow": "黄色"}, "en": {"red": "RED", "yellow": "Yellow"}}
ROLE_SHORT = {"zh": {"secretary": "村书记", "town_discipline": "镇纪委",
                     "county_discipline": "县纪委"},
              "en": {"secretary": "the village secretary", "town_discipline": "the town "
                     "discipline inspector", "county_discipline": "the county commission"}}

ALERT_PARAMS_EXAMPLE = {"level": "红色", "rule": "加油时车辆不在加油站", "subject": "浙A·1234X",
                        "time": "03-02 09:02", "code": "b1f0c2e4", "note": "请10日内核查整改。"}


def rule_name(rule: str, lang: str = "zh") -> str:
    return (RULE_ZH if lang == "zh" else RULE_EN).get(rule, rule)


def notes(lang: str) -> dict[str, str]:
    """The ``note`` variable per kind of notice ({days}, {role} filled in)."""
    if lang == "zh":
        return {
            "alert.red": "请{days}日内核查整改。",
            "alert.yellow": "请{days}日内核查处理。",
            "repeat": "尚未整改，请尽快处理。",
            "escalation": "逾期未整改，已报{role}。",
            "state.rectifying": "已报整改，待核实。",
            "state.closed": "已核实办结。",
            "state.dismissed": "已核销。",
            "state.open": "已重新打开，请核查整改。",
        }
    return {
        "alert.red": "Verify and rectify within {days} days.",
        "alert.yellow": "Verify within {days} days.",
        "repeat": "Still not rectified.",
        "escalation": "Overdue: reported to {role}.",
        "state.rectifying": "Rectification reported, to be verified.",
        "state.closed": "Verified and closed.",
        "state.dismissed": "Dismissed.",
        "state.open": "Reopened: verify and rectify.",
    }


def render(template: str, params: dict[str, Any], lang: str = "zh") -> str:
    return TEMPLATES[lang][template].format(**params).strip()


# --------------------------------------------------------------------- length

_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€")


def sms_length(text: str) -> int:
    """Characters as carriers count them (a character outside the BMP counts two)."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def sms_segments(text: str) -> int:
    """Segments a carrier bills: 70 per SMS (UCS-2), 67 each when split; 160/153 in GSM-7."""
    n = sms_length(text)
    if all(c in _GSM7 for c in text):
        return 1 if n <= 160 else math.ceil(n / 153)
    return 1 if n <= 70 else math.ceil(n / 67)


# --------------------------------------------------------------------- carrier limits
#: variables that carry alert codes: cut to a prefix (still a usable code), never "…"
CODE_PARAMS = frozenset({"code", "codes"})


@dataclass(frozen=True)
class SmsLimits:
    """What a carrier accepts for one templated SMS (the providers' profiles and
    their sources are in :mod:`lianwatch.lifecycle.providers`).

    Carriers count every character as one (汉字、字母、数字、标点符号、空格), so
    lengths here are ``len``; the whole SMS is the signature plus the text with its
    variables filled in.
    """

    name: str
    #: longest value of one template variable (None: no limit)
    param_max_len: int | None
    #: longest whole SMS (signature + text)
    max_chars: int = 500


def _cut(key: str, value: str, n: int | None) -> str:
    if n is None or len(value) <= n:
        return value
    if key in CODE_PARAMS:
        return value[:n]  # a shorter prefix of an alert id is still a code
    return value[: max(0, n - 1)] + "…"


def fit_params(params: dict[str, str], limits: "SmsLimits | None") -> dict[str, str]:
    """Every variable cut to the carrier's limit (the one place outbox and providers share).

    >>> fit_params({"rule": "加油时车辆不在加油站", "code": "b1f0c2e4"}, SmsLimits("t", 6))
    {'rule': '加油时车辆…', 'code': 'b1f0c2'}
    """
    n = limits.param_max_len if limits is not None else None
    return {k: _cut(k, str(v), n) for k, v in params.items()}


def limit_problems(params: dict[str, str], full_text: str, limits: "SmsLimits | None") -> list[str]:
    """Why a carrier would refuse this SMS (empty: it fits)."""
    if limits is None:
        return []
    out = []
    n = limits.param_max_len
    if n is not None:
        out += [f"variable {k} has {len(v)} characters, {limits.name} takes {n}"
                for k, v in params.items() if len(v) > n]
    if len(full_text) > limits.max_chars:
        out.append(f"the SMS has {len(full_text)} characters, {limits.name} takes {limits.max_chars}")
    return out


# --------------------------------------------------------------------- phones

_NUM = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1\d{2})[- ]?(\d{4})[- ]?(\d{4})(?!\d)")


def normalize_phone(phone: str) -> str:
    """Digits only, without a mainland +86/0086 prefix: ``+86 138-0000-0012`` → ``13800000012``."""
    d = re.sub(r"\D", "", phone or "")
    for pre in ("0086", "86"):
        if d.startswith(pre) and len(d) == len(pre) + 11 and d[len(pre)] == "1":
            return d[len(pre):]
    return d


def mask_phone(phone: str) -> str:
    """``138****0012``: the first three and last four digits."""
    d = normalize_phone(phone)
    if len(d) >= 8:
        return d[:3] + "****" + d[-4:]
    return "****" + d[-2:]


def mask_numbers(text: str) -> str:
    """Mask every mainland mobile number inside a text (provider errors, logs)."""
    return _NUM.sub(lambda m: m.group(1) + "****" + m.group(3), text or "")


class PhoneHasher:
    """Keyed hash (HMAC-SHA256) of a number for the notifications table (the number
    itself is not kept). The key is the install's (:mod:`lianwatch.lifecycle.hashkey`):
    there is no default, and the old public one is refused."""

    def __init__(self, key: str) -> None:
        from lianwatch.lifecycle.hashkey import PUBLIC_KEYS

        if not key or key in PUBLIC_KEYS:
            from lianwatch.errors import ConfigError

            raise ConfigError("a phone hash key is required (the install's, never a public default)")
        self._key = key.encode("utf-8")

    def __call__(self, phone: str) -> str:
        return hmac.new(self._key, normalize_phone(phone).encode("ascii"),
                        hashlib.sha256).hexdigest()[:32]
