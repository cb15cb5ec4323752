"""Settings from the environment (``LIANWATCH_*``) or a ``.env`` file; never from the repo.

Only the command line reads them (``lianwatch/commands/``, ``lianwatch/cli.py``;
an import-linter contract keeps it so): it builds what the library needs from
them — a zone, a data directory, a :class:`~lianwatch.sinks.server.ClickHouseConfig`,
an SMS provider — and passes that into constructors. Library code never reads
the environment.

Secrets (ClickHouse password, SMS keys, the phone-hash key) are ``SecretStr``:
they print as ``**********``. Read them with :func:`read`, which turns a value
that cannot be used into a :class:`~lianwatch.errors.ConfigError` naming the
variable (one line on the command line, not a traceback).

>>> read(Settings, tz="UTC").zone.key
'UTC'
>>> try:
...     read(Settings, store="oracle")
... except ConfigError as exc:
...     print(str(exc).split(":")[0])
LIANWATCH_STORE
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lianwatch.errors import ConfigError
from lianwatch.lifecycle.providers import (
    ALIYUN_ENV_PREFIX, TENCENT_ENV_PREFIX, AliyunSmsConfig, TencentSmsConfig,
)
from lianwatch.models.clock import EARLIEST, TimeWindow, parse_ts
from lianwatch.sinks.server import ClickHouseConfig

__all__ = ["Settings", "ClickHouseSettings", "KafkaSettings", "NotifySettings",
           "AliyunSmsSettings", "TencentSmsSettings", "read"]

S = TypeVar("S", bound=BaseSettings)


def _env(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class ClickHouseSettings(BaseSettings, ClickHouseConfig):
    """A ClickHouse server (production): ``LIANWATCH_CH_HOST`` etc. (fields: ClickHouseConfig)."""

    model_config = _env("LIANWATCH_CH_")


class KafkaSettings(BaseSettings):
    model_config = _env("LIANWATCH_KAFKA_")

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "lw."
    partitions: int = 4
    app_id: str = "lianwatch"


class Settings(BaseSettings):
    model_config = _env("LIANWATCH_")

    #: where the embedded store (chDB) keeps its data
    data_dir: str = "./lianwatch-data"
    #: ``chdb`` (embedded, default) or ``clickhouse`` (a server, see ClickHouseSettings)
    store: str = Field("chdb", pattern="^(chdb|clickhouse|none)$")
    tz: str = "Asia/Shanghai"
    lang: str = Field("zh", pattern="^(zh|en)$")
    rules_file: str | None = None
    #: the event times accepted (older or newer records are dead letters, CONTRACT §2):
    #: from this time (RFC 3339 or a local date; default 2000-01-01 UTC) …
    not_before: str | None = None
    #: … to this many hours past the wall clock
    max_ahead_hours: float = Field(24.0, gt=0, le=24 * 366)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def time_window(self, now: float, *, not_before: str | None = None,
                    max_ahead_hours: float | None = None) -> TimeWindow:
        """The :class:`TimeWindow` for a run whose wall clock reads ``now`` (the
        arguments override the settings: a command's options)."""
        text = not_before if not_before is not None else self.not_before
        earliest = EARLIEST
        if text:
            text = text.strip()
            earliest = parse_ts(text + " 00:00:00" if len(text) == 10 else text, self.zone)
        hours = max_ahead_hours if max_ahead_hours is not None else self.max_ahead_hours
        return TimeWindow.around(now, ahead_s=hours * 3600.0, earliest=earliest)


class NotifySettings(BaseSettings):
    """``LIANWATCH_NOTIFY_PROVIDER`` etc."""

    model_config = _env("LIANWATCH_NOTIFY_")

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


class AliyunSmsSettings(BaseSettings, AliyunSmsConfig):
    """Aliyun SMS: ``LIANWATCH_ALIYUN_SMS_ACCESS_KEY_ID`` etc. (fields: AliyunSmsConfig)."""

    model_config = _env(ALIYUN_ENV_PREFIX)


class TencentSmsSettings(BaseSettings, TencentSmsConfig):
    """Tencent Cloud SMS: ``LIANWATCH_TENCENT_SMS_SECRET_ID`` etc. (fields: TencentSmsConfig)."""

    model_config = _env(TENCENT_ENV_PREFIX)


def read(cls: type[S], **values) -> S:
    """``cls`` from the environment (``values`` take precedence); ConfigError when a
    variable holds something that cannot be used."""
    try:
        return cls(**values)
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        problems = [f"{prefix}{'_'.join(str(x) for x in e['loc']).upper()}: {e['msg']}"
                    for e in exc.errors()]
        raise ConfigError("; ".join(problems)) from None
