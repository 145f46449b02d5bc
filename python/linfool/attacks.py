"""`make attack-curves`: how hard fooling is, measured on each run's Caffe model.

    python -m linfool.attacks --run blog [--run reg_low --run reg_high] [--images 30]

For a fixed sample of (val image, target) pairs, the fraction fooled to P(target) >= 0.99 as a
function of the Linf budget epsilon (0..255 in steps of 1, i.e. 1/255 of the pixel range), for two
directions of the same Linf size:
  blog:  epsilon * w_target / max|w_target|     (the blog's "add a multiple of the template")
  sign:  epsilon * sign(w_target - w_true)      (the Linf-optimal direction for a linear model,
                                                 Goodfellow et al. 2014)
Images are clipped to 0..255 before the pycaffe forward. Closed form: a perturbation with Linf <=
epsilon moves the score gap s_target - s_true by at most epsilon * ||w_target - w_true||_1 (the sign
direction reaches it), and P(target) >= 0.99 needs that gap >= ln 99, so no attack can fool a pair
below epsilon* = (s_true - s_target + ln 99) / ||w_target - w_true||_1: the "bound" curve.

Writes runs/<run>/attacks/attack_curves.json and .png, and (first run) attack_curves_runs.png.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from linfool import evaluate, fooling, paths, weights  # noqa: E402

CONFIDENCE = 0.99
EPSILONS = np.arange(256)            # Linf budgets in 0..255 pixel units
KINDS = ("blog", "sign")
SAMPLE_SEED = 1701
CHUNK = 1024                         # images per pycaffe forward


def sample_pairs(labels, num_classes, n_images, targets_per_image=None, seed=SAMPLE_SEED):
    """A fixed sample of (image index, target) pairs: n_images val images, and for each all other
    classes (or `targets_per_image` of them at random). Returns two (n_pairs,) int arrays."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(labels), size=min(n_images, len(labels)), replace=False))
    images, targets = [], []
    for i in chosen:
        others = np.delete(np.arange(num_classes), labels[i])
        if targets_per_image is not None and targets_per_image < len(others):
            others = np.sort(rng.choice(others, size=targets_per_image, replace=False))
        images += [i] * len(others)
        targets += list(others)
    return np.array(images, dtype=int), np.array(targets, dtype=int)


def directions(W, true, targets, kind):
    """(n, 12288) float32 directions with Linf 1 (so epsilon * d has Linf epsilon)."""
    if kind == "sign":
        return np.sign(W[targets] - W[true]).astype(np.float32)
    if kind == "blog":
        rows = W[targets]
        return (rows / np.abs(rows).max(axis=1, keepdims=True)).astype(np.float32)
    raise ValueError(f"unknown direction {kind!r}; use one of {KINDS}")


def fooled_at(classifier, images, targets, direction, epsilons=EPSILONS):
    """(len(epsilons), n) bool: P(target | clip(x + eps * d)) >= CONFIDENCE, from pycaffe.
    images: (n, 3, 64, 64) float32 0..255 BGR; direction: (n, 12288)."""
    flat = images.reshape(len(images), -1)
    fooled = np.zeros((len(epsilons), len(images)), dtype=bool)
    for start in range(0, len(images), CHUNK):
        part = slice(start, start + CHUNK)
        rows = np.arange(len(flat[part]))
        for e, eps in enumerate(epsilons):
            batch = np.clip(flat[part] + np.float32(eps) * direction[part], 0, 255)
            probs = classifier.probs(batch.reshape(-1, 3, 64, 64))
            fooled[e, part] = probs[rows, targets[part]] >= CONFIDENCE
    return fooled


def bound_epsilon(classifier, images, true, targets):
    """(n,) epsilon* = (s_true - s_target + ln 99) / ||w_target - w_true||_1 (>= 0): below it no
    Linf perturbation can give P(target) >= 0.99. Scores from the pycaffe forward."""
    W = classifier.params["W"]
    scores = np.concatenate([classifier.forward(images[i:i + CHUNK])[0] for i in range(0, len(images), CHUNK)])
    rows = np.arange(len(images))
    gap = scores[rows, true] - scores[rows, targets] + np.log(CONFIDENCE / (1 - CONFIDENCE))
    return np.maximum(gap, 0) / np.abs(W[targets] - W[true]).sum(axis=1)


def first_epsilon(fooled, epsilons=EPSILONS):
    """(n,) smallest epsilon at which each pair is fooled (inf when never within the grid)."""
    hit = fooled.any(axis=0)
    return np.where(hit, np.asarray(epsilons, float)[fooled.argmax(axis=0)], np.inf)


def _median(values):
    return float(np.median(values))     # json writes inf as Infinity, which json.loads reads back


def attack_curves(run_dir, n_images=30, targets_per_image=None, num_classes=None):
    """Measure both directions and the bound on the run's val sample; returns the json dict.
    Targets are drawn from the first `num_classes` classes (default: all)."""
    classifier = fooling.Classifier(run_dir)
    W = classifier.params["W"]
    images, labels = evaluate.read_lmdb(weights.run_data_dir(run_dir) / "val_lmdb", limit=5000)
    which, targets = sample_pairs(labels, num_classes or len(W), n_images, targets_per_image)
    x, true = images[which].astype(np.float32), labels[which]
    result = {"run": run_dir.name, "confidence": CONFIDENCE, "pairs": len(targets), "images": n_images,
              "epsilons": EPSILONS.tolist(), "curves": {}, "median_epsilon": {}}
    for kind in KINDS:
        fooled = fooled_at(classifier, x, targets, directions(W, true, targets, kind))
        result["curves"][kind] = fooled.mean(axis=1).tolist()
        result["median_epsilon"][kind] = _median(first_epsilon(fooled))
    bound = bound_epsilon(classifier, x, true, targets)
    result["curves"]["bound"] = [float((bound <= eps).mean()) for eps in EPSILONS]
    result["median_epsilon"]["bound"] = _median(bound)
    result["median_l1_gap_norm"] = _median(np.abs(W[targets] - W[true]).sum(axis=1))
    return result


def _median_text(value):
    return f"median {value:.1f}" if np.isfinite(value) else "median not reached within 255"


def _finish(fig, ax, title, out):
    """Shared axes of the attack plots (epsilon on a symlog axis over 0..255), then save."""
    ax.set(xlabel="Linf budget epsilon (0..255 pixel units)", ylabel=f"fraction fooled to P >= {CONFIDENCE}",
           ylim=(-0.02, 1.02), title=title)
    ax.set_xscale("symlog", linthresh=4)
    ax.set_xlim(0, 255)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_run(result, out):
    """One run: fooled fraction vs epsilon for both directions and the closed-form bound."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    eps = np.array(result["epsilons"])
    styles = {"blog": ("blog direction: eps * w_t / max|w_t|", "-"), "sign": ("sign(w_t - w_y)", "-"),
              "bound": ("bound: no Linf attack fools below eps*", "--")}
    for kind, (label, line) in styles.items():
        ax.plot(eps, result["curves"][kind], line, label=f"{label}  ({_median_text(result['median_epsilon'][kind])})")
    _finish(fig, ax, f"Fooling difficulty, run {result['run']} ({result['pairs']} image-target pairs)", out)


def plot_runs(results, out):
    """Runs of different regularization on one plot: the blog direction solid, sign dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for result, color in zip(results, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for kind, line in (("blog", "-"), ("sign", ":")):
            ax.plot(result["epsilons"], result["curves"][kind], line, color=color,
                    label=f"run {result['run']}, {kind} direction ({_median_text(result['median_epsilon'][kind])})")
    _finish(fig, ax, "Fooling difficulty across runs", out)


def make_attack_curves(runs, n_images=30, targets_per_image=None):
    """attack_curves.json/.png for each run, and the comparison plot in the first run's folder."""
    results = []
    for run in runs:
        out = paths.run_dir(run) / "attacks"
        out.mkdir(parents=True, exist_ok=True)
        result = attack_curves(paths.run_dir(run), n_images, targets_per_image)
        result["command"] = "python -m linfool.attacks " + " ".join(f"--run {r}" for r in runs)
        (out / "attack_curves.json").write_text(json.dumps(result, indent=1) + "\n")
        plot_run(result, out / "attack_curves.png")
        results.append(result)
        print(f"{run}: median epsilon to fool to {CONFIDENCE}: " + ", ".join(
            f"{k} {v:.1f}" for k, v in result["median_epsilon"].items()), flush=True)
    plot_runs(results, paths.run_dir(runs[0]) / "attacks" / "attack_curves_runs.png")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="run name (repeat to compare)")
    parser.add_argument("--images", type=int, default=30, help="val images in the sample")
    parser.add_argument("--targets-per-image", type=int, help="default: every other class")
    args = parser.parse_args(argv)
    runs = [r for r in dict.fromkeys(args.run) if any(paths.run_dir(r).glob("*.caffemodel"))]
    if not runs:
        print(f"ERROR: none of {args.run} has a snapshot; run `make train` first", file=sys.stderr)
        return 2
    make_attack_curves(runs, args.images, args.targets_per_image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
