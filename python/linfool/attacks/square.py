"""The square attack (Andriushchenko et al. 2020): a targeted Linf attack that sees a model only
through its probabilities, one random square of +-eps at a time, kept when the target's log-margin
rises. Oracle wraps any probs(images) function and counts the queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from linfool.attacks import CONFIDENCE, IMAGES_PER_FORWARD
from linfool.core import conventions

SEED = conventions.SEED


class Oracle:
    """A model seen only through its probabilities: oracle(images (n, C, H, W) float 0..255 BGR)
    -> (n, K) float32 probabilities. `queries` counts the images sent."""

    def __init__(self, probs):
        self._probs = probs
        self.queries = 0

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float32)
        self.queries += len(images)
        return np.concatenate(
            [self._probs(images[i : i + IMAGES_PER_FORWARD]) for i in range(0, len(images), IMAGES_PER_FORWARD)]
        )


def margin(probs: np.ndarray, target: int) -> float:
    """log p_target - max over the other classes of log p: > 0 iff the target is the top class."""
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-45))
    return logp[target] - np.delete(logp, target).max()


def square_side(queries: int, budget: int, side: int) -> int:
    """The square attack's side schedule: a fraction p of the image, halved at 1/1000, 5, 20, 50,
    100, 200, 400, 600, 800 thousandths of the query budget (the paper's schedule, rescaled)."""
    p = 0.05
    for mark in (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8):
        p /= 2 if queries > mark * budget else 1
    return int(np.clip(np.rint(np.sqrt(p * side * side)), 1, side - 1))


def square_attack(
    oracle: Oracle,
    x: np.ndarray,
    target: int,
    eps: float,
    max_queries: int,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict:
    """Targeted Linf square attack on x ((C, H, W) float 0..255 BGR) within eps. Returns a dict:
    queries used, reached (P(target) >= confidence), prob, linf (of the clipped perturbation), image."""
    return square_attacks(oracle, np.asarray(x)[None], [target], [eps], max_queries, [seed], confidence)[0]


def square_attacks(
    oracle: Oracle,
    xs: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    eps: Sequence[float] | np.ndarray,
    max_queries: int,
    seeds: Sequence[int] | np.ndarray = (SEED,),
    confidence: float = CONFIDENCE,
) -> list[dict]:
    """square_attack on n pairs in lockstep: each step sends one candidate of every pair still running
    in one oracle call (one batched forward instead of n). Each pair keeps its own random stream
    (seeds[i]), budget eps[i] and query count, so its result is the one square_attack gives alone.
    xs: (n, C, H, W) float 0..255 BGR. Returns n dicts as square_attack's."""
    n, channels, height, width = xs.shape
    targets = np.asarray(targets)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    delta = np.stack(
        [e * rng.choice([-1.0, 1.0], size=(channels, 1, width)) * np.ones((1, height, 1)) for e, rng in zip(eps, rngs)]
    )
    adv = np.clip(xs + delta, 0, 255)
    probs = oracle(adv)
    best = np.array([margin(p, t) for p, t in zip(probs, targets)])
    queries = np.ones(n, dtype=int)
    while True:
        active = [i for i in range(n) if probs[i, targets[i]] < confidence and queries[i] < max_queries]
        if not active:
            break
        trials = delta[active].copy()
        for k, i in enumerate(active):
            side = square_side(queries[i], max_queries, min(height, width))
            r, c = rngs[i].integers(0, height - side + 1), rngs[i].integers(0, width - side + 1)
            trials[k, :, r : r + side, c : c + side] = eps[i] * rngs[i].choice([-1.0, 1.0], size=(channels, 1, 1))
        candidates = np.clip(xs[active] + trials, 0, 255)
        trial_probs = oracle(candidates)
        queries[active] += 1
        for k, i in enumerate(active):
            trial_margin = margin(trial_probs[k], targets[i])
            if trial_margin > best[i]:
                delta[i], adv[i], probs[i], best[i] = trials[k], candidates[k], trial_probs[k], trial_margin
    return [
        {
            "queries": int(queries[i]),
            "reached": bool(probs[i, targets[i]] >= confidence),
            "prob": float(probs[i, targets[i]]),
            "linf": float(np.abs(adv[i] - xs[i]).max()),
            "image": adv[i].astype(np.float32),
        }
        for i in range(n)
    ]
