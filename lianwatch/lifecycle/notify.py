"""The notifier: who is told what, when, and a record of every attempt.

Use::

    n = Notifier(store, ref, provider, policy=…, tz=…, lang=…)   # the commands build it
    n.on_alerts(alerts, now)    # alerts as the detectors emit them (any number of times)
    n.tick(now)                 # escalations, repeats, digests, retries (every minute or so)

A tick also registers alerts it finds in the store that were never notified
(detected within ``adopt_days``), so a process that only writes alerts to the
store plus a periodic tick (``lianwatch alerts tick``) is a complete setup.
Run one notifier per store: two processes ticking together could both send a
notice that is due (no lock between them).

``now`` is passed in (epoch seconds): wall time in the worker and the CLI, the
as-of event time in replay and the demo. Nothing here reads a clock.

What is sent
  One notice per recipient per *change* of an alert: its first sighting
  (``alert``), a raise to red, an escalation (``escalation.<role>``), a state
  change by an officer (``state.<state>``), and for red alerts still open a
  reminder every ``repeat_red_days`` (``repeat``). Each notice has a
  deterministic id (alert, the history event it announces, recipient, kind),
  so the same alerts delivered again, or a second replay, send nothing new.

To whom (:mod:`lianwatch.lifecycle.routing`)
  red → the village secretary and the town discipline inspector at once;
  yellow → the secretary; each escalation adds the next level up
  (town_discipline, then county_discipline) and tells everyone on the way.

When
  red: after the group wait (all notices for one number within
  ``group_wait_s`` go in one SMS), day or night. yellow: in the daily digest at
  ``digest_at`` (or, with ``yellow = "immediate"``, after the group wait),
  never during quiet hours (held until they end). Past ``daily_cap`` SMS to a
  number in a local day, the rest is folded into the next day's digest.

The record (table ``notifications``)
  One row per notice and attempt: ``notification_id`` is ``<notice id>/<attempt>``
  (the table keeps one row per id, so each attempt has its own). ``attempt`` 0
  is the notice planned (``pending`` for the group wait, ``held`` for the digest, quiet hours or the
  cap; ``at_time`` is then when it is due), each later attempt a hold or a
  provider call (``sent`` or ``failed``, ``at_time`` the time of the call,
  ``text`` the SMS as sent, ``error`` the provider's answer). A ``failed``
  notice is tried again at a later tick (backoff doubling from
  ``retry_later_s`` up to ``retry_max_s``) until it is sent: never dropped.
  ``unroutable``: no contact could be found (logged, not retried). Numbers are
  stored masked (138****0012) and as a keyed hash (the install's secret key,
  :mod:`~lianwatch.lifecycle.hashkey`); every log line is masked.
  The latest row of a notice is ``argMax(…, attempt)`` grouped by the notice id.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dtime
from typing import Any

from lianwatch.errors import ProviderError
from lianwatch.lifecycle.config import LifecyclePolicy, NotifyPolicy
from lianwatch.lifecycle.log import Lifecycle, ts_expr
from lianwatch.lifecycle.machine import AlertState, roles_for
from lianwatch.lifecycle.providers import Message, SendResult, SmsProvider
from lianwatch.lifecycle.routing import Recipient, Router
from lianwatch.lifecycle.texts import (
    LEVEL_WORD, ROLE_SHORT, PhoneHasher, SmsLimits, fit_params, mask_numbers, notes, render,
    rule_name, sms_segments,
)
from lianwatch.models.alert import Alert, keep_newest
from lianwatch.models.clock import DEFAULT_TZ, parse_ts
from lianwatch.sinks.sql import in_list

__all__ = ["Notifier", "NotifyReport", "OPEN_STATUSES"]

log = logging.getLogger("lianwatch.notify")

OPEN_STATUSES = ("pending", "held", "failed")
#: a row's ``notification_id`` is ``<notice id>/<attempt>``: every attempt is its own row
_NOTICE = "splitByChar('/', notification_id)[1]"
#: which notice speaks for an alert when one SMS carries several of it
_KIND_ORDER = {"escalation": 0, "state": 1, "alert": 2, "repeat": 3}
_IN_LIMIT = 2000


@dataclass
class NotifyReport:
    opened: int = 0
    raised: int = 0
    escalated: int = 0
    planned: int = 0  # notices created
    sms: int = 0  # SMS sent
    sent: int = 0  # notices delivered (several per SMS when grouped)
    held: int = 0  # notices (re)held: digest, quiet hours, cap
    failed: int = 0  # SMS whose every try failed this time (retried later)
    unroutable: int = 0

    def add(self, other: "NotifyReport") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


@dataclass
class _Row:
    """The latest version of one notice."""

    notification_id: str
    attempt: int
    status: str
    at: float
    alert_id: str
    phone_hash: str
    phone_masked: str
    role: str
    level: str
    kind: str
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _nid(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


def _epoch(now: float | datetime | str) -> float:
    if isinstance(now, datetime):
        return now.timestamp()
    if isinstance(now, str):
        return parse_ts(now)
    return float(now)


class Notifier:
    """Notices for the alerts of ``store`` through ``provider``.

    ``ref``: the reference data with the contacts (villages, vehicles' units);
    ``policy`` / ``lifecycle_policy``: who is told what when, and the deadlines
    (defaults: :class:`NotifyPolicy`, :class:`LifecyclePolicy`); ``tz``: the zone of
    quiet hours and digests; ``lang``: the SMS language unless the policy names one;
    ``phone_hash_key``: the key of the numbers' hash in the ``notifications`` table;
    ``sleep``: the backoff between tries (tests pass a recorder).
    """

    def __init__(self, store: Any, ref: Any, provider: SmsProvider, *,
                 policy: NotifyPolicy | None = None,
                 lifecycle_policy: LifecyclePolicy | None = None, tz: tzinfo = DEFAULT_TZ,
                 lang: str = "zh", phone_hash_key: str = "",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        policy = policy or NotifyPolicy()
        self.store = store
        self.policy = policy
        self.tz: tzinfo = tz
        self.lang = policy.lang or lang
        self.provider = provider
        cap = self.limits.param_max_len
        if cap is not None and cap < 12:
            log.warning("sms via %s: %d characters per template variable: rule names, subjects and "
                        "notes are shortened, alert codes cut to %d characters (set the carrier's "
                        "PARAM_MAX_LEN if your templates were approved for longer variables)",
                        self.limits.name, cap, min(cap, 8))
        self.lifecycle = Lifecycle(store, lifecycle_policy)
        self.hasher = PhoneHasher(phone_hash_key)
        self.router = Router(ref, policy, self.hasher)
        self.sleep = sleep
        self.table = f"{store.db}.notifications"
        self._alerts: dict[str, Alert] = {}

    @property
    def ref(self) -> Any:
        return self.router.ref

    @ref.setter
    def ref(self, ref: Any) -> None:
        self.router.ref = ref

    # ================================================================== API
    def on_alerts(self, alerts: Iterable[Alert], now: float | datetime | str) -> NotifyReport:
        """Register alerts (new, raised, re-delivered) and send what is due."""
        now = _epoch(now)
        latest: dict[str, Alert] = {}
        keep_newest(latest, alerts)
        self._alerts.update(latest)
        rep = NotifyReport()
        if not latest:
            return rep
        return self._observe_and_dispatch(latest, self.lifecycle.states(latest), now, rep,
                                          repeats=False)

    def tick(self, now: float | datetime | str) -> NotifyReport:
        """Escalate overdue alerts, plan repeats and state notices, send what is due.

        The store is the truth here: alerts written to it that the notifier has not
        seen (detected within ``adopt_days``) are registered, and a level raised in
        the store is noticed, so a worker that only writes alerts and a periodic
        ``tick`` (or ``lianwatch alerts tick``) are enough.
        """
        now = _epoch(now)
        rep = NotifyReport()
        ids = set(self.lifecycle.active_ids(now)) | set(self._unseen(now))
        return self._observe_and_dispatch(self._alerts_for(ids), self.lifecycle.states(ids), now,
                                          rep, repeats=True)

    def _observe_and_dispatch(self, alerts: dict[str, Alert], states: Any, now: float,
                              rep: NotifyReport, *, repeats: bool) -> NotifyReport:
        """Record opens/raises/escalations in the history, then plan and send notices."""
        evs = self.lifecycle.observe(alerts.values(), now, states)
        rep.opened = sum(e.action == "open" for e in evs)
        rep.raised = sum(e.action == "raise" for e in evs)
        rep.escalated = len(self.lifecycle.escalate_due(alerts, now, states))
        self._plan_and_dispatch(alerts, states, now, rep, repeats=repeats)
        return rep

    def pending(self) -> list[dict[str, Any]]:
        """Notices not yet sent (pending, held, failed), oldest due first."""
        return [dict(r.__dict__) for r in sorted(self._open_rows(), key=lambda r: r.at)]

    # ================================================================== planning
    def _plan_and_dispatch(self, alerts: Mapping[str, Alert], states: dict[str, AlertState],
                           now: float, rep: NotifyReport, repeats: bool) -> None:
        open_rows = self._open_rows()
        existing = self._existing_ids(list(states))
        group_due: dict[str, float] = {}
        for r in open_rows:
            if r.status == "pending":
                group_due[r.phone_hash] = min(group_due.get(r.phone_hash, r.at), r.at)
        new: list[_Row] = []
        for aid in sorted(states):
            a = alerts.get(aid)
            if a is not None:
                new.extend(self._plan_alert(a, states[aid], now, existing, group_due))
        if repeats:  # not where a notice is already on its way (it restarts the interval)
            new.extend(self._plan_repeats(alerts, states, now, existing, group_due,
                                          [*open_rows, *new]))
        if new:
            self._write([(r, r.attempt, r.status, r.at, r.text, r.extra.get("why", ""))
                         for r in new])
        rep.planned += sum(r.status != "unroutable" for r in new)
        rep.held += sum(r.status == "held" for r in new)
        rep.unroutable += sum(r.status == "unroutable" for r in new)
        for r in new:
            if r.status == "unroutable":
                log.warning("alert %s: no contact to notify (%s)", r.alert_id[:8],
                            r.extra.get("why", ""))
        self._dispatch([*open_rows, *(r for r in new if r.status in OPEN_STATUSES)],
                       alerts, now, rep)

    def _kind(self, s: AlertState) -> str | None:
        act = s.last_action
        if act in ("open", "raise"):
            return "alert" if s.state == "open" else None
        if act == "escalate":
            return f"escalation.{s.top_role}"
        if act in ("rectify", "verify", "dismiss", "reopen"):
            return f"state.{s.state}" if self.policy.notify_state_changes else None
        return None

    def _plan_alert(self, a: Alert, s: AlertState, now: float, existing: set[str],
                    group_due: dict[str, float]) -> list[_Row]:
        kind = self._kind(s)
        if kind is None or s.state is None:
            return []
        level = s.level or a.level
        recips = self.router.recipients(a, roles_for(level, s.escalation))
        if not recips:
            nid = _nid(a.alert_id, s.seq, "", kind)
            if nid in existing:
                return []
            existing.add(nid)
            scope = "/".join(x or "-" for x in self.router.scope(a))
            return [_Row(nid, 0, "unroutable", now, a.alert_id, "", "", "", level, kind,
                         extra={"why": f"no contact for {scope}"})]
        text = self._sms_text(render("alert", self._alert_params(a, level, kind), self.lang))
        out = []
        for r in recips:
            nid = _nid(a.alert_id, s.seq, r.phone_hash, kind)
            if nid in existing:
                continue
            existing.add(nid)
            due, status, why = self._schedule(level, now, r.phone_hash, group_due)
            out.append(_Row(nid, 0, status, due, a.alert_id, r.phone_hash, r.phone_masked,
                            r.role, level, kind, text, extra={"why": why}))
        return out

    def _plan_repeats(self, alerts: Mapping[str, Alert], states: dict[str, AlertState],
                      now: float, existing: set[str], group_due: dict[str, float],
                      open_rows: list[_Row]) -> list[_Row]:
        days = self.policy.repeat_red_days
        if days <= 0:
            return []
        interval = days * 86400.0
        busy = {(r.alert_id, r.phone_hash) for r in open_rows}
        out = []
        for (aid, ph), (t, role, masked) in sorted(self._last_sent().items()):
            s, a = states.get(aid), alerts.get(aid)
            if s is None or a is None or s.state != "open" or (s.level or a.level) != "red":
                continue
            if (aid, ph) in busy:
                continue
            k = math.floor((now - t) / interval)
            if k < 1:
                continue
            nid = _nid(aid, "repeat", round(t * 1000), k, ph)
            if nid in existing:
                continue
            existing.add(nid)
            text = self._sms_text(render("alert", self._alert_params(a, "red", "repeat"),
                                              self.lang))
            due, status, why = self._schedule("red", now, ph, group_due)
            out.append(_Row(nid, 0, status, due, aid, ph, masked, role, "red", "repeat", text,
                            extra={"why": why}))
        return out

    def _schedule(self, level: str, now: float, ph: str,
                  group_due: dict[str, float]) -> tuple[float, str, str]:
        """(due, status, why) of a new notice for one number."""
        p = self.policy
        if level == "red" or p.yellow == "immediate":
            due = group_due.get(ph)
            if due is None:
                due = now + p.group_wait_s
                group_due[ph] = due
            if level != "red" and self._in_quiet(due):
                return self._quiet_end(due), "held", "quiet hours"
            return due, "pending", "group wait"
        due = self._next_slot(now, p.digest_at)
        if self._in_quiet(due):
            due = self._quiet_end(due)
        return due, "held", f"daily digest {p.digest_at.strftime('%H:%M')}"

    # ================================================================== texts
    def _alert_params(self, a: Alert | None, level: str, kind: str,
                      alert_id: str = "") -> dict[str, str]:
        lang = self.lang
        nt = notes(lang)
        if kind == "alert":
            days = self.lifecycle.policy.days(a.rule if a else "", level)
            note = nt[f"alert.{level}"].format(days=f"{days:g}")
        elif kind.startswith("escalation."):
            role = kind.split(".", 1)[1]
            note = nt["escalation"].format(role=ROLE_SHORT[lang].get(role, role))
        elif kind.startswith("state."):
            note = nt.get(kind, "")
        else:
            note = nt["repeat"]
        if a is None:
            return {"level": LEVEL_WORD[lang].get(level, level), "rule": "-", "subject": "-",
                    "time": "-", "code": alert_id[:8], "note": note}
        try:
            t = datetime.fromtimestamp(parse_ts(a.event_ts), self.tz).strftime("%m-%d %H:%M")
        except ValueError:
            t = a.event_ts[:16]
        params = {"level": LEVEL_WORD[lang].get(level, level), "rule": rule_name(a.rule, lang),
                  "subject": self.router.subject_label(a), "time": t, "code": a.alert_id[:8],
                  "note": note}
        return self._fit_params(params)

    @property
    def limits(self) -> SmsLimits:
        """The provider's carrier limits (applied to every message, outbox included)."""
        lim = getattr(self.provider, "limits", None)
        if lim is None:  # a provider that only says how long a variable may be
            lim = SmsLimits(getattr(self.provider, "name", "?"),
                            getattr(self.provider, "param_max_len", None))
        return lim

    def _fit_params(self, params: dict[str, str]) -> dict[str, str]:
        return fit_params(params, self.limits)

    def _sms_text(self, text: str) -> str:
        sign = getattr(self.provider, "sign_name", "") or self.policy.sign_name
        return f"【{sign}】{text}" if sign else text

    def _digest_params(self, ids: list[str], rows: list[_Row],
                       part: tuple[int, int] | None = None) -> dict[str, str]:
        """The digest's variables for the alerts ``ids`` (before the carrier's cut)."""
        lang = self.lang
        levels = Counter(next(x.level for x in rows if x.alert_id == i) for i in ids)
        overdue = len({r.alert_id for r in rows if r.kind.startswith("escalation.")})
        urgent = any(r.level == "red" for r in rows)
        if lang == "zh":
            title = "预警通知" if urgent else "每日汇总"
            parts = [f"{LEVEL_WORD['zh'][lv]}{levels[lv]}条" for lv in ("red", "yellow")
                     if levels.get(lv)]
            summary = "、".join(parts + ([f"其中逾期{overdue}条"] if overdue else []))
            sep = "、"
        else:
            title = "Alerts" if urgent else "Daily digest"
            parts = [f"{levels[lv]} {lv}" for lv in ("red", "yellow") if levels.get(lv)]
            summary = ", ".join(parts + ([f"{overdue} overdue"] if overdue else []))
            sep = ", "
        if part is not None and part[1] > 1:
            marked = f"{title}（{part[0]}/{part[1]}）" if lang == "zh" else f"{title} ({part[0]}/{part[1]})"
            cap = self.limits.param_max_len
            title = marked if cap is None or len(marked) <= cap else title
        return {"title": title, "count": str(len(ids)), "summary": summary,
                "codes": sep.join(i[:8] for i in ids)}

    def _digest_fits(self, ids: list[str], rows: list[_Row]) -> bool:
        """Do these alerts' codes fit one digest SMS (variable cap, segments, length)?"""
        p = self._digest_params(ids, rows, part=(99, 99))
        cap = self.limits.param_max_len
        if cap is not None and len(p["codes"]) > cap:
            return False
        text = self._sms_text(render("digest", self._fit_params(p), self.lang))
        return sms_segments(text) <= self.policy.max_segments and len(text) <= self.limits.max_chars

    def _pack(self, ids: list[str], rows: list[_Row]) -> list[list[str]]:
        """The alerts split into SMS, in order, each as full as the limits allow."""
        groups: list[list[str]] = []
        for i in ids:
            if groups and self._digest_fits([*groups[-1], i], rows):
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _messages(self, rcpt: Recipient, rows: list[_Row], alerts: Mapping[str, Alert],
                  now: float) -> list[tuple[Message, list[_Row]]]:
        """The SMS that carry ``rows`` to one number: one alert → the alert template; more →
        digests, split so that every SMS is within the carrier's limits."""
        rows = sorted(rows, key=lambda r: (r.level != "red", _KIND_ORDER.get(r.kind.split(".")[0], 9),
                                           r.alert_id))
        ids = list(dict.fromkeys(r.alert_id for r in rows))
        groups = self._pack(ids, rows) if len(ids) > 1 else [ids]
        out = []
        for k, g in enumerate(groups):
            grows = [r for r in rows if r.alert_id in g]
            if len(g) == 1:
                r = grows[0]
                params = self._alert_params(alerts.get(r.alert_id), r.level, r.kind, r.alert_id)
                template = "alert"
            else:
                params = self._fit_params(self._digest_params(g, grows, (k + 1, len(groups))))
                template = "digest"
            text = render(template, params, self.lang)
            ph = grows[0].phone_hash
            ref = _nid(ph, round(now * 1000), *sorted(r.notification_id for r in grows))[:20]
            meta = {"to": rcpt.phone_masked, "phone_hash": ph, "role": rcpt.role,
                    "levels": sorted({r.level for r in grows}, key=lambda x: x != "red"),
                    "kinds": sorted({r.kind for r in grows}), "alert_ids": g,
                    "segments": sms_segments(self._sms_text(text))}
            if len(groups) > 1:
                meta["part"] = f"{k + 1}/{len(groups)}"
            out.append((Message(phone=rcpt.phone, template=template, params=params, text=text,
                                ref=ref, at=now, meta=meta), grows))
        return out

    # ================================================================== dispatch
    def _due(self, r: _Row) -> float:
        if r.status != "failed":
            return r.at
        rounds = max(1, r.attempt // self.policy.retry_inline)
        return r.at + min(self.policy.retry_later_s * 2 ** (rounds - 1), self.policy.retry_max_s)

    def _dispatch(self, rows: list[_Row], alerts: Mapping[str, Alert], now: float,
                  rep: NotifyReport) -> None:
        by_ph: dict[str, list[_Row]] = defaultdict(list)
        for r in rows:
            by_ph[r.phone_hash].append(r)
        ready_any = {ph: [r for r in rs if self._due(r) <= now] for ph, rs in by_ph.items()}
        ready_any = {ph: rs for ph, rs in ready_any.items() if rs}
        if not ready_any:
            return
        alerts = dict(alerts)
        missing = {r.alert_id for rs in ready_any.values() for r in rs} - set(alerts)
        alerts.update(self._load_alerts(missing))
        counts = self._sent_counts(now)
        directory = self.router.directory()
        writes: list[tuple[_Row, int, str, float, str, str]] = []
        for ph in sorted(ready_any):
            ready = ready_any[ph]
            if self._in_quiet(now):
                quiet = [r for r in ready if r.level != "red"]
                if quiet:
                    until = self._quiet_end(now)
                    writes += [(r, r.attempt + 1, "held", until, r.text, "quiet hours")
                               for r in quiet]
                    rep.held += len(quiet)
                    ready = [r for r in ready if r.level == "red"]
            if not ready:
                continue
            if counts.get(ph, 0) >= self.policy.daily_cap:
                writes += self._hold_for_cap(ready, now, rep)
                log.info("sms to %s held: daily cap of %d reached (%d notices to the next digest)",
                         ready[0].phone_masked, self.policy.daily_cap, len(ready))
                continue
            rcpt = directory.get(ph)
            if rcpt is None:
                writes += [(r, r.attempt + 1, "unroutable", now, r.text,
                            "number no longer in the reference data") for r in ready]
                rep.unroutable += len(ready)
                log.warning("sms to %s dropped from the queue: number no longer in the "
                            "reference data", ready[0].phone_masked)
                continue
            rcpt = Recipient(rcpt.phone, ready[0].role or rcpt.role, rcpt.name, ph,
                             rcpt.phone_masked)
            parts = self._messages(rcpt, ready, alerts, now)
            room = self.policy.daily_cap - counts.get(ph, 0)
            if len(parts) > room:  # the parts past the cap wait for the next digest
                writes += self._hold_for_cap([r for _, rs in parts[room:] for r in rs], now, rep)
                parts = parts[:room]
            for msg, part_rows in parts:
                writes += self._send_part(msg, part_rows, rcpt, counts, rep)
        self._write(writes)

    def _hold_for_cap(self, rows: list[_Row], now: float,
                      rep: NotifyReport) -> list[tuple[_Row, int, str, float, str, str]]:
        """Notices past the number's daily cap: held for the next day's digest."""
        until = self._next_slot(now, self.policy.digest_at, next_day=True)
        if self._in_quiet(until):
            until = self._quiet_end(until)
        rep.held += len(rows)
        return [(r, r.attempt + 1, "held", until, r.text,
                 f"daily cap {self.policy.daily_cap} reached: next digest") for r in rows]

    def _send_part(self, msg: Message, rows: list[_Row], rcpt: Recipient, counts: dict[str, int],
                   rep: NotifyReport) -> list[tuple[_Row, int, str, float, str, str]]:
        """Send one SMS; the attempts of the notices it carries, to be written."""
        results = self._send(msg)
        text = self._sms_text(msg.text)
        writes = []
        for j, res in enumerate(results, start=1):
            status = "sent" if res.ok else "failed"
            writes += [(r, r.attempt + j, status, msg.at, text, res.error) for r in rows]
        ph = rows[0].phone_hash
        if results[-1].ok:
            counts[ph] = counts.get(ph, 0) + 1
            rep.sms += 1
            rep.sent += len(rows)
            log.info("sms sent to %s (%s) via %s: %d notice(s) %s, %d segment(s)%s",
                     rcpt.phone_masked, rcpt.role, self.provider.name, len(rows),
                     ",".join(i[:8] for i in msg.meta["alert_ids"]), msg.meta["segments"],
                     f", part {msg.meta['part']}" if "part" in msg.meta else "")
        else:
            rep.failed += 1
            log.warning("sms to %s failed after %d tries via %s: %s (retried later)",
                        rcpt.phone_masked, len(results), self.provider.name, results[-1].error)
        return writes

    def _send(self, msg: Message) -> list[SendResult]:
        out: list[SendResult] = []
        n = self.policy.retry_inline
        for i in range(n):
            try:
                res = self.provider.send(msg)
            except ProviderError as exc:  # network, throttling, refused requests: retried
                res = SendResult(False, error=mask_numbers(f"{type(exc).__name__}: {exc}")[:500])
            out.append(res)
            if res.ok:
                break
            log.info("sms to %s: try %d/%d failed: %s", msg.meta.get("to", "?"), i + 1, n,
                     res.error)
            if i < n - 1 and self.policy.retry_backoff_s > 0:
                self.sleep(self.policy.retry_backoff_s * 2 ** i)
        return out

    # ================================================================== store
    def _write(self, items: list[tuple[_Row, int, str, float, str, str]]) -> None:
        if not items:
            return
        pname = self.provider.name
        self.store.insert_dicts("notifications", [
            {"notification_id": f"{r.notification_id}/{attempt}", "attempt": attempt,
             "at_time": at,
             "alert_id": r.alert_id, "phone_masked": r.phone_masked, "phone_hash": r.phone_hash,
             "role": r.role, "level": r.level, "kind": r.kind, "provider": pname,
             "status": status, "text": text, "error": error}
            for r, attempt, status, at, text, error in items])

    def _open_rows(self) -> list[_Row]:
        rows = self.store.query(
            f"SELECT {_NOTICE} AS nid, max(attempt) AS n, argMax(status, attempt) AS st, "
            f"argMax(at_ms, attempt) AS t, any(alert_id) AS aid, any(phone_hash) AS ph, "
            f"any(phone_masked) AS pm, any(role) AS rl, any(level) AS lv, any(kind) AS kd, "
            f"argMax(text, attempt) AS tx "
            f"FROM (SELECT *, {ts_expr(self.store, 'at_time')} AS at_ms FROM {self.table}) "
            f"GROUP BY nid HAVING st IN ('pending', 'held', 'failed')")
        return [_Row(r["nid"], int(r["n"]), r["st"], int(r["t"]) / 1000.0, r["aid"], r["ph"],
                     r["pm"], r["rl"], r["lv"], r["kd"], r["tx"]) for r in rows]

    def _existing_ids(self, alert_ids: list[str]) -> set[str]:
        if not alert_ids:
            return set()
        where = (f" WHERE alert_id IN {in_list(alert_ids)}" if len(alert_ids) <= _IN_LIMIT
                 else "")
        rows = self.store.query(f"SELECT DISTINCT {_NOTICE} AS nid FROM {self.table}{where}")
        return {r["nid"] for r in rows}

    def _last_sent(self) -> dict[tuple[str, str], tuple[float, str, str]]:
        """(alert, number) → (last time a non-repeat notice was sent, role, masked number)."""
        rows = self.store.query(
            f"SELECT alert_id, phone_hash, max(at_ms) AS t, any(role) AS rl, "
            f"any(phone_masked) AS pm FROM (SELECT *, {ts_expr(self.store, 'at_time')} AS at_ms "
            f"FROM {self.table} WHERE status = 'sent' AND kind != 'repeat') "
            f"GROUP BY alert_id, phone_hash")
        return {(r["alert_id"], r["phone_hash"]): (int(r["t"]) / 1000.0, r["rl"], r["pm"])
                for r in rows}

    def _sent_counts(self, now: float) -> dict[str, int]:
        """SMS sent per number in the local day of ``now``."""
        start, end = self._day_bounds(now)
        e = ts_expr(self.store, "at_time")
        rows = self.store.query(
            f"SELECT phone_hash, uniqExact(at_time, text) AS n FROM {self.table} "
            f"WHERE status = 'sent' AND {e} >= {int(start * 1000)} AND {e} < {int(end * 1000)} "
            f"GROUP BY phone_hash")
        return {r["phone_hash"]: int(r["n"]) for r in rows}

    def _load_alerts(self, ids: Iterable[str]) -> dict[str, Alert]:
        out = self.store.current_alerts(ids)
        self._alerts.update(out)
        return out

    def _alerts_for(self, ids: Iterable[str]) -> dict[str, Alert]:
        """The current version of each alert: the store's, else the one last given."""
        ids = set(ids)
        out = self._load_alerts(ids)
        for i in ids - set(out):
            if i in self._alerts:
                out[i] = self._alerts[i]
        return out

    def _unseen(self, now: float) -> list[str]:
        """Alerts in the store without a history, detected within ``adopt_days``."""
        days = self.policy.adopt_days
        if days <= 0:
            return []
        e = ts_expr(self.store, "detected_time")
        rows = self.store.query(
            f"SELECT alert_id FROM {self.store.current_alerts_sql()} "
            f"WHERE {e} <= {int(now * 1000)} AND {e} >= {int((now - days * 86400) * 1000)} "
            f"AND alert_id NOT IN (SELECT alert_id FROM {self.store.db}.alert_history)")
        return [r["alert_id"] for r in rows]

    # ================================================================== local time
    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.tz)

    def _at(self, d: date, hm: dtime) -> float:
        return datetime.combine(d, hm, tzinfo=self.tz).timestamp()

    def _in_quiet(self, t: float) -> bool:
        qs, qe = self.policy.quiet_start, self.policy.quiet_end
        if qs is None or qe is None or qs == qe:
            return False
        tod = self._local(t).time()
        return qs <= tod < qe if qs < qe else (tod >= qs or tod < qe)

    def _quiet_end(self, t: float) -> float:
        """The end of the quiet hours that ``t`` falls in."""
        qe = self.policy.quiet_end
        assert qe is not None
        d = self._local(t).date()
        end = self._at(d, qe)
        return end if end > t else self._at(d + timedelta(days=1), qe)

    def _next_slot(self, t: float, hm: dtime, next_day: bool = False) -> float:
        d = self._local(t).date() + timedelta(days=1 if next_day else 0)
        s = self._at(d, hm)
        return s if s >= t else self._at(d + timedelta(days=1), hm)

    def _day_bounds(self, t: float) -> tuple[float, float]:
        d = self._local(t).date()
        return self._at(d, dtime(0)), self._at(d + timedelta(days=1), dtime(0))


def outbox_summary(rows: Iterable[dict[str, Any]]) -> Counter:
    """SMS in an outbox by (role, level): an SMS counts as red when it carries a red alert."""
    c: Counter = Counter()
    for r in rows:
        levels = r.get("levels") or []
        c[(r.get("role", ""), "red" if "red" in levels else (levels[0] if levels else ""))] += 1
    return c

