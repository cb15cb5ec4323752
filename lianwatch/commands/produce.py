"""Publish a contract directory to Kafka (the input topics of CONTRACT §2).

Reference data first (compacted topics, keyed by id), then every event in
event-time order, keyed by its subject. ``--speed 60`` plays the history 60×
faster than it happened; ``--max`` sends as fast as possible (the default).
Progress ticks go to every input partition as the feed advances, and at the
end an end-of-data tick (as of the newest event time, or ``--as-of``) tells
``--clock event`` workers to judge what still waits for data. Lines that
cannot be read go to the dead-letter topic with their reason.

A broker that restarts is waited for: the producer retries with backoff and
resumes where it was (what the broker had not acknowledged is sent again). One
that stays away longer than ``--broker-timeout`` seconds ends the run with one
line saying so and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lianwatch.commands import parse_time_arg, wiring
from lianwatch.errors import CommandError
from lianwatch.settings import KafkaSettings, read


def add_arguments(p: argparse.ArgumentParser) -> None:
    ks = read(KafkaSettings)
    p.add_argument("--input", required=True, metavar="DIR", help="contract directory")
    p.add_argument("--bootstrap", default=ks.bootstrap, help="Kafka bootstrap servers")
    p.add_argument("--prefix", default=ks.topic_prefix, help="topic name prefix (default %(default)s)")
    p.add_argument("--partitions", type=int, default=ks.partitions,
                   help="partitions of the input topics (default %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--speed", type=float, metavar="N",
                   help="replay history N times faster than it happened")
    g.add_argument("--max", action="store_true", help="as fast as possible (default)")
    p.add_argument("--as-of", metavar="TS", help="end-of-data time (default: the newest event)")
    p.add_argument("--no-eod", action="store_true", help="do not send the end-of-data tick")
    p.add_argument("--tick-every", type=int, default=5000, metavar="N",
                   help="a progress tick every N events (default %(default)s)")
    p.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"),
                   default="none", help="producer compression (default none: a local broker)")
    p.add_argument("--linger-ms", type=int, default=20)
    p.add_argument("--broker-timeout", type=float, default=60.0, metavar="S",
                   help="give up when the broker stays unreachable this long (default %(default)s)")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from lianwatch.errors import BrokerError
    from lianwatch.streams.producer import publish_directory
    from lianwatch.streams.topics import Topics, ensure_topics

    settings = wiring.settings()
    tz = settings.zone
    as_of = parse_time_arg(args.as_of, tz)
    topics = Topics(prefix=args.prefix, partitions=args.partitions)
    _quiet_kafka_clients(args.quiet)
    try:
        ensure_topics(args.bootstrap, topics, timeout_s=min(30.0, args.broker_timeout))
    except (BrokerError, ValueError) as exc:
        raise CommandError(f"cannot set up topics on {args.bootstrap}: {exc}") from None

    def progress(n: int, counts) -> None:
        if not args.quiet:
            print(f"\rsent {n:,}", end="", file=sys.stderr, flush=True)

    try:
        res = publish_directory(
            args.input, topics, args.bootstrap, tz=tz, speed=args.speed,
            tick_every=args.tick_every, eod=not args.no_eod, as_of=as_of,
            compression=None if args.compression == "none" else args.compression,
            linger_ms=args.linger_ms, progress=progress, retry_for=args.broker_timeout)
    except BrokerError as exc:
        raise CommandError(str(exc)) from None
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    if not args.quiet:
        c = res.counts
        again = (f"; {res.resent:,} sent again after {res.outages} broker outage"
                 f"{'s' if res.outages != 1 else ''}" if res.outages else "")
        print(f"\rsent {res.messages:,} messages in {res.seconds:.1f} s "
              f"({res.events / max(res.seconds, 1e-9):,.0f} events/s): "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(c.items())) + again, file=sys.stderr)
    return 0


def _quiet_kafka_clients(quiet: bool) -> None:
    """The clients' own retry chatter (and its tracebacks) stays out of the terminal; the
    producer says what happens (one warning per outage, one line when it gives up)."""
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, stream=sys.stderr,
                        format="lianwatch produce: %(message)s")
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
