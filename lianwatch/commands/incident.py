"""Reconstruct one alert's incident from the raw-event archive (or --input DIR),
replay it through the detectors, say whether the alert is reproduced, and write a
self-contained HTML case page (map, timeline, evidence, history, input hash)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lianwatch.commands import load_rules, wiring
from lianwatch.errors import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("alert_id")
    p.add_argument("--out", default=None, metavar="FILE", help="HTML page (default incident-ID.html)")
    p.add_argument("--input", metavar="DIR", help="read records from a contract directory "
                   "instead of the store's archive")
    p.add_argument("--rules", metavar="FILE")


def run(args: argparse.Namespace) -> int:
    from lianwatch.incident import ArchiveSource, DirSource, reconstruct
    from lianwatch.incident.html import render_incident
    from lianwatch.lifecycle.log import load_history

    settings = wiring.settings()
    if args.input and not Path(args.input).is_dir():
        raise CommandError(f"input directory not found: {args.input}")
    rules = load_rules(args.rules, settings)
    store = wiring.open_configured_store(settings)
    alert = store.get_alert(args.alert_id)
    if alert is None:
        raise CommandError(f"no alert {args.alert_id!r} in the store")
    t0 = time.perf_counter()
    source = DirSource(args.input, settings.zone) if args.input else ArchiveSource(store)
    rec = reconstruct(alert, source, rules, tz=settings.zone)
    took = time.perf_counter() - t0
    history = load_history(store, alert.alert_id, settings.zone)
    out = args.out or f"incident-{alert.alert_id}.html"
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(render_incident(rec, history, settings.zone))
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"{alert.title}")
    print(f"rule {alert.rule}  level {alert.level}  subject {alert.subject_type} {alert.subject_id}")
    print("records used: " + ", ".join(f"{s} {len(r)}" for s, r in rec.records.items())
          + f"  (from the {rec.source}, {took:.2f} s)")
    if rec.reproduced:
        print("已复现 reproduced: same id, level, sources and evidence numbers")
    else:
        print("未复现 NOT reproduced:")
        for d in rec.differences:
            print("  - " + d)
    for n in rec.notes:
        print("note: " + n)
    print(f"inputs sha256 {rec.input_hash}  rules {rec.rules_fingerprint}")
    print(f"page: {out}")
    return 0 if rec.reproduced else 3
