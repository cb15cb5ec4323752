"""Re-run a contract directory in event time and write the alerts (CONTRACT.md §4).

    lianwatch replay --input DIR --output FILE [--rules FILE] [--as-of TS]
                     [--not-before TS] [--max-ahead-hours H]

Records that cannot be read are set aside in FILE's .deadletter.jsonl next to the
output, with their reason, and counted; the run goes on (a time before
--not-before, default 2000-01-01, or more than --max-ahead-hours, default 24,
past the wall clock is such a record; settings LIANWATCH_NOT_BEFORE and
LIANWATCH_MAX_AHEAD_HOURS). Exit 0 when it ran; exit 1 with one line naming the
file when a file cannot be read at all. What the run spills goes to
LIANWATCH_DATA_DIR/tmp when a data directory is set (else next to FILE) and is
removed at the end, and what a killed run left there is removed at the start.

What-if and archive slices (extensions):

    lianwatch replay --from-store [--start TS --end TS] [--vehicle V|--village VL|--project PJ]
                     [--rules other.toml] [--diff] [--diff-out diff.json] [--output FILE]
    lianwatch replay --input DIR --rules other.toml --diff
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from lianwatch.commands import load_rules, parse_time_arg, wiring
from lianwatch.errors import CommandError, InputError
from lianwatch.models.clock import DEFAULT_WINDOW


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="DIR", help="contract directory")
    p.add_argument("--output", metavar="FILE", help="alerts, one JSON per line")
    p.add_argument("--rules", metavar="FILE", help="rules TOML (defaults: the contract's)")
    p.add_argument("--as-of", metavar="TS", help="judge time-based rules at this time "
                   "(default: the newest event time in the input)")
    p.add_argument("--not-before", metavar="TS", help="set aside records older than this "
                   "(default: 2000-01-01, or LIANWATCH_NOT_BEFORE)")
    p.add_argument("--max-ahead-hours", type=float, metavar="H",
                   help="set aside records more than H hours past the wall clock "
                   "(default: 24, or LIANWATCH_MAX_AHEAD_HOURS)")
    p.add_argument("--memory-events", type=int, default=1_000_000, metavar="N",
                   help="events sorted in memory before spilling to disk")
    p.add_argument("--store", action="store_true",
                   help="also write alerts and the raw-event archive to the alert store")
    g = p.add_argument_group("archive slices and what-if")
    g.add_argument("--from-store", action="store_true", help="replay the store's raw-event archive")
    g.add_argument("--start", metavar="TS")
    g.add_argument("--end", metavar="TS")
    s = g.add_mutually_exclusive_group()
    s.add_argument("--vehicle")
    s.add_argument("--village")
    s.add_argument("--project")
    g.add_argument("--diff", action="store_true",
                   help="compare with the alerts in the store: new, vanished, level changed")
    g.add_argument("--diff-out", metavar="FILE", help="write the difference as JSON")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    settings = wiring.settings()
    tz = settings.zone
    rules = load_rules(args.rules, settings)
    as_of = parse_time_arg(args.as_of, tz)
    if as_of is not None and as_of not in DEFAULT_WINDOW:
        raise CommandError(f"--as-of {args.as_of}: outside the years 2000–2100")
    if args.max_ahead_hours is not None and not args.max_ahead_hours > 0:
        raise CommandError("--max-ahead-hours must be more than 0")
    try:
        window = settings.time_window(time.time(), not_before=args.not_before,
                                      max_ahead_hours=args.max_ahead_hours)
    except ValueError as exc:
        raise CommandError(f"--not-before {args.not_before}: {exc}") from None
    if args.from_store or args.diff:
        return _whatif(args, settings, rules, as_of, window)
    if not args.input or not args.output:
        raise CommandError("--input and --output are required (or --from-store)")
    from lianwatch.replay.run import deadletter_path, replay_dir, summary_lines

    store = None
    if args.store:
        store = wiring.open_configured_store(settings)
    # the data directory, when there is one, holds what the run spills
    scratch = (Path(settings.data_dir) / "tmp"
               if "data_dir" in settings.model_fields_set or store is not None else None)
    try:
        res = replay_dir(args.input, args.output, rules=rules, as_of=as_of, tz=tz,
                         window=window, max_in_memory=args.memory_events, store=store,
                         progress=None if not args.quiet else False, scratch_root=scratch)
    except (InputError, ValueError, OSError) as exc:  # InputError: a file that cannot be read
        raise CommandError(str(exc)) from None
    if not args.quiet:
        for line in summary_lines(res, tz):
            print(line, file=sys.stderr)
        if res.set_aside:
            print(f"set-aside records with reasons: {deadletter_path(args.output)}", file=sys.stderr)
    return 0


def _whatif(args, settings, rules, as_of, window) -> int:
    from lianwatch.replay.run import replay_dir, write_alerts_jsonl
    from lianwatch.replay.whatif import diff_alerts, format_diff, replay_store, stored_slice
    tz = settings.zone
    start = parse_time_arg(args.start, tz)
    end = parse_time_arg(args.end, tz)
    subject_type, subject_id = next(((k, getattr(args, k)) for k in ("vehicle", "village", "project")
                                     if getattr(args, k)), (None, None))
    store = wiring.open_configured_store(settings)
    if args.from_store:
        alerts = replay_store(store, rules=rules, start=start, end=end, subject_type=subject_type,
                              subject_id=subject_id, as_of=as_of, tz=tz)
    else:
        if not args.input:
            raise CommandError("--diff needs --input DIR or --from-store")
        try:
            alerts = replay_dir(args.input, None, rules=rules, as_of=as_of, tz=tz,
                                window=window, progress=False).alerts
        except InputError as exc:
            raise CommandError(str(exc)) from None
    if args.output:
        write_alerts_jsonl(args.output, alerts)
    print(f"replayed: {len(alerts)} alerts (rules {rules.source}, {rules.fingerprint()})",
          file=sys.stderr)
    if args.diff:
        stored = stored_slice(store, start=start, end=end, subject_id=subject_id)
        d = diff_alerts(stored, alerts)
        print(format_diff(d))
        if args.diff_out:
            with open(args.diff_out, "wb") as f:
                f.write(orjson.dumps(d.to_json(), option=orjson.OPT_INDENT_2))
    return 0
