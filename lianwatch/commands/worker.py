"""Run the stream worker: Kafka topics in, alerts out (lw.alerts and the alert store).

One engine per input partition, state in Faust tables (RocksDB by default),
at-least-once. ``--clock event`` judges time-based rules by event time, so a
historical feed published with ``lianwatch produce`` gives what ``lianwatch
replay`` gives; ``--clock wall`` judges them by the wall clock (the worker
group's leader publishes a tick to every input partition every
``--tick-interval`` seconds). Several workers with the same ``--app-id`` share
the partitions; stopping one hands its partitions and their state to the others.

By default (``--input bulk``) Faust keeps the group, the assignment and the
tables while the assigned input partitions are fetched in bulk; ``--input
stream`` reads them through Faust agents message by message (simpler, ~6×
slower). ``--status-file`` keeps a JSON file with the assignment, counters and
what waits for which input, for health checks.

The alert store is written through a retrying writer: while ClickHouse is
away the worker goes on consuming, keeps alerts, dead letters and archive
rows on disk (``DATA_DIR/spill/worker-<app id>``) and sends them when it is
back; a stopped worker leaves what it could not send there for the next run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lianwatch.commands import wiring
from lianwatch.errors import CommandError
from lianwatch.rules import RuleSet, RulesError
from lianwatch.settings import KafkaSettings, read


def add_arguments(p: argparse.ArgumentParser) -> None:
    ks = read(KafkaSettings)
    p.add_argument("--bootstrap", default=ks.bootstrap, help="Kafka bootstrap servers")
    p.add_argument("--prefix", default=ks.topic_prefix, help="topic name prefix (default %(default)s)")
    p.add_argument("--partitions", type=int, default=ks.partitions,
                   help="partitions of the input topics (default %(default)s)")
    p.add_argument("--app-id", default=ks.app_id,
                   help="consumer group and table namespace (default %(default)s)")
    p.add_argument("--clock", choices=("wall", "event"), default="wall",
                   help="judge time-based rules by the wall clock (live) or by event time")
    p.add_argument("--tick-interval", type=float, default=10.0, metavar="S",
                   help="wall clock: seconds between ticks (default %(default)s)")
    p.add_argument("--lateness", type=float, default=None, metavar="MIN",
                   help="allowed lateness in minutes (default: the fuel rules' allowed_lateness_min)")
    p.add_argument("--state", choices=("rocksdb", "memory"), default="rocksdb",
                   help="table store: rocksdb (durable local copy) or memory (rebuilt from "
                        "the changelog at start)")
    p.add_argument("--state-dir", default=None, metavar="DIR",
                   help="where RocksDB tables live (default: DATA_DIR/faust)")
    p.add_argument("--rules", metavar="FILE", help="rules TOML")
    p.add_argument("--no-store", action="store_true",
                   help="publish alerts to Kafka only (no alert store)")
    p.add_argument("--no-archive", action="store_true", help="do not archive raw events")
    p.add_argument("--no-notify", action="store_true",
                   help="do not send notifications (default with --clock wall: this worker's "
                   "alerts are notified as they are stored, and the leader sends digests, "
                   "repeats and escalations; --clock event never notifies)")
    p.add_argument("--input", choices=("bulk", "stream"), default="bulk",
                   help="bulk: Faust keeps the group, assignment and tables, the assigned "
                        "input partitions are fetched in bulk (default); stream: Faust agents "
                        "read them message by message (slower)")
    p.add_argument("--batch", type=int, default=5000, metavar="N",
                   help="messages per batch and partition group (default %(default)s)")
    p.add_argument("--within", type=float, default=0.05, metavar="S",
                   help="wait at most this long to fill a batch (default %(default)s)")
    p.add_argument("--commit-interval", type=float, default=1.0, metavar="S",
                   help="Kafka offset commits (default %(default)s)")
    p.add_argument("--state-interval", type=float, default=1.0, metavar="S",
                   help="write each changed state to its table at most every S seconds "
                        "(default %(default)s)")
    p.add_argument("--standby", type=int, default=0, metavar="N",
                   help="standby table replicas kept by other workers (default %(default)s)")
    p.add_argument("--session-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--idle-exit", type=float, default=None, metavar="S",
                   help="stop cleanly once every partition it owns has had an end-of-data "
                        "tick and no input came for S seconds (batch runs, tests)")
    p.add_argument("--latency-log", metavar="FILE",
                   help="append one line per alert stored: id, version, sources, time (bench)")
    p.add_argument("--status-file", metavar="FILE",
                   help="rewrite FILE every second with the assignment and counters (JSON)")
    p.add_argument("--stats", type=float, default=0.0, metavar="S",
                   help="log counters every S seconds")
    p.add_argument("--loglevel", default="warning", help="debug, info, warning (default), error")


def run(args: argparse.Namespace) -> int:
    from lianwatch.errors import BrokerError, StoreError
    from lianwatch.streams.config import WorkerConfig
    from lianwatch.streams.ref import RefFollower
    from lianwatch.streams.topics import Topics, changelog_specs, ensure_topics

    settings = wiring.settings()
    try:
        rules = RuleSet.load(args.rules or settings.rules_file)
    except RulesError as exc:
        raise CommandError(str(exc)) from None
    topics = Topics(prefix=args.prefix, partitions=args.partitions, app_id=args.app_id)
    logging.basicConfig(level=args.loglevel.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.loglevel.lower() != "debug":
        # kafka-python's IO loop (reference follower, admin) warns about its own timing
        logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        ensure_topics(args.bootstrap, topics, extra=changelog_specs(args.app_id, topics))
    except (BrokerError, ValueError) as exc:  # broker unreachable, partition mismatch
        raise CommandError(f"cannot set up topics on {args.bootstrap}: {exc}") from None

    follower = RefFollower(args.bootstrap, topics)
    try:
        follower.bootstrap()
        follower.start()
    except BrokerError as exc:
        follower.stop()
        raise CommandError(str(exc)) from None
    try:
        store, writer, lock = _open_store(args, settings)
    except (StoreError, OSError) as exc:
        follower.stop()
        raise CommandError(f"cannot open the alert store: {exc}") from None

    state_dir = args.state_dir or str(Path(settings.data_dir) / "faust")
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    cfg = WorkerConfig(
        bootstrap=args.bootstrap, topics=topics, app_id=args.app_id,
        store_url="rocksdb://" if args.state == "rocksdb" else "memory://",
        state_dir=state_dir, clock=args.clock,
        lateness=None if args.lateness is None else args.lateness * 60.0,
        tick_interval=args.tick_interval, batch_max=args.batch, batch_within=args.within,
        commit_interval=args.commit_interval, standby_replicas=args.standby,
        state_interval=args.state_interval,
        session_timeout=args.session_timeout, rules=rules, tz=settings.zone, writer=writer,
        archive=not args.no_archive, idle_exit=args.idle_exit, latency_log=args.latency_log,
        stats_interval=args.stats, loglevel=args.loglevel, status_file=args.status_file,
        input_mode=args.input, time_window=_time_window(settings),
    )
    if store is not None and args.clock == "wall" and not args.no_notify:
        # live only: an --clock event run re-plays history and must not text anyone
        cfg.notifier = wiring.make_notifier(store, follower.ref, settings)
    return _run_worker(cfg, follower, store, lock, args.loglevel)


def _time_window(settings):
    """The records' accepted times, from LIANWATCH_NOT_BEFORE / LIANWATCH_MAX_AHEAD_HOURS,
    made again once a second of wall time."""
    import time

    from lianwatch.streams.family import live_window

    w = settings.time_window(time.time())  # checks the settings once, at start
    return live_window(earliest=w.earliest, ahead_s=settings.max_ahead_hours * 3600.0)


def _open_store(args: argparse.Namespace, settings):
    """The alert store and the writer the worker sends its rows through (retries with
    backoff, spills to DATA_DIR/spill/<app id> while the store is away), or Nones."""
    if args.no_store or settings.store == "none":
        return None, None, None
    from lianwatch.sinks.writer import Writer
    from lianwatch.streams.sinks import claim_spill_dir

    store = wiring.open_configured_store(settings)
    spill, lock = claim_spill_dir(Path(settings.data_dir) / "spill", f"worker-{args.app_id}")
    return store, Writer(store, spill_dir=spill, max_delay=0.02), lock


def _run_worker(cfg, follower, store, lock, loglevel: str) -> int:
    """Run the Faust worker until it stops; close everything; print the counters."""
    import asyncio

    import faust
    import orjson

    from lianwatch.streams.app import build_app

    holder: list = []

    def request_stop() -> None:
        # the Faust worker's own shutdown (what SIGTERM does), from inside its loop
        if not holder[1:]:
            holder.append(asyncio.ensure_future(holder[0].stop(), loop=holder[0].loop))

    parts = build_app(cfg, follower, request_stop)
    worker = faust.Worker(parts.app, loglevel=loglevel.upper(), quiet=True,
                          redirect_stdouts=False, override_logging=False)
    holder.append(worker)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0) if isinstance(exc.code, int) else 0
    finally:
        follower.stop()
        if not parts.sinks.close(timeout=5.0) and cfg.writer is not None:
            print("worker: rows not yet in the store are kept on disk for the next run: "
                  f"{cfg.writer.spill.dir if cfg.writer.spill else '-'}", file=sys.stderr)
        if store is not None:
            store.close()
            if getattr(store.backend, "kind", "") == "chdb":
                from lianwatch.sinks.chdb_backend import close_sessions

                close_sessions()  # before interpreter exit (see its doc)
        if lock is not None:
            lock.close()
        print("worker stopped: " + orjson.dumps(parts.stats()).decode(), file=sys.stderr)
    return code
