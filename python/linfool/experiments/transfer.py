"""`make transfer`: do fooling images made on one run fool the others?

    python -m linfool transfer --run blog [--low reg_low --high reg_high] [--images 30] [--pairs 510]

For each source run, the blog's attack (linfool.attacks.blog.fool: the smallest multiple of the target's
template giving P(target) >= 0.99 on the source) on the attack curves' fixed sample of (val image,
target) pairs (linfool.experiments.pairs.pair_sample; its size and cost are printed first). Every image fooled
on the source is then classified by every run (pycaffe). Matrix entry [source, dest] = fraction
whose top-1 class on dest is the target. The runs (linfool.core.runs.group) must be trained on the same
data set. Writes runs/<run>/transfer/ whole: transfer.json (with every run's snapshot and the data
set) and transfer.png.
"""

import sys

import numpy as np

from linfool.attacks import blog
from linfool.core import cli, conventions, files, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.experiments.pairs import IMAGES, PAIRS, describe, pair_sample, seconds_per_forward
from linfool.model.classifier import Classifier


def fooled_images(classifier, images, which, targets):
    """The blog attack on the sample's pairs (all in one batched bisection, blog.fool_each):
    ((m, 3, 64, 64) float32 0..255 BGR, (m,) targets), only the pairs that reached P(target) >= 0.99
    on this classifier."""
    results = [r for r in blog.fool_each(classifier, images[which], targets) if r.fooled]
    return np.array([r.image for r in results], np.float32).reshape(-1, *conventions.IMAGE_SHAPE), np.array(
        [r.target for r in results], int
    )


def transfer_matrix(run_dirs, n_images=IMAGES, pairs=PAIRS):
    """Dict with the runs, the matrix (sources x dests) of target hit rates and the counts."""
    classifiers = {d.name: Classifier(d) for d in run_dirs}
    first = classifiers[run_dirs[0].name]
    images, _, which, targets, about = pair_sample(
        run_dirs[0].dataset().lmdb("val"), len(first.params["W"]), n_images=n_images, pairs=pairs
    )
    forwards = len(run_dirs) * len(targets) * (blog.FORWARDS + len(run_dirs))
    print("transfer: " + describe(about, forwards, seconds_per_forward(first)), flush=True)
    matrix, counts, intervals = [], [], []
    for source in cli.progress(
        classifiers.values(), total=len(classifiers), desc="transfer: fooling on each run", unit="run"
    ):
        made, made_targets = fooled_images(source, images, which, targets)
        counts.append(len(made_targets))
        hits = [int((dest.probs(made).argmax(axis=1) == made_targets).sum()) for dest in classifiers.values()]
        matrix.append([h / len(made_targets) if len(made_targets) else float("nan") for h in hits])
        intervals.append([stats.proportion(h, len(made_targets), "exact") for h in hits])
    return {
        "runs": list(classifiers),
        "data": run_dirs[0].dataset().name,
        "matrix": matrix,
        "matrix_ci": intervals,  # each rate's k of n (the source's fooled images), Clopper-Pearson 95 %
        "fooled_on_source": counts,
        **about,
        "sources": [run.source() for run in run_dirs],
    }


def plot_transfer(result, out):
    """Heat map: rows = run the fooling images were made on, columns = run classifying them."""
    names, matrix = result["runs"], np.array(result["matrix"])
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 1.2 * len(names) + 1.5))
    ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for (i, j), value in np.ndenumerate(matrix):
        found = result["matrix_ci"][i][j]
        band = f"\n{100 * found['low']:.0f}-{100 * found['high']:.0f}%" if found["n"] else ""
        ax.text(
            j, i, f"{100 * value:.0f}%{band}", ha="center", va="center", color="w" if value < 0.6 else "k", fontsize=8
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), [f"{r} (n={n})" for r, n in zip(names, result["fooled_on_source"])])
    ax.set(
        xlabel="classified by",
        ylabel="fooling images made on",
        title="Transfer: fraction classified as the target\n(95 % Clopper-Pearson under each)",
    )
    fig.tight_layout()
    save(fig, out)


def main(argv=None) -> int:
    args = stages.parse("transfer", argv)

    def body():
        group = runs.group(args.run, args.low, args.high)
        if len(group) < 2:
            raise runs.RunError(
                f"transfer needs at least two trained runs of one data set, {args.run} has "
                "no trained sweep companion; run `make sweep` first"
            )
        with runs.locked(write=group[:1], read=group[1:]):
            result = transfer_matrix(group, args.images, args.pairs)
            result["command"] = stages.command("transfer", args)
            with files.building_dir(group[0].path / "transfer") as out:
                plot_transfer(result, out / "transfer.png")
                files.write_json(out / "transfer.json", result)
        for run, row in zip(result["runs"], result["matrix_ci"]):
            print(
                f"made on {run:<12} "
                + "  ".join(
                    f"{d}: {c['k']}/{c['n']} ({100 * c['low']:.0f}-{100 * c['high']:.0f} %)"
                    for d, c in zip(result["runs"], row)
                )
            )
        print("k of n: the source's fooled images classified as their target; 95 % Clopper-Pearson")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
