"""Streaming benchmark: one worker on the real broker (``scripts/kafka.sh start``).

1. Throughput: a generated county is published first (``--max``); then one
   worker (``--clock event``) is started and timed until it has released every
   event. Reported: sustained events/s (from the first release to the last,
   sampled from the worker's status file), and the whole run.
2. Latency at a steady rate: a worker runs; a paced producer sends live
   synthetic events (time stamps = now) at ``--rate`` events/s for
   ``--seconds``: GPS pings of ``--vehicles`` cars and village payments, some
   of which are cash payments over the limit (an immediate ``payment.cash``
   alert). Latency = the time the alert row was written to the store (the
   worker's ``--latency-log``) − the time its payment was handed to the
   producer; also the time it appeared on ``lw.alerts``.

    .venv/bin/python bench/bench_streaming.py [--vehicles 200 --days 7] [--rate 5000]

The machine is shared (broker, producer and worker on the same cores): numbers
are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_worker(tmp: Path, prefix: str, app_id: str, bootstrap: str, *extra: str,
                 name: str = "w") -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, LIANWATCH_DATA_DIR=str(tmp / f"data-{name}"), PYTHONUNBUFFERED="1")
    status = tmp / f"status-{name}.json"
    cmd = [sys.executable, "-m", "lianwatch.cli", "worker", "--bootstrap", bootstrap,
           "--prefix", prefix, "--app-id", app_id, "--clock", "event",
           "--state-dir", str(tmp / f"state-{name}"), "--status-file", str(status), *extra]
    log = open(tmp / f"worker-{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), status


def read_status(path: Path) -> dict:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}


def released(st: dict) -> int:
    r = st.get("released", {})
    return sum(r.get(k, 0) for k in ("vehicles", "payments", "projects"))


# ------------------------------------------------------------------ throughput
def throughput(args, tmp: Path) -> dict:
    from lianwatch.sim import GenConfig, generate
    from lianwatch.streams.producer import publish_directory
    from lianwatch.streams.topics import Topics, ensure_topics

    county = tmp / "county"
    s = generate(county, GenConfig(vehicles=args.vehicles, villages=args.villages,
                                   projects=args.projects, days=args.days, seed=3,
                                   start=date(2026, 3, 2), malformed=False))
    tag = uuid.uuid4().hex[:6]
    topics = Topics(prefix=f"bench{tag}.", partitions=args.partitions)
    ensure_topics(args.bootstrap, topics)
    res = publish_directory(county, topics, args.bootstrap)
    total = res.events
    print(f"published {total:,} events in {res.seconds:.1f} s "
          f"({total / res.seconds:,.0f}/s) on {args.partitions} partitions", file=sys.stderr)
    extra = ["--state", args.state, "--idle-exit", "2", "--input", args.input]
    if args.no_store:
        extra.append("--no-store")
    elif args.no_archive:
        extra.append("--no-archive")
    t_start = time.monotonic()
    w, status = start_worker(tmp, topics.prefix, f"bench-{tag}", args.bootstrap, *extra)
    samples: list[tuple[float, int]] = []
    while w.poll() is None:
        n = released(read_status(status))
        samples.append((time.monotonic(), n))
        if n >= total and time.monotonic() - t_start > 600:
            break
        time.sleep(0.25)
    t_end = time.monotonic()
    w.wait()
    n_final = max(n for _, n in samples) if samples else 0
    first = next((t for t, n in samples if n > 0), t_start)
    last = next((t for t, n in samples if n >= n_final), t_end)
    # the steady part: from 10 % to 90 % of the events
    lo = next((t for t, n in samples if n >= 0.1 * n_final), first)
    hi = next((t for t, n in samples if n >= 0.9 * n_final), last)
    steady = 0.8 * n_final / (hi - lo) if hi > lo else float("nan")
    stats = {}
    text = (tmp / "worker-w.log").read_text(errors="replace")
    tag_ = "worker stopped: "
    for ln in text.splitlines():
        if tag_ in ln:
            stats = json.loads(ln[ln.index(tag_) + len(tag_):])
    return {"events": total, "released": n_final, "steady_eps": steady,
            "first_to_last_eps": n_final / (last - first) if last > first else float("nan"),
            "wall_s": t_end - t_start, "startup_s": first - t_start, "stats": stats,
            "gps_share": s.records.get("gps", 0) / max(total, 1)}


# ------------------------------------------------------------------ latency
def latency(args, tmp: Path) -> dict:
    from lianwatch.streams.producer import KafkaPublisher, Planned, ticks
    from lianwatch.streams.topics import Topics, ensure_topics, partition_for
    from tests.test_streaming import read_topic

    tag = uuid.uuid4().hex[:6]
    topics = Topics(prefix=f"lat{tag}.", partitions=args.partitions)
    ensure_topics(args.bootstrap, topics)
    pub = KafkaPublisher(args.bootstrap, linger_ms=2)
    n_veh, n_vil = args.vehicles, 20
    for i in range(n_veh):
        vid = f"V{i:04d}"
        rec = {"vehicle_id": vid, "plate": f"浙A·{i:05d}", "unit_id": f"U{i % 10:02d}",
               "tank_liters": 70, "fuel_type": "92",
               "depot": {"lat": 30.2, "lon": 120.2, "radius_m": 150}, "card_ids": [f"C{i:04d}"]}
        pub.send(Planned("ref", topics.ref_topics["vehicles"], None, vid.encode(),
                         json.dumps(rec).encode()))
    for i in range(n_vil):
        vid = f"VL{i:03d}"
        rec = {"village_id": vid, "name": f"村{i}", "town": "镇", "county": "县",
               "approval_threshold_yuan": 50000, "contacts": []}
        pub.send(Planned("ref", topics.ref_topics["villages"], None, vid.encode(),
                         json.dumps(rec).encode()))
    pub.flush()
    latlog = tmp / "latency.log"
    extra = ["--state", args.state, "--latency-log", str(latlog), "--input", args.input]
    if args.no_archive:
        extra.append("--no-archive")
    w, status = start_worker(tmp, topics.prefix, f"lat-{tag}", args.bootstrap, *extra,
                             name="lat")
    # wait until the worker owns its partitions
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        st = read_status(status)
        if st.get("assigned", {}).get("payments"):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    rnd = random.Random(1)
    pos = {f"V{i:04d}": (30.2 + rnd.random() * 0.1, 120.2 + rnd.random() * 0.1)
           for i in range(n_veh)}
    sent: dict[str, float] = {}
    rate = args.rate
    cash_every = max(1, rate // args.alerts_per_s)
    slice_s = 0.01
    per_slice = max(1, int(rate * slice_s))
    n = 0
    t0 = time.monotonic()
    last_tick = t0
    n_ev = int(rate * args.seconds)
    gps_topic, pay_topic = topics.event_topics["gps"], topics.event_topics["payments"]
    while n < n_ev:
        target = t0 + n / rate
        now_m = time.monotonic()
        if target > now_m:
            pub.sleep(target - now_m)
        now = time.time()
        ts = datetime.fromtimestamp(now, timezone.utc).isoformat()
        for _ in range(per_slice):
            n += 1
            if n % cash_every == 0:
                pid = f"PM-{n:09d}"
                vil = f"VL{n % n_vil:03d}"
                rec = {"payment_id": pid, "village_id": vil, "ts": ts, "amount_yuan": 8000.0,
                       "channel": "cash", "payee_id": f"P{n % 97}", "payee_name": "x",
                       "category": "other", "approval_id": "A1"}
                sent[pid] = time.time()
                pub.send(Planned("event", pay_topic, partition_for(vil, topics.partitions),
                                 vil.encode(), json.dumps(rec).encode()))
            else:
                vid = f"V{n % n_veh:04d}"
                lat, lon = pos[vid]
                lat += (rnd.random() - 0.5) * 1e-3
                lon += (rnd.random() - 0.5) * 1e-3
                pos[vid] = (lat, lon)
                rec = {"vehicle_id": vid, "ts": ts, "lat": round(lat, 6), "lon": round(lon, 6),
                       "speed_kmh": 30.0}
                pub.send(Planned("event", gps_topic, partition_for(vid, topics.partitions),
                                 vid.encode(), json.dumps(rec).encode()))
        if time.monotonic() - last_tick >= 0.1:  # progress ticks: every input moves on
            for tk in ticks(topics, "wm", wm=now - 1.0):
                pub.send(tk)
            last_tick = time.monotonic()
        pub.poll()
    pub.flush()
    produced_s = time.monotonic() - t0
    time.sleep(3.0)
    w.send_signal(signal.SIGTERM)
    try:
        w.wait(timeout=60)
    except subprocess.TimeoutExpired:
        w.kill()
    pub.close()
    stored: dict[str, float] = {}
    if latlog.exists():
        for line in latlog.read_text().splitlines():
            aid, ver, srcs, t = line.split("\t")
            for sid in srcs.split(","):
                if sid in sent and sid not in stored:
                    stored[sid] = float(t)
    lat_store = sorted((stored[k] - sent[k]) * 1000 for k in stored)
    on_topic: dict[str, float] = {}
    for m in read_topic(topics.alerts, timeout=20):
        a = json.loads(m.value)
        for sid in a["source_event_ids"]:
            if sid in sent and sid not in on_topic:
                on_topic[sid] = m.timestamp / 1000.0
    lat_topic = sorted((on_topic[k] - sent[k]) * 1000 for k in on_topic)

    def pct(xs: list[float], q: float) -> float:
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    return {"rate": rate, "achieved_rate": n / produced_s, "cash_sent": len(sent),
            "alerts_stored": len(stored), "alerts_on_topic": len(on_topic),
            "store_p50_ms": pct(lat_store, 0.5), "store_p99_ms": pct(lat_store, 0.99),
            "store_max_ms": max(lat_store) if lat_store else float("nan"),
            "topic_p50_ms": pct(lat_topic, 0.5), "topic_p99_ms": pct(lat_topic, 0.99),
            "mean_store_ms": statistics.mean(lat_store) if lat_store else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=os.environ.get("LIANWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--vehicles", type=int, default=100)
    p.add_argument("--villages", type=int, default=30)
    p.add_argument("--projects", type=int, default=40)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--state", choices=("memory", "rocksdb"), default="rocksdb")
    p.add_argument("--input", choices=("bulk", "stream"), default="bulk",
                   help="the worker's input path (see lianwatch worker --help)")
    p.add_argument("--no-archive", action="store_true")
    p.add_argument("--no-store", action="store_true")
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--alerts-per-s", type=int, default=20)
    p.add_argument("--skip", choices=("throughput", "latency"), action="append", default=[])
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lw-bench-"))
    rows = []
    try:
        if "throughput" not in args.skip:
            r = throughput(args, tmp)
            prof = r["stats"].get("prof", {}).get("vehicles", {})
            rows += [
                ("events published", f"{r['events']:,}"),
                ("events released by the worker", f"{r['released']:,}"),
                ("sustained events/s (10–90 %)", f"{r['steady_eps']:,.0f}"),
                ("events/s, first to last release", f"{r['first_to_last_eps']:,.0f}"),
                ("worker start to first release, s", f"{r['startup_s']:.1f}"),
                ("vehicle batches (avg size)",
                 f"{prof.get('batches', 0):,} ({prof.get('msgs', 0) / max(prof.get('batches', 1), 1):,.0f})"),
                ("engine time: ingest+step / sinks / flush, s",
                 f"{prof.get('ingest_s', 0) + prof.get('step_s', 0):.1f} / "
                 f"{prof.get('sink_s', 0):.1f} / {prof.get('commit_s', 0):.1f}"),
            ]
        if "latency" not in args.skip:
            r = latency(args, tmp)
            rows += [
                ("steady rate asked / achieved, events/s", f"{r['rate']:,} / {r['achieved_rate']:,.0f}"),
                ("payment.cash alerts expected / stored", f"{r['cash_sent']:,} / {r['alerts_stored']:,}"),
                ("produce → alert row p50 / p99 / max, ms",
                 f"{r['store_p50_ms']:.0f} / {r['store_p99_ms']:.0f} / {r['store_max_ms']:.0f}"),
                ("produce → lw.alerts p50 / p99, ms",
                 f"{r['topic_p50_ms']:.0f} / {r['topic_p99_ms']:.0f}"),
            ]
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)
    w = max(len(k) for k, _ in rows) if rows else 10
    print(f"\nstreaming benchmark ({os.cpu_count()} cores, shared with the broker; "
          f"input={args.input}, state={args.state}, "
          f"archive={'off' if args.no_archive or args.no_store else 'on'})")
    print("-" * (w + 22))
    for k, v in rows:
        print(f"{k:<{w}}  {v:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
