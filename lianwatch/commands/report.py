"""Render the dashboards against the alert store into ONE self-contained HTML file:
charts and a map as inline SVG, colour-coded tables, Chinese labels by default.
No network is needed to view it (no scripts, fonts, tiles or images from elsewhere).

  lianwatch report                       → ./report.html, period = the stored data's
  lianwatch report --out r.html --from 2026-03-02 --to 2026-03-16 --lang en
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="report.html", help="output file (default report.html)")
    p.add_argument("--from", dest="time_from", help="period start (default: first stored event day)")
    p.add_argument("--to", dest="time_to", help="period end (default: day after the last stored event)")
    p.add_argument("--lang", choices=["zh", "en"], help="labels (default: LIANWATCH_LANG or zh)")
    p.add_argument("--details", type=int, default=5, help="alert-detail sections for the newest red alerts")
    p.add_argument("--store", help="chDB data directory (default: the configured store)")


def run(args: argparse.Namespace) -> int:
    from lianwatch.commands import parse_time_arg, wiring
    from lianwatch.dashboards.report import write_report
    from lianwatch.dashboards.thresholds import Thresholds
    from lianwatch.errors import CommandError

    settings = wiring.settings()
    if args.store:  # a chDB data directory, whatever the configured store
        settings = settings.model_copy(update={"store": "chdb"})
    store = wiring.open_configured_store(settings, path=args.store)
    database = getattr(store, "db", "lianwatch")
    tf = parse_time_arg(args.time_from, settings.zone)
    tt = parse_time_arg(args.time_to, settings.zone)
    th = Thresholds.load(settings.rules_file, wiring.configured_policies(settings)[0])
    try:
        path = write_report(store, args.out, time_from=tf, time_to=tt, lang=args.lang or settings.lang,
                            details=args.details, database=database, thresholds=th)
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(path.resolve())
    print(f"lianwatch report: {path.stat().st_size / 1024:.0f} KiB", file=sys.stderr)
    return 0
