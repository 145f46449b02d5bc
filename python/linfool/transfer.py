"""`make transfer`: do fooling images made on one run fool the others?

    python -m linfool.transfer --run blog --run reg_low --run reg_high [--images 30]

For each source run, the blog's attack (linfool.fooling.fool: the smallest multiple of the target's
template giving P(target) >= 0.99 on the source) on a fixed sample of val images and all other
targets (linfool.attacks.sample_pairs). Every image fooled on the source is then classified by every
run (pycaffe). Matrix entry [source, dest] = fraction whose top-1 class on dest is the target.
The runs must share their classes (same data set). Writes runs/<first run>/attacks/transfer.json/.png.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from linfool import attacks, evaluate, fooling, paths, weights  # noqa: E402


def fooled_images(classifier, images, labels, n_images):
    """The blog attack on the fixed sample: ((m, 3, 64, 64) float32 0..255 BGR, (m,) targets),
    only the pairs that reached P(target) >= 0.99 on this classifier."""
    which, targets = attacks.sample_pairs(labels, len(classifier.params["W"]), n_images)
    made, made_targets = [], []
    for i in np.unique(which):
        for result in fooling.fool(classifier, images[i].astype(np.float32), targets[which == i]):
            if result.fooled:
                made.append(result.image)
                made_targets.append(result.target)
    return np.array(made, np.float32).reshape(-1, 3, 64, 64), np.array(made_targets, int)


def transfer_matrix(runs, n_images=30):
    """Dict with the runs, the matrix (sources x dests) of target hit rates and the counts."""
    classifiers = {run: fooling.Classifier(paths.run_dir(run)) for run in runs}
    names = [list(c.params["names"]) for c in classifiers.values()]
    if any(n != names[0] for n in names):
        raise ValueError(f"runs {runs} were trained on different classes; transfer needs the same data set")
    images, labels = evaluate.read_lmdb(weights.run_data_dir(paths.run_dir(runs[0])) / "val_lmdb", limit=5000)
    matrix, counts = [], []
    for source in runs:
        made, targets = fooled_images(classifiers[source], images, labels, n_images)
        counts.append(len(targets))
        matrix.append([float((classifiers[dest].probs(made).argmax(axis=1) == targets).mean()) if len(targets)
                       else float("nan") for dest in runs])
    return {"runs": list(runs), "matrix": matrix, "fooled_on_source": counts, "images": n_images,
            "command": "python -m linfool.transfer " + " ".join(f"--run {r}" for r in runs)}


def plot_transfer(result, out):
    """Heat map: rows = run the fooling images were made on, columns = run classifying them."""
    runs, matrix = result["runs"], np.array(result["matrix"])
    fig, ax = plt.subplots(figsize=(1.6 * len(runs) + 2.5, 1.2 * len(runs) + 1.5))
    ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{100 * value:.0f}%", ha="center", va="center", color="w" if value < 0.6 else "k")
    ax.set_xticks(range(len(runs)), runs)
    ax.set_yticks(range(len(runs)), [f"{r} (n={n})" for r, n in zip(runs, result["fooled_on_source"])])
    ax.set(xlabel="classified by", ylabel="fooling images made on",
           title="Transfer: fraction classified as the target")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="run name (repeat)")
    parser.add_argument("--images", type=int, default=30)
    args = parser.parse_args(argv)
    runs = [r for r in dict.fromkeys(args.run) if any(paths.run_dir(r).glob("*.caffemodel"))]
    if len(runs) < 2:
        print(f"ERROR: transfer needs at least two trained runs of {args.run}; run `make sweep` first", file=sys.stderr)
        return 2
    try:
        result = transfer_matrix(runs, args.images)
    except ValueError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    out = paths.run_dir(runs[0]) / "attacks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(result, indent=1) + "\n")
    plot_transfer(result, out / "transfer.png")
    for run, row in zip(runs, result["matrix"]):
        print(f"made on {run:<12} " + "  ".join(f"{d}: {100 * v:5.1f} %" for d, v in zip(runs, row)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
