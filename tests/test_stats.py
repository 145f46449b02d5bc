"""linfool.core.stats and the claims' verdict rule, checked against values worked out by hand: the
exact McNemar test, Wilson and Clopper-Pearson intervals, the median's order-statistic interval, the
sample an inconclusive effect would need; and claims that differ by noise only come out inconclusive
while a true difference holds."""

import math

import numpy as np
import pytest

from linfool.core import stats
from linfool.experiments import accuracy, claims

pytestmark = pytest.mark.fast


def test_mcnemar_of_74_against_69_discordant_images_is_p_0_74():
    # the demo's accuracy row: only reg_low right on 74 val images, only reg_high on 69
    assert stats.mcnemar(74, 69) == pytest.approx(0.7381, abs=1e-4)
    assert stats.mcnemar(10, 0) == pytest.approx(2 * 0.5**10)  # all discordant one way: 2 / 1024
    assert stats.mcnemar(0, 0) == 1.0


def test_intervals_are_the_textbook_ones():
    wilson = stats.proportion(400, 900)
    z, p, n = 1.959964, 400 / 900, 900
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (wilson["low"], wilson["high"]) == pytest.approx((centre - half, centre + half), abs=1e-5)
    exact = stats.proportion(0, 10, "exact")  # Clopper-Pearson: 1 - (alpha/2)^(1/n) at k = 0
    assert exact["low"] == 0 and exact["high"] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-6)
    assert stats.proportion(0, 0)["value"] is None


def test_the_median_interval_is_the_order_statistics_and_takes_never_fooled_pairs():
    found = stats.median(np.arange(1, 11))  # n = 10: the 2nd and 9th values cover the median at >= 95 %
    assert (found["value"], found["low"], found["high"]) == (5.5, 2, 9)
    never = stats.median([3, 4, 5, np.inf, np.inf, np.inf, np.inf])
    assert never["value"] == np.inf and never["high"] == np.inf and np.isfinite(never["low"])


def test_bands_hold_their_curve():
    fooled = np.random.default_rng(0).random((50, 40)) < np.linspace(0, 1, 50)[:, None]
    low, high = (np.array(b) for b in stats.bands(fooled))
    assert np.all(low <= fooled.mean(axis=1)) and np.all(fooled.mean(axis=1) <= high)


def test_the_rule_and_the_sample_an_effect_would_need():
    assert stats.decide(0.001, 0.99) == stats.HOLDS
    assert stats.decide(0.99, 0.001) == stats.FAILS
    assert stats.decide(0.3, 0.7) == stats.INCONCLUSIVE
    n = stats.needed(74, 143)  # 51.7 % of the discordant images one way
    assert min(stats.one_sided(round(74 / 143 * n), n)) < stats.ALPHA / 2
    assert min(stats.one_sided(round(74 / 143 * (n - 1)), n - 1)) >= stats.ALPHA / 2
    assert stats.needed(5, 10) is None  # no effect: no sample decides it


def _metrics(correct):
    n = len(correct)
    return {
        "val_images": n,
        "val_subset": "all val records",
        "val_correct": accuracy.pack(correct),
        "val_top1_ci": stats.proportion(int(np.sum(correct)), n),
        "train_top1": 0.5,
    }


def test_two_runs_that_differ_by_noise_are_inconclusive_and_a_true_difference_holds():
    rng = np.random.default_rng(1701)
    same = [_metrics(rng.random(900) < 0.44) for _ in range(2)]  # the demo's size and accuracy, noise only
    noise = claims.claim_lower_accuracy(*same, "low", "high")
    assert noise["verdict"] == claims.INCONCLUSIVE and noise["n"] == 900 and noise["p"] > 0.025
    assert "would be decisive at n =" in noise["why"] or noise["needed"] is None
    base = rng.random(900)
    truly = claims.claim_lower_accuracy(_metrics(base < 0.50), _metrics(base < 0.40), "low", "high")
    assert truly["verdict"] == claims.HOLDS and truly["p"] < 1e-6 and truly["test"].startswith("exact McNemar")
    reverse = claims.claim_lower_accuracy(_metrics(base < 0.40), _metrics(base < 0.50), "low", "high")
    assert reverse["verdict"] == claims.FAILS


def test_harder_to_fool_is_tested_paired_over_the_same_pairs():
    rng = np.random.default_rng(3)
    low = rng.integers(10, 60, 170).astype(float)

    def curves(first):
        return {
            "seed": 1701,
            "pairs": 170,
            "images": 10,
            "targets_per_image": 17,
            "first_epsilon": {"blog": list(first)},
            "median_epsilon_ci": {"blog": stats.median(first)},
        }

    harder = claims.claim_harder(curves(low), curves(np.where(rng.random(170) < 0.5, np.inf, low + 5)), "a vs b")
    assert harder["verdict"] == claims.HOLDS and harder["n"] == 170
    tied = claims.claim_harder(curves(low), curves(low + rng.choice([-1, 1], 170)), "a vs b")
    assert tied["verdict"] == claims.INCONCLUSIVE
    other = {**curves(low), "seed": 7}  # other pairs: not comparable pair by pair
    assert claims.claim_harder(curves(low), other, "a vs b")["verdict"] == claims.UNCHECKABLE
