"""The ``lianwatch`` command line. Each command lives in its own module; this file
only builds the parser and dispatches.

Exit codes: 0 ran (whatever it found), 1 could not run (bad arguments, missing
input, store unreachable), 2 usage error (argparse).

Errors: every error lianwatch raises on purpose is a
:class:`~lianwatch.errors.LianwatchError` (third-party errors are converted where
they happen, see :mod:`lianwatch.errors`); :func:`main` catches them here, once,
and prints one line ``lianwatch COMMAND: what went wrong`` on stderr (exit 1).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lianwatch.errors import LianwatchError

__all__ = ["main", "build_parser"]

#: command → (module with add_arguments(p) and run(args) -> int, help text)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lianwatch.commands.demo", "generate a county, replay it into the embedded store, score it"),
    "replay": ("lianwatch.commands.replay", "re-run a contract directory in event time (CONTRACT §4)"),
    "generate": ("lianwatch.commands.generate", "write a synthetic county in the contract's layout"),
    "alerts": ("lianwatch.commands.alerts", "list, show and work alerts in the store"),
    "db": ("lianwatch.commands.db", "the alert store: migrate, check"),
    "worker": ("lianwatch.commands.worker", "run a Faust stream worker on Kafka"),
    "produce": ("lianwatch.commands.produce", "publish a contract directory to Kafka"),
    "dashboards": ("lianwatch.commands.dashboards", "build or apply the Grafana dashboards"),
    "report": ("lianwatch.commands.report", "render the dashboards into one HTML file"),
    "incident": ("lianwatch.commands.incident", "reconstruct one alert's incident from the archive"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lianwatch", description="小微权力实时监督 · real-time "
                                "supervision of official cars, village payments and projects")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("lianwatch.commands."):
                continue  # a command not built yet
            raise
        sp = sub.add_parser(name, help=help_, description=(m.__doc__ or help_).strip())
        m.add_arguments(sp)
        sp.set_defaults(_run=m.run)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lianwatch")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _one_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or (
        type(exc).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    command = ""
    try:
        parser = build_parser()  # commands read settings for their defaults
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        command = args.command
        return int(args._run(args) or 0)
    except LianwatchError as exc:
        print(f"lianwatch{' ' + command if command else ''}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
