"""``payment.*`` rules on village bank-card payments (村务卡), except ``payment.unusual``.

One state per village. Per-record rules (``no_approval``, ``cash``,
``conflict_of_interest``) are judged as soon as a payment arrives. Window
rules (``split``, ``duplicate``) are judged in event time: a payment waits in
a small buffer until the watermark has passed it, then the buffered payments
are taken in ``(t, payment_id)`` order. So records that arrive out of order
within the engine's lateness give exactly the alerts (and ids) of a sorted
replay. A record later than that (behind the watermark) is still judged at
once against the payments kept; an incident it joins keeps the id it had.

Window semantics (``W`` = the rule's window, inclusive: ``Δt ≤ W``):

* ``payment.split``: per payee, payments each below the approval threshold.
  A payment joins an open group of that payee if the group still spans at
  most ``W`` with it; otherwise, if the payments not yet in a group within
  ``W`` before it (itself included, two or more) reach the threshold, they
  open a group anchored on the earliest. A payment is in at most one group;
  a growing group is re-emitted with the same id and ``version`` + 1.
* ``payment.duplicate``: per payee and amount (in cents), a payment with a
  match within ``W`` either side joins the open group (span ≤ ``W``) or opens
  one with its matches not yet grouped, anchored on the earliest of them (a
  match already in an older group is listed too, as what it duplicates).

State stays bounded: payments, incidents and the ids used to drop redelivered
records (with their content fingerprints) are kept for the longest window
behind the watermark (swept at most once a day of event time); a record older
than that gets the per-record rules only. A ``payment_id`` seen again with
other content is set aside (the first one taken stays, see
:func:`~lianwatch.engine.detector.redelivery`).

>>> from lianwatch.engine import Engine
>>> from lianwatch.reference import Reference
>>> from lianwatch.rules import RuleSet
>>> eng = Engine([PaymentDetector()], RuleSet(), Reference())
>>> ev = {"_s": "payments", "t": 0.0, "payment_id": "P1", "village_id": "VL1",
...       "amount_yuan": 6000.0, "channel": "cash", "payee_id": "X", "approval_id": None}
>>> [a.rule for a in eng.process(ev)], eng.process(dict(ev))
(['payment.cash'], [])
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from lianwatch.engine.detector import Ctx, Detector, Step, forget_before, redelivery
from lianwatch.models.alert import Alert

__all__ = [
    "PaymentDetector",
    "VillagePayments",
    "cents",
    "yuan",
    "buffer_add",
    "buffer_pop_due",
    "DAY",
    "ROLE_ZH",
]

DAY = 86400.0
_NEG_INF = float("-inf")

NO_APPROVAL = "payment.no_approval"
CASH = "payment.cash"
CONFLICT = "payment.conflict_of_interest"
SPLIT = "payment.split"
DUPLICATE = "payment.duplicate"

ROLE_ZH = {
    "secretary": "书记",
    "director": "主任",
    "accountant": "报账员",
    "supervisor": "监委会主任",
    "town_discipline": "镇纪委",
    "county_discipline": "县纪委",
}

# entry of a payee's list: [t, payment_id, cents, split_anchor, dup_anchor]
_T, _ID, _C, _SA, _DA = range(5)


def cents(amount: float) -> int:
    """Money compared exactly: yuan → integer cents (half away from zero)."""
    return int(amount * 100 + (0.5 if amount >= 0 else -0.5))


def yuan(amount: float, always_cents: bool = True) -> str:
    """``¥80,000.00``; with ``always_cents=False`` a whole amount drops ``.00``."""
    c = cents(amount)
    if not always_cents and c % 100 == 0:
        return f"¥{c // 100:,}"
    return f"¥{c / 100:,.2f}"


def _days(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------- event-time buffer
def buffer_add(pending: list, ev: dict[str, Any], id_field: str) -> None:
    """Insert an event into a list of ``(t, id, ev)`` kept sorted by ``(t, id)``."""
    item = (ev["t"], ev[id_field], ev)
    i = bisect.bisect_left(pending, item[:2], key=lambda x: x[:2])
    pending.insert(i, item)


def buffer_pop_due(pending: list, before: float | None,
                   through: float | None = None) -> list[dict[str, Any]]:
    """Remove and return (in order) the events with ``t < before`` or ``t ≤ through``
    (all of them if ``before`` is None).

    A timer passes the watermark as ``before`` and the wake it was called for as
    ``through``: an event at exactly the watermark may still have company coming
    (another record of the same instant), unless the engine's tick said that
    instant is done (inclusive firing, ``through == watermark``).
    """
    if before is None:
        due = [x[2] for x in pending]
        pending.clear()
        return due
    n = 0
    while n < len(pending):
        t = pending[n][0]
        if not (t < before or (through is not None and t <= through)):
            break
        n += 1
    due = [x[2] for x in pending[:n]]
    del pending[:n]
    return due


# ------------------------------------------------------------------------ state
@dataclass
class VillagePayments:
    """One village's recent payments (bounded by the longest window)."""

    village_id: str
    #: payment_id → (t, content fingerprint) of every payment kept (redeliveries)
    seen: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: (t, payment_id, event) waiting for the watermark, sorted
    pending: list = field(default_factory=list)
    #: payee_id → entries [t, payment_id, cents, split_anchor, dup_anchor], sorted by (t, id)
    payees: dict[str, list[list]] = field(default_factory=dict)
    #: anchor payment_id → split incident
    split: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: anchor payment_id → duplicate incident
    dup: dict[str, dict[str, Any]] = field(default_factory=dict)
    swept_at: float = _NEG_INF
    wake: float | None = None


class PaymentDetector(Detector[VillagePayments]):
    name = "payments"
    streams = ("payments",)
    rules = (NO_APPROVAL, SPLIT, CONFLICT, DUPLICATE, CASH)

    def key(self, ev: dict[str, Any], ctx: Ctx) -> str | None:
        return ev.get("village_id") or None

    def new_state(self, key: str, ctx: Ctx) -> VillagePayments:
        return VillagePayments(village_id=key)

    # ----------------------------------------------------------------- hooks
    def on_event(self, st: VillagePayments, ev: dict[str, Any], ctx: Ctx) -> Step[VillagePayments]:
        fp, again = redelivery(st.seen, ev, ctx, "payment_id")
        if again is not None:
            return Step(st, (), again)  # judged already (or a conflicting copy: set aside)
        t = ev["t"]
        st.seen[ev["payment_id"]] = (t, fp)
        rules = ctx.rules.payment_for(st.village_id)
        alerts = self._per_record(st, ev, ctx, rules)
        keep = max(rules.split_window_days, rules.duplicate_window_days) * DAY
        if t < ctx.watermark - keep:
            pass  # older than anything kept: the window rules cannot be judged
        elif t < ctx.watermark:
            alerts += self._windows(st, [ev], ctx, rules)  # late: judge now
        else:
            buffer_add(st.pending, ev, "payment_id")
        st.wake = st.pending[0][0] if st.pending else None
        self._sweep(st, ctx.watermark - keep)
        return Step(st, alerts)

    def on_timer(self, st: VillagePayments, key: str, ctx: Ctx) -> Step[VillagePayments]:
        return self._drain(st, ctx, ctx.watermark, st.wake)

    def on_flush(self, st: VillagePayments, key: str, ctx: Ctx) -> Step[VillagePayments]:
        if not st.pending:
            return Step(st)
        return self._drain(st, ctx, None, None)

    def _drain(self, st: VillagePayments, ctx: Ctx, before: float | None,
               through: float | None) -> Step[VillagePayments]:
        due = buffer_pop_due(st.pending, before, through)
        rules = ctx.rules.payment_for(st.village_id)
        alerts = self._windows(st, due, ctx, rules) if due else []
        st.wake = st.pending[0][0] if st.pending else None
        keep = max(rules.split_window_days, rules.duplicate_window_days) * DAY
        self._sweep(st, ctx.watermark - keep)
        return Step(st, alerts)

    # ------------------------------------------------------ per-record rules
    def _per_record(self, st: VillagePayments, ev: dict[str, Any], ctx: Ctx, rules) -> list[Alert]:
        out: list[Alert] = []
        vid = st.village_id
        pid = ev["payment_id"]
        amount = ev["amount_yuan"]
        c = cents(amount)
        payee = ev["payee_id"]
        payee_name = ev.get("payee_name") or payee
        base_ev = {"payment_id": pid, "ts": ctx.ts(ev["t"]), "amount_yuan": c / 100,
                   "payee_id": payee, "payee_name": ev.get("payee_name", ""),
                   "channel": ev["channel"], "category": ev.get("category"),
                   "purpose": ev.get("purpose", "")}

        if ctx.rules.enabled(NO_APPROVAL) and ev.get("approval_id") is None:
            line = ctx.ref.approval_threshold(vid, rules.approval_threshold_yuan)
            if c >= cents(line):
                out.append(ctx.alert(
                    NO_APPROVAL, "red", "village", vid, [pid], ev["t"],
                    (f"村务卡大额支付未经审批：{yuan(amount)}（审批线 {yuan(line, False)}）",
                     f"Payment of {yuan(amount)} without approval (line {yuan(line, False)})"),
                    {**base_ev, "approval_threshold_yuan": line, "approval_id": None},
                    [pid], village_id=vid))

        if ctx.rules.enabled(CASH) and ev["channel"] == "cash":
            limit = rules.cash_limit_yuan
            if c > cents(limit):
                out.append(ctx.alert(
                    CASH, "yellow", "village", vid, [pid], ev["t"],
                    (f"大额现金支付：{yuan(amount)}（现金限额 {yuan(limit, False)}）",
                     f"Cash payment of {yuan(amount)} (cash limit {yuan(limit, False)})"),
                    {**base_ev, "cash_limit_yuan": limit},
                    [pid], village_id=vid))

        if ctx.rules.enabled(CONFLICT):
            officials = ctx.ref.related_officials(vid, payee)
            if officials:
                who = [{"person_id": o.person_id, "name": o.name, "role": o.role}
                       for o in sorted(officials, key=lambda o: o.person_id)]
                first = who[0]
                more = f"等 {len(who)} 人" if len(who) > 1 else ""
                more_en = f" and {len(who) - 1} more" if len(who) > 1 else ""
                role_zh = ROLE_ZH.get(first["role"], first["role"])
                out.append(ctx.alert(
                    CONFLICT, "red", "village", vid, [pid], ev["t"],
                    (f"向村干部关联方支付：{first['name']}（{role_zh}）{more}关联"
                     f"「{payee_name}」，{yuan(amount)}",
                     f"Payment of {yuan(amount)} to {payee_name}, tied to official "
                     f"{first['name']} ({first['role']}){more_en}"),
                    {**base_ev, "officials": who},
                    [pid], village_id=vid))
        return out

    # ---------------------------------------------------------- window rules
    def _windows(self, st: VillagePayments, evs: list[dict[str, Any]], ctx: Ctx,
                 rules) -> list[Alert]:
        do_split = ctx.rules.enabled(SPLIT)
        do_dup = ctx.rules.enabled(DUPLICATE)
        if not (do_split or do_dup):
            return []
        line_c = cents(ctx.ref.approval_threshold(st.village_id, rules.approval_threshold_yuan))
        w_split = rules.split_window_days * DAY
        w_dup = rules.duplicate_window_days * DAY
        changed_split: dict[str, None] = {}
        changed_dup: dict[str, None] = {}
        names: dict[str, str] = {}
        for ev in evs:
            payee = ev["payee_id"]
            if ev.get("payee_name"):
                names[payee] = ev["payee_name"]
            entries = st.payees.setdefault(payee, [])
            e = [ev["t"], ev["payment_id"], cents(ev["amount_yuan"]), None, None]
            i = bisect.bisect_left(entries, (e[_T], e[_ID]), key=lambda x: (x[_T], x[_ID]))
            entries.insert(i, e)
            if do_split and e[_C] < line_c:
                # the new payment, then (if it came late) the later ones it may now complete
                for q in entries[i:]:
                    if q[_T] > e[_T] + w_split:
                        break
                    if q[_SA] is None and q[_C] < line_c:
                        a = self._try_split(st, payee, entries, q, w_split, line_c)
                        if a is not None:
                            changed_split[a] = None
            if do_dup and e[_C] > 0:
                for q in entries[i:]:
                    if q[_T] > e[_T] + w_dup:
                        break
                    if q[_DA] is None and q[_C] == e[_C]:
                        a = self._try_dup(st, payee, entries, q, w_dup)
                        if a is not None:
                            changed_dup[a] = None
        out: list[Alert] = []
        for a in changed_split:
            out.append(self._split_alert(st, st.split[a], ctx, rules, line_c, names))
        for a in changed_dup:
            out.append(self._dup_alert(st, st.dup[a], ctx, rules, names))
        return out

    @staticmethod
    def _join(inc: dict[str, Any], q: list, key: int) -> None:
        ids = inc["ids"]
        pos = bisect.bisect_left(ids, (q[_T], q[_ID]), key=lambda x: (x[0], x[1]))
        ids.insert(pos, (q[_T], q[_ID], q[_C]))
        inc["first_t"] = ids[0][0]
        inc["last_t"] = ids[-1][0]
        q[key] = inc["anchor"]

    def _try_split(self, st: VillagePayments, payee: str, entries: list[list], q: list,
                   w: float, line_c: int) -> str | None:
        """Put ``q`` in a split group if it belongs to one; return the group's anchor."""
        t = q[_T]
        best = None
        for inc in st.split.values():
            if inc["payee"] == payee and max(inc["last_t"], t) - min(inc["first_t"], t) <= w:
                if best is None or (inc["first_t"], inc["anchor"]) < (best["first_t"], best["anchor"]):
                    best = inc
        if best is not None:
            self._join(best, q, _SA)
            return best["anchor"]
        # payments not yet grouped within w before q (q included)
        j = entries.index(q)
        group = []
        total = 0
        for k in range(j, -1, -1):
            p = entries[k]
            if t - p[_T] > w:
                break
            if p[_SA] is None and p[_C] < line_c:
                group.append(p)
                total += p[_C]
        if len(group) < 2 or total < line_c:
            return None
        group.reverse()
        anchor = group[0][_ID]
        inc = {"anchor": anchor, "payee": payee, "ids": [], "first_t": t, "last_t": t,
               "version": 0}
        for p in group:
            self._join(inc, p, _SA)
        st.split[anchor] = inc
        return anchor

    def _try_dup(self, st: VillagePayments, payee: str, entries: list[list], q: list,
                 w: float) -> str | None:
        t, c = q[_T], q[_C]
        j = entries.index(q)
        matches = []
        for k in range(j - 1, -1, -1):
            p = entries[k]
            if t - p[_T] > w:
                break
            if p[_C] == c:
                matches.append(p)
        for k in range(j + 1, len(entries)):
            p = entries[k]
            if p[_T] - t > w:
                break
            if p[_C] == c:
                matches.append(p)
        if not matches:
            return None
        best = None
        for inc in st.dup.values():
            if (inc["payee"] == payee and inc["cents"] == c
                    and max(inc["last_t"], t) - min(inc["first_t"], t) <= w):
                if best is None or (inc["first_t"], inc["anchor"]) < (best["first_t"], best["anchor"]):
                    best = inc
        if best is not None:
            self._join(best, q, _DA)
            return best["anchor"]
        members = sorted([p for p in matches if p[_DA] is None] + [q],
                         key=lambda x: (x[_T], x[_ID]))
        anchor = members[0][_ID]
        inc = {"anchor": anchor, "payee": payee, "cents": c, "ids": [], "first_t": t,
               "last_t": t, "version": 0, "refs": []}
        for p in members:
            self._join(inc, p, _DA)
        grouped = [p for p in matches if p[_DA] is not None and p[_DA] != anchor]
        if grouped:  # what it duplicates, already in an older group: the nearest one
            near = min(grouped, key=lambda p: (abs(p[_T] - t), p[_ID]))
            inc["refs"] = [(near[_T], near[_ID], near[_C])]
        st.dup[anchor] = inc
        return anchor

    def _split_alert(self, st, inc, ctx: Ctx, rules, line_c: int, names) -> Alert:
        inc["version"] += 1
        vid = st.village_id
        payee = inc["payee"]
        name = names.get(payee) or inc.get("payee_name") or payee
        inc["payee_name"] = name
        ids = inc["ids"]
        total = sum(x[2] for x in ids)
        n = len(ids)
        wd = _days(rules.split_window_days)
        line = line_c / 100
        return ctx.alert(
            SPLIT, "red", "village", vid, [inc["anchor"]], inc["last_t"],
            (f"疑似拆分支付规避审批：{wd} 天内向「{name}」支付 {n} 笔，合计 {yuan(total / 100)}"
             f"（审批线 {yuan(line, False)}）",
             f"Suspected split payment: {n} payments to {name} within {wd} days, "
             f"total {yuan(total / 100)} (line {yuan(line, False)})"),
            {"payee_id": payee, "payee_name": name, "count": n, "total_yuan": total / 100,
             "approval_threshold_yuan": line, "window_days": rules.split_window_days,
             "first_ts": ctx.ts(inc["first_t"]), "last_ts": ctx.ts(inc["last_t"]),
             "span_days": round((inc["last_t"] - inc["first_t"]) / DAY, 2),
             "payments": [{"payment_id": p, "ts": ctx.ts(t), "amount_yuan": c / 100}
                          for t, p, c in ids]},
            [p for _, p, _ in ids], village_id=vid, version=inc["version"])

    def _dup_alert(self, st, inc, ctx: Ctx, rules, names) -> Alert:
        inc["version"] += 1
        vid = st.village_id
        payee = inc["payee"]
        name = names.get(payee) or inc.get("payee_name") or payee
        inc["payee_name"] = name
        listed = sorted(inc["ids"] + inc["refs"], key=lambda x: (x[0], x[1]))
        n = len(listed)
        amount = inc["cents"] / 100
        wd = _days(rules.duplicate_window_days)
        return ctx.alert(
            DUPLICATE, "yellow", "village", vid, [inc["anchor"]], inc["last_t"],
            (f"疑似重复支付：{wd} 天内向「{name}」支付 {n} 笔相同金额 {yuan(amount)}",
             f"Possible duplicate payment: {n} payments of {yuan(amount)} to {name} "
             f"within {wd} days"),
            {"payee_id": payee, "payee_name": name, "amount_yuan": amount, "count": n,
             "window_days": rules.duplicate_window_days,
             "first_ts": ctx.ts(listed[0][0]), "last_ts": ctx.ts(listed[-1][0]),
             "span_days": round((listed[-1][0] - listed[0][0]) / DAY, 2),
             "duplicates_of": [p for _, p, _ in inc["refs"]],
             "payments": [{"payment_id": p, "ts": ctx.ts(t)} for t, p, _ in listed]},
            [p for _, p, _ in listed], village_id=vid, version=inc["version"])

    # --------------------------------------------------------------- bounding
    @staticmethod
    def _sweep(st: VillagePayments, horizon: float) -> None:
        """Forget what is older than every window (at most once per day of event time)."""
        if horizon == _NEG_INF or horizon - st.swept_at < DAY:
            return
        st.swept_at = horizon
        for payee in list(st.payees):
            entries = st.payees[payee]
            k = 0
            while k < len(entries) and entries[k][_T] < horizon:
                k += 1
            if k:
                del entries[:k]
            if not entries:
                del st.payees[payee]
        for incs in (st.split, st.dup):
            for a in [a for a, inc in incs.items() if inc["last_t"] < horizon]:
                del incs[a]
        st.seen = forget_before(st.seen, horizon, keep=(x[1] for x in st.pending))
