"""List alerts in the store, or show one with its evidence.

    lianwatch alerts [list] [--level red] [--rule 'fuel.*'] [--subject V0007] [--json]
    lianwatch alerts show ALERT_ID
"""

from __future__ import annotations

import argparse
import sys
import unicodedata

import orjson

from lianwatch.commands import parse_time_arg, wiring
from lianwatch.commands.alert_actions import ACTIONS
from lianwatch.errors import CommandError
from lianwatch.models.alert import Alert

LEVEL_ZH = {"red": "红", "yellow": "黄"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    lp = sub.add_parser("list", help="list current alerts (default)")
    _list_args(lp)
    _list_args(p)
    sp = sub.add_parser("show", help="one alert: evidence, sources, history")
    sp.add_argument("alert_id")
    sp.add_argument("--json", action="store_true")
    for name, (add, _, help_) in ACTIONS.items():
        ap = sub.add_parser(name, help=help_)
        add(ap)


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--level", choices=["red", "yellow"])
    p.add_argument("--rule", help="rule id, '*' allowed (fuel.*)")
    p.add_argument("--subject", help="vehicle, village or project id")
    p.add_argument("--since", metavar="TS")
    p.add_argument("--until", metavar="TS")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--lang", choices=["zh", "en"])


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None) or "list"
    if action == "show":
        return _show(args)
    if action in ACTIONS:
        return ACTIONS[action][1](args)
    settings = wiring.settings()
    since, until = (_time_text(t, settings.zone) for t in (args.since, args.until))
    store = wiring.open_configured_store(settings)
    alerts = store.alerts(level=args.level, rule=args.rule, subject=args.subject,
                          since=since, until=until, limit=args.limit)
    if args.json:
        out = sys.stdout.buffer
        for a in alerts:
            out.write(orjson.dumps(a.to_json_dict(), option=orjson.OPT_APPEND_NEWLINE))
        return 0
    lang = args.lang or settings.lang
    print(format_alert_table(alerts, lang))
    return 0


def _time_text(s: str | None, tz) -> str | None:
    """``--since``/``--until`` as RFC 3339 (a naive time is in LIANWATCH_TZ); CommandError
    when it is not a time."""
    from lianwatch.models.clock import format_ts

    t = parse_time_arg(s, tz)
    return None if t is None else format_ts(t, tz)


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _pad(s: str, w: int) -> str:
    if _width(s) > w:
        out = ""
        for c in s:
            if _width(out + c) > w - 1:
                break
            out += c
        s = out + "…"
    return s + " " * (w - _width(s))


def format_alert_table(alerts: list[Alert], lang: str = "zh") -> str:
    if not alerts:
        return "没有告警" if lang == "zh" else "no alerts"
    head = (["级别", "时间", "规则", "对象", "标题", "编号"] if lang == "zh"
            else ["level", "time", "rule", "subject", "title", "id"])
    widths = [6, 20, 30, 10, 60, 24]
    lines = ["  ".join(_pad(h, w) for h, w in zip(head, widths))]
    for a in alerts:
        level = LEVEL_ZH[a.level] if lang == "zh" else a.level
        title = a.title if lang == "zh" or not a.title_en else a.title_en
        row = [level, a.event_ts[:19].replace("T", " "), a.rule, a.subject_id, title, a.alert_id]
        lines.append("  ".join(_pad(str(v), w) for v, w in zip(row, widths)))
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    from lianwatch.lifecycle.log import load_history

    settings = wiring.settings()
    store = wiring.open_configured_store(settings)
    a = store.get_alert(args.alert_id)
    if a is None:
        raise CommandError(f"no alert {args.alert_id!r} in the store")
    history = load_history(store, a.alert_id, settings.zone)
    if args.json:
        d = a.to_json_dict()
        d["history"] = history
        sys.stdout.buffer.write(orjson.dumps(d, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        return 0
    print(format_alert(a, history))
    return 0


def format_alert(a: Alert, history: list[dict] | None = None) -> str:
    lines = [f"{a.title}", f"  {a.title_en}" if a.title_en else "",
             f"编号 id        {a.alert_id}  (version {a.version})",
             f"规则 rule      {a.rule}   级别 level {a.level}",
             f"对象 subject   {a.subject_type} {a.subject_id}"
             + (f"   单位 unit {a.unit_id}" if a.unit_id else "")
             + (f"   村 village {a.village_id}" if a.village_id else ""),
             f"发生 event     {a.event_ts}",
             f"发现 detected  {a.detected_at}",
             f"来源 sources   {', '.join(a.source_event_ids)}",
             "证据 evidence"]
    for k, v in a.evidence.items():
        lines.append(f"  {k}: {orjson.dumps(v).decode() if isinstance(v, (dict, list)) else v}")
    if history:
        lines.append("处置记录 history")
        for h in history:
            lines.append(f"  {h.get('at', '')}  {h.get('action', ''):10} → {h.get('state', ''):10} "
                         f"{h.get('by', '')}  {h.get('note', '')}")
    return "\n".join(x for x in lines if x != "")
