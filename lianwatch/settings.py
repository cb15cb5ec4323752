"""Settings from the environment (``LIANWATCH_*``) or a ``.env`` file; never from the repo.

Secrets (ClickHouse password, SMS keys, Grafana token) are ``SecretStr``: they
print as ``**********``.
"""

from __future__ import annotations

from functools import cached_property
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)
