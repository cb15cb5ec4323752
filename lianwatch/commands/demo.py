"""Generate a county, replay it into the embedded store, and show what was found.

Prints a summary by rule and level, and a precision/recall table against the
incidents the generator injected (labels.jsonl).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

from lianwatch.commands import wiring
from lianwatch.errors import CommandError
from lianwatch.rules import RULES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vehicles", type=int, default=50)
    p.add_argument("--villages", type=int, default=30)
    p.add_argument("--projects", type=int, default=40)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data-dir", help="where the store and the demo input go "
                   "(default: LIANWATCH_DATA_DIR or ./lianwatch-data)")
    p.add_argument("--lang", choices=["zh", "en"])


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from lianwatch.evaluate import format_table, load_labels, score
    from lianwatch.replay.run import replay_dir, summary_lines
    from lianwatch.sim import GenConfig, generate

    settings = wiring.settings()
    if args.data_dir:
        settings = settings.model_copy(update={"data_dir": args.data_dir})
    lang = args.lang or settings.lang
    settings = settings.model_copy(update={"lang": lang})
    data = Path(settings.data_dir)
    inp = data / "demo-input"
    if inp.exists():
        shutil.rmtree(inp)
    t0 = time.perf_counter()
    _say(f"[1/3] 生成模拟县域数据 generating a county: {args.vehicles} vehicles, "
         f"{args.villages} villages, {args.projects} projects, {args.days} days → {inp}")
    try:
        generate(inp, GenConfig(vehicles=args.vehicles, villages=args.villages,
                                projects=args.projects, days=args.days, seed=args.seed,
                                start=date(2026, 3, 2)))
    except OSError as exc:
        raise CommandError(f"cannot write the demo county to {inp}: {exc.strerror or exc}") \
            from None
    _say(f"      {time.perf_counter() - t0:.1f} s")
    _say(f"[2/3] 回放入库 replaying into the embedded store ({settings.store}: {data})")
    store = wiring.open_configured_store(settings)
    store.truncate_all()
    out = data / "demo-alerts.jsonl"
    res = replay_dir(inp, out, tz=settings.zone, store=store)
    for line in summary_lines(res, settings.zone):
        _say("      " + line)
    _say("[3/3] 结果 results")
    by = Counter((a.rule, a.level) for a in res.alerts)
    print(("按规则和级别统计" if lang == "zh" else "Alerts by rule and level"))
    print(f"{'rule':32} {'red':>5} {'yellow':>6}")
    for rule in RULES:
        r, y = by.get((rule, "red"), 0), by.get((rule, "yellow"), 0)
        if r or y:
            print(f"{rule:32} {r:5d} {y:6d}")
    print(f"{'total':32} {sum(v for (_, l), v in by.items() if l == 'red'):5d} "
          f"{sum(v for (_, l), v in by.items() if l == 'yellow'):6d}")
    labels = load_labels(inp / "labels.jsonl")
    print()
    print("与注入事件比对（精确率/召回率）" if lang == "zh" else "Against the injected incidents")
    print(format_table(score(res.alerts, labels)))
    _extras(args, settings, store, data, res)
    print()
    print(f"alerts: {out}   store: {data / 'store'}   ({time.perf_counter() - t0:.1f} s)")
    return 0


def _extras(args, settings, store, data, res) -> None:
    """The demo's last steps: the SMS it would send (an outbox), the HTML report."""
    from lianwatch.dashboards.demo import after_demo as write_report
    from lianwatch.lifecycle.demo import after_demo as notify_outbox

    outbox = data / "outbox.jsonl"
    outbox.unlink(missing_ok=True)
    ref = wiring.load_reference_dir(data / "demo-input", settings.zone)
    notify_outbox(wiring.make_notifier(store, ref, settings, outbox=outbox), res)
    from lianwatch.dashboards.thresholds import Thresholds

    th = Thresholds.load(settings.rules_file, wiring.configured_policies(settings)[0])
    write_report(store=store, data_dir=data, thresholds=th, lang=settings.lang)
