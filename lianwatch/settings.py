"""Settings from the environment (``LIANWATCH_*``) or a ``.env`` file; never from the repo.

Secrets (ClickHouse password, SMS keys, Grafana token) are ``SecretStr``: they
print as ``**********``.
"""

from __future__ import annotations

from functools import cached_property
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from lianwatch.models.clock import EARLIEST, TimeWindow, parse_ts

__all__ = ["Settings", "ClickHouseSettings", "KafkaSettings"]


class ClickHouseSettings(BaseSettings):
    """A ClickHouse server (production). ``LIANWATCH_CH_HOST`` etc."""

    model_config = SettingsConfigDict(env_prefix="LIANWATCH_CH_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 9000
    user: str = "default"
    password: SecretStr = SecretStr("")
    database: str = "lianwatch"
    secure: bool = False
    verify: bool = True
    ca_certs: str | None = None
    compression: str | None = None  # "lz4" when clickhouse-cityhash and lz4 are installed
    connect_timeout: float = 5.0
    send_receive_timeout: float = 30.0


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIANWATCH_KAFKA_", env_file=".env", extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "lw."
    partitions: int = 4
    app_id: str = "lianwatch"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIANWATCH_", env_file=".env", extra="ignore")

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
