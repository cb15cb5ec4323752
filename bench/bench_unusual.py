"""payment.unusual: the river model against a per-village z-score baseline.

    .venv/bin/python bench/bench_unusual.py [--seeds 5] [--villages 60 --days 14]

For generated counties (labelled unusual payments injected), every payment is
scored by each model in event time; we report precision@k (k = number of
labelled outliers, over warm payments), recall of the flagged set, alerts
raised, and the per-payment cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from lianwatch.evaluate import load_labels
from lianwatch.models.files import find_files, open_lines
from lianwatch.models.parse import parse_event
from lianwatch.detectors.unusual import score_payments


def county(seed: int, villages: int, days: int, out: Path) -> tuple[list[dict], set[str]]:
    from lianwatch.sim import GenConfig, generate

    generate(out, GenConfig(vehicles=2, villages=villages, projects=4, days=days, seed=seed,
                            start=date(2026, 3, 2)))
    evs = []
    for _, line, _ in open_lines(find_files(out)["payments"]):
        ev, _ = parse_event("payments", line)
        if ev:
            evs.append(ev)
    labels = {sid for lab in load_labels(out / "labels.jsonl") if lab["rule"] == "payment.unusual"
              for sid in lab["source_event_ids"]}
    return evs, labels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--villages", type=int, default=60)
    ap.add_argument("--days", type=int, default=14)
    a = ap.parse_args()
    totals: dict[str, dict[str, float]] = {}
    for seed in range(1, a.seeds + 1):
        with tempfile.TemporaryDirectory() as d:
            evs, labels = county(seed, a.villages, a.days, Path(d))
        for model in ("profile", "zscore", "hst"):
            t0 = time.perf_counter()
            scored = score_payments(evs, model=model)
            cost = (time.perf_counter() - t0) / max(1, len(scored))
            warm = [s for s in scored if s["warm"]]
            k = len(labels)
            top = sorted(warm, key=lambda s: -s["score"])[:k]
            hits = sum(1 for s in top if s["payment_id"] in labels)
            flagged = [s for s in scored if s["flagged"]]
            rec = sum(1 for s in flagged if s["payment_id"] in labels)
            t = totals.setdefault(model, {"p_at_k": 0, "recall": 0, "alerts": 0, "labels": 0,
                                          "us": 0, "n": 0})
            t["p_at_k"] += hits / k if k else 0
            t["recall"] += rec / k if k else 0
            t["alerts"] += len(flagged)
            t["labels"] += k
            t["us"] += cost * 1e6
            t["n"] += 1
    print(f"{'model':10} {'precision@k':>12} {'recall':>7} {'alerts':>7} {'labels':>7} {'µs/payment':>11}")
    for model, t in totals.items():
        n = t["n"]
        print(f"{model:10} {t['p_at_k'] / n:12.2f} {t['recall'] / n:7.2f} {t['alerts'] / n:7.1f} "
              f"{t['labels'] / n:7.1f} {t['us'] / n:11.1f}")


if __name__ == "__main__":
    main()
