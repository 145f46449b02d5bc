"""How sure a measured number is: every rate with its n and 95 % interval, every comparison with a
stated test and p-value, and one rule that turns a test into a verdict. The methods are scipy's
(scipy.stats); nothing here re-derives a distribution by hand.

    proportion(k, n)                 {'k', 'n', 'value', 'low', 'high', 'method'}: Wilson (rates such as
                                     top-1) or Clopper-Pearson, exact (fooled fractions, transfer rates)
    bands(fooled)                    Clopper-Pearson (low, high) per row of a (budgets, pairs) bool array
    median(values)                   the sample median and its distribution-free order-statistic 95 %
                                     interval (scipy.stats.quantile_test); inf (never fooled) allowed
    median_text(found)               it in words: '27 (24-31)'
    mean(values)                     the mean and its Student-t 95 % interval; t_test(values, m, side)
    mcnemar(only_a, only_b)          exact McNemar p (two-sided) from the discordant counts
    sign_test(more, fewer)           the paired sign test: the same, for "b needs more than a" pairs
    above(k, n, p0)                  one-sided exact binomial p that the rate exceeds p0, and the other way
    decide(p_up, p_down)             the verdict rule (RULE): holds / does not hold / inconclusive
    needed(test, k, n)               the smallest sample at which the observed effect would be decisive

The verdict rule: a claim holds when its test rejects the null in the claim's direction at alpha =
0.05, does not hold when it rejects it in the other direction, and is inconclusive at this sample
otherwise. Each row is one claim of the post, decided on its own: the table does not correct for
testing many rows at once (a reader who wants family-wise control applies Holm to the p-values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05  # each row's two-sided level (one-sided tests: each direction at ALPHA / 2)
LEVEL = 0.95  # intervals
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this sample"
RULE = (
    f"p is the one-sided p-value in the claim's direction, compared with alpha / 2 = {ALPHA / 2} (each direction "
    f"of a two-sided test at alpha = {ALPHA}). holds: the row's test rejects its null in the claim's direction; does not hold: it "
    "rejects it in the other direction (or, for a claim of a size, the 95 % interval lies outside its margin); "
    "inconclusive at this sample otherwise, with the sample the observed effect would need. Rows are separate "
    "claims, each decided on its own: no correction for testing many rows at once (apply Holm to the p-values "
    "for family-wise control)."
)


def proportion(k: int, n: int, method: str = "wilson") -> dict:
    """k of n with its 95 % interval: method 'wilson' (accuracy) or 'exact' (Clopper-Pearson: fooled
    fractions, transfer rates, small n). n = 0 gives value None and the interval (0, 1)."""
    k, n = int(k), int(n)
    if n == 0:
        return {"k": 0, "n": 0, "value": None, "low": 0.0, "high": 1.0, "method": _METHODS[method]}
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=LEVEL, method=method)
    return {"k": k, "n": n, "value": k / n, "low": float(ci.low), "high": float(ci.high), "method": _METHODS[method]}


_METHODS = {"wilson": "Wilson 95 %", "exact": "Clopper-Pearson 95 %"}


def bands(fooled: np.ndarray) -> tuple:
    """(low, high) lists: the Clopper-Pearson 95 % interval of each row's fraction of True in a
    (budgets, pairs) bool array (a fooled-fraction curve's band)."""
    fooled = np.asarray(fooled, bool)
    found = [proportion(int(row.sum()), row.size, "exact") for row in fooled]
    return [f["low"] for f in found], [f["high"] for f in found]


def median(values: Sequence[float] | np.ndarray) -> dict:
    """{'value', 'low', 'high', 'n', 'method'}: the sample median and its distribution-free 95 %
    interval from the order statistics (scipy.stats.quantile_test; an end beyond the sample is
    -inf / inf). Values may be inf (a pair never fooled within the budgets)."""
    values = np.sort(np.asarray(values, float))
    if len(values) == 0:
        return {"value": None, "low": None, "high": None, "n": 0, "method": "order statistics, 95 %"}
    ci = stats.quantile_test(values, q=float(np.median(values)), p=0.5).confidence_interval(LEVEL)
    low, high = float(ci.low), float(ci.high)  # nan: too few values for that end (n < 6): unbounded
    return {
        "value": float(np.median(values)),
        "low": -math.inf if math.isnan(low) else low,
        "high": math.inf if math.isnan(high) else high,
        "n": len(values),
        "method": "order statistics, 95 %",
    }


def median_text(found: dict, label: str = "", unit: str = "", never: str = "never") -> str:
    """A stats.median in words: '27 (24-31)' ('27 (95 %: 24-31)' with label='95 %: '); `never` when the
    median itself is inf (most pairs never fooled); '27 (>= 24)' when the interval is open at the top;
    '1838 (not bounded at n = 4)' when too few values bound it."""
    value, low, high = found["value"], found["low"], found["high"]
    if not math.isfinite(value):
        return never
    if not math.isfinite(low):
        return f"{value:.0f}{unit} ({label}not bounded at n = {found['n']})"
    if not math.isfinite(high):
        return f"{value:.0f}{unit} ({label}>= {low:.0f})"
    return f"{value:.0f}{unit} ({label}{low:.0f}-{high:.0f})"


def linf_text(found: dict) -> str:
    """median_text of a median Linf on the 0..255 pixel range: '27 (25-28)', '>255' where the median pair
    was not fooled within it."""
    return median_text(found, never=">255")


def mean(values: Sequence[float] | np.ndarray) -> dict:
    """{'value', 'low', 'high', 'n', 'method'}: the mean and its Student-t 95 % interval."""
    values = np.asarray(values, float)
    value = float(values.mean())
    if len(values) < 2 or values.std() == 0:
        return {"value": value, "low": value, "high": value, "n": len(values), "method": "Student t, 95 %"}
    low, high = stats.t.interval(LEVEL, len(values) - 1, loc=value, scale=stats.sem(values))
    return {"value": value, "low": float(low), "high": float(high), "n": len(values), "method": "Student t, 95 %"}


def t_test(values: Sequence[float] | np.ndarray, value: float, alternative: str) -> float:
    """One-sided Student-t p that the mean of `values` is 'greater' (or 'less') than `value`."""
    values = np.asarray(values, float)
    if len(values) < 2 or values.std() == 0:  # no spread: the mean is what it is
        above = float(values.mean()) > value
        return 0.0 if above == (alternative == "greater") else 1.0
    return float(stats.ttest_1samp(values, value, alternative=alternative).pvalue)


def mcnemar(only_a: int, only_b: int) -> float:
    """Exact McNemar p (two-sided): of the items on which two classifiers disagree, `only_a` are right
    for the first only and `only_b` for the second only (Dietterich 1998)."""
    only_a, only_b = int(only_a), int(only_b)
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def one_sided(k: int, n: int, p0: float = 0.5) -> tuple[float, float]:
    """(p that the rate is above p0, p that it is below), exact binomial, each one-sided."""
    if n == 0:
        return 1.0, 1.0
    up = stats.binomtest(int(k), int(n), p0, alternative="greater").pvalue
    down = stats.binomtest(int(k), int(n), p0, alternative="less").pvalue
    return float(up), float(down)


def decide(p_up: float, p_down: float) -> str:
    """The verdict rule (RULE) from the two one-sided p-values of a test, the claim's direction
    first: each direction is tested at ALPHA / 2, so the pair is one two-sided test at ALPHA."""
    if p_up < ALPHA / 2:
        return HOLDS
    if p_down < ALPHA / 2:
        return FAILS
    return INCONCLUSIVE


def needed(k: int, n: int, p0: float = 0.5, limit: int = 10**7) -> int | None:
    """The smallest n' (>= n) at which the same observed rate k/n would make the one-sided binomial
    test against p0 decisive at ALPHA / 2 (None when k/n equals p0: no sample would); the sample an
    inconclusive row would need, holding its effect."""
    if n == 0 or k / n == p0:
        return None

    def decisive(m: int) -> bool:
        return min(one_sided(round(k / n * m), m, p0)) < ALPHA / 2

    low, high = n, n
    while not decisive(high):
        if high > limit:
            return None
        low, high = high, math.ceil(high * 1.5)
    while high - low > 1:  # bisect between the last indecisive size and the first decisive one
        middle = (low + high) // 2
        low, high = (low, middle) if decisive(middle) else (middle, high)
    return high
