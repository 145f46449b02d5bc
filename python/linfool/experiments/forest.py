"""`make forest`: the post's open question "even non-differentiable classifiers (e.g. Random Forests)
are not safe (but I haven't seen anyone empirically confirm this yet)", answered on the user's data.

    python -m linfool forest --run blog [--trees 100] [--per-class 300] [--images 6] [--queries 1000]

A random forest (scikit-learn; `trees` trees grown to purity, or to at most leaf_bound leaves where
that would not fit in FOREST_BYTES, e.g. at 1000 classes; on the run's data set's train pixels read
through linfool.core.records: a class-balanced sample of `per_class` records per class, its size
printed and recorded) is the one model here that is not Caffe, on purpose: it has no gradient. It is
fooled with scores only by the square attack (linfool.attacks.square.square_attack, its
predict_proba as the oracle, every query counted) on the attack curves' seeded (val image, target)
pairs, at each Linf budget of BUDGETS; the run's linear Caffe model is attacked the same way on the
same pairs at the same budgets. A forest's probability is the fraction of trees that vote for a class,
so P >= 0.99 needs 99 % of its trees: the result gives both that rate and the rate at which the target
becomes the top class. Writes runs/<run>/forest/ whole: forest.json (with the run's snapshot and the
data set) and forest.png.
"""

import sys
import time

import numpy as np

from linfool.attacks import CONFIDENCE
from linfool.attacks.square import Oracle, margin, square_attacks
from linfool.core import cli, conventions, files, records, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.experiments.pairs import pair_sample
from linfool.model.classifier import Classifier

TREES = stages.default("forest", "trees")
PER_CLASS = stages.default("forest", "per_class")
MAX_TRAIN = 20_000  # records at most (sklearn fits float32 copies: ~1 GB), so ImageNet gets 20 a class
# The trees' class counts at most: scikit-learn keeps a float64 per class in every node, so 100 fully
# grown trees on ImageNet's 20,000 records (~24,000 nodes each) would hold 19 GB (measured: 195 MB a tree).
FOREST_BYTES = 2e9
IMAGES = stages.default("forest", "images")  # 6 left the demo's 2-of-6 forest row inconclusive (needed 8)
QUERIES = stages.default("forest", "queries")
BUDGETS = (8.0, 32.0)  # Linf of 255
VAL_SCORED = 2000  # val records the forest's top-1 is measured on (one predict_proba of 2,000 x 12,288)
SEED = conventions.SEED


def leaf_bound(trees, classes, samples):
    """max_leaf_nodes that keeps trees x nodes x classes float64 counts <= FOREST_BYTES (a tree of L
    leaves has 2L - 1 nodes), or None when trees grown to purity (at most `samples` leaves) fit."""
    leaves = int(FOREST_BYTES / (trees * classes * 8) / 2)
    return None if leaves >= samples else max(leaves, 2)


def train_forest(dataset, *, trees=TREES, per_class=PER_CLASS, seed=SEED):
    """A RandomForestClassifier fitted on a class-balanced sample of the data set's train records
    ((n, 12288) uint8 pixels, BGR channel-major, as Caffe reads them): per_class a class, at most
    MAX_TRAIN in all, its trees grown to purity unless that would exceed FOREST_BYTES (leaf_bound:
    ImageNet's 1000 classes); returns (forest, about)."""
    from sklearn.ensemble import RandomForestClassifier  # noqa: PLC0415  (only this stage needs it)

    train = dataset.lmdb("train")
    per_class = max(1, min(per_class, MAX_TRAIN // dataset.num_classes))
    positions = records.balanced_positions(records.labels(train), per_class, seed)
    bound = leaf_bound(trees, dataset.num_classes, len(positions))
    print(
        f"forest: fitting {trees} trees on {len(positions):,} train records x 12,288 pixels, "
        + (
            f"at most {bound:,} leaves a tree (<= {FOREST_BYTES / 1e9:g} GB of class counts)"
            if bound
            else "grown to purity"
        ),
        flush=True,
    )
    pixels, labels = records.read(train, positions)
    start = time.perf_counter()
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=-1, max_leaf_nodes=bound)
    forest.fit(pixels.reshape(len(pixels), -1), labels)
    about = {
        "trees": trees,
        "train_records": len(labels),
        "per_class": per_class,
        "max_leaf_nodes": bound,
        "mean_depth": float(np.mean([t.get_depth() for t in forest.estimators_])),
        "fit_seconds": round(time.perf_counter() - start, 1),
    }
    forest.set_params(n_jobs=1)  # one image a query: a worker pool per call would cost more than it saves
    return forest, about


def forest_probs(forest, num_classes):
    """images (n, 3, 64, 64) float 0..255 BGR -> (n, num_classes) float32 probabilities of the forest
    (classes it never saw get 0)."""

    def probs(images):
        out = np.zeros((len(images), num_classes), np.float32)
        out[:, forest.classes_] = forest.predict_proba(np.asarray(images).reshape(len(images), -1))
        return out

    return probs


def attack_rates(oracle, images, which, targets, budgets, queries):
    """For each budget: the fraction of pairs brought to P(target) >= 0.99, to top-1 target, and the
    median queries of those that reached 0.99 (None when none did)."""
    rows = []
    for eps in budgets:
        results = square_attacks(
            oracle, images[which], targets, [eps] * len(targets), max_queries=queries, seeds=[SEED] * len(targets)
        )
        final = oracle(np.stack([result["image"] for result in results]))
        reached = [result["reached"] for result in results]
        top1 = [margin(probs, int(target)) > 0 for probs, target in zip(final, targets)]
        used = [result["queries"] for result in results]
        hits = [u for u, r in zip(used, reached) if r]
        rows.append(
            {
                "linf": eps,
                "pairs": len(targets),
                "reached": float(np.mean(reached)),
                "reached_ci": stats.proportion(sum(reached), len(reached), "exact"),
                "top1": float(np.mean(top1)),
                "top1_ci": stats.proportion(sum(top1), len(top1), "exact"),
                "median_queries": float(np.median(hits)) if hits else None,
                "median_queries_ci": stats.median(hits) if hits else None,
            }
        )
    return rows


def forest_experiment(run, *, trees=TREES, per_class=PER_CLASS, images=IMAGES, queries=QUERIES, budgets=BUDGETS):
    """The forest and the run's linear model attacked with scores only on the same pairs (dict)."""
    dataset = run.dataset()
    forest, about = train_forest(dataset, trees=trees, per_class=per_class)
    classifier = Classifier(run)
    num_classes = len(classifier.params["W"])
    val = dataset.lmdb("val")  # a seeded uniform sample: the first records may be a few classes (val/<wnid>/)
    val_images, val_labels = records.read(val, records.random_positions(records.count(val), VAL_SCORED, SEED))
    scores_only = forest_probs(forest, num_classes)
    about["val_top1"] = float((scores_only(val_images).argmax(axis=1) == val_labels).mean())
    about["val_records_scored"] = len(val_labels)
    sample, _, which, targets, pairs = pair_sample(dataset.lmdb("val"), num_classes, n_images=images, pairs=images)
    print(
        f"forest: {trees} trees on {about['train_records']:,} train records (mean depth {about['mean_depth']:.0f}), "
        f"val top-1 {100 * about['val_top1']:.1f} %; square attack on {len(targets)} pairs x {len(budgets)} budgets, "
        f"up to {queries} queries each, forest and linear model",
        flush=True,
    )
    models = {"forest": Oracle(scores_only), "linear": Oracle(classifier.probs)}
    results = {name: attack_rates(oracle, sample, which, targets, budgets, queries) for name, oracle in models.items()}
    return {
        "run": run.name,
        "forest": about,
        "sample": pairs | {"pairs": len(targets)},
        "confidence": CONFIDENCE,
        "max_queries": queries,
        "queries_sent": {name: oracle.queries for name, oracle in models.items()},
        "attacks": results,
    }


def plot(result, out):
    """Fraction of pairs fooled (P >= 0.99 and top-1) against the Linf budget, forest beside linear."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, style in (("forest", "o-"), ("linear", "s--")):
        rows = result["attacks"][name]
        budgets = [r["linf"] for r in rows]
        ax.plot(budgets, [r["reached"] for r in rows], style, label=f"{name}: P >= {CONFIDENCE}")
        line = ax.plot(budgets, [r["top1"] for r in rows], style, alpha=0.45, label=f"{name}: top-1")
        if all("top1_ci" in r for r in rows):  # the top-1 rate's 95 % Clopper-Pearson band
            low, high = [r["top1_ci"]["low"] for r in rows], [r["top1_ci"]["high"] for r in rows]
            ax.fill_between(budgets, low, high, color=line[0].get_color(), alpha=0.12, linewidth=0)
    ax.set_xlabel("Linf budget (of 255)")
    ax.set_ylabel("fraction of pairs fooled")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"run {result['run']}: scores only, up to {result['max_queries']} queries a pair\n"
        f"(n = {result['sample']['pairs']} pairs; bands: top-1, 95 % Clopper-Pearson)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, out)


def make_forest(run, command="", **sizes):
    """runs/<run>/forest/forest.json and forest.png, published whole; returns the result."""
    result = forest_experiment(run, **sizes)
    with files.building_dir(run.path / "forest") as out:
        plot(result, out / "forest.png")
        result.update(command=command, sources=[run.source()])
        files.write_json(out / "forest.json", result)
    for name, rows in result["attacks"].items():
        said = ", ".join(
            f"Linf {r['linf']:g}: {100 * r['reached']:.0f} % / top-1 {r['top1_ci']['k']}/{r['top1_ci']['n']} "
            f"({100 * r['top1_ci']['low']:.0f}-{100 * r['top1_ci']['high']:.0f} %)"
            for r in rows
        )
        print(f"{name}: {said} (P >= {CONFIDENCE} / target top-1, 95 % Clopper-Pearson)", flush=True)
    return result


def main(argv=None) -> int:
    args = stages.parse("forest", argv)

    def body():
        run = runs.group(args.run)[0]
        with runs.locked(write=[run]):
            make_forest(
                run,
                stages.command("forest", args),
                trees=args.trees,
                per_class=args.per_class,
                images=args.images,
                queries=args.queries,
            )

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
