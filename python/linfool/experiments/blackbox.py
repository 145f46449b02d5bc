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
    recovered templates then fool as white-box ones do (attacks.blog.fool along W_c[target]).

Pairs: seeded val images (linfool.experiments.pairs.pair_sample), one target each. Writes runs/<run>/blackbox/
blackbox.json and blackbox.png (true vs recovered templates) for the run and its sweep companions.
"""

import sys
import time
from types import SimpleNamespace

import numpy as np

from linfool.attacks import CONFIDENCE, IMAGES_PER_FORWARD, blog
from linfool.attacks.square import Oracle, square_attacks
from linfool.core import cli, conventions, files, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.experiments import templates
from linfool.experiments.pairs import pair_sample
from linfool.model import weights
from linfool.model.classifier import Classifier

GREY, STEP = 127.5, 127.5  # recovery: start at mid-grey, move one pixel to 255 (large steps: float32 precision)
PAIRS = stages.default("blackbox", "images")  # one target each
MAX_QUERIES = stages.default("blackbox", "queries")
SEED = conventions.SEED


def centred_log_probs(probs):
    """(n, K) probabilities -> (n, K) float64 log p minus its mean over classes (= centred scores)."""
    probs = np.asarray(probs, dtype=np.float64)
    if (probs <= 0).any():
        raise ValueError("a class probability underflowed to 0 at the recovery image; its score cannot be read")
    logp = np.log(probs)
    return logp - logp.mean(axis=1, keepdims=True)


def recover_templates(oracle, shape=conventions.IMAGE_SHAPE, grey=GREY, step=STEP):
    """W_c = W - mean over classes, (K, prod(shape)) float64, from 1 + prod(shape) queries: the grey
    image, then each pixel (channel-major, BGR) moved by `step`. Exact for a linear softmax up to
    float32 rounding of the probabilities."""
    x0 = np.full(shape, grey, dtype=np.float32)
    reference = centred_log_probs(oracle(x0[None]))[0]
    n = int(np.prod(shape))
    recovered = np.empty((len(reference), n))
    for first in range(0, n, IMAGES_PER_FORWARD):
        pixels = np.arange(first, min(first + IMAGES_PER_FORWARD, n))
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
    whites = blog.fool_each(classifier, xs, targets)
    rebuilt = blog.fool_each(from_scores, xs, targets)  # blog.FORWARDS queries a pair
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
                "recovered_queries": recovery["queries"] + blog.FORWARDS,
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
            f"blackbox, run {run.name}: recovery needs {conventions.PIXELS + 1} queries; square attack up to "
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
        median = f"median {stats.median_text(queries, '95 %: ', ' queries')}" if queries else "none reached"
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
