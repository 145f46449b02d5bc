"""The report's "explore" section: pick a start image and a target class, drag alpha, and watch the
linear classifier being fooled, live in the browser, offline (plain HTML + explore.js, no server).

Why it can be exact and small: before clipping, the scores of x + alpha * w_t are
s(x) + alpha * (W w_t), so per start image the page needs s(x) (K scores, from a pycaffe forward)
and x; per target W w_t (K numbers) and w_t (12,288) for the picture. Clipping to 0..255 makes the
true scores differ: the page computes the unclipped probabilities live, marks the alpha where
clipping starts, and at the alpha that blog.fool settles on (smallest alpha with P >= 0.99 after
clipping) shows the probability Caffe computed for the clipped image.

Sizes at K = 1000: the page embeds the numbers (start images float32, scores, settled alphas and
Caffe's probabilities: ~0.5 MB); the per-target data (w_t as uint8 in its own min..max, W w_t as
float16: ~14 KB a class, 14 MB at 1000 classes, more than a page should carry) sit beside it in
explore/<page id>/templates_<i>.js files of CLASSES_PER_FILE classes (a folder per page, so that a page never
loads another page's data), loaded by a <script> tag when a target in them is picked (works from
file://). The quantization errors are measured here and printed on the page.
"""

import base64
from pathlib import Path

import numpy as np

from linfool.attacks import blog
from linfool.core import cli, conventions, records, runs
from linfool.experiments import templates
from linfool.model.classifier import Classifier

CLASSES_PER_FILE = 100  # target classes per explore/templates_<i>.js
VAL_STARTS = 3  # val images besides the figures' start image, seeded
SEED = conventions.SEED


def _b64(array, dtype):
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def start_images(run_dir, params, start=templates.START):
    """[(label text, (3, 64, 64) float32 0..255 BGR)]: the fooling figure's start image (first val
    image of class `start`), VAL_STARTS seeded val images and the noise figure's image."""
    val = runs.as_run(run_dir).dataset().lmdb("val")
    chosen = records.random_positions(records.count(val), VAL_STARTS, SEED)
    images, labels = records.read(val, chosen)
    starts = [
        (
            f"val image: {params['names'][templates.find_class(params, start)]}",
            templates.start_image(run_dir, params, start),
        )
    ]
    starts += [
        (f"val image: {params['names'][label]} (record {position})", image.astype(np.float32))
        for position, image, label in zip(chosen, images, labels)
    ]
    return starts + [("uniform noise (the noise figure's)", blog.noise_image())]


def clip_alphas(x, W):
    """(K,) the alpha at which x + alpha * w_t first leaves 0..255 in some pixel (inf if never)."""
    x = x.reshape(1, -1).astype(np.float64)
    with np.errstate(divide="ignore"):
        room = np.where(W > 0, (255 - x) / W, np.where(W < 0, -x / W, np.inf))
    return room.min(axis=1)


def quantize_templates(W):
    """uint8 templates, each in its own min..max, and the (K,) min and max to decode them."""
    low, high = W.min(axis=1, keepdims=True), W.max(axis=1, keepdims=True)
    q = np.rint((W - low) / np.maximum(high - low, 1e-30) * 255).astype(np.uint8)
    return q, low[:, 0], high[:, 0]


def live_probs(scores, alphas, gram_rows):
    """What the page computes: softmax(s(x) + alpha * W w_t) for (n, K) (or (1, K)) scores, (n,) alphas
    and (n, K) rows of W W^T. float64."""
    z = scores.astype(np.float64) + alphas[:, None] * gram_rows.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def build(run_dir, start, target, chunk_dir, chunk_url):
    """Compute the explore data of a run, write its templates_<i>.js into `chunk_dir` (the page
    loads them from `chunk_url`/templates_<i>.js), return the embedded data dict; the page opens on
    the fooling figure's `start` image and `target` (wnid or name).
    Caffe: the start images' scores and, per start and target, the settled alpha and P(target) of
    the clipped image (blog.fool, pycaffe forwards)."""
    classifier = Classifier(run_dir)
    params = classifier.params
    W = params["W"].astype(np.float64)
    K = len(W)
    starts = start_images(run_dir, params, start)
    xs = np.stack([x for _, x in starts])
    scores = classifier.forward(xs)[0]
    targets = np.arange(K)
    settled = [
        blog.fool(classifier, x, targets)
        for x in cli.progress(xs, desc="explore: every target per start image", unit="start")
    ]
    alpha_star = np.array([[r.alpha for r in results] for results in settled])
    prob_star = np.array([[r.prob for r in results] for results in settled])
    gram = W @ W.T
    gram16 = gram.astype(np.float16)
    q, low, high = quantize_templates(W)
    # The quantization errors, measured on what the page will decode.
    exact = np.stack([live_probs(s[None], a, gram)[targets, targets] for s, a in zip(scores, alpha_star)])
    page = np.stack([live_probs(s[None], a, gram16)[targets, targets] for s, a in zip(scores, alpha_star)])
    decoded = low[:, None] + q * ((high - low) / 255)[:, None]
    pixel_error = float((np.abs(decoded - W).max(axis=1) * alpha_star.max(axis=0)).max())
    out = Path(chunk_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, first in enumerate(range(0, K, CLASSES_PER_FILE)):
        rows = slice(first, min(first + CLASSES_PER_FILE, K))
        name = f"templates_{i}.js"
        (out / name).write_text(
            f'linfoolExplore.chunk({i}, "{_b64(q[rows], np.uint8)}", "{_b64(gram16[rows], np.float16)}");\n'
        )
        files.append(f"{chunk_url}/{name}")
    target_index = templates.find_class(params, target)
    return {
        "run": runs.as_run(run_dir).name,
        "names": [str(n) for n in params["names"]],
        "wnids": [str(w) for w in params["wnids"]],
        "starts": [label for label, _ in starts],
        "x": [_b64(x, np.float32) for x in xs],
        "scores": _b64(scores, np.float32),
        "alpha_star": _b64(alpha_star, np.float32),
        "prob_star": _b64(prob_star, np.float32),
        "clip_alpha": _b64(np.stack([clip_alphas(x, W) for x in xs]), np.float32),
        "w_absmax": _b64(np.abs(W).max(axis=1), np.float32),
        "w_low": _b64(low, np.float32),
        "w_high": _b64(high, np.float32),
        "chunk": CLASSES_PER_FILE,
        "files": files,
        "prob_error": float(np.abs(page - exact).max()),
        "pixel_error": pixel_error,
        "default": {"start": 0, "target": int(target_index)},
    }
