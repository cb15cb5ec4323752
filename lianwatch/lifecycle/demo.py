"""The demo's last step: notify the demo's alerts into the outbox and count the SMS.

Runs at the replay's as-of time (event time): the alerts are registered
(deadlines run from their detection, so old red alerts are already escalated),
the red notices go out after the group wait, and the clock is then let run to
the next daily digest so the yellow ones show too. Nothing leaves the machine:
the provider is the outbox (``DATA_DIR/outbox.jsonl``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from lianwatch.lifecycle.config import load_policies
from lianwatch.lifecycle.machine import ROLE_ZH
from lianwatch.lifecycle.notify import Notifier, NotifyReport, outbox_summary
from lianwatch.lifecycle.providers import OutboxProvider
from lianwatch.models.clock import DEFAULT_TZ, format_ts

__all__ = ["after_demo", "load_ref", "format_outbox_table"]


def load_ref(directory: str | Path, tz: tzinfo = DEFAULT_TZ) -> Any:
    """Reference data (villages with their contacts, vehicles, projects) of a contract dir."""
    from lianwatch.models.files import find_files
    from lianwatch.replay.run import DeadLetters, load_reference

    ref, _ = load_reference(find_files(directory), DeadLetters(None), tz)
    return ref


def _w(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _pad(s: str, w: int) -> str:
    return s + " " * max(0, w - _w(s))


def format_outbox_table(rows: Iterable[dict[str, Any]]) -> str:
    """SMS by recipient role and level (an SMS carrying a red alert counts as red)."""
    c = outbox_summary(rows)
    order = list(ROLE_ZH)
    roles = sorted({r for r, _ in c}, key=lambda r: (order.index(r) if r in order else 99, r))
    lines = [f"{_pad('角色 role', 34)} {'红 red':>8} {'黄 yellow':>10}"]
    for role in roles:
        name = f"{ROLE_ZH.get(role, '')} {role}".strip()
        lines.append(f"{_pad(name, 34)} {c.get((role, 'red'), 0):8d} "
                     f"{c.get((role, 'yellow'), 0):10d}")
    lines.append(f"{_pad('合计 total', 34)} "
                 f"{sum(v for (_, lv), v in c.items() if lv == 'red'):8d} "
                 f"{sum(v for (_, lv), v in c.items() if lv != 'red'):10d}")
    return "\n".join(lines)


def after_demo(*, settings: Any, store: Any, data_dir: str | Path, result: Any) -> NotifyReport:
    data_dir = Path(data_dir)
    tz = settings.zone
    ref = load_ref(data_dir / "demo-input", tz)
    outbox = data_dir / "outbox.jsonl"
    if outbox.exists():
        outbox.unlink()
    lpolicy, policy = load_policies(settings)
    n = Notifier(store, ref, settings, OutboxProvider(outbox, sign_name=policy.sign_name, tz=tz),
                 policy=policy, lifecycle_policy=lpolicy)
    as_of = result.as_of
    print()
    print("短信通知（外发箱，未实际发送） SMS notifications (outbox: nothing is sent)")
    if as_of is None or not result.alerts:
        print("  没有告警 no alerts")
        return NotifyReport()
    rep = n.on_alerts(result.alerts, as_of)
    rep.add(n.tick(as_of + n.policy.group_wait_s))
    digest = n._next_slot(as_of + n.policy.group_wait_s, n.policy.digest_at)
    rep.add(n.tick(digest))
    rows = n.provider.read()  # type: ignore[attr-defined]
    print(f"  截至 as of {format_ts(as_of, tz)}, 日汇总 digest at {format_ts(digest, tz)}: "
          f"登记 {rep.opened} alerts, 逾期上报 escalated {rep.escalated}, "
          f"短信 {rep.sms} SMS carrying {rep.sent} notices")
    waiting = len(n.pending())
    if waiting or rep.failed or rep.unroutable:
        print(f"  待发 still queued {waiting} (quiet hours / cap / later digest / retry), "
              f"failed {rep.failed}, 无联系人 unroutable {rep.unroutable}")
    print(format_outbox_table(rows))
    if rows:
        print(f"  例 e.g. {rows[0]['to']} ({rows[0]['role']}): {rows[0]['text']}")
    print(f"  outbox: {outbox}")
    return rep
