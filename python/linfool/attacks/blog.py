"""Fooling a linear classifier, the blog's way: x' = x + alpha * w_target in the net's input
space (0..255 BGR pixels, channel-major), with the smallest alpha that makes Caffe's softmax give
the target at least `confidence`. Every probability comes from a pycaffe forward of the deploy net.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from linfool.attacks import CONFIDENCE
from linfool.core import conventions

BISECTION_STEPS = 25
FORWARDS = BISECTION_STEPS + 3  # images one fooled pair sends through the net
PAIRS_PER_FORWARD = 256  # pairs per batched forward in fool_each


@dataclass
class FoolResult:
    """One fooled image: alpha, the perturbation's L2 / Linf in 0..255 pixel units (after
    clipping), the target's probability, and whether clipping changed the top class."""

    target: int
    alpha: float
    image: np.ndarray  # (3, 64, 64) float32, 0..255 BGR, clipped
    prob: float
    l2: float
    linf: float
    fooled: bool
    clipping_changed_outcome: bool


def _apply(xs, directions, alphas):
    """Clipped images xs_i + alpha_i * d_i: (n, 3, 64, 64) float32 in 0..255."""
    return np.clip(xs + alphas[:, None, None, None] * directions, 0, 255).astype(np.float32)


def fool(
    classifier: Any,
    x: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    confidence: float = CONFIDENCE,
    max_linf: float = 255.0,
) -> list[FoolResult]:
    """Smallest alpha per target (bisection, all targets in one batched forward per step) such
    that P(target | clip(x + alpha * w_target)) >= confidence. x: (3, 64, 64) 0..255 BGR."""
    targets = np.asarray(targets)
    xs = np.broadcast_to(np.asarray(x), (len(targets), *np.shape(x)))  # a view: x once in memory
    return _fool(classifier, xs, targets, confidence, max_linf)


def fool_each(
    classifier: Any,
    images: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    confidence: float = CONFIDENCE,
    max_linf: float = 255.0,
) -> list[FoolResult]:
    """fool() for n pairs at once, image i to targets[i]: the same bisection, every pair in one
    batched forward per step (PAIRS_PER_FORWARD pairs at a time) instead of n forwards of one image.
    images: (n, 3, 64, 64) 0..255 BGR. Returns n FoolResults in order."""
    images, targets = np.asarray(images), np.asarray(targets)
    results = []
    for start in range(0, len(images), PAIRS_PER_FORWARD):
        part = slice(start, start + PAIRS_PER_FORWARD)
        results += _fool(classifier, images[part], targets[part], confidence, max_linf)
    return results


def _fool(classifier, xs, targets, confidence, max_linf):
    """The bisection of fool / fool_each: image xs[i] to targets[i]; xs (n, 3, 64, 64)."""
    directions = classifier.params["W"][targets].reshape(len(targets), *conventions.IMAGE_SHAPE)
    rows = np.arange(len(targets))
    hi: np.ndarray = max_linf / np.abs(directions).reshape(len(targets), -1).max(axis=1)
    reached = classifier.probs(_apply(xs, directions, hi))[rows, targets] >= confidence
    lo: np.ndarray = np.zeros(len(targets))
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        ok = classifier.probs(_apply(xs, directions, mid))[rows, targets] >= confidence
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    images = _apply(xs, directions, hi)
    probs = classifier.probs(images)
    unclipped = classifier.probs((xs + hi[:, None, None, None] * directions).astype(np.float32))
    results = []
    for i, target in enumerate(targets):
        delta = images[i] - xs[i]
        results.append(
            FoolResult(
                int(target),
                float(hi[i]),
                images[i],
                float(probs[i, target]),
                float(np.linalg.norm(delta)),
                float(np.abs(delta).max()),
                bool(reached[i]),
                bool(probs[i].argmax() != unclipped[i].argmax()),
            )
        )
    return results


def noise_image(seed: int = 0) -> np.ndarray:
    """A uniform random noise start image: (3, 64, 64) float32, 0..255."""
    return np.random.default_rng(seed).uniform(0, 255, conventions.IMAGE_SHAPE).astype(np.float32)
