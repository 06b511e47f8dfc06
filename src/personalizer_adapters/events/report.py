"""`personalizer report`: what the banners and carousels did, from the event log, with honest statistics.

Experiments (banner rule by variant). The unit is an **exposure**: one person seeing one banner variant on
one day (impressions de-duplicated per person, banner, variant and UTC day; robots, prefetches and
anonymous events left out). Each click on the hero, add to cart and purchase of that person within the
attribution window after an exposure is credited to their latest exposure before it (last touch). Per
variant: exposures; click-through, add-to-cart and purchase rates with 95% Wilson intervals; revenue per
exposure with a 95% t interval. Against the rule's control (its first variant, the one shown when there is
no one to bucket): the difference with a 95% interval (Newcombe's for rates, Welch's for revenue) and a
two-sided p-value (pooled two-proportion z-test; Welch's t-test).

Slots and tiers: impressions, click-through rate, and the share of answers each tier gave (how often the
degradation ladder fell back).
"""

from __future__ import annotations

import html
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from .sequential import DEFAULT_MDE, MIN_EXPOSURES, SRM_P, Sequential, msprt, srm_p, verdict

Z95 = 1.959963984540054
PEEKING = ("the verdicts and the always-valid columns (mSPRT) may be read every day; the fixed-horizon p-values "
           "and intervals hold only for one look at a sample size fixed in advance: checking them repeatedly and "
           "stopping when p < 0.05 finds many 'effects' that are not there.")


@dataclass(frozen=True)
class Rate:
    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.n)


@dataclass(frozen=True)
class Diff:
    value: float
    low: float
    high: float
    p: float


@dataclass
class Variant:
    rule: str
    kind: str
    variant: str
    control: bool
    exposures: int = 0
    clicks: Rate = Rate(0, 0)
    carts: Rate = Rate(0, 0)
    purchases: Rate = Rate(0, 0)
    revenue: list[float] = field(default_factory=list)  # per exposure, in currency units
    vs_control: dict[str, Diff] = field(default_factory=dict)
    sequential: Sequential | None = None  # the always-valid CTR difference against the control
    verdict: tuple[str, str] = ("control", "the control")  # (verdict, in plain words), on the CTR

    @property
    def revenue_total(self) -> float:
        return sum(self.revenue)

    @property
    def revenue_per_exposure(self) -> tuple[float, float, float]:
        return mean_interval(self.revenue)


@dataclass
class Experiment:
    """One banner rule's experiment: its sample ratio check first (an SRM means no verdict)."""

    rule: str
    weights: list[float]
    exposures: list[int]
    srm_p: float

    @property
    def srm(self) -> bool:
        return self.srm_p < SRM_P


@dataclass
class Group:
    """The visitors of one arm of the personalization comparison, each counted once."""

    name: str
    visitors: int
    clicked: Rate
    carted: Rate
    converted: Rate
    revenue: list[float]  # per visitor

    @property
    def revenue_per_visitor(self) -> tuple[float, float, float]:
        return mean_interval(self.revenue)


@dataclass
class Lift:
    """Personalized visitors against the global holdout (randomized), or, without one, against visitors the
    ladder answered only from its popular or default tiers (observational: a different population)."""

    randomized: bool
    personalized: Group
    baseline: Group
    vs: dict[str, Diff]


@dataclass
class Slot:
    slot: str
    impressions: int
    clicks: int
    tiers: dict[str, int]

    @property
    def ctr(self) -> Rate:
        return Rate(min(self.clicks, self.impressions), self.impressions)


@dataclass
class Report:
    variants: list[Variant]
    slots: list[Slot]
    window_s: int
    since: float | None
    events: int
    robots: int
    warnings: list[str] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)
    mde: float = DEFAULT_MDE
    first_ts: float | None = None  # the period the events cover
    last_ts: float | None = None
    newest_received: float | None = None  # the data's freshness: when the newest event reached the origin
    lift: Lift | None = None


def wilson(hits: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)  # nothing seen: anything is possible (never a zero-width interval)
    p = hits / n
    centre = (p + Z95 * Z95 / (2 * n)) / (1 + Z95 * Z95 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / (1 + Z95 * Z95 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_diff(a: Rate, control: Rate) -> Diff:
    """``a - control``: Newcombe's hybrid score interval and the pooled two-proportion z-test."""
    d = a.value - control.value
    (l1, u1), (l0, u0) = a.interval, control.interval
    low = d - math.sqrt((a.value - l1) ** 2 + (u0 - control.value) ** 2)
    high = d + math.sqrt((u1 - a.value) ** 2 + (control.value - l0) ** 2)
    n1, n0 = a.n, control.n
    pooled = (a.hits + control.hits) / (n1 + n0) if n1 + n0 else 0.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0)) if n1 and n0 else 0.0
    p = float(2 * stats.norm.sf(abs(d) / se)) if se > 0 else 1.0
    return Diff(d, low, high, p)


def mean_interval(xs: list[float]) -> tuple[float, float, float]:
    n = len(xs)
    if n == 0:
        return (0.0, 0.0, 0.0)
    m = sum(xs) / n
    if n < 2:
        return (m, m, m)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return (m, m - half, m + half)


def mean_diff(a: list[float], control: list[float]) -> Diff:
    """Welch: difference of means, its 95% interval and two-sided p-value."""
    if len(a) < 2 or len(control) < 2:
        return Diff(0.0, 0.0, 0.0, 1.0)
    ma, mc = sum(a) / len(a), sum(control) / len(control)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vc = sum((x - mc) ** 2 for x in control) / (len(control) - 1) / len(control)
    se = math.sqrt(va + vc)
    if se == 0:
        return Diff(ma - mc, ma - mc, ma - mc, 1.0 if ma == mc else 0.0)
    df = (va + vc) ** 2 / ((va ** 2) / (len(a) - 1) + (vc ** 2) / (len(control) - 1))
    t = float(stats.t.ppf(0.975, df))
    return Diff(ma - mc, ma - mc - t * se, ma - mc + t * se, float(2 * stats.t.sf(abs(ma - mc) / se, df)))


def purchase_value(e: dict[str, Any]) -> float:
    """A purchase event's value: its lines' price times quantity, in currency units."""
    return float(sum(float(line["price"]) * line["quantity"] for line in e["items"]))


def analyse(events: list[dict[str, Any]], rules: dict[str, tuple[Any, ...]], *, window_s: int = 86400,
            since: float | None = None, mde: float = DEFAULT_MDE) -> Report:
    """The report over stored events (``EventLog.events()`` rows); ``rules``: banner id -> (kind, variants[,
    weights]) (``banner_rules``); ``mde``: the smallest CTR difference worth finding (absolute)."""
    robots = sum(1 for e in events if e["robot"])
    live = [e for e in events if not e["robot"] and e["who"] != "anonymous" and (since is None or e["ts"] >= since)]
    by_person: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in live:
        by_person[(e["who"], e["person"])].append(e)
    units: dict[tuple[str, str, str, str, int], dict[str, Any]] = {}
    for person, evs in by_person.items():
        evs.sort(key=lambda e: (e["ts"], e["id"]))
        exposures: list[dict[str, Any]] = []  # this person's, in time order
        for e in evs:
            if e["type"] == "impression" and e["slot"] == "hero":
                key = (*person, e["banner"], e["variant"], int(e["ts"] // 86400))
                if key not in units:
                    units[key] = {"ts": e["ts"], "click": False, "cart": False, "buy": False, "revenue": 0.0}
                    exposures.append(units[key])
                continue
            latest = next((u for u in reversed(exposures) if u["ts"] <= e["ts"] <= u["ts"] + window_s), None)
            if latest is None:
                continue
            if e["type"] == "click" and e["slot"] == "hero":
                latest["click"] = True
            elif e["type"] == "add_to_cart":
                latest["cart"] = True
            elif e["type"] == "purchase":
                latest["buy"] = True
                latest["revenue"] += purchase_value(e)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (_, _, banner, variant, _), unit in units.items():
        grouped[(banner, variant)].append(unit)
    variants: list[Variant] = []
    warnings: list[str] = []
    experiments: list[Experiment] = []
    seen_rules = sorted({b for b, _ in grouped})
    for banner in seen_rules:
        kind, declared, *rest = rules.get(banner, ("unknown", []))
        declared_weights = list(rest[0]) if rest else [1.0] * len(declared)
        if banner not in rules:
            warnings.append(f"banner {banner!r} is not in the active banner set (an older generation's?)")
        names = declared + sorted({v for b, v in grouped if b == banner} - set(declared))
        rows = []
        for i, name in enumerate(names):
            us = grouped.get((banner, name), [])
            n = len(us)
            rows.append(Variant(banner, kind, name, i == 0, n, Rate(sum(u["click"] for u in us), n),
                                Rate(sum(u["cart"] for u in us), n), Rate(sum(u["buy"] for u in us), n),
                                [u["revenue"] for u in us]))
        control = rows[0]
        weights = declared_weights + [0.0] * (len(rows) - len(declared_weights))  # undeclared: none expected
        experiment = Experiment(banner, weights, [r.exposures for r in rows],
                                srm_p([r.exposures for r in rows], weights))
        experiments.append(experiment)
        for row in rows[1:]:
            row.vs_control = {"ctr": rate_diff(row.clicks, control.clicks),
                              "add_to_cart": rate_diff(row.carts, control.carts),
                              "purchase": rate_diff(row.purchases, control.purchases),
                              "revenue": mean_diff(row.revenue, control.revenue)}
            row.sequential = msprt(row.clicks.hits, row.clicks.n, control.clicks.hits, control.clicks.n, mde)
            row.verdict = verdict(row.sequential, row.exposures, control.exposures, control.clicks.value, mde,
                                  experiment.srm)
        variants.extend(rows)
    slots: dict[str, Slot] = {}
    for e in live:
        if e["type"] == "impression":
            s = slots.setdefault(e["slot"], Slot(e["slot"], 0, 0, {}))
            s.impressions += 1
            s.tiers[e["tier"]] = s.tiers.get(e["tier"], 0) + 1
        elif e["type"] == "click":
            slots.setdefault(e["slot"], Slot(e["slot"], 0, 0, {})).clicks += 1
    lift = personalization_lift(by_person)
    return Report(variants, [slots[k] for k in sorted(slots)], window_s, since, len(live), robots, warnings,
                  experiments, mde, min((e["ts"] for e in live), default=None),
                  max((e["ts"] for e in live), default=None), max((e["received"] for e in live), default=None), lift)


PERSONAL_TIERS = ("user", "segment", "item")


def personalization_lift(by_person: dict[tuple[str, str], list[dict[str, Any]]]) -> Lift | None:
    """Visitors who saw carousels, in two arms: the global holdout's (their impressions say ``holdout``) against
    the others; without a holdout, those answered only by the popular or default tier against those given a
    personal tier. Per visitor: clicked a carousel, added to cart, bought, revenue (all their period's)."""
    arms: dict[str, list[list[dict[str, Any]]]] = {"held": [], "personal": [], "plain": []}
    for evs in by_person.values():
        shown = [e for e in evs if e["type"] == "impression" and e.get("slot") != "hero"]
        if not shown:
            continue
        if any(e.get("holdout") for e in shown):
            arms["held"].append(evs)
        elif any(e.get("tier") in PERSONAL_TIERS for e in shown):
            arms["personal"].append(evs)
        else:
            arms["plain"].append(evs)
    randomized = bool(arms["held"])
    # Randomized: everyone outside the holdout is the treated arm, whichever tier answered them.
    treated = arms["personal"] + arms["plain"] if randomized else arms["personal"]
    baseline = arms["held"] if randomized else arms["plain"]
    if not treated or not baseline:
        return None

    def group(name: str, people: list[list[dict[str, Any]]]) -> Group:
        n = len(people)
        clicked = sum(any(e["type"] == "click" and e.get("slot") != "hero" for e in evs) for evs in people)
        carted = sum(any(e["type"] == "add_to_cart" for e in evs) for evs in people)
        bought = [sum(purchase_value(e) for e in evs if e["type"] == "purchase") for evs in people]
        converted = sum(any(e["type"] == "purchase" for e in evs) for evs in people)
        return Group(name, n, Rate(clicked, n), Rate(carted, n), Rate(converted, n), bought)

    a = group("personalized", treated)
    b = group("holdout" if randomized else "popular/default only", baseline)
    return Lift(randomized, a, b, {"ctr": rate_diff(a.clicked, b.clicked), "add_to_cart": rate_diff(a.carted, b.carted),
                                   "conversion": rate_diff(a.converted, b.converted),
                                   "revenue": mean_diff(a.revenue, b.revenue)})


def lift_lines(r: Report) -> list[str]:
    """The personalization lift in words and figures."""
    if r.lift is None:
        return ["personalization lift: no comparison possible yet (no holdout visitors, and no visitors served only "
                "by the popular or default tier)"]
    x = r.lift
    how = ("randomized: the global holdout (HOLDOUT_PERCENT)" if x.randomized else
           "observational: visitors the ladder answered only from its popular or default tiers, a different "
           "population (set HOLDOUT_PERCENT for a randomized measure)")
    lines = [f"personalization lift, per visitor, {how}:",
             f"  {'':22} {'visitors':>9} {'clicked a carousel':28} {'added to cart':28} {'bought':28} revenue/visitor"]
    for g in (x.personalized, x.baseline):
        m, lo, hi = g.revenue_per_visitor
        lines.append(f"  {g.name:22} {g.visitors:9d} {_rate(g.clicked):28} {_rate(g.carted):28} "
                     f"{_rate(g.converted):28} {m:.2f} [{lo:.2f}, {hi:.2f}]")
    lines.append(f"  {'difference':22} {'':9} {_diff(x.vs['ctr']):28} {_diff(x.vs['add_to_cart']):28} "
                 f"{_diff(x.vs['conversion']):28} {_diff(x.vs['revenue'], pct=False)}")
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _rate(r: Rate) -> str:
    low, high = r.interval
    return f"{_pct(r.value)} [{_pct(low)}, {_pct(high)}]"


def _diff(d: Diff | None, pct: bool = True) -> str:
    if d is None:
        return "control"

    def fmt(x: float) -> str:
        return f"{100 * x:+.2f} pt" if pct else f"{x:+.2f}"

    return f"{fmt(d.value)} [{fmt(d.low)}, {fmt(d.high)}] p={d.p:.3g}"


def period(r: Report, now: float | None = None) -> str:
    """The period the events cover and how fresh they are, in words."""
    import time

    if r.first_ts is None or r.last_ts is None:
        return "no events in the period" + (f" since {_day(r.since)}" if r.since else "")
    age = (now or time.time()) - (r.newest_received or r.last_ts)
    fresh = (f"{age / 60:.0f} min" if age < 7200 else f"{age / 3600:.0f} h" if age < 172_800
             else f"{age / 86400:.0f} days")
    return f"events from {_day(r.first_ts)} to {_day(r.last_ts)} (UTC); the newest arrived {fresh} ago"


def _day(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def render_text(r: Report) -> str:
    out = io.StringIO()
    out.write(period(r) + "\n")
    for x in r.experiments:  # the sample ratio checks first, then the verdicts
        split = ", ".join(f"{n:,}" for n in x.exposures)
        if x.srm:
            out.write(f"SAMPLE RATIO MISMATCH in {x.rule}: exposures {split} against weights "
                      f"{', '.join(f'{w:g}' for w in x.weights)} (chi-square p={x.srm_p:.2g}): no verdict; check "
                      "the assignment and the counting\n")
        for v in r.variants:
            if v.rule == x.rule and not v.control:
                out.write(f"verdict {x.rule} / {v.variant}: {v.verdict[0]} - {v.verdict[1]}\n")
    out.write(f"experiments: exposures = a person seeing a banner variant on a day; attribution window "
              f"{r.window_s // 3600} h; {r.events} events ({r.robots} from robots and prefetches left out)\n")
    head = (f"{'rule':18} {'variant':14} {'exposures':>9}  {'CTR [95% CI]':28} {'vs control':34} "
            f"{'add to cart':26} {'purchase':26} {'revenue/exp':>11} {'revenue vs control':30}\n")
    out.write(head)
    for v in r.variants:
        m, _, _ = v.revenue_per_exposure
        out.write(f"{v.rule[:18]:18} {v.variant[:14]:14} {v.exposures:9d}  {_rate(v.clicks):28} "
                  f"{_diff(v.vs_control.get('ctr')):34} {_rate(v.carts):26} {_rate(v.purchases):26} {m:11.2f} "
                  f"{_diff(v.vs_control.get('revenue'), pct=False):30}\n")
    out.write(f"\nalways valid (mSPRT, mde {100 * r.mde:.2f} pt): CTR difference against the control\n")
    for v in r.variants:
        if v.sequential is not None:
            q = v.sequential
            out.write(f"{v.rule[:18]:18} {v.variant[:14]:14} {100 * q.diff:+.2f} pt [{100 * q.low:+.2f} pt, "
                      f"{100 * q.high:+.2f} pt] p={q.p:.3g}\n")
    out.write(f"note: {PEEKING}\n\n")
    out.write("\n".join(lift_lines(r)) + "\n")
    out.write("\nslots: impressions, click-through rate and the tier that answered\n")
    out.write(f"{'slot':8} {'impressions':>11} {'clicks':>7}  {'CTR [95% CI]':28} tiers\n")
    for s in r.slots:
        tiers = ", ".join(f"{t} {_pct(n / s.impressions)}" for t, n in sorted(s.tiers.items(), key=lambda x: -x[1]))
        out.write(f"{s.slot:8} {s.impressions:11d} {s.clicks:7d}  {_rate(s.ctr):28} {tiers}\n")
    for w in r.warnings:
        out.write(f"warning: {w}\n")
    return out.getvalue()


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def render_html(r: Report, refresh_s: int | None = None) -> str:
    """One self-contained page: charts as inline SVG (matplotlib), the tables, the caveat."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    charts = []
    rules = sorted({v.rule for v in r.variants})
    if rules:
        # One chart per experiment (a row of them overlaps at phone width); no bar for a variant under the
        # minimum of exposures, whose interval would dwarf the others: it is named, with its count.
        for rule in rules:
            vs = [v for v in r.variants if v.rule == rule]
            shown = [v for v in vs if v.exposures >= MIN_EXPOSURES]
            fig, ax = plt.subplots(figsize=(4.2, 2.8), layout="constrained")
            ax.bar([v.variant for v in shown], [100 * v.clicks.value for v in shown],
                   yerr=[[100 * (v.clicks.value - v.clicks.interval[0]) for v in shown],
                         [100 * (v.clicks.interval[1] - v.clicks.value) for v in shown]], capsize=4,
                   color=["#9aa5b1" if v.control else "#2f6fde" for v in shown])
            few = [f"{v.variant} ({v.exposures})" for v in vs if v.exposures < MIN_EXPOSURES]
            ax.set_title(f"{rule}: CTR per exposure, 95% CI", fontsize=10)
            ax.set_ylabel("%", fontsize=8)
            ax.tick_params(labelsize=8)
            if few:
                ax.set_xlabel(f"not drawn, under {MIN_EXPOSURES} exposures: {', '.join(few)}", fontsize=7)
            charts.append(_svg(fig))
            plt.close(fig)
    if r.slots:
        tiers = ["user", "item", "segment", "popular", "default"]
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(r.slots) + 1.4), layout="constrained")
        left = [0.0] * len(r.slots)
        colours = ["#1b5e20", "#43a047", "#fbc02d", "#fb8c00", "#e53935"]
        for tier, colour in zip(tiers, colours, strict=True):
            share = [100 * s.tiers.get(tier, 0) / s.impressions if s.impressions else 0 for s in r.slots]
            ax.barh([s.slot for s in r.slots], share, left=left, color=colour, label=tier)
            left = [a + b for a, b in zip(left, share, strict=True)]
        ax.set_xlabel("share of answers, %")
        ax.set_title("Which tier answered, per slot (the ladder falls back left to right)", fontsize=11)
        fig.legend(fontsize=8, ncol=5, loc="outside lower center")
        charts.append(_svg(fig))
        plt.close(fig)
    e = html.escape
    rows = "".join(
        f"<tr{' class=control' if v.control else ''}><td>{e(v.rule)}</td><td>{e(v.variant)}</td>"
        f"<td>{v.exposures}</td><td>{e(_rate(v.clicks))}</td><td>{e(_diff(v.vs_control.get('ctr')))}</td>"
        f"<td>{e(_rate(v.carts))}</td><td>{e(_rate(v.purchases))}</td>"
        f"<td>{v.revenue_per_exposure[0]:.2f}</td><td>{e(_diff(v.vs_control.get('revenue'), pct=False))}</td></tr>"
        for v in r.variants)
    slot_rows = "".join(
        f"<tr><td>{e(s.slot)}</td><td>{s.impressions}</td><td>{s.clicks}</td><td>{e(_rate(s.ctr))}</td><td>"
        + e(", ".join(f"{t} {_pct(n / s.impressions)}" for t, n in sorted(s.tiers.items(), key=lambda x: -x[1])))
        + "</td></tr>" for s in r.slots)
    warn = "".join(f"<p class=warn>{e(w)}</p>" for w in r.warnings)
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    verdicts = "".join(
        f"<section class=card><h3>{e(x.rule)}</h3>"
        + (f"<p class='verdict invalid'>Sample ratio mismatch (exposures {e(', '.join(map(str, x.exposures)))}, "
           f"chi-square p={x.srm_p:.2g}): no verdict until the assignment is fixed.</p>" if x.srm else "")
        + "".join(f"<p class='verdict {e(v.verdict[0].replace(' ', '-'))}'><span class=badge>"
                  f"{e(v.verdict[0].capitalize())}</span> <b>{e(v.variant)}</b>: "
                  f"{e(v.verdict[1])}</p>" for v in r.variants if v.rule == x.rule and not v.control)
        + "</section>" for x in r.experiments)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Personalization report</title>
<meta name="viewport" content="width=device-width,initial-scale=1">{refresh}
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}
tr.control{{color:#666}}.note{{background:#fff8e1;padding:8px;border-left:4px solid #fbc02d}}
.warn{{color:#b00020}}svg{{max-width:100%;height:auto}}.charts{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #ddd;border-radius:8px;padding:4px 12px;margin:8px 0;max-width:44em}}
.badge{{display:inline-block;padding:0 8px;border-radius:999px;background:#eee;font-weight:600}}
.verdict.winner{{color:#1b5e20}}.winner .badge{{background:#e8f5e9}}
.loser .badge,.invalid .badge{{background:#fdecea}}.verdict.loser,.verdict.invalid{{color:#b00020}}
.period{{font-weight:600}}.scroll{{overflow-x:auto}}</style></head><body>
<h1>Personalization report</h1>
<p class=period>{e(period(r))}</p>
<p>{r.events} events ({r.robots} from robots and prefetches left out). An exposure is a person seeing a banner
variant on a day; clicks, adds to cart and purchases within {r.window_s // 3600} h are credited to the latest
exposure before them.</p>
<h2>Experiments</h2>
{verdicts}
<div class=charts>{''.join(charts)}</div>
<div class=scroll><table><tr><th>rule</th><th>variant</th><th>exposures</th><th>CTR [95% CI]</th><th>vs control</th>
<th>add to cart</th><th>purchase</th><th>revenue / exposure</th><th>revenue vs control</th></tr>{rows}</table></div>
<p class=note>{e(PEEKING)}</p>
<h2>Personalization lift</h2>
<div class=scroll><pre>{e(chr(10).join(lift_lines(r)))}</pre></div>
<h2>Slots and tiers</h2>
<div class=scroll><table><tr><th>slot</th><th>impressions</th><th>clicks</th><th>CTR [95% CI]</th><th>tiers</th></tr>
{slot_rows}</table></div>
{warn}
</body></html>
"""


def banner_rules(record: bytes | None) -> dict[str, tuple[str, list[str], list[float]]]:
    """banner id -> (rule kind, variant ids (control first), their weights) from a generation's ``banners``
    record."""
    from personalizer import codec
    from personalizer.records import BannerSet

    if record is None:
        return {}
    rules = BannerSet.parse(codec.decode(record, expect="banners")).rules
    return {r.id: (r.kind, [v.id for v in r.variants], [float(v.weight) for v in r.variants]) for r in rules}


def parse_since(text: str | None, now: float) -> float | None:
    """``--since``: ``7d``/``12h`` back from now, a date ``2026-11-01``, or epoch seconds."""
    import datetime

    if not text:
        return None
    if text[-1:] in ("d", "h") and text[:-1].isdigit():
        return now - int(text[:-1]) * (86400 if text[-1] == "d" else 3600)
    if text.isdigit():
        return float(text)
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: use 7d, 12h, a date like 2026-11-01, or epoch seconds") from None
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()
