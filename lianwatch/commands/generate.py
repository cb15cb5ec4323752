"""Write a synthetic county (reference data, GPS, fuel, payments, progress) in the
contract's layout, with labelled incidents (labels.jsonl) and look-alikes."""

from __future__ import annotations

import argparse
import sys
from datetime import date


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="DIR")
    p.add_argument("--vehicles", type=int, default=50)
    p.add_argument("--villages", type=int, default=30)
    p.add_argument("--projects", type=int, default=40)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 2))
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--no-malformed", action="store_true")


def run(args: argparse.Namespace) -> int:
    from lianwatch.errors import CommandError
    from lianwatch.sim import GenConfig, generate

    cfg = GenConfig(vehicles=args.vehicles, villages=args.villages, projects=args.projects,
                    days=args.days, seed=args.seed, start=args.start,
                    malformed=not args.no_malformed, gzip=args.gzip)
    try:
        summary = generate(args.out, cfg)
    except OSError as exc:
        raise CommandError(f"cannot write the county to {args.out}: {exc.strerror or exc}") \
            from None
    print(summary if isinstance(summary, str) else _fmt(summary), file=sys.stderr)
    return 0


def _fmt(summary) -> str:
    d = summary if isinstance(summary, dict) else getattr(summary, "__dict__", {})
    return "\n".join(f"{k}: {v}" for k, v in d.items())
