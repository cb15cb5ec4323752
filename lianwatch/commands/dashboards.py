"""Grafana dashboards as code: build provisioning files, push them to a Grafana, or
print a panel's SQL as the ClickHouse plugin would send it.

  lianwatch dashboards build --out DIR      data source + provider YAML, dashboard JSON (zh, en)
  lianwatch dashboards apply --url URL      push to Grafana (token: env GRAFANA_TOKEN)
  lianwatch dashboards list                 dashboards and panels
  lianwatch dashboards sql overview trend --from 2026-03-02 --to 2026-03-16
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="write provisioning YAML and dashboard JSON files")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--dashboards-path", help="where Grafana will read the JSON files "
                   "(default: OUT/dashboards, absolute)")
    b.add_argument("--lang", choices=["zh", "en", "both"], default="both")
    a = sub.add_parser("apply", help="push the dashboards to a running Grafana (overwrite by uid)")
    a.add_argument("--url", required=True, help="Grafana base URL, e.g. http://127.0.0.1:3000")
    a.add_argument("--token-env", default="GRAFANA_TOKEN",
                   help="environment variable holding a service-account token (default GRAFANA_TOKEN)")
    a.add_argument("--with-datasource", action="store_true",
                   help="also create/update the ClickHouse data source (password from $LIANWATCH_CH_PASSWORD)")
    a.add_argument("--lang", choices=["zh", "en", "both"], default="both")
    a.add_argument("--timeout", type=float, default=10.0)
    sub.add_parser("list", help="the dashboards and their panels")
    s = sub.add_parser("sql", help="a panel's SQL with macros and variables expanded")
    s.add_argument("dashboard")
    s.add_argument("panel")
    s.add_argument("--from", dest="time_from", required=True)
    s.add_argument("--to", dest="time_to", required=True)
    s.add_argument("--var", action="append", default=[], metavar="NAME=VALUE[,VALUE]",
                   help="a variable value (default All)")
    s.add_argument("--ref", default="A", help="query refId (default A)")


def _langs(choice: str) -> tuple[str, ...]:
    return ("zh", "en") if choice == "both" else (choice,)


def _clickhouse():
    from lianwatch.settings import ClickHouseSettings, read

    return read(ClickHouseSettings)


def _thresholds():
    """The panels' thresholds from the rules file in force (and its [lifecycle] policy)."""
    from lianwatch.dashboards.thresholds import Thresholds

    from .wiring import configured_policies, settings

    s = settings()
    return Thresholds.load(s.rules_file, configured_policies(s)[0])


def run(args: argparse.Namespace) -> int:
    from lianwatch.errors import BuildError, CommandError, GrafanaError

    action = getattr(args, "action", None)
    if action == "build":
        from lianwatch.dashboards.provisioning import build

        try:
            files = build(args.out, ch=_clickhouse(), dashboards_path=args.dashboards_path,
                          langs=_langs(args.lang), thresholds=_thresholds())
        except BuildError as exc:
            raise CommandError(f"dashboards failed their checks: {exc}") from None
        except OSError as exc:
            raise CommandError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        for f in files:
            print(f)
        return 0
    if action == "apply":
        import os

        from lianwatch.dashboards.provisioning import apply

        token = os.environ.get(args.token_env)
        if not token:
            print(f"lianwatch dashboards: ${args.token_env} is not set; trying without a token",
                  file=sys.stderr)
        try:
            apply(args.url, ch=_clickhouse(), token=token or "",
                  with_datasource=args.with_datasource, langs=_langs(args.lang),
                  timeout=args.timeout, thresholds=_thresholds())
        except GrafanaError as exc:
            raise CommandError(f"cannot apply the dashboards: {exc}") from None
        return 0
    if action == "list":
        from lianwatch.dashboards.definitions import DASHBOARDS

        th = _thresholds()
        for d in DASHBOARDS:
            print(f"{d.uid:14} {d.title('zh')} / {d.title('en')}")
            for p in d.panels:
                print(f"    {p.key:18} {p.kind:10} {th.render(p.title('zh'))} / {th.render(p.title('en'))}")
        return 0
    if action == "sql":
        from lianwatch.commands import parse_time_arg, wiring
        from lianwatch.dashboards.definitions import get
        from lianwatch.dashboards.macros import ALL
        from lianwatch.dashboards.run import Context, panel_sql

        settings = wiring.settings()
        try:
            d = get(args.dashboard)
            p = next(p for p in d.panels if p.key == args.panel)
        except (KeyError, StopIteration):
            raise CommandError(f"no panel {args.dashboard}/{args.panel} (see: lianwatch dashboards list)") \
                from None
        values = {v.name: ([ALL] if v.multi else ALL) if v.include_all else "" for v in d.variables}
        for item in args.var:
            name, _, val = item.partition("=")
            values[name] = val.split(",") if "," in val else ([val] if d.var(name) and d.var(name).multi else val)
        ctx = Context(parse_time_arg(args.time_from, settings.zone), parse_time_arg(args.time_to, settings.zone),
                      values=values, thresholds=_thresholds())
        print(panel_sql(p, ctx, args.ref))
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2
