"""`make attack-curves`: how hard fooling is, measured on each run's Caffe model.

    python -m linfool attack-curves --run blog [--low reg_low --high reg_high] [--images 30] [--pairs 510]

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
estimated time before it starts. Runs: --run and its sweep companions (linfool.core.runs.group: --low and
--high default to runs.sweep_names), those trained so far, all on one data set. Writes each run's
runs/<run>/attacks/ whole (attack_curves.json with its snapshot and data set, attack_curves.png),
and attack_curves_runs.png under --run's. Every curve has its n and 95 % band (Clopper-Pearson, per
budget), every median Linf its 95 % interval (order statistics), and each pair's Linf is kept for
paired comparisons of runs (make claims).
"""

import sys

import numpy as np

from linfool.attacks import CONFIDENCE
from linfool.core import cli, files, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.experiments.difficulty import attack_curves
from linfool.experiments.pairs import IMAGES, PAIRS


def _median_text(found):
    """'median 27 (95 %: 24-31)' of a stats.median; '(95 %: >= 168)' when the interval's top is
    beyond 255 (fewer than its share of pairs fooled within the range)."""
    return "median " + stats.median_text(found, label="95 %: ", never="not reached within 255")


def _band(ax, result, kind, color):
    """The curve and its Clopper-Pearson 95 % band (shaded)."""
    eps = np.array(result["epsilons"])
    low, high = result["bands"][kind]
    ax.fill_between(eps, low, high, color=color, alpha=0.15, linewidth=0)


def _finish(fig, ax, title, out):
    """Shared axes of the attack plots (epsilon on a symlog axis over 0..255), then save."""
    ax.set(
        xlabel="Linf budget epsilon (0..255 pixel units)",
        ylabel=f"fraction fooled to P >= {CONFIDENCE}",
        ylim=(-0.02, 1.02),
        title=title,
    )
    ax.set_xscale("symlog", linthresh=4)
    ax.set_xlim(0, 255)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, out)


def plot_run(result, out):
    """One run: fooled fraction vs epsilon for both directions and the closed-form bound."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    eps = np.array(result["epsilons"])
    styles = {
        "blog": ("blog direction: eps * w_t / max|w_t|", "-"),
        "sign": ("sign(w_t - w_y)", "-"),
        "bound": ("bound: no Linf attack fools below eps*", "--"),
    }
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (kind, (label, line)), color in zip(styles.items(), colors):
        _band(ax, result, kind, color)
        median = _median_text(result["median_epsilon_ci"][kind])
        ax.plot(eps, result["curves"][kind], line, color=color, label=f"{label}  ({median})")
    _finish(
        fig,
        ax,
        f"Fooling difficulty, run {result['run']} (n = {result['pairs']} image-target pairs: "
        f"{result['images']} images x {result['targets_per_image']} targets; bands: 95 % Clopper-Pearson)",
        out,
    )


def plot_runs(results, out):
    """Runs of different regularization on one plot: the blog direction solid, sign dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for result, color in zip(results, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for kind, line in (("blog", "-"), ("sign", ":")):
            _band(ax, result, kind, color)
            median = _median_text(result["median_epsilon_ci"][kind])
            ax.plot(
                result["epsilons"],
                result["curves"][kind],
                line,
                color=color,
                label=f"run {result['run']}, {kind} direction ({median})",
            )
    _finish(fig, ax, f"Fooling difficulty across runs (n = {results[0]['pairs']} pairs each; 95 % bands)", out)


def make_attack_curves(group, n_images=IMAGES, pairs=PAIRS, command=""):
    """attack_curves.json/.png for each run (each run's attacks/ published whole once all are
    measured), and the comparison plot in the first run's folder."""
    results = []
    for run in group:
        result = attack_curves(run, n_images=n_images, pairs=pairs)
        result.update(command=command, sources=[run.source()])
        results.append(result)
        print(
            f"{run.name}: median epsilon to fool to {CONFIDENCE} over n = {result['pairs']} pairs (95 % interval, "
            "order statistics): " + ", ".join(f"{k} {_median_text(v)}" for k, v in result["median_epsilon_ci"].items()),
            flush=True,
        )
    for run, result in zip(group, results):
        with files.building_dir(run.path / "attacks") as out:
            plot_run(result, out / "attack_curves.png")
            if run == group[0]:
                plot_runs(results, out / "attack_curves_runs.png")
            files.write_json(out / "attack_curves.json", result)
    return results


def main(argv=None) -> int:
    args = stages.parse("attack-curves", argv)

    def body():
        group = runs.group(args.run, args.low, args.high)
        with runs.locked(write=group):
            make_attack_curves(
                group,
                args.images,
                args.pairs,
                stages.command("attack-curves", args),
            )

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
