"""``python -m lianwatch.sim OUT_DIR [options]``: write a synthetic county."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

import orjson

from .config import GenConfig
from .run import generate


def main(argv: list[str] | None = None) -> int:
    d = GenConfig()
    p = argparse.ArgumentParser(prog="python -m lianwatch.sim", description=__doc__)
    p.add_argument("out_dir")
    p.add_argument("--vehicles", type=int, default=d.vehicles)
    p.add_argument("--villages", type=int, default=d.villages)
    p.add_argument("--projects", type=int, default=d.projects)
    p.add_argument("--days", type=int, default=d.days)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--start", type=date.fromisoformat, default=d.start, help="first day, YYYY-MM-DD")
    p.add_argument("--history-days", type=int, default=d.history_days,
                   help="payments reach back this many days before --start")
    p.add_argument("--no-malformed", action="store_true")
    p.add_argument("--no-duplicates", action="store_true")
    p.add_argument("--gzip", action="store_true", help="write .jsonl.gz event and reference files")
    a = p.parse_args(argv)
    cfg = GenConfig(
        vehicles=a.vehicles, villages=a.villages, projects=a.projects, days=a.days, seed=a.seed,
        start=a.start, history_days=a.history_days, malformed=not a.no_malformed,
        duplicates=not a.no_duplicates, gzip=a.gzip,
    )
    t0 = time.perf_counter()
    s = generate(a.out_dir, cfg)
    out = s.as_dict()
    out["seconds"] = round(time.perf_counter() - t0, 2)
    sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
