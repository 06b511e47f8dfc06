"""Statistics a dashboard may be read with every day: the sample ratio check, always-valid (sequential)
intervals and p-values, and a verdict per experiment.

**Sample ratio mismatch (SRM).** The exposures each variant got against the split its weights ask for: a
chi-square goodness-of-fit test; p < ``SRM_P`` (0.001, GrowthBook's default) means the assignment or the
counting is broken, and such an experiment gets no verdict at all.

**Always-valid inference: the mixture sequential probability ratio test (mSPRT)** of Johari, Koomen, Pekelis
and Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests" (Operations Research 70(3), 2022; the
method of Optimizely's Stats Engine), in its normal approximation for a difference of two rates, as
GrowthBook's sequential testing documents it. With the observed difference ``d``, its variance
``V = p1(1-p1)/n1 + p0(1-p0)/n0`` and a normal mixing distribution of variance ``tau^2`` over the true
difference, the likelihood ratio against "no difference" is

    L = sqrt(V / (V + tau^2)) * exp(d^2 tau^2 / (2 V (V + tau^2)))

The p-value ``min(1, 1/L)`` and the confidence sequence ``d +- sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) +
ln((V + tau^2) / V)))`` hold at whatever moment they are read (Ville's inequality): looking every day and
stopping at the first p < 0.05 keeps the 5% error rate, which the fixed-horizon figures do not. Assumptions:
exposures independent (one person-variant-day each), the normal approximation (which the minimum exposures
below protect), ``tau`` set to the smallest effect worth finding (``--mde``, absolute). Rates are taken with
one success and one failure added per arm (Agresti and Caffo) so that the variance, and so every interval, is
never zero.

**Verdict** per variant against the control: too few exposures (under ``MIN_EXPOSURES`` in either arm),
winner or loser (the always-valid interval excludes 0), no difference (it lies within +-mde), or keep running,
with the exposures per variant a fixed-horizon test would need to find the mde at 80% power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05
SRM_P = 0.001
MIN_EXPOSURES = 100
DEFAULT_MDE = 0.01  # one percentage point, absolute
POWER_Z = 0.8416212335729143  # z of 80% power


@dataclass(frozen=True)
class Sequential:
    diff: float
    low: float
    high: float
    p: float  # always-valid


def srm_p(observed: list[int], weights: list[float]) -> float:
    """The chi-square goodness-of-fit p-value of the exposures against the weights' split (1.0: no data)."""
    total, wsum = sum(observed), sum(weights)
    if total == 0 or wsum <= 0 or len(observed) < 2:
        return 1.0
    expected = [total * w / wsum for w in weights]
    if any(e == 0 for e in expected):
        return 0.0 if any(o and e == 0 for o, e in zip(observed, expected, strict=True)) else 1.0
    return float(stats.chisquare(observed, expected).pvalue)


def _smoothed(hits: int, n: int) -> tuple[float, float]:
    """(rate, its variance) with one success and one failure added (never a zero variance)."""
    p = (hits + 1) / (n + 2)
    return p, p * (1 - p) / (n + 2)


def msprt(hits: int, n: int, control_hits: int, control_n: int, mde: float = DEFAULT_MDE,
          alpha: float = ALPHA) -> Sequential:
    """The always-valid difference ``rate - control rate``: its confidence sequence and p-value."""
    p1, v1 = _smoothed(hits, n)
    p0, v0 = _smoothed(control_hits, control_n)
    d, v, tau2 = p1 - p0, v1 + v0, mde * mde
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))
    log_l = 0.5 * math.log(v / (v + tau2)) + d * d * tau2 / (2 * v * (v + tau2))
    p = 1.0 if log_l <= 0 else min(1.0, math.exp(-log_l))
    return Sequential(d, d - half, d + half, p)


def exposures_needed(base_rate: float, mde: float = DEFAULT_MDE, alpha: float = ALPHA) -> int:
    """Exposures per variant for a fixed-horizon two-sided test to find ``mde`` at 80% power."""
    p = min(max(base_rate, 1e-4), 1 - 1e-4)
    z = float(stats.norm.ppf(1 - alpha / 2))
    return math.ceil((z + POWER_Z) ** 2 * 2 * p * (1 - p) / (mde * mde))


def verdict(s: Sequential, n: int, control_n: int, base_rate: float, mde: float = DEFAULT_MDE,
            srm: bool = False) -> tuple[str, str]:
    """(verdict, its plain words) for a variant against its control."""
    if srm:
        return "invalid", "no verdict: the split of exposures is not the one configured (sample ratio mismatch)"
    if min(n, control_n) < MIN_EXPOSURES:
        return "too few", f"no verdict yet: fewer than {MIN_EXPOSURES} exposures in a variant"
    if s.low > 0:
        return "winner", f"better than the control: +{100 * s.diff:.2f} pt (always-valid 95% interval above 0)"
    if s.high < 0:
        return "loser", f"worse than the control: {100 * s.diff:.2f} pt (always-valid 95% interval below 0)"
    if -mde < s.low and s.high < mde:
        return "no difference", f"no difference of {100 * mde:.2f} pt or more (the interval lies within it)"
    needed = exposures_needed(base_rate, mde)
    more = needed - min(n, control_n)
    if more <= 0:  # past a fixed horizon's size: the price of reading every day is a wider interval
        return "keep running", (f"keep running: not decisive yet (always-valid interval {100 * s.low:+.2f} to "
                                f"{100 * s.high:+.2f} pt spans 0 and the {100 * mde:.2f} pt effect)")
    return "keep running", (f"keep running: about {more:,} more exposures per variant to tell a "
                            f"{100 * mde:.2f} pt difference (fixed-horizon estimate, 80% power)")
