"""Fooling any differentiable Caffe net by backprop (the post's first half), on a
linfool.model.gradients.Differentiable:

    gradient_step(model, x, target, alpha)       the blog's step: x + alpha * d score_t / dx
    sign_step(model, x, target, eps)             the fast gradient sign step: x + eps * sign(d log p_t / dx)
    projected(model, x, target, eps, ...)        iterative Linf attack: sign steps projected into the
                                                 eps-ball around x, until P(target) >= confidence
    gradient_batch / sign_batch / projected_batch(model, xs, targets, eps, ...)
                                                 the same on a (n, C, H, W) batch, each step
                                                 scaled to Linf eps

x: (C, H, W) float pixels, xs: (n, C, H, W) (0..255 BGR channel-major for linfool's runs); every
result is clipped to 0..255. For a linear model d score_t / dx is w_t, so gradient_step is exactly the blog's x + alpha * w_t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from linfool.attacks import CONFIDENCE

PIXEL_MAX = 255.0


@dataclass
class AttackResult:
    """One attacked image: (C, H, W) float32 pixels, the target's probability, whether it reached the
    confidence, the perturbation's Linf / L2 in pixel units, and the forward+backward passes spent."""

    target: int
    image: np.ndarray
    prob: float
    fooled: bool
    linf: float
    l2: float
    passes: int


def _result(model, x, image, target, confidence, passes):
    prob = float(model.probs(image[None])[0, target])
    delta = image - x
    return AttackResult(
        int(target), image, prob, prob >= confidence, float(np.abs(delta).max()), float(np.linalg.norm(delta)), passes
    )


def gradient_step(model: Any, x: np.ndarray, target: int, alpha: float, confidence: float = CONFIDENCE) -> AttackResult:
    """One step of size alpha along the gradient of the target's score, clipped to 0..255."""
    _, grad = model.gradient(x[None], [target], objective="score")
    image = np.clip(x + alpha * grad[0], 0, PIXEL_MAX).astype(np.float32)
    return _result(model, x, image, target, confidence, 1)


def sign_step(model: Any, x: np.ndarray, target: int, eps: float, confidence: float = CONFIDENCE) -> AttackResult:
    """The fast gradient sign step: eps pixel units along the sign of d log p_target / dx."""
    _, grad = model.gradient(x[None], [target], objective="logprob")
    image = np.clip(x + eps * np.sign(grad[0]), 0, PIXEL_MAX).astype(np.float32)
    return _result(model, x, image, target, confidence, 1)


def projected(
    model: Any,
    x: np.ndarray,
    target: int,
    eps: float,
    *,
    step: float | None = None,
    iterations: int = 100,
    confidence: float = CONFIDENCE,
    whole_pixels: bool = False,
) -> AttackResult:
    """Iterative Linf attack under the budget eps (pixel units) on one (C, H, W) image: see
    projected_batch. result.passes counts the gradients computed (forward + backward)."""
    images, passes = projected_batch(
        model,
        x[None],
        [target],
        eps,
        step=step,
        iterations=iterations,
        confidence=confidence,
        whole_pixels=whole_pixels,
    )
    return _result(model, x, images[0], target, confidence, int(passes[0]))


def gradient_batch(model: Any, xs: np.ndarray, targets: Sequence[int] | np.ndarray, eps: float) -> np.ndarray:
    """The blog's step on a (n, C, H, W) batch, one target each, scaled to Linf eps: x + eps * g / max|g|
    with g = d score_target / dx (for a linear model w_target: the blog's direction); clipped to 0..255."""
    _, grad = model.gradient(xs, targets, objective="score")
    peak = np.abs(grad).reshape(len(grad), -1).max(axis=1).reshape(-1, *([1] * (grad.ndim - 1)))
    return np.clip(xs + eps * grad / np.maximum(peak, 1e-30), 0, PIXEL_MAX).astype(np.float32)


def sign_batch(model: Any, xs: np.ndarray, targets: Sequence[int] | np.ndarray, eps: float) -> np.ndarray:
    """The fast gradient sign step on a (n, C, H, W) batch, one target each: (n, C, H, W) float32 images."""
    _, grad = model.gradient(xs, targets, objective="logprob")
    return np.clip(xs + eps * np.sign(grad), 0, PIXEL_MAX).astype(np.float32)


def projected_batch(
    model: Any,
    xs: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    eps: float,
    *,
    step: float | None = None,
    iterations: int = 100,
    confidence: float = CONFIDENCE,
    whole_pixels: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Iterative Linf attack under the budget eps (pixel units) on a (n, C, H, W) batch, one target
    each: sign steps of `step` (default eps/10, at least 1/4 pixel) on log p_target, each projected
    back into [x - eps, x + eps] and 0..255; an image stops as soon as P(target) >= confidence (the
    others go on, batched). whole_pixels (xs whole already): every step is rounded to whole pixel
    values inside the budget (and is at least 1), so the confidence is judged on the very image an
    8-bit file holds. Returns ((n, C, H, W) float32 images, (n,) gradients computed for each)."""
    xs = np.asarray(xs, np.float32)
    targets = np.asarray(targets)
    step = max(eps / 10, 0.25) if step is None else step
    low, high = np.clip(xs - eps, 0, PIXEL_MAX), np.clip(xs + eps, 0, PIXEL_MAX)
    if whole_pixels:
        step, low, high = max(step, 1.0), np.ceil(low), np.floor(high)
    images, passes = xs.copy(), np.zeros(len(xs), int)
    active = np.arange(len(xs))
    for n in range(1, iterations + 1):
        probs, grad = model.gradient(images[active], targets[active], objective="logprob")
        passes[active] = n
        going = probs[np.arange(len(active)), targets[active]] < confidence
        active, grad = active[going], grad[going]
        if not len(active):
            break
        moved = images[active] + step * np.sign(grad)
        images[active] = np.clip(np.rint(moved) if whole_pixels else moved, low[active], high[active])
    return images, passes
