"""`make blackbox`: fooling with scores only. The blog: "possible even if you do not have access to
the parameters". The attacks see each run's Caffe model as an oracle, images in (0..255 BGR) and
softmax probabilities out (pycaffe forwards of the deploy net, mean subtraction included), and count
every image sent as one query. No weight is read for an attack; the true W is read afterwards only
to score the recovered templates.

    python -m linfool blackbox --run blog [--low reg_low --high reg_high] [--images 6] [--queries 10000]

(a) Random search: the square attack (Andriushchenko et al. 2020, targeted, Linf): start from
    vertical stripes of +-eps, then repeatedly set a random square to random +-eps per channel and
    keep it when the margin log p_target - max_other log p rises; stop at P(target) >= 0.99. The
    budget eps is the Linf that the blog's white-box attack (x + alpha * w_target) needed on the
    same pair, so the rows compare queries at an equal Linf.
(b) Exact recovery: for a linear softmax, log p_i - log p_j = s_i - s_j, so the class-mean-centred
    log-probabilities are the centred scores W_c (x - mean) + b_c. One query at a grey image and one
    per pixel moved by STEP (12,289 queries, batched) give every column of W_c = W - mean over classes:
    W up to the one vector that all class rows share, which no softmax output can reveal. The
    recovered templates then fool as white-box ones do (fooling.fool along W_c[target]).

Pairs: seeded val images (linfool.experiments.pairs.pair_sample), one target each. Writes runs/<run>/blackbox/
blackbox.json and blackbox.png (true vs recovered templates) for the run and its sweep companions.
"""

import sys
import time
from types import SimpleNamespace

import numpy as np

from linfool.core import cli, conventions, files, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.experiments import fooling, templates
from linfool.experiments.pairs import pair_sample
from linfool.model import weights
from linfool.model.classifier import Classifier

CONFIDENCE = 0.99
CHUNK = 1024  # images per pycaffe forward
GREY, STEP = 127.5, 127.5  # recovery: start at mid-grey, move one pixel to 255 (large steps: float32 precision)
PAIRS = stages.default("blackbox", "images")  # one target each
MAX_QUERIES = stages.default("blackbox", "queries")
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
        return np.concatenate([self._probs(images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)])


def margin(probs, target):
    """log p_target - max over the other classes of log p: > 0 iff the target is the top class."""
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-45))
    return logp[target] - np.delete(logp, target).max()


def square_side(queries, budget, side):
    """The square attack's side schedule: a fraction p of the image, halved at 1/1000, 5, 20, 50,
    100, 200, 400, 600, 800 thousandths of the query budget (the paper's schedule, rescaled)."""
    p = 0.05
    for mark in (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8):
        p /= 2 if queries > mark * budget else 1
    return int(np.clip(np.rint(np.sqrt(p * side * side)), 1, side - 1))


def square_attack(oracle, x, target, eps, max_queries=MAX_QUERIES, seed=SEED, confidence=CONFIDENCE):
    """Targeted Linf square attack on x ((C, H, W) float 0..255 BGR) within eps. Returns a dict:
    queries used, reached (P(target) >= confidence), prob, linf (of the clipped perturbation), image."""
    return square_attacks(oracle, np.asarray(x)[None], [target], [eps], max_queries, [seed], confidence)[0]


def square_attacks(oracle, xs, targets, eps, max_queries=MAX_QUERIES, seeds=(SEED,), confidence=CONFIDENCE):
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


def centred_log_probs(probs):
    """(n, K) probabilities -> (n, K) float64 log p minus its mean over classes (= centred scores)."""
    probs = np.asarray(probs, dtype=np.float64)
    if (probs <= 0).any():
        raise ValueError("a class probability underflowed to 0 at the recovery image; its score cannot be read")
    logp = np.log(probs)
    return logp - logp.mean(axis=1, keepdims=True)


def recover_templates(oracle, shape=(3, 64, 64), grey=GREY, step=STEP):
    """W_c = W - mean over classes, (K, prod(shape)) float64, from 1 + prod(shape) queries: the grey
    image, then each pixel (channel-major, BGR) moved by `step`. Exact for a linear softmax up to
    float32 rounding of the probabilities."""
    x0 = np.full(shape, grey, dtype=np.float32)
    reference = centred_log_probs(oracle(x0[None]))[0]
    n = int(np.prod(shape))
    recovered = np.empty((len(reference), n))
    for first in range(0, n, CHUNK):
        pixels = np.arange(first, min(first + CHUNK, n))
        batch = np.repeat(x0.reshape(1, n), len(pixels), axis=0)
        batch[np.arange(len(pixels)), pixels] += step
        recovered[:, pixels] = ((centred_log_probs(oracle(batch.reshape(-1, *shape))) - reference) / step).T
    return recovered


def template_agreement(recovered, W):
    """How well recovered centred templates match the true W: per-class Pearson correlation with
    W - mean over classes (mean and min), and the largest absolute error relative to max |W_c|."""
    true = np.asarray(W, dtype=np.float64)
    true = true - true.mean(axis=0)
    a = recovered - recovered.mean(axis=1, keepdims=True)
    b = true - true.mean(axis=1, keepdims=True)
    corr = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return {
        "correlation_mean": float(corr.mean()),
        "correlation_min": float(corr.min()),
        "max_abs_error_relative": float(np.abs(recovered - true).max() / np.abs(true).max()),
    }


def blackbox_run(run_dir, pairs=PAIRS, max_queries=MAX_QUERIES):
    """Both attacks on one run; returns the json dict (plus 'recovered' (K, 12288) for the figure)."""
    classifier = Classifier(run_dir)
    oracle = Oracle(classifier.probs)
    num_classes = len(classifier.params["names"])
    images, labels, which, targets, about = pair_sample(
        classifier.run.dataset().lmdb("val"), num_classes, n_images=pairs, pairs=pairs
    )
    keep = np.unique(which, return_index=True)[1]  # one target per image
    which, targets = which[keep], targets[keep]
    started = time.time()
    recovered = recover_templates(oracle)
    recovery = {
        "queries": oracle.queries,
        "seconds": round(time.time() - started, 1),
        **template_agreement(recovered, classifier.params["W"]),
    }
    from_scores = SimpleNamespace(params={"W": recovered}, probs=oracle)  # fool.fool reads only these two
    names = [str(n) for n in classifier.params["names"]]
    xs = images[which]
    whites = fooling.fool_each(classifier, xs, targets)
    rebuilt = fooling.fool_each(from_scores, xs, targets)  # fooling.FORWARDS queries a pair
    budgets = [max(white.linf, 1.0) for white in whites]
    blacks = square_attacks(oracle, xs, targets, budgets, max_queries, seeds=SEED + np.arange(len(xs)))
    rows = []
    for i, target, white, black, again in zip(which, targets, whites, blacks, rebuilt):
        rows.append(
            {
                "start": names[labels[i]],
                "target": names[target],
                "whitebox_linf": white.linf,
                "whitebox_prob": white.prob,
                "squares_budget_linf": max(white.linf, 1.0),
                "squares_queries": black["queries"],
                "squares_reached": black["reached"],
                "squares_prob": black["prob"],
                "squares_linf": black["linf"],
                "recovered_linf": again.linf,
                "recovered_prob": again.prob,
                "recovered_queries": recovery["queries"] + fooling.FORWARDS,
            }
        )
        print(
            f"  {classifier.run.name}: {rows[-1]['start']} -> {rows[-1]['target']}: square attack "
            f"{black['queries']} queries, P {black['prob']:.3f} at Linf {black['linf']:.1f} "
            f"(white-box Linf {white.linf:.1f})",
            flush=True,
        )
    reached = [r["squares_queries"] for r in rows if r["squares_reached"]]
    return {
        "run": classifier.run.name,
        "data": classifier.run.dataset().name,
        "confidence": CONFIDENCE,
        "sample": about | {"pairs": len(rows)},
        "max_queries": max_queries,
        "seed": SEED,
        "recovery": recovery,
        "rows": rows,
        "squares_reached": len(reached),
        "squares_reached_ci": stats.proportion(len(reached), len(rows), "exact"),  # of the n pairs, 95 %
        "squares_median_queries": float(np.median(reached)) if reached else None,
        "squares_median_queries_ci": stats.median(reached) if reached else None,  # order statistics, 95 %
        "recovered": recovered,
    }


def plot_templates(result, W, names, out, classes=4):
    """True centred templates (top row) beside the ones recovered from scores (bottom row)."""
    chosen = [names.index(r["target"]) for r in result["rows"]][:classes] or list(range(min(classes, len(names))))
    true = np.asarray(W, dtype=np.float64) - np.asarray(W, dtype=np.float64).mean(axis=0)
    fig, axes = plt.subplots(2, len(chosen), figsize=(2 * len(chosen), 5), squeeze=False)
    for col, label in enumerate(chosen):
        for row, (matrix, what) in enumerate(((true, "true"), (result["recovered"], "from scores"))):
            axes[row, col].imshow(templates.template_rgb(matrix[label]), interpolation="nearest")
            axes[row, col].set_title(f"{names[label][:16]}\n{what}", fontsize=8)
            axes[row, col].axis("off")
    rec = result["recovery"]
    fig.suptitle(
        f"Run {result['run']}: templates minus their class mean, recovered with {rec['queries']} "
        f"queries (correlation {rec['correlation_mean']:.6f})",
        fontsize=9,
    )
    fig.tight_layout()
    save(fig, out)


def make_blackbox(group, pairs=PAIRS, max_queries=MAX_QUERIES, command=""):
    """blackbox.json and blackbox.png for each run (runs/<run>/blackbox/, published whole); returns
    the results (without 'recovered')."""
    results = []
    for run in group:
        print(
            f"blackbox, run {run.name}: recovery needs {12288 + 1} queries; square attack up to "
            f"{max_queries} per pair, {pairs} pairs",
            flush=True,
        )
        result = blackbox_run(run, pairs, max_queries)
        with files.building_dir(run.path / "blackbox") as out:
            params = weights.load(run)
            plot_templates(result, params["W"], [str(n) for n in params["names"]], out / "blackbox.png")
            del result["recovered"]
            result.update(command=command, sources=[run.source()])
            files.write_json(out / "blackbox.json", result)
        results.append(result)
        reached, queries = result["squares_reached_ci"], result["squares_median_queries_ci"]
        median = (
            f"median {queries['value']:.0f} queries, 95 % {queries['low']:.0f}-{queries['high']:.0f}"
            if queries
            else "none reached"
        )
        print(
            f"{run.name}: recovered templates, correlation {result['recovery']['correlation_mean']:.5f}; "
            f"square attack reached {reached['k']}/{reached['n']} pairs (95 % {100 * reached['low']:.0f}-"
            f"{100 * reached['high']:.0f} %; {median})",
            flush=True,
        )
    return results


def main(argv=None) -> int:
    args = stages.parse("blackbox", argv)

    def body():
        group = runs.group(args.run, args.low, args.high)
        with runs.locked(write=group):
            make_blackbox(
                group,
                args.images,
                args.queries,
                stages.command("blackbox", args),
            )

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
