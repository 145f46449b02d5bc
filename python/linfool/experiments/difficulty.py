"""How hard fooling is, measured on a run's Caffe model: the fraction of a pair sample fooled to
P(target) >= 0.99 against the Linf budget, along the blog's direction and the sign direction, and the
closed-form bound no Linf attack can beat (see linfool.experiments.attack_curves for the maths).
Used by the attack-curves experiment and by every background round.

    attack_curves(run, n_images, pairs, num_classes=None) -> dict (curves with 95 % bands, median epsilons
                                                        with 95 % intervals, each pair's epsilon, the sample)
"""

import numpy as np

from linfool.core import cli, runs, stats
from linfool.experiments.pairs import IMAGES, PAIRS, describe, pair_sample, seconds_per_forward
from linfool.model.classifier import Classifier

CONFIDENCE = 0.99


EPSILONS = np.arange(256)  # Linf budgets in 0..255 pixel units


KINDS = ("blog", "sign")


CHUNK = 1024  # images per pycaffe forward


def directions(W, true, targets, kind):
    """(n, 12288) float32 directions with Linf 1 (so epsilon * d has Linf epsilon)."""
    if kind == "sign":
        return np.sign(W[targets] - W[true]).astype(np.float32)
    if kind == "blog":
        rows = W[targets]
        return (rows / np.abs(rows).max(axis=1, keepdims=True)).astype(np.float32)
    raise ValueError(f"unknown direction {kind!r}; use one of {KINDS}")


def fooled_at(classifier, images, targets, direction, epsilons=EPSILONS, desc=""):
    """(len(epsilons), n) bool: P(target | clip(x + eps * d)) >= CONFIDENCE, from pycaffe.
    images: (n, 3, 64, 64) float32 0..255 BGR; direction: (n, 12288). `desc` names its progress bar."""
    flat = images.reshape(len(images), -1)
    epsilons = np.asarray(epsilons, np.float32)
    fooled = np.zeros((len(epsilons), len(images)), dtype=bool)
    for start in range(0, len(images), CHUNK):
        part = slice(start, start + CHUNK)
        n = len(flat[part])
        group = max(1, CHUNK // n)  # several budgets per forward: batches of about CHUNK images
        for e in cli.progress(range(0, len(epsilons), group), desc=desc or "budgets", unit="forward"):
            eps = epsilons[e : e + group, None, None]
            batch = np.clip(flat[part][None] + eps * direction[part][None], 0, 255)
            probs = classifier.probs(batch.reshape(-1, 3, 64, 64)).reshape(len(eps), n, -1)
            fooled[e : e + group, part] = probs[:, np.arange(n), targets[part]] >= CONFIDENCE
    return fooled


def bound_epsilon(classifier, images, true, targets):
    """(n,) epsilon* = (s_true - s_target + ln 99) / ||w_target - w_true||_1 (>= 0): below it no
    Linf perturbation can give P(target) >= 0.99. Scores from the pycaffe forward."""
    W = classifier.params["W"]
    scores = np.concatenate([classifier.forward(images[i : i + CHUNK])[0] for i in range(0, len(images), CHUNK)])
    rows = np.arange(len(images))
    gap = scores[rows, true] - scores[rows, targets] + np.log(CONFIDENCE / (1 - CONFIDENCE))
    return np.maximum(gap, 0) / np.abs(W[targets] - W[true]).sum(axis=1)


def first_epsilon(fooled, epsilons=EPSILONS):
    """(n,) smallest epsilon at which each pair is fooled (inf when never within the grid)."""
    hit = fooled.any(axis=0)
    return np.where(hit, np.asarray(epsilons, float)[fooled.argmax(axis=0)], np.inf)


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
