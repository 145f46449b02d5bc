"""`make attack-curves`: how hard fooling is, measured on each run's Caffe model.

    python -m linfool.attacks --run blog [--low reg_low --high reg_high] [--images 30] [--pairs 510]

For a fixed sample of (val image, target) pairs (seeded: --images val images drawn from all val
records, and for each min(K - 1, pairs / images) target classes drawn from the other classes; on
the 18-class demo that is every other class, at 1000 classes a sample, stated in the output), the
fraction fooled to P(target) >= 0.99 as a
function of the Linf budget epsilon (0..255 in steps of 1, i.e. 1/255 of the pixel range), for two
directions of the same Linf size:
  blog:  epsilon * w_target / max|w_target|     (the blog's "add a multiple of the template")
  sign:  epsilon * sign(w_target - w_true)      (the Linf-optimal direction for a linear model,
                                                 Goodfellow et al. 2014)
Images are clipped to 0..255 before the pycaffe forward. Closed form: a perturbation with Linf <=
epsilon moves the score gap s_target - s_true by at most epsilon * ||w_target - w_true||_1 (the sign
direction reaches it), and P(target) >= 0.99 needs that gap >= ln 99, so no attack can fool a pair
below epsilon* = (s_true - s_target + ln 99) / ||w_target - w_true||_1: the "bound" curve.

Cost: pairs x 256 budgets x 2 directions pycaffe forwards (510 pairs: 261,120), printed with an
estimated time before it starts. Runs: --run and its sweep companions (linfool.runs.group: --low and
--high default to runs.sweep_names), those trained so far, all on one data set. Writes each run's
runs/<run>/attacks/ whole (attack_curves.json with its snapshot and data set, attack_curves.png),
and attack_curves_runs.png under --run's.
"""
import math
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from linfool import cli, files, fooling, records, runs  # noqa: E402

CONFIDENCE = 0.99
EPSILONS = np.arange(256)            # Linf budgets in 0..255 pixel units
KINDS = ("blog", "sign")
SAMPLE_SEED = 1701
CHUNK = 1024                         # images per pycaffe forward


IMAGES = 30                          # val images in the sample
PAIRS = 510                          # (image, target) pairs: 30 x 17 = every other class on the demo


def sample_pairs(image_labels, num_classes, targets_per_image=None, rng=None):
    """For each sampled image, all other classes (or `targets_per_image` of them at random):
    (which image, target) as two (n_pairs,) int arrays; never the image's own class."""
    rng = rng if rng is not None else np.random.default_rng(SAMPLE_SEED)
    which, targets = [], []
    for i, label in enumerate(image_labels):
        others = np.delete(np.arange(num_classes), label)
        if targets_per_image is not None and targets_per_image < len(others):
            others = np.sort(rng.choice(others, size=targets_per_image, replace=False))
        which += [i] * len(others)
        targets += list(others)
    return np.array(which, dtype=int), np.array(targets, dtype=int)


def pair_sample(val_lmdb, num_classes, n_images=IMAGES, pairs=PAIRS, seed=SAMPLE_SEED):
    """The fixed sample: n_images val records drawn uniformly from the whole LMDB (seeded), then
    targets per image. Returns (images (n, 3, 64, 64) float32 0..255 BGR, labels (n,), which, targets,
    description dict)."""
    rng = np.random.default_rng(seed)
    n_records = records.count(val_lmdb)
    positions = np.sort(rng.choice(n_records, size=min(n_images, n_records), replace=False))
    images, labels = records.read(val_lmdb, positions)
    per_image = min(num_classes - 1, math.ceil(pairs / max(len(positions), 1)))
    which, targets = sample_pairs(labels, num_classes, per_image, rng)
    about = {"images": len(positions), "targets_per_image": per_image, "pairs": len(targets),
             "possible_pairs": len(positions) * (num_classes - 1), "val_records": n_records, "seed": seed}
    return images.astype(np.float32), labels, which, targets, about


def describe(about, forwards, seconds_per_forward):
    """One line: the sample and its cost before the work starts."""
    return (f"{about['images']} val images (of {about['val_records']}) x {about['targets_per_image']} targets = "
            f"{about['pairs']} pairs (of {about['possible_pairs']} possible; seed {about['seed']}): {forwards:,} pycaffe "
            f"forwards, about {forwards * seconds_per_forward / 60:.1f} min at {1 / seconds_per_forward:,.0f} images/s")


def seconds_per_forward(classifier, batch=CHUNK):
    """Measured seconds per image of a pycaffe forward at `batch` images (after one warm-up)."""
    x = np.full((batch, 3, 64, 64), 128, np.float32)
    classifier.probs(x)
    start = time.perf_counter()
    classifier.probs(x)
    return (time.perf_counter() - start) / batch


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
    epsilons = np.asarray(epsilons, np.float32)
    fooled = np.zeros((len(epsilons), len(images)), dtype=bool)
    for start in range(0, len(images), CHUNK):
        part = slice(start, start + CHUNK)
        n = len(flat[part])
        group = max(1, CHUNK // n)          # several budgets per forward: batches of about CHUNK images
        for e in range(0, len(epsilons), group):
            eps = epsilons[e:e + group, None, None]
            batch = np.clip(flat[part][None] + eps * direction[part][None], 0, 255)
            probs = classifier.probs(batch.reshape(-1, 3, 64, 64)).reshape(len(eps), n, -1)
            fooled[e:e + group, part] = probs[:, np.arange(n), targets[part]] >= CONFIDENCE
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


def attack_curves(run, n_images=IMAGES, pairs=PAIRS, num_classes=None, quiet=False):
    """Measure both directions and the bound on the run's val sample; returns the json dict.
    Targets are drawn from the first `num_classes` classes (default: all)."""
    run = runs.as_run(run)
    classifier = fooling.Classifier(run)
    W = classifier.params["W"]
    val = run.dataset().lmdb("val")
    images, labels, which, targets, about = pair_sample(val, num_classes or len(W), n_images, pairs)
    x, true = images[which], labels[which]
    forwards = len(targets) * (len(EPSILONS) * len(KINDS) + 1)
    if not quiet:
        print(f"attack curves, run {run.name}: " + describe(about, forwards, seconds_per_forward(classifier)),
              flush=True)
    result = {"run": run.name, "data": run.dataset().name, "confidence": CONFIDENCE, **about,
              "forwards": forwards, "epsilons": EPSILONS.tolist(), "curves": {}, "median_epsilon": {}}
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
    _finish(fig, ax, f"Fooling difficulty, run {result['run']} ({result['pairs']} image-target pairs: "
                     f"{result['images']} images x {result['targets_per_image']} targets)", out)


def plot_runs(results, out):
    """Runs of different regularization on one plot: the blog direction solid, sign dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for result, color in zip(results, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for kind, line in (("blog", "-"), ("sign", ":")):
            ax.plot(result["epsilons"], result["curves"][kind], line, color=color,
                    label=f"run {result['run']}, {kind} direction ({_median_text(result['median_epsilon'][kind])})")
    _finish(fig, ax, "Fooling difficulty across runs", out)


def make_attack_curves(group, n_images=IMAGES, pairs=PAIRS, command=""):
    """attack_curves.json/.png for each run (each run's attacks/ published whole once all are
    measured), and the comparison plot in the first run's folder."""
    results = []
    for run in group:
        result = attack_curves(run, n_images, pairs)
        result.update(command=command, sources=[run.source()])
        results.append(result)
        print(f"{run.name}: median epsilon to fool to {CONFIDENCE}: " + ", ".join(
            f"{k} {v:.1f}" for k, v in result["median_epsilon"].items()), flush=True)
    for run, result in zip(group, results):
        with files.building_dir(run.path / "attacks") as out:
            plot_run(result, out / "attack_curves.png")
            if run == group[0]:
                plot_runs(results, out / "attack_curves_runs.png")
            files.write_json(out / "attack_curves.json", result)
    return results


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    runs.add_group_arguments(parser)
    parser.add_argument("--images", type=cli.positive_int, default=IMAGES, help="val images in the sample")
    parser.add_argument("--pairs", type=cli.positive_int, default=PAIRS, help="(image, target) pairs in the sample")
    args = parser.parse_args(argv)

    def body():
        group = runs.group(args.run, args.low, args.high)
        with runs.locked(write=group):
            make_attack_curves(group, args.images, args.pairs,
                               "python -m linfool.attacks " + " ".join(sys.argv[1:] if argv is None else argv))
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
