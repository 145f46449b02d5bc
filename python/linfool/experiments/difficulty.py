"""How hard fooling is, measured on a run's Caffe model: the fraction of a pair sample fooled to
P(target) >= 0.99 against the Linf budget, along the blog's direction and the sign direction, and the
closed-form bound no Linf attack can beat (see linfool.experiments.attack_curves for the maths).
Used by the attack-curves experiment and by every background round.

    attack_curves(run, n_images, pairs, num_classes=None) -> dict (curves with 95 % bands, median epsilons
                                                        with 95 % intervals, each pair's epsilon, the sample)
"""

import numpy as np

from linfool.attacks import CONFIDENCE, EPSILONS
from linfool.attacks.linf import KINDS, bound_epsilon, directions, first_epsilon, fooled_at
from linfool.core import runs, stats
from linfool.experiments.pairs import IMAGES, PAIRS, describe, pair_sample, seconds_per_forward
from linfool.model.classifier import Classifier


def _median(values):
    return float(np.median(values))  # json writes inf as Infinity, which json.loads reads back


def _record(result, kind, fooled, needed):
    """One curve into the result: the fooled fraction per budget with its Clopper-Pearson 95 % band,
    the median Linf needed with its order-statistic 95 % interval, and each pair's Linf (inf: never
    within 0..255), in pair order: what a paired test of two runs on the same pairs reads."""
    result["curves"][kind] = fooled.mean(axis=1).tolist()
    result["bands"][kind] = stats.bands(fooled)
    result["median_epsilon"][kind] = _median(needed)
    result["median_epsilon_ci"][kind] = stats.median(needed)
    result["first_epsilon"][kind] = [float(e) for e in needed]


def attack_curves(run, *, n_images=IMAGES, pairs=PAIRS, num_classes=None, quiet=False):
    """Measure both directions and the bound on the run's val sample; returns the json dict.
    Targets are drawn from the first `num_classes` classes (default: all)."""
    run = runs.as_run(run)
    classifier = Classifier(run)
    W = classifier.params["W"]
    val = run.dataset().lmdb("val")
    images, labels, which, targets, about = pair_sample(val, num_classes or len(W), n_images=n_images, pairs=pairs)
    x, true = images[which], labels[which]
    forwards = len(targets) * (len(EPSILONS) * len(KINDS) + 1)
    if not quiet:
        print(
            f"attack curves, run {run.name}: " + describe(about, forwards, seconds_per_forward(classifier)), flush=True
        )
    result = {
        "run": run.name,
        "data": run.dataset().name,
        "confidence": CONFIDENCE,
        **about,
        "forwards": forwards,
        "epsilons": EPSILONS.tolist(),
        "curves": {},
        "median_epsilon": {},
    }
    result.update(bands={}, median_epsilon_ci={}, first_epsilon={})
    for kind in KINDS:
        fooled = fooled_at(
            classifier, x, targets, directions(W, true, targets, kind), desc=f"{run.name}, {kind} direction"
        )
        _record(result, kind, fooled, first_epsilon(fooled))
    bound = bound_epsilon(classifier, x, true, targets)
    _record(result, "bound", bound[None, :] <= EPSILONS[:, None], bound)
    result["median_l1_gap_norm"] = _median(np.abs(W[targets] - W[true]).sum(axis=1))
    return result
