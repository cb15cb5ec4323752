"""One module per ``lianwatch`` command: ``add_arguments(parser)`` and ``run(args) -> int``.

Besides: :mod:`~lianwatch.commands.wiring` (the settings → the store, the notifier …)
and :mod:`~lianwatch.commands.alert_actions` (the lifecycle's ``alerts`` actions).
Errors: a command raises :class:`~lianwatch.errors.CommandError` (or lets any other
:class:`~lianwatch.errors.LianwatchError` through); :func:`lianwatch.cli.main` prints
it as one line and exits 1.
"""

from __future__ import annotations

from lianwatch.errors import CommandError
from lianwatch.models.clock import parse_ts


def parse_time_arg(s: str | None, tz) -> float | None:
    """A command-line time (RFC 3339, naive local, or a bare date) → epoch seconds."""
    if s is None:
        return None
    text = s.strip()
    if len(text) == 10:
        text += " 00:00:00"
    try:
        return parse_ts(text, tz)
    except ValueError as exc:
        raise CommandError(f"cannot read time {s!r}: {exc}") from None


def load_rules(path: str | None, settings):
    """The rules file given (or configured), as a RuleSet (RulesError if it is unusable)."""
    from lianwatch.rules import RuleSet

    return RuleSet.load(path or settings.rules_file)
