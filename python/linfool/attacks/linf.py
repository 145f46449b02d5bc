"""The Linf view of a linear model's attack (Goodfellow et al. 2014): the blog's direction and the
sign direction, each with Linf 1; the fraction of pairs fooled at every budget along one, through
pycaffe; and the closed-form bound. A perturbation with Linf <= epsilon moves the score gap
s_target - s_true by at most epsilon * ||w_target - w_true||_1 (the sign direction reaches it), and
P(target) >= 0.99 needs that gap >= ln 99: no attack fools a pair below
epsilon* = (s_true - s_target + ln 99) / ||w_target - w_true||_1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from linfool.attacks import CONFIDENCE, EPSILONS, IMAGES_PER_FORWARD
from linfool.core import cli, conventions

KINDS = ("blog", "sign")  # the blog's direction, and the sign direction


def directions(W: np.ndarray, true: np.ndarray, targets: np.ndarray, kind: str) -> np.ndarray:
    """(n, PIXELS) float32 directions with Linf 1 (so epsilon * d has Linf epsilon)."""
    if kind == "sign":
        return np.sign(W[targets] - W[true]).astype(np.float32)
    if kind == "blog":
        rows = W[targets]
        return (rows / np.abs(rows).max(axis=1, keepdims=True)).astype(np.float32)
    raise ValueError(f"unknown direction {kind!r}; use one of {KINDS}")


def fooled_at(
    classifier: Any,
    images: np.ndarray,
    targets: np.ndarray,
    direction: np.ndarray,
    epsilons: np.ndarray | Sequence[float] = EPSILONS,
    desc: str = "",
) -> np.ndarray:
    """(len(epsilons), n) bool: P(target | clip(x + eps * d)) >= CONFIDENCE, from pycaffe.
    images: (n, 3, 64, 64) float32 0..255 BGR; direction: (n, PIXELS). `desc` names its progress bar."""
    flat = images.reshape(len(images), -1)
    epsilons = np.asarray(epsilons, np.float32)
    fooled = np.zeros((len(epsilons), len(images)), dtype=bool)
    for start in range(0, len(images), IMAGES_PER_FORWARD):
        part = slice(start, start + IMAGES_PER_FORWARD)
        n = len(flat[part])
        group = max(
            1, IMAGES_PER_FORWARD // n
        )  # several budgets per forward: batches of about IMAGES_PER_FORWARD images
        for e in cli.progress(range(0, len(epsilons), group), desc=desc or "budgets", unit="forward"):
            eps = epsilons[e : e + group, None, None]
            batch = np.clip(flat[part][None] + eps * direction[part][None], 0, 255)
            probs = classifier.probs(batch.reshape(-1, *conventions.IMAGE_SHAPE)).reshape(len(eps), n, -1)
            fooled[e : e + group, part] = probs[:, np.arange(n), targets[part]] >= CONFIDENCE
    return fooled


def bound_epsilon(classifier: Any, images: np.ndarray, true: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n,) epsilon* = (s_true - s_target + ln 99) / ||w_target - w_true||_1 (>= 0): below it no
    Linf perturbation can give P(target) >= 0.99. Scores from the pycaffe forward."""
    W = classifier.params["W"]
    scores = np.concatenate(
        [classifier.forward(images[i : i + IMAGES_PER_FORWARD])[0] for i in range(0, len(images), IMAGES_PER_FORWARD)]
    )
    rows = np.arange(len(images))
    gap = scores[rows, true] - scores[rows, targets] + np.log(CONFIDENCE / (1 - CONFIDENCE))
    return np.maximum(gap, 0) / np.abs(W[targets] - W[true]).sum(axis=1)


def first_epsilon(fooled: np.ndarray, epsilons: np.ndarray | Sequence[float] = EPSILONS) -> np.ndarray:
    """(n,) smallest epsilon at which each pair is fooled (inf when never within the grid)."""
    hit = fooled.any(axis=0)
    return np.where(hit, np.asarray(epsilons, float)[fooled.argmax(axis=0)], np.inf)
