"""Village bank-card payments, day by day, with injected incidents.

Normal flow (per village, per working day, 1–4 payments, 08:30–17:30):

* amounts log-normal per (village, category), capped at 0.4 × threshold;
  payments at or above the threshold only as approved engineering payments
  to a town's contractors, which never receive anything else;
* per (village, payee) the sum over any 31 days stays <= 0.6 × threshold
  [split: >= threshold];
* never the same (payee, amount) twice within 8 days [duplicate: 7 days];
* cash only for amounts <= 5000 [cash: > 5000];
* never a payee tied to any official (of any village).

Incidents and look-alikes use payees created for them alone, so they cannot
interact with the normal flow or with each other.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import orjson

from . import names
from .county import Payee, Village, World
from .writer import DAY, Clock, EventWriter

H = 3600.0

# category, weight, base median (yuan)
CATS = [
    ("labor", 0.28, 2800.0),
    ("procurement", 0.22, 5200.0),
    ("subsidy", 0.15, 1200.0),
    ("services", 0.17, 3600.0),
    ("engineering", 0.08, 14000.0),
    ("office", 0.06, 900.0),
    ("travel", 0.025, 650.0),
    ("reception", 0.015, 1100.0),
    ("other", 0.01, 1500.0),
]
_CAT_NAMES = [c for c, _, _ in CATS]
_CAT_CUM = []
_acc = 0.0
for _c, _w, _m in CATS:
    _acc += _w
    _CAT_CUM.append(_acc)


@dataclass
class Book:
    v: Village
    median: dict[str, float]
    companies: list[Payee]
    company_cum: list[float]
    persons: list[Payee]
    person_cum: list[float]
    seq: int = 0
    approvals: int = 0
    win: dict[str, deque] = field(default_factory=dict)  # payee -> deque[(t, amount)]
    recent: dict[tuple[str, float], float] = field(default_factory=dict)
    last_big: dict[str, float] = field(default_factory=dict)


def _cum(n: int) -> list[float]:
    out, acc = [], 0.0
    for i in range(n):
        acc += 1.0 / (i + 1) ** 0.9
        out.append(acc)
    return out


class Payments:
    def __init__(self, world: World, clock: Clock, writer: EventWriter, labels: list[dict], lookalikes: list[dict]):
        cfg = world.cfg
        self.world = world
        self.cfg = cfg
        self.clock = clock
        self.w = writer
        self.labels = labels
        self.lookalikes = lookalikes
        self.rng = random.Random(f"{cfg.seed}:payments")
        self.books: list[Book] = []
        for v in world.villages:
            comps = [c for c in world.town_companies[v.town] if c.payee_id not in world.related_all]
            persons = world.village_persons[v.idx]
            med = {c: m * v.scale * self.rng.uniform(0.8, 1.25) for c, _, m in CATS}
            self.books.append(Book(v, med, comps, _cum(len(comps)), persons, _cum(len(persons))))
        self.special: dict[int, list[dict]] = {}
        self.groups: dict[str, dict] = {}
        self.redeliver_days: set[int] = set()
        self.redeliver_done = 0
        self.first_day = -cfg.history_days
        self._schedule()

    # ------------------------------------------------------------------ helpers
    def _workday(self, d: int) -> bool:
        return self.clock.date_of(d).weekday() < 5

    def _workdays(self, lo: int, hi: int) -> list[int]:
        return [d for d in range(lo, hi + 1) if self._workday(d)]

    def _t(self, d: int, lo: float = 9.0, hi: float = 16.5) -> int:
        return int(d * DAY + self.rng.uniform(lo, hi) * H)

    def _add(self, d: int, t: int, vb: Book, payee: Payee, amount: float, category: str, channel: str,
             approval: str | None = None, group: str | None = None) -> None:
        self.special.setdefault(d, []).append(
            {
                "t": t,
                "vi": vb.v.idx,
                "payee": payee,
                "amount": round(amount, 2),
                "category": category,
                "channel": channel,
                "approval": approval,
                "group": group,
            }
        )

    def _group(self, key: str, n: int, rule: str, level: str | None, vb: Book, note: str, look: bool = False) -> str:
        self.groups[key] = {"n": n, "rule": rule, "level": level, "subject": vb.v.village_id, "note": note,
                            "ids": [], "look": look, "t": None}
        return key

    def _approval_id(self, vb: Book, t: float) -> str:
        vb.approvals += 1
        ym = self.clock.date_str(int(t // DAY))[:7].replace("-", "")
        return f"SP-{vb.v.village_id}-{ym}-{vb.approvals:03d}"

    # ------------------------------------------------------------------ schedule of incidents
    def _schedule(self) -> None:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:pay-schedule")
        w = self.world
        k = max(3, round(cfg.villages / 10))
        la = max(2, k // 2)
        last = cfg.days - 1
        win_days = self._workdays(0, last) or list(range(0, last + 1))
        all_days = self._workdays(self.first_day, last) or list(range(self.first_day, last + 1))
        books = self.books

        def vb_pick() -> Book:
            return books[rng.randrange(len(books))]

        # payment.no_approval
        for i in range(k):
            vb = vb_pick()
            thr = vb.v.threshold
            amount = round(thr * rng.uniform(1.1, 2.2), -2)
            d = rng.choice(win_days)
            g = self._group(f"na{i}", 1, "payment.no_approval", "red", vb,
                            f"{amount:.0f} >= threshold {thr} without approval")
            payee = w.new_company(vb.v.town, "engineering")
            self._add(d, self._t(d), vb, payee, amount, "engineering", "transfer", None, g)
            if i < la:  # look-alike: the same amount, approved
                d2 = rng.choice(win_days)
                g2 = self._group(f"na-ok{i}", 1, "payment.no_approval", None, vb, f"{amount:.0f} with approval", True)
                t2 = self._t(d2)
                self._add(d2, t2, vb, w.new_company(vb.v.town, "engineering"), amount, "engineering", "transfer",
                          self._approval_id(vb, t2), g2)
                d3 = rng.choice(win_days)
                g3 = self._group(f"na-below{i}", 1, "payment.no_approval", None, vb,
                                 f"{thr - 100} just below threshold {thr}, payee paid nothing else", True)
                self._add(d3, self._t(d3), vb, w.new_company(vb.v.town, "engineering"), thr - 100, "engineering",
                          "transfer", None, g3)

        # payment.split
        for i in range(k):
            vb = vb_pick()
            thr = vb.v.threshold
            n = 3 if i % 2 == 0 else 2
            frac = (0.37, 0.45) if n == 3 else (0.55, 0.65)
            amounts: list[float] = []
            while len(amounts) < n:
                a = round(thr * rng.uniform(*frac), -1)
                if a not in amounts:
                    amounts.append(a)
            starts = [d for d in win_days if d <= last - 10] or win_days
            d = rng.choice(starts)
            payee = w.new_company(vb.v.town, "engineering")
            g = self._group(f"sp{i}", n, "payment.split", "red", vb,
                            f"{n} payments {' + '.join(f'{a:.0f}' for a in amounts)} = {sum(amounts):.0f} >= {thr}")
            for a in amounts:
                self._add(d, self._t(d), vb, payee, a, rng.choice(["engineering", "procurement"]),
                          rng.choice(["transfer", "transfer", "card"]), None, g)
                nd = d + rng.randint(1, 4)
                while nd <= last and not self._workday(nd):
                    nd += 1
                d = min(nd, last)
            if i < la:  # look-alike: two within 30 days, sum below the threshold
                vb2 = vb_pick()
                thr2 = vb2.v.threshold
                a1, a2 = round(thr2 * rng.uniform(0.25, 0.33), -1), round(thr2 * rng.uniform(0.34, 0.4), -1)
                d1 = rng.choice(all_days[: max(1, len(all_days) - 5)])
                d2 = min(last, d1 + rng.randint(5, 20))
                p2 = w.new_company(vb2.v.town, "procurement")
                g2 = self._group(f"sp-low{i}", 2, "payment.split", None, vb2,
                                 f"{a1:.0f} + {a2:.0f} < threshold {thr2} within 30 days", True)
                self._add(d1, self._t(d1), vb2, p2, a1, "procurement", "transfer", None, g2)
                self._add(d2, self._t(d2), vb2, p2, a2, "procurement", "transfer", None, g2)
                # look-alike: two large ones more than 30 days apart (needs history)
                if last - self.first_day >= 36:
                    vb3 = vb_pick()
                    thr3 = vb3.v.threshold
                    d1 = rng.randint(self.first_day, last - 34)
                    d2 = min(last, d1 + rng.randint(33, 36))
                    while not self._workday(d2) and d2 < last:
                        d2 += 1
                    a1, a2 = round(thr3 * rng.uniform(0.55, 0.62), -1), round(thr3 * rng.uniform(0.55, 0.62), -1)
                    p3 = w.new_company(vb3.v.town, "engineering")
                    g3 = self._group(f"sp-far{i}", 2, "payment.split", None, vb3,
                                     f"{a1:.0f} and {a2:.0f} to one payee {d2 - d1} days apart", True)
                    self._add(d1, self._t(d1), vb3, p3, a1, "engineering", "transfer", None, g3)
                    self._add(d2, self._t(d2), vb3, p3, a2, "engineering", "transfer", None, g3)

        # payment.conflict_of_interest
        order = list(range(len(books)))
        rng.shuffle(order)
        for i in range(k):
            vb = books[order[i % len(order)]]
            rel = sorted(w.related_of_village[vb.v.idx])
            payee_id = rel[rng.randrange(len(rel))]
            payee = self._company_by_id(payee_id, vb.v.town)
            amount = round(vb.v.threshold * rng.uniform(0.1, 0.35), 2)
            d = rng.choice(win_days)
            off = next(o for o in w.officials if o.village_id == vb.v.village_id and payee_id in o.related)
            g = self._group(f"coi{i}", 1, "payment.conflict_of_interest", "red", vb,
                            f"payee tied to {off.role} {off.name} ({off.person_id})")
            cat = payee.category if payee.category in _CAT_NAMES else "procurement"
            self._add(d, self._t(d), vb, payee, amount, cat, "transfer", None, g)
            if i < la:  # look-alike: tied to an official of another village
                others = [b for b in books if b.v.idx != vb.v.idx and payee_id not in w.related_of_village[b.v.idx]]
                if others:
                    vb2 = others[rng.randrange(len(others))]
                    a2 = round(vb2.v.threshold * rng.uniform(0.1, 0.3), 2)
                    d2 = rng.choice(win_days)
                    g2 = self._group(f"coi-other{i}", 1, "payment.conflict_of_interest", None, vb2,
                                     f"payee tied to an official of {vb.v.village_id}, not of {vb2.v.village_id}", True)
                    self._add(d2, self._t(d2), vb2, payee, a2, cat, "transfer", None, g2)

        # payment.duplicate
        for i in range(k):
            vb = vb_pick()
            amount = round(rng.uniform(2000, min(15000, 0.3 * vb.v.threshold)), rng.choice([0, 2]))
            d = rng.choice([x for x in win_days if x <= last - 1] or win_days)
            d2 = min(last, d + rng.randint(1, 4))  # at most 4 days + a few hours apart [7 days]
            while d2 > d and not self._workday(d2):
                d2 -= 1
            payee = w.new_company(vb.v.town, "services")
            cat = rng.choice(["services", "procurement"])
            g = self._group(f"dup{i}", 2, "payment.duplicate", "yellow", vb,
                            f"{amount:.2f} to the same payee twice, {d2 - d} days apart")
            t1 = self._t(d)
            t2 = self._t(d2) if d2 != d else t1 + int(rng.uniform(0.5, 3) * H)
            self._add(d, t1, vb, payee, amount, cat, "transfer", None, g)
            self._add(d2, t2, vb, payee, amount, cat, rng.choice(["transfer", "card"]), None, g)
            if i < la and last - self.first_day >= 31:  # look-alike: monthly fee, 30 days apart
                vb2 = vb_pick()
                a2 = round(rng.uniform(2000, 6000), -1)
                d1 = rng.randint(self.first_day, last - 30)
                while not (self._workday(d1) and self._workday(d1 + 30)) and d1 > self.first_day:
                    d1 -= 1
                p2 = w.new_company(vb2.v.town, "services")
                g2 = self._group(f"dup-monthly{i}", 2, "payment.duplicate", None, vb2,
                                 f"monthly fee {a2:.2f}, 30 days apart", True)
                t1 = self._t(d1)
                self._add(d1, t1, vb2, p2, a2, "services", "transfer", None, g2)
                self._add(d1 + 30, t1 + 30 * DAY, vb2, p2, a2, "services", "transfer", None, g2)
        if self.cfg.duplicates:
            wd = list(win_days)
            rng.shuffle(wd)
            self.redeliver_days = set(wd[:la])

        # payment.cash
        for i in range(k):
            vb = vb_pick()
            amount = round(rng.uniform(6000, min(20000, 0.4 * vb.v.threshold)), -1)
            d = rng.choice(win_days)
            g = self._group(f"cash{i}", 1, "payment.cash", "yellow", vb, f"cash {amount:.0f} > 5000")
            self._add(d, self._t(d), vb, w.new_person(vb.v), amount, rng.choice(["subsidy", "labor"]), "cash", None, g)
            if i < la:
                vb2 = vb_pick()
                d2 = rng.choice(win_days)
                g2 = self._group(f"cash-ok{i}", 1, "payment.cash", None, vb2, "cash of exactly 5000", True)
                self._add(d2, self._t(d2), vb2, w.new_person(vb2.v), 5000.0, "subsidy", "cash", None, g2)

        # payment.unusual: Sunday 02:00-04:00, new payee, reception/travel, 12-20x usual
        nu = max(3, round(cfg.villages / 8))
        sundays = [d for d in range(0, last + 1) if self.clock.date_of(d).weekday() == 6] or list(range(0, last + 1))
        order = list(range(len(books)))
        rng.shuffle(order)
        for i in range(nu):
            vb = books[order[i % len(order)]]
            cat = rng.choice(["reception", "travel"])
            amount = min(vb.median[cat] * rng.uniform(12, 20), 0.5 * vb.v.threshold)
            amount = round(amount, 2)
            d = rng.choice(sundays)
            t = int(d * DAY + rng.uniform(2.0, 4.0) * H)
            payee = w.new_company(vb.v.town, "reception") if cat == "reception" else w.new_person(vb.v)
            times = amount / vb.median[cat]
            hour = int((t % DAY) // 3600)
            g = self._group(f"unu{i}", 1, "payment.unusual", "yellow", vb,
                            f"{cat} {amount:.0f} (~{times:.0f}x usual) at 0{hour}h on a Sunday to a new payee")
            self._add(d, t, vb, payee, amount, cat, "transfer", None, g)

    def _company_by_id(self, pid: str, town: str) -> Payee:
        for c in self.world.town_companies[town]:
            if c.payee_id == pid:
                return c
        for cs in self.world.town_companies.values():
            for c in cs:
                if c.payee_id == pid:
                    return c
        raise KeyError(pid)

    # ------------------------------------------------------------------ normal flow
    def _normal(self, vb: Book, d: int) -> list[dict]:
        rng = self.rng
        v = vb.v
        thr = v.threshold
        out: list[dict] = []
        horizon = d * DAY - 31 * DAY
        old = d * DAY - 9 * DAY
        if len(vb.recent) > 64:  # keep memory flat: forget pairs older than the 8-day check
            vb.recent = {k: x for k, x in vb.recent.items() if x >= old}
        for _ in range(rng.choice((1, 1, 2, 2, 2, 3, 3, 4))):
            cat = rng.choices(_CAT_NAMES, cum_weights=_CAT_CUM)[0]
            t = int(d * DAY + rng.uniform(8.5, 17.5) * H)
            if cat == "engineering" and rng.random() < 0.12:
                # an approved contract payment, to a contractor this village paid nothing in 31 days
                free = [c for c in self.world.town_contractors[v.town]
                        if vb.last_big.get(c.payee_id, -1e18) < t - 31 * DAY]
                if not free:
                    continue
                payee = free[rng.randrange(len(free))]
                vb.last_big[payee.payee_id] = t
                amount = round(thr * rng.uniform(1.05, 2.5), -2)
                out.append({"t": t, "payee": payee, "amount": amount, "category": cat, "channel": "transfer",
                            "approval": self._approval_id(vb, t), "group": None})
                continue
            amount = 0.0
            for _ in range(6):
                amount = rng.lognormvariate(0, 0.55) * vb.median[cat]
                if amount <= 0.4 * thr:
                    break
            amount = min(amount, 0.4 * thr * rng.uniform(0.6, 1.0))
            amount = max(50.0, amount)
            amount = round(amount, -1) if rng.random() < 0.3 and amount > 200 else round(amount, 2)
            payee = None
            for _ in range(8):
                p = self._payee_for(vb, cat)
                dq = vb.win.get(p.payee_id)
                if dq is not None:
                    while dq and dq[0][0] < horizon:
                        dq.popleft()
                    s = sum(a for _, a in dq)
                else:
                    s = 0.0
                if s + amount <= 0.6 * thr:
                    payee = p
                    break
            if payee is None:
                continue
            for _ in range(20):  # never the same (payee, amount) within 8 days
                last_t = vb.recent.get((payee.payee_id, amount))
                if last_t is None or t - last_t > 8 * DAY:
                    break
                amount = round(amount + rng.uniform(1, 99), 2)
            if amount <= 5000 and rng.random() < 0.1:
                channel = "cash"
            else:
                channel = "transfer" if rng.random() < 0.65 else "card"
            vb.win.setdefault(payee.payee_id, deque()).append((t, amount))
            vb.recent[(payee.payee_id, amount)] = t
            out.append({"t": t, "payee": payee, "amount": amount, "category": cat, "channel": channel,
                        "approval": None, "group": None})
        return out

    def _payee_for(self, vb: Book, cat: str) -> Payee:
        rng = self.rng
        if cat in ("subsidy", "travel") or (cat in ("labor", "other") and rng.random() < 0.75):
            return rng.choices(vb.persons, cum_weights=vb.person_cum)[0]
        same = [c for c in vb.companies if c.category == cat]
        if same and rng.random() < 0.8:
            if len(same) < 3:
                return same[rng.randrange(len(same))]
            return rng.choices(same, cum_weights=_cum(len(same)))[0]
        return rng.choices(vb.companies, cum_weights=vb.company_cum)[0]

    # ------------------------------------------------------------------ one day
    def run_day(self, d: int) -> None:
        working = self._workday(d)
        specials = self.special.pop(d, [])
        by_v: dict[int, list[dict]] = {}
        for s in specials:
            by_v.setdefault(s["vi"], []).append(s)
        lines: list[bytes] = []
        plain: list[tuple[bytes, str, str]] = []  # candidates for an explicit redelivery
        for vb in self.books:
            recs = self._normal(vb, d) if working else []
            recs.extend(by_v.get(vb.v.idx, []))
            if not recs:
                continue
            recs.sort(key=lambda r: r["t"])
            for r in recs:
                vb.seq += 1
                pid = f"PM-{vb.v.village_id}-{vb.seq:06d}"
                t = r["t"]
                ts = self.clock.rfc(t) if self.rng.random() < 0.85 else self.clock.naive(t)
                cat = r["category"]
                purposes = names.PURPOSES.get(cat, names.PURPOSES["other"])
                rec = {
                    "payment_id": pid,
                    "village_id": vb.v.village_id,
                    "ts": ts,
                    "amount_yuan": float(r["amount"]),
                    "channel": r["channel"],
                    "payee_id": r["payee"].payee_id,
                    "payee_name": r["payee"].name,
                    "category": cat,
                    "purpose": purposes[self.rng.randrange(len(purposes))],
                    "approval_id": r["approval"],
                }
                line = orjson.dumps(rec)
                lines.append(line)
                self.w.note_time(t, t)
                if r["group"]:
                    self._grouped(r["group"], pid, t)
                elif d in self.redeliver_days:
                    plain.append((line, vb.v.village_id, pid))
        self.w.write_lines(lines)
        if plain:
            line, vid, pid = plain[self.rng.randrange(len(plain))]
            self.w.write_redelivery(line)
            self.lookalikes.append({"rule": "payment.duplicate", "subject_id": vid, "source_event_ids": [pid],
                                    "note": "the same payment record delivered twice (one payment_id)",
                                    "kind": "redelivery"})

    def _grouped(self, key: str, pid: str, t: float) -> None:
        g = self.groups[key]
        g["ids"].append(pid)
        if g["t"] is None:
            g["t"] = t
        if len(g["ids"]) == g["n"]:
            if g["look"]:
                self.lookalikes.append({"rule": g["rule"], "subject_id": g["subject"], "source_event_ids": g["ids"],
                                        "note": g["note"], "kind": key.rstrip("0123456789")})
            else:
                self.labels.append({"rule": g["rule"], "level": g["level"], "subject_type": "village",
                                    "subject_id": g["subject"], "source_event_ids": g["ids"],
                                    "event_ts": self.clock.rfc(g["t"]), "note": g["note"],
                                    "kind": key.rstrip("0123456789")})
