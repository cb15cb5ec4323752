"""Every error lianwatch raises on purpose, in one tree under one root.

Catch :class:`LianwatchError` to catch them all; catch a branch to catch one
kind. Third-party errors (ClickHouse, Kafka, the SMS SDKs, Grafana, the settings'
validation) never escape the module that talks to them: each such module
converts them at one boundary into the class below that says what went wrong
(httpx ``map_httpcore_exceptions`` style)::

    lianwatch.sinks.chdb_backend.chdb_errors      chDB → StoreError
    lianwatch.sinks.server.clickhouse_errors      clickhouse-driver, sockets → StoreError
    lianwatch.lifecycle.providers.provider_errors Aliyun, Tencent SDKs, requests → ProviderError
    lianwatch.dashboards.provisioning.grafana_errors  grafana-client → GrafanaError
    lianwatch.settings.read                       pydantic ValidationError → ConfigError

The command line catches :class:`LianwatchError` once (:func:`lianwatch.cli.main`):
one line on stderr, exit 1. Bad *records* are not errors at all: they are set aside with a
reason (dead letters) and the run goes on.

::

    LianwatchError
    ├── ConfigError                  a setting, rules file or policy cannot be used
    │   ├── RulesError               the rules file (syntax, unknown setting, bad value)
    │   └── PolicyError              the lifecycle / notification policy
    ├── InputError                   an input cannot be read at all (missing, unreadable file)
    ├── StoreError                   the alert store (ClickHouse, chDB) failed a statement
    ├── BrokerError                  Kafka cannot be reached or refused a request
    ├── ProviderError                an SMS provider cannot be used or refused a message
    ├── LifecycleError               a transition the alert lifecycle does not allow
    ├── SnapshotError                a model snapshot this build cannot read
    ├── DashboardError               building or pushing dashboards
    │   ├── MacroError               a Grafana macro used wrongly
    │   ├── BuildError               dashboards failed their structural checks
    │   └── GrafanaError             Grafana cannot be reached or refused a request
    └── CommandError                 a command cannot run (the message says why; exit 1)

Each class also keeps the built-in base it always had (``ValueError`` or
``RuntimeError``), so older ``except ValueError`` code still works.

>>> issubclass(RulesError, ConfigError), issubclass(StoreError, LianwatchError)
(True, True)
>>> isinstance(MacroError("x"), ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "LianwatchError", "ConfigError", "RulesError", "PolicyError", "InputError", "StoreError",
    "BrokerError", "ProviderError", "LifecycleError", "SnapshotError", "DashboardError",
    "MacroError", "BuildError", "GrafanaError", "CommandError",
]


class LianwatchError(Exception):
    """The root of every error lianwatch raises on purpose."""


class ConfigError(LianwatchError, ValueError):
    """A setting, rules file or policy cannot be used."""


class RulesError(ConfigError):
    """The rules file cannot be used (syntax, unknown setting, bad value)."""


class PolicyError(ConfigError):
    """The lifecycle/notify policy cannot be used."""


class InputError(LianwatchError, OSError):
    """An input cannot be read at all: a missing directory, a file that is a
    directory, a broken link, no permission. (A bad *record* is not an error: it
    is set aside with its reason.)"""


class StoreError(LianwatchError, RuntimeError):
    """The alert store cannot be reached or refused a statement.

    ``transient``: retrying may succeed (server down, timeout, overloaded); False
    when the statement or its data is wrong (a retry would fail the same way).
    ``code``: the ClickHouse error code when there is one.
    """

    def __init__(self, message: str, *, transient: bool = True, code: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.code = code


class BrokerError(LianwatchError, RuntimeError):
    """Kafka cannot be reached, or refused a request. ``transient``: retrying may succeed."""

    def __init__(self, message: str, *, transient: bool = True):
        super().__init__(message)
        self.transient = transient


class ProviderError(LianwatchError, RuntimeError):
    """An SMS provider cannot be used (missing settings, SDK not installed), cannot be
    reached, or rejected the request. ``code``: the carrier's error code when it gave one
    (``Throttling``, ``AuthFailure.SignatureFailure``, ``ClientNetworkError``…)."""

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.code = code


class LifecycleError(LianwatchError, ValueError):
    """A transition the lifecycle does not allow (the message says why)."""


class SnapshotError(LianwatchError, ValueError):
    """A snapshot that this build cannot read (wrong magic or format version)."""


class DashboardError(LianwatchError):
    """Building or checking the dashboards failed."""


class MacroError(DashboardError, ValueError):
    """A macro was used wrongly (the plugin fails the query the same way)."""


class BuildError(DashboardError, RuntimeError):
    """The dashboards failed their structural checks."""


class GrafanaError(DashboardError, RuntimeError):
    """Grafana cannot be reached, or refused a request (``status``: its HTTP status)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class CommandError(LianwatchError):
    """A command could not run; the message says why (exit 1)."""
