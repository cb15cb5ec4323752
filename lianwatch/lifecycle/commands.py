"""``alerts`` actions of the lifecycle (imported by :mod:`lianwatch.commands.alerts`)::

    lianwatch alerts rectify ID --note "已退回油款并通报" [--by 张三] [--evidence DOC]
    lianwatch alerts verify  ID [--note …] [--by …] [--evidence DOC]
    lianwatch alerts dismiss ID --reason "加油站坐标有误" [--by …]
    lianwatch alerts reopen  ID [--note …] [--by …]
    lianwatch alerts tick [--input DIR] [--now TS]     # escalations, repeats, digests, retries

``ID`` is an alert id or its first characters (the SMS carries the first 8).
Actions are recorded at wall time; their notices go out on the next tick (the
worker's, or ``alerts tick``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import time

from lianwatch.cli import CommandError
from lianwatch.commands.alerts import register_action
from lianwatch.lifecycle.machine import ACTION_ZH, STATE_ZH, LifecycleError

__all__: list[str] = []


def _who() -> str:
    try:
        return os.environ.get("LIANWATCH_USER") or getpass.getuser()
    except Exception:  # pragma: no cover - no login name
        return "unknown"


def _base(p: argparse.ArgumentParser) -> None:
    p.add_argument("alert_id", metavar="ID", help="alert id, or its first 8+ characters")
    p.add_argument("--by", help="who did it (default: LIANWATCH_USER or the login name)")


def _with_evidence(p: argparse.ArgumentParser) -> None:
    p.add_argument("--evidence", metavar="REF", default="",
                   help="reference of the supporting document (file number, path, URL)")


def _add_rectify(p: argparse.ArgumentParser) -> None:
    _base(p)
    p.add_argument("--note", required=True, help="what was done to rectify")
    _with_evidence(p)


def _add_verify(p: argparse.ArgumentParser) -> None:
    _base(p)
    p.add_argument("--note", default="")
    _with_evidence(p)


def _add_dismiss(p: argparse.ArgumentParser) -> None:
    _base(p)
    p.add_argument("--reason", required=True, help="why it is a false positive")


def _add_reopen(p: argparse.ArgumentParser) -> None:
    _base(p)
    p.add_argument("--note", default="")


def _run_action(action: str, args: argparse.Namespace) -> int:
    from lianwatch.commands.alerts import _store
    from lianwatch.lifecycle.config import PolicyError, load_policies
    from lianwatch.lifecycle.log import Lifecycle, resolve_alert_id
    from lianwatch.settings import Settings

    settings = Settings()
    try:
        lpolicy, _ = load_policies(settings)
    except PolicyError as exc:
        raise CommandError(str(exc)) from None
    store = _store()
    note = getattr(args, "reason", None) or getattr(args, "note", "") or ""
    try:
        aid = resolve_alert_id(store, args.alert_id)
        lc = Lifecycle(store, lpolicy)
        before = lc.state(aid)
        if before.state is None:  # never seen by the notifier: register it first
            a = store.get_alert(aid)
            if a is not None:
                lc.observe([a], time.time())
        e, after = lc.act(aid, action, at=time.time(), by=args.by or _who(), note=note,
                          evidence_ref=getattr(args, "evidence", "") or "")
    except LifecycleError as exc:
        raise CommandError(str(exc)) from None
    prev = after.history[-2].state if len(after.history) > 1 else None
    print(f"{ACTION_ZH[action]} {action}  {aid}  {STATE_ZH.get(prev, prev)} {prev} → "
          f"{STATE_ZH[after.state]} {after.state}  (by {e.by}, #{e.seq})")
    print("通知将在下次巡检时发送 notices go out on the next tick (worker or `alerts tick`)")
    return 0


def _add_tick(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="DIR",
                   help="contract directory with the reference data (villages.jsonl …) for "
                        "the contacts (default: DATA_DIR/demo-input when present)")
    p.add_argument("--now", metavar="TS", help="the clock (default: now); e.g. an as-of time")


def _run_tick(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lianwatch.commands.alerts import _store
    from lianwatch.lifecycle.demo import load_ref
    from lianwatch.lifecycle.notify import Notifier
    from lianwatch.models.clock import format_ts, parse_ts
    from lianwatch.settings import Settings

    settings = Settings()
    inp = Path(args.input) if args.input else Path(settings.data_dir) / "demo-input"
    if args.input and not inp.is_dir():
        raise CommandError(f"input directory not found: {inp}")
    ref = load_ref(inp, settings.zone) if inp.is_dir() else None
    try:
        now = parse_ts(args.now, settings.zone) if args.now else time.time()
    except ValueError as exc:
        raise CommandError(f"--now: {exc}") from None
    try:
        n = Notifier(_store(), ref, settings)
        rep = n.tick(now)
    except Exception as exc:
        if isinstance(exc, CommandError):
            raise
        raise CommandError(f"notifier: {exc}") from exc
    print(f"巡检 tick at {format_ts(now, settings.zone)} via {n.provider.name}: "
          f"escalated {rep.escalated}, planned {rep.planned}, SMS sent {rep.sms} "
          f"({rep.sent} notices), held {rep.held}, failed {rep.failed}, "
          f"unroutable {rep.unroutable}")
    return 0


for _name, _add, _help in (
        ("rectify", _add_rectify, "报告整改 report a rectification (open → rectifying)"),
        ("verify", _add_verify, "核实办结 verify a rectification (rectifying → closed)"),
        ("dismiss", _add_dismiss, "核销 dismiss a false positive, with the reason"),
        ("reopen", _add_reopen, "重新打开 reopen a closed, dismissed or rectifying alert")):
    register_action(_name, _add, (lambda a, _n=_name: _run_action(_n, a)), _help)
register_action("tick", _add_tick, _run_tick,
                "巡检 run the notifier once: escalations, repeats, digests, retries")
