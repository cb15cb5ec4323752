"""The alert store's schema: check it, migrate it.

    lianwatch db check [--json] [--strict]   # version, schema, row counts, what is wrong
    lianwatch db migrate [--dry-run]         # bring any older schema to the current one

The store is chDB in ``LIANWATCH_DATA_DIR`` (default) or a ClickHouse server with
``LIANWATCH_STORE=clickhouse`` and ``LIANWATCH_CH_HOST``/``_PORT``/``_USER``/
``_PASSWORD``/``_DATABASE`` (TLS: ``_SECURE``, ``_VERIFY``, ``_CA_CERTS``).
``check`` changes nothing; ``migrate`` is idempotent (a second run does nothing).
Exit 0 when it ran (``check --strict``: 1 when something is wrong), 1 when the
store cannot be reached.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from lianwatch.commands import wiring


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    cp = sub.add_parser("check", help="server version, schema version, row counts, problems")
    cp.add_argument("--json", action="store_true", help="the report as one JSON object")
    cp.add_argument("--strict", action="store_true", help="exit 1 when something is wrong")
    mp = sub.add_parser("migrate", help="create missing tables/columns/views (idempotent)")
    mp.add_argument("--dry-run", action="store_true", help="print the statements, run nothing")




def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None)
    if action not in ("check", "migrate"):
        print("usage: lianwatch db {check,migrate}", file=sys.stderr)
        return 2
    store = wiring.open_configured_store(wiring.settings(), migrate=False)
    try:
        if action == "check":
            return _check(store, args)
        return _migrate(store, args)
    finally:
        store.close()


def _check(store, args: argparse.Namespace) -> int:
    rep = store.check()
    rep["store"] = store.backend.describe()
    if args.json:
        print(orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"store:          {rep['store']}")
        print(f"server version: {rep['server_version']}")
        print(f"database:       {rep['database']}")
        print(f"schema version: {rep['schema_version']} (current {rep['expected_schema']})")
        if rep["counts"]:
            print("rows:")
            for t, n in rep["counts"].items():
                print(f"  {t:<18} {n:>12,}")
        for n in rep["notes"]:
            print(f"note: {n}")
        if rep["problems"]:
            for p in rep["problems"]:
                print(f"PROBLEM: {p}")
            print("run `lianwatch db migrate` to fix missing tables, columns and old schemas")
        else:
            print("ok")
    return 1 if (args.strict and rep["problems"]) else 0


def _migrate(store, args: argparse.Namespace) -> int:
    from lianwatch.sinks.schema import SCHEMA_VERSION

    before = store.schema_version()
    if args.dry_run:
        plan = store.plan_migration()
        for stmt in plan:
            print(stmt + ";")
        if before < SCHEMA_VERSION:
            print(f"-- record schema version {SCHEMA_VERSION}")
        if not plan and before >= SCHEMA_VERSION:
            print(f"-- nothing to do: schema version {before}")
        return 0
    store.migrate()
    done = store.last_migration
    if done:
        print(f"migrated {store.backend.describe()} database {store.db}: schema version "
              f"{before} → {SCHEMA_VERSION} ({len(done)} steps)")
        for stmt in done:
            print("  " + stmt.splitlines()[0])
    else:
        print(f"nothing to do: schema version {SCHEMA_VERSION} is current")
    return 0
