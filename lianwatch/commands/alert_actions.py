"""``alerts`` actions of the lifecycle (:data:`ACTIONS`, added by :mod:`lianwatch.commands.alerts`)::

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
from collections.abc import Callable

from lianwatch.commands import wiring
from lianwatch.errors import CommandError
from lianwatch.lifecycle.machine import ACTION_ZH, STATE_ZH

__all__ = ["ACTIONS"]


def _who() -> str:
    try:
        return os.environ.get("LIANWATCH_USER") or getpass.getuser()
    except (OSError, KeyError):  # pragma: no cover - no login name
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
    from lianwatch.lifecycle.log import Lifecycle, resolve_alert_id

    settings = wiring.settings()
    lpolicy, _ = wiring.configured_policies(settings)
    store = wiring.open_configured_store(settings)
    note = getattr(args, "reason", None) or getattr(args, "note", "") or ""
    aid = resolve_alert_id(store, args.alert_id)
    lc = Lifecycle(store, lpolicy)
    before = lc.state(aid)
    if before.state is None:  # never seen by the notifier: register it first
        a = store.get_alert(aid)
        if a is not None:
            lc.observe([a], time.time())
    e, after = lc.act(aid, action, at=time.time(), by=args.by or _who(), note=note,
                      evidence_ref=getattr(args, "evidence", "") or "")
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

    from lianwatch.models.clock import format_ts, parse_ts

    settings = wiring.settings()
    inp = Path(args.input) if args.input else Path(settings.data_dir) / "demo-input"
    if args.input and not inp.is_dir():
        raise CommandError(f"input directory not found: {inp}")
    ref = wiring.load_reference_dir(inp, settings.zone) if inp.is_dir() else None
    try:
        now = parse_ts(args.now, settings.zone) if args.now else time.time()
    except ValueError as exc:
        raise CommandError(f"--now: {exc}") from None
    n = wiring.make_notifier(wiring.open_configured_store(settings), ref, settings)
    rep = n.tick(now)
    print(f"巡检 tick at {format_ts(now, settings.zone)} via {n.provider.name}: "
          f"escalated {rep.escalated}, planned {rep.planned}, SMS sent {rep.sms} "
          f"({rep.sent} notices), held {rep.held}, failed {rep.failed}, "
          f"unroutable {rep.unroutable}")
    return 0


def _act(name: str) -> Callable[[argparse.Namespace], int]:
    return lambda args: _run_action(name, args)


#: action → (add its arguments, run it, help): the ``alerts`` sub-commands of the lifecycle
ACTIONS: dict[str, tuple[Callable, Callable[[argparse.Namespace], int], str]] = {
    "rectify": (_add_rectify, _act("rectify"), "报告整改 report a rectification (open → rectifying)"),
    "verify": (_add_verify, _act("verify"), "核实办结 verify a rectification (rectifying → closed)"),
    "dismiss": (_add_dismiss, _act("dismiss"), "核销 dismiss a false positive, with the reason"),
    "reopen": (_add_reopen, _act("reopen"), "重新打开 reopen a closed, dismissed or rectifying alert"),
    "tick": (_add_tick, _run_tick, "巡检 run the notifier once: escalations, repeats, digests, retries"),
}
