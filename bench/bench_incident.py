"""Incident reconstruction from a large archive (issue: incident reconstruction).

    .venv/bin/python bench/bench_incident.py [--vehicles 800] [--dir /tmp/lw-bench]

Replays a generated county (≈5 M events) into an embedded store (which
archives every raw record), grows the archive past 10 M events with copies
under other subject ids, then times the reconstruction of one alert per rule
family (fetch by the ordering key, replay, compare).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=800)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--dir", default="/tmp/lw-bench")
    ap.add_argument("--min-events", type=int, default=10_000_000)
    a = ap.parse_args()

    from lianwatch.incident import ArchiveSource, reconstruct
    from lianwatch.replay.run import replay_dir
    from lianwatch.sim import GenConfig, generate
    from lianwatch.sinks.chdb_backend import ChdbBackend
    from lianwatch.sinks.store import AlertStore

    d = Path(a.dir) / f"county-{a.vehicles}v-{a.days}d"
    if not (d / "labels.jsonl").exists():
        generate(d, GenConfig(vehicles=a.vehicles, villages=60, projects=80, days=a.days,
                              seed=11, start=date(2026, 3, 2)))
    store = AlertStore(ChdbBackend(Path(a.dir) / "incident-store"))
    store.migrate()
    db = store.db

    def archived() -> int:
        return sum(int(store.query(f"SELECT count() AS n FROM {db}.events_{s}")[0]["n"])
                   for s in ("gps", "fuel", "payments", "progress"))

    if store.counts()["alerts_current"] == 0:
        t0 = time.perf_counter()
        replay_dir(d, None, store=store, progress=False)
        print(f"replayed into the store in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    copy = 0
    while archived() < a.min_events:
        copy += 1
        store.backend.execute(
            f"INSERT INTO {db}.events_gps SELECT concat('copy{copy}-', subject_id), event_time, "
            f"event_id, raw FROM {db}.events_gps WHERE NOT startsWith(subject_id, 'copy')")
    store.backend.execute(f"OPTIMIZE TABLE {db}.events_gps FINAL")
    total = archived()
    alerts = store.alerts(limit=1_000_000)
    picks = {}
    for al in sorted(alerts, key=lambda x: x.alert_id):
        fam = al.rule.split(".")[0]
        if fam not in picks and al.rule != "payment.unusual":
            picks[fam] = al
    print(f"archive: {total:,} events; alerts in store: {len(alerts)}")
    print(f"{'alert (rule)':44} {'records':>8} {'median s':>9} {'max s':>7} reproduced")
    for fam, al in picks.items():
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            rec = reconstruct(al, ArchiveSource(store))
            times.append(time.perf_counter() - t0)
        print(f"{al.alert_id[:12]} {al.rule:31} {rec.n_records:8d} {statistics.median(times):9.3f} "
              f"{max(times):7.3f} {rec.reproduced}")


if __name__ == "__main__":
    main()
