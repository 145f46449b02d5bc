"""`make figures`: the blog's figures from a run's Caffe snapshot, one function per figure.

    python -m linfool figures --run NAME [--low RUN --high RUN] [--start n02119789] [--targets n01443537,n04146614]

Classes are given by wnid or name: the blog's kit fox (n02119789) fooled into goldfish (n01443537)
and school bus (n04146614) by default; on a data set without them, the run's own first classes (said
so; START= and TARGETS= choose others). The regularization figure compares --low and --high (default:
the run's sweep companions, linfool.core.runs.sweep_names), which must be trained on the run's data set,
with their val top-1 from `make eval`. Writes runs/<name>/figures/ whole (a killed run leaves the
previous figures): <blog figure>.png and figures.json (every number shown, and the snapshots and
data set they come from).
"""

import sys

import cv2
import numpy as np

from linfool.attacks import blog
from linfool.core import cli, files, runs, stages
from linfool.core.plots import plt, save
from linfool.core.results import read_metrics
from linfool.experiments import explore, toy
from linfool.experiments.templates import choose_classes, find_class, smoothness, start_image, template_rgb, to_rgb
from linfool.model import weights
from linfool.model.classifier import Classifier

SELECTED = ("Granny Smith apple", "goldfish", "school bus", "kit fox", "strawberry", "zebra", "volcano", "daisy")

TITLED_GRID_MAX = 100  # up to this many classes the all-templates grid has a title per tile
MOSAIC_COLS = 40  # 1000 classes: a 40 x 25 mosaic of 64 px tiles


def templates_selected(params, out):
    """Blog: the learned templates of a few classes (Granny Smith's 'green stuff in the middle')."""
    names = [str(n) for n in params["names"]]
    chosen = [i for i, n in enumerate(names) if n in SELECTED] or list(range(min(8, len(names))))
    fig, axes = plt.subplots(1, len(chosen), figsize=(1.9 * len(chosen), 2.3))
    for ax, i in zip(np.atleast_1d(axes), chosen):
        ax.imshow(template_rgb(params["W"][i]), interpolation="nearest")
        ax.set_title(names[i], fontsize=9)
        ax.axis("off")
    fig.suptitle("Learned templates (weights of each class, 64x64x3, scaled per template)", fontsize=10)
    fig.tight_layout()
    save(fig, out)


def template_mosaic(W, cols=MOSAIC_COLS, gap=1):
    """Every template at its native 64x64 in one (rows * 65 + 1, cols * 65 + 1, 3) uint8 RGB image,
    grey 1-pixel gaps, class i at row i // cols, column i % cols."""
    rows = int(np.ceil(len(W) / cols))
    tile = 64 + gap
    mosaic = np.full((rows * tile + gap, cols * tile + gap, 3), 128, np.uint8)
    for i, w in enumerate(W):
        r, c = divmod(i, cols)
        mosaic[gap + r * tile : gap + r * tile + 64, gap + c * tile : gap + c * tile + 64] = np.rint(
            255 * template_rgb(w)
        ).astype(np.uint8)
    return mosaic


def templates_all(params, out):
    """Blog: 'the learned templates for all imagenet classes' as one grid. Up to TITLED_GRID_MAX
    classes a titled matplotlib grid; beyond (ImageNet's 1000), a native-resolution mosaic PNG of
    MOSAIC_COLS columns that can be zoomed, the report adding per-class tiles with names. Returns
    the grid's layout (None for the titled grid)."""
    names = [str(n) for n in params["names"]]
    if len(names) > TITLED_GRID_MAX:
        cv2.imwrite(str(out), template_mosaic(params["W"])[:, :, ::-1])
        return {"cols": MOSAIC_COLS, "tile": 64, "gap": 1, "names": names, "wnids": [str(w) for w in params["wnids"]]}
    cols = int(np.ceil(np.sqrt(len(names) * 1.5)))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows))
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(names):
            ax.imshow(template_rgb(params["W"][i]), interpolation="nearest")
            ax.set_title(names[i][:18], fontsize=7)
    fig.suptitle(f"Templates of all {len(names)} classes", fontsize=10)
    fig.tight_layout()
    save(fig, out)
    return None


def fooling_rows(classifier, x, targets):
    """Fool x towards each target; returns (start probs, [FoolResult])."""
    return classifier.probs(x[None])[0], blog.fool(classifier, x, targets)


def _row_numbers(names, start_probs, result):
    top = int(start_probs.argmax())
    return {
        "start_class": names[top],
        "start_prob": float(start_probs[top]),
        "target": names[result.target],
        "target_prob": result.prob,
        "alpha": result.alpha,
        "l2": result.l2,
        "linf": result.linf,
        "fooled": result.fooled,
        "clipping_changed_outcome": result.clipping_changed_outcome,
    }


def draw_fooling(axes_rows, names, x, start_probs, results, label=""):
    """Blog layout, one row per target: start image | perturbation | fooled image."""
    top = int(start_probs.argmax())
    for axes, r in zip(axes_rows, results):
        delta = r.image - x
        scale = max(np.abs(delta).max(), 1e-6)
        axes[0].imshow(to_rgb(x))
        axes[0].set_title(f"{label}{names[top]}: {100 * start_probs[top]:.1f}%", fontsize=8)
        axes[1].imshow(to_rgb(127.5 + 127.5 * delta / scale))
        axes[1].set_title(f"+ alpha*w  (Linf {r.linf:.1f}/255, L2 {r.l2:.0f})", fontsize=8)
        axes[2].imshow(to_rgb(r.image))
        note = " (clipping changed top class)" if r.clipping_changed_outcome else ""
        note += "" if r.fooled else "\nnot fooled to 99% within the pixel range"
        axes[2].set_title(f"{names[r.target]}: {100 * r.prob:.1f}%{note}", fontsize=8)
        for ax in axes:
            ax.axis("off")


def fooling_figure(classifier, x, targets, out, title):
    """Blog: an image fooled into each target with near 100 % confidence."""
    names = [str(n) for n in classifier.params["names"]]
    start_probs, results = fooling_rows(classifier, x, targets)
    fig, axes = plt.subplots(len(results), 3, figsize=(7.5, 2.6 * len(results)), squeeze=False)
    draw_fooling(axes, names, x, start_probs, results)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, out)
    return [_row_numbers(names, start_probs, r) for r in results]


def regularization_figure(labelled_runs, x, target_name, out):
    """Blog: the same image fooled on a low- and a high-regularization run, rows one above the
    other, each with its val top-1 and what fooling needed; beside it, each run's templates."""
    fig, axes = plt.subplots(len(labelled_runs), 4, figsize=(10, 3.1 * len(labelled_runs)), squeeze=False)
    numbers = []
    for row, (label, run_dir) in zip(axes, labelled_runs):
        classifier = Classifier(run_dir)
        names = [str(n) for n in classifier.params["names"]]
        target = find_class(classifier.params, target_name)
        start_probs, results = fooling_rows(classifier, x, [target])
        metrics = read_metrics(run_dir)
        draw_fooling([row[:3]], names, x, start_probs, results, label=f"{label}: ")
        row[3].imshow(template_rgb(classifier.params["W"][target]), interpolation="nearest")
        row[3].set_title(f"{names[target]} template\nval top-1 {100 * metrics['val_top1']:.1f}%", fontsize=8)
        row[3].axis("off")
        numbers.append(
            {
                "run": run_dir.name,
                "label": label,
                "val_top1": metrics["val_top1"],
                "smoothness": smoothness(classifier.params["W"]),
                **_row_numbers(names, start_probs, results[0]),
            }
        )
    fig.suptitle("Regularization: the same image fooled on weakly vs strongly regularized classifiers", fontsize=10)
    fig.tight_layout()
    save(fig, out)
    return numbers


def toy_figure(out):
    """Blog's toy example: x, w, and x + 0.5w with their scores and probabilities."""
    n = toy.toy_numbers()
    fig, ax = plt.subplots(figsize=(8, 3))
    idx = np.arange(len(n["x"]))
    ax.bar(idx - 0.27, n["x"], 0.27, label=f"x: w.x = {n['score']:g}, P = {n['prob']:.4f}")
    ax.bar(idx, n["w"], 0.27, label="w")
    ax.bar(idx + 0.27, n["x_adv"], 0.27, label=f"x + 0.5w: w.x = {n['score_adv']:g}, P = {n['prob_adv']:.2f}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xticks=idx, xlabel="input dimension", title="Toy example: each input moves by 0.5, P(class 1) 5% -> 88%")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save(fig, out)
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in n.items()}


def _regularization(group, run, low, high, x, target, out, data):
    """The regularization figure and its numbers when both companions are trained (else None)."""
    low_name, high_name = runs.companions(run, low, high)
    trained = {r.name: r for r in group}
    if low_name in trained and high_name in trained:
        return regularization_figure(
            [("low reg", trained[low_name]), ("high reg", trained[high_name])],
            x,
            target,
            out / "blog_regularization.png",
        )
    print(
        f"(no regularization figure: runs {low_name} and {high_name} are not both trained on "
        f"'{data}'; `make sweep` trains them)"
    )
    return None


def make_figures(run, *, low=None, high=None, start=None, targets=None, command=None):
    """Every figure for `run` into runs/<run>/figures/ (published whole); returns the numbers (also
    figures.json). start/targets default to choose_classes'."""
    group = runs.group(run, low, high)
    first = group[0]
    with runs.locked(write=[first], read=group[1:]), files.building_dir(first.path / "figures") as out:
        params = weights.load(first)
        classifier = Classifier(first)
        start, targets = choose_classes(params, start, targets)
        target_ids = [find_class(params, t) for t in targets]
        x = start_image(first, params, start)
        start_name = str(params["names"][find_class(params, start)])
        data = first.dataset().name
        numbers = {
            "run": run,
            "data": data,
            "iteration": int(params["iteration"]),
            "smoothness": smoothness(params["W"]),
            "start": start,
            "start_name": start_name,
            "targets": targets,
            "target_names": [str(params["names"][t]) for t in target_ids],
            "sources": [r.source() for r in group],
        }
        templates_selected(params, out / "blog_templates_selected.png")
        numbers["templates_grid"] = templates_all(params, out / "blog_templates_all.png")
        numbers["fooling_image"] = fooling_figure(
            classifier, x, target_ids, out / "blog_fooling_image.png", f"Fooling a {start_name} image (run {run})"
        )
        numbers["fooling_noise"] = fooling_figure(
            classifier,
            blog.noise_image(),
            target_ids,
            out / "blog_fooling_noise.png",
            f"Fooling random noise (run {run})",
        )
        numbers["toy"] = toy_figure(out / "blog_toy_example.png")
        regularization = _regularization(group, run, low, high, x, targets[0], out, data)
        if regularization is not None:
            numbers["regularization"] = regularization
        print("explore data (every target for each start image, in Caffe)...", flush=True)
        files.write_json(out / "explore.json", explore.build(first, start, targets[0], out / "explore", "explore"))
        numbers["command"] = command or f"make figures RUN={run}"
        files.write_json(out / "figures.json", numbers)
    return numbers


def main(argv=None) -> int:
    args = stages.parse("figures", argv)

    def body():
        make_figures(
            args.run,
            low=args.low,
            high=args.high,
            start=args.start or None,
            targets=[t for t in args.targets.split(",") if t] if args.targets else None,
            command=stages.command("figures", args),
        )
        print(f"Figures in {runs.Run.named(args.run).path / 'figures'}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
