"""One module per ``lianwatch`` command: ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

from lianwatch.models.clock import parse_ts


def parse_time_arg(s: str | None, tz) -> float | None:
    """A command-line time (RFC 3339, naive local, or a bare date) → epoch seconds."""
    if s is None:
        return None
    from lianwatch.cli import CommandError

    text = s.strip()
    if len(text) == 10:
        text += " 00:00:00"
    try:
        return parse_ts(text, tz)
    except ValueError as exc:
        raise CommandError(f"cannot read time {s!r}: {exc}") from None


def load_rules(path: str | None, settings):
    """The rules file given (or configured), as a RuleSet; a clear error if it is unusable."""
    from lianwatch.cli import CommandError
    from lianwatch.rules import RuleSet, RulesError

    try:
        return RuleSet.load(path or settings.rules_file)
    except RulesError as exc:
        raise CommandError(str(exc)) from None
