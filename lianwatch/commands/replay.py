"""Re-run a contract directory in event time and write the alerts (CONTRACT.md §4).

Records that cannot be read are set aside in ALERTS.deadletter.jsonl next to the
output, with their reason, and counted; the run goes on. Exit 0 when it ran.
"""

from __future__ import annotations

import argparse
import sys

from lianwatch.cli import CommandError
from lianwatch.commands import parse_time_arg
from lianwatch.rules import RuleSet, RulesError
from lianwatch.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, metavar="DIR", help="contract directory")
    p.add_argument("--output", required=True, metavar="FILE", help="alerts, one JSON per line")
    p.add_argument("--rules", metavar="FILE", help="rules TOML (defaults: the contract's)")
    p.add_argument("--as-of", metavar="TS", help="judge time-based rules at this time "
                   "(default: the newest event time in the input)")
    p.add_argument("--memory-events", type=int, default=1_000_000, metavar="N",
                   help="events sorted in memory before spilling a run to disk")
    p.add_argument("--store", action="store_true",
                   help="also write alerts and the raw-event archive to the alert store")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from lianwatch.replay.run import deadletter_path, replay_dir, summary_lines

    settings = Settings()
    tz = settings.zone
    try:
        rules = RuleSet.load(args.rules or settings.rules_file)
    except RulesError as exc:
        raise CommandError(str(exc)) from None
    as_of = parse_time_arg(args.as_of, tz)
    store = None
    if args.store:
        from lianwatch.sinks.store import open_store

        store = open_store(settings)
    try:
        res = replay_dir(args.input, args.output, rules=rules, as_of=as_of, tz=tz,
                         max_in_memory=args.memory_events, store=store,
                         progress=None if not args.quiet else False)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    if not args.quiet:
        for line in summary_lines(res, tz):
            print(line, file=sys.stderr)
        if res.set_aside:
            print(f"set-aside records with reasons: {deadletter_path(args.output)}", file=sys.stderr)
    return 0
