"""Settings of the alert lifecycle and the notifier.

Two kinds:

* **policies** (not secret, reviewed like rules): deadlines, group wait, quiet
  hours, digest time, caps, unit contacts. Defaults below; a TOML file can
  change them, with a ``[lifecycle]`` and a ``[notify]`` table::

      [lifecycle]
      red_days = 10              # rectification reported within … days
      yellow_days = 30
      [lifecycle.rules."payment.no_approval"]
      red = 5                    # per rule and level

      [notify]
      group_wait_s = 60
      repeat_red_days = 3
      quiet_start = "22:00"
      quiet_end = "07:00"
      digest_at = "08:30"
      daily_cap = 10
      [[notify.units.U03]]       # contacts of a unit (vehicle alerts)
      role = "secretary"
      name = "王主任"
      phone = "13800000001"
      [[notify.county_contacts]] # the county discipline commission's duty line
      role = "county_discipline"
      name = "县纪委值班室"
      phone = "13900000000"

  The file is ``LIANWATCH_NOTIFY_POLICY_FILE``, else the rules file
  (``LIANWATCH_RULES_FILE``), whose other tables are the detectors'.

* **secrets and wiring** from the environment (pydantic-settings, ``SecretStr``):
  :class:`NotifySettings` (``LIANWATCH_NOTIFY_*``), :class:`AliyunSmsSettings`
  (``LIANWATCH_ALIYUN_SMS_*``), :class:`TencentSmsSettings`
  (``LIANWATCH_TENCENT_SMS_*``).

>>> p = NotifyPolicy.model_validate({"quiet_start": "22:00", "quiet_end": "07:00"})
>>> p.quiet_start.hour, p.daily_cap
(22, 10)
>>> LifecyclePolicy.model_validate({"rules": {"payment.cash": {"yellow": 5}}}).days("payment.cash", "yellow")
5.0
"""

from __future__ import annotations

from lianwatch.errors import PolicyError  # noqa: F401 (re-exported)

import tomllib
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ContactCfg", "LifecyclePolicy", "NotifyPolicy", "NotifySettings", "AliyunSmsSettings",
    "TencentSmsSettings", "PolicyError", "load_policies",
]

Role = Literal["secretary", "director", "accountant", "supervisor", "town_discipline",
               "county_discipline"]


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactCfg(_Policy):
    role: Role
    name: str = ""
    phone: str = Field(pattern=r"^\+?\d[\d\- ]{4,19}$")


class LifecyclePolicy(_Policy):
    """Deadlines: an open alert must have its rectification reported within these."""

    red_days: float = Field(10.0, gt=0)
    yellow_days: float = Field(30.0, gt=0)
    #: per rule: {"red": days, "yellow": days}
    rules: dict[str, dict[Literal["red", "yellow"], float]] = Field(default_factory=dict)

    def days(self, rule: str, level: str) -> float:
        per = self.rules.get(rule, {})
        if level in per:
            return float(per[level])  # type: ignore[index]
        return self.red_days if level == "red" else self.yellow_days


def _hhmm(v: Any) -> Any:
    if isinstance(v, str):
        try:
            h, m = v.strip().split(":")
            return dtime(int(h), int(m))
        except ValueError as exc:
            raise ValueError(f"expected HH:MM, got {v!r}") from exc
    return v


class NotifyPolicy(_Policy):
    """Who gets what when. Times of day are local (``LIANWATCH_TZ``)."""

    #: SMS language; None → the settings' ``lang``
    lang: Literal["zh", "en"] | None = None
    #: the signature the carrier prefixes (【廉情监督】); counted in the length
    sign_name: str = "廉情监督"
    #: alerts for one recipient arriving within this many seconds go in one SMS
    group_wait_s: float = Field(60.0, ge=0)
    #: unrectified (open) red alerts are sent again every … days (0: never)
    repeat_red_days: float = Field(3.0, ge=0)
    #: yellow: "digest" (once a day at digest_at) or "immediate" (group wait)
    yellow: Literal["digest", "immediate"] = "digest"
    digest_at: dtime = dtime(8, 30)
    #: yellow messages are held during quiet hours (red is not)
    quiet_start: dtime | None = dtime(22, 0)
    quiet_end: dtime | None = dtime(7, 0)
    #: SMS per number per local day (carriers cap it); past it, fold into the next digest
    daily_cap: int = Field(10, ge=1)
    #: longest SMS in segments (70 Chinese characters each, 67 when concatenated)
    max_segments: int = Field(3, ge=1, le=10)
    #: send notices of rectify/verify/dismiss/reopen to the alert's recipients
    notify_state_changes: bool = True
    #: a tick registers alerts found in the store but never notified, detected within
    #: this many days before its clock (0: only alerts given to on_alerts)
    adopt_days: float = Field(30.0, ge=0)
    #: provider errors: tries within one send, backoff between them (doubling)
    retry_inline: int = Field(3, ge=1, le=10)
    retry_backoff_s: float = Field(1.0, ge=0)
    #: a send that failed all its tries is tried again after this (doubling, capped)
    retry_later_s: float = Field(300.0, gt=0)
    retry_max_s: float = Field(6 * 3600.0, gt=0)
    #: contacts of units (vehicle alerts: the vehicle's unit), by unit id
    units: dict[str, list[ContactCfg]] = Field(default_factory=dict)
    #: contacts for a unit with no list of its own
    unit_default: list[ContactCfg] = Field(default_factory=list)
    #: the county discipline commission, when no village record names it
    county_contacts: list[ContactCfg] = Field(default_factory=list)

    @field_validator("digest_at", "quiet_start", "quiet_end", mode="before")
    @classmethod
    def _hh(cls, v: Any) -> Any:
        return _hhmm(v)


class NotifySettings(BaseSettings):
    """``LIANWATCH_NOTIFY_PROVIDER`` etc."""

    model_config = SettingsConfigDict(env_prefix="LIANWATCH_NOTIFY_", env_file=".env",
                                      extra="ignore")

    #: ``outbox`` (default: notifications table + JSONL, nothing leaves the machine),
    #: ``aliyun``, ``tencent``
    provider: Literal["outbox", "aliyun", "tencent"] = "outbox"
    #: the outbox JSONL (default: DATA_DIR/outbox.jsonl)
    outbox: str | None = None
    #: whose limits the outbox applies (the carrier it previews)
    outbox_carrier: Literal["aliyun", "tencent"] = "aliyun"
    #: key of the HMAC that hashes phone numbers in the notifications table; unset, an
    #: embedded store makes its own (``STORE/phone-hash.key``, 0600) and a server store is
    #: refused (lianwatch.lifecycle.hashkey)
    phone_hash_key: SecretStr = SecretStr("")
    #: TOML with [lifecycle] and [notify] (default: the rules file)
    policy_file: str | None = None


class AliyunSmsSettings(BaseSettings):
    """Aliyun SMS (dysmsapi 2017-05-25): ``LIANWATCH_ALIYUN_SMS_ACCESS_KEY_ID`` etc."""

    model_config = SettingsConfigDict(env_prefix="LIANWATCH_ALIYUN_SMS_", env_file=".env",
                                      extra="ignore")

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
    #: longest template variable value the carrier accepts (Aliyun's default 35, see
    #: providers.ALIYUN_LIMITS; more once lifted for the account)
    param_max_len: int = Field(35, ge=1)


class TencentSmsSettings(BaseSettings):
    """Tencent Cloud SMS (2021-01-11): ``LIANWATCH_TENCENT_SMS_SECRET_ID`` etc."""

    model_config = SettingsConfigDict(env_prefix="LIANWATCH_TENCENT_SMS_", env_file=".env",
                                      extra="ignore")

    secret_id: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    sdk_app_id: str = ""
    sign_name: str = ""
    template_alert: str = ""
    template_digest: str = ""
    region: str = "ap-guangzhou"
    endpoint: str = "sms.tencentcloudapi.com"
    timeout_s: int = 10
    #: longest template variable value: Tencent documents 6 characters for notification
    #: templates (providers.TENCENT_LIMITS); set what your approved template allows
    param_max_len: int = Field(6, ge=1)


def load_policies(settings: Any = None, notify_settings: NotifySettings | None = None,
                  ) -> tuple[LifecyclePolicy, NotifyPolicy]:
    """The policies from the policy file (or the rules file), defaults otherwise."""
    ns = notify_settings or NotifySettings()
    path = ns.policy_file or (getattr(settings, "rules_file", None) if settings else None)
    if not path:
        return LifecyclePolicy(), NotifyPolicy()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{p}: {exc}") from exc
    return policies_from_dict(data, str(p))


def policies_from_dict(data: dict[str, Any], source: str = "<dict>",
                       ) -> tuple[LifecyclePolicy, NotifyPolicy]:
    try:
        return (LifecyclePolicy.model_validate(data.get("lifecycle", {})),
                NotifyPolicy.model_validate(data.get("notify", {})))
    except Exception as exc:  # pydantic.ValidationError
        raise PolicyError(f"invalid lifecycle/notify policy ({source}): {exc}") from exc
