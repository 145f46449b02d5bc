"""`make deep`: the post's open question, "It's not immediately obvious if and how this conclusion
translates to deeper models", measured on the user's own Caffe runs.

    python -m linfool deep --run blog [--images 10] [--pairs 50] [--steps 20]

The models: RUN (the blog's linear settings) and its strongly regularized companion (runs.sweep_names),
and the MLP and the small ConvNet at a weak and a strong weight decay (runs.deep_names: make
deep-sweep), those trained so far on RUN's data set. Every model is fooled the same way, by backprop
through Caffe (linfool.model.gradients; for the linear model the gradient of a score is exactly its
template), on the attack curves' seeded sample of (val image, target) pairs (linfool.experiments.pairs):
  - val top-1 over every val record (pycaffe forwards, experiments.accuracy as make eval);
  - fraction of the pairs fooled to P(target) >= 0.99 against the Linf budget (LADDER, 0..255 pixel
    units) for the blog's step along the gradient of the target's score scaled to that Linf (for the
    linear model exactly its "blog direction"), the fast gradient sign step (one gradient each) and
    the iterative Linf attack
    (gradient.projected_batch, at most --steps gradients per pair), and for the latter the
    fraction whose top-1 became the target (a strongly regularized model's probabilities may never
    reach 0.99: its scores are small);
  - the first learned layer's weights as pictures (the linear model's are its class templates, the
    MLP's the 64x64x3 weights of its hidden units, the ConvNet's its 5x5x3 filters);
  - transfer: the images the iterative attack fooled on each model at Linf TRANSFER_EPS, classified
    by every model: the fraction whose top-1 is the target.
Cost: models x pairs x ladder x (steps + 2) gradients at most, printed before it starts.
Writes runs/<RUN>/deep/ whole: deep.json (every model's snapshot and the data set), attack_curves.png,
filters.png and transfer.png.
"""

import sys
import time

import numpy as np

from linfool.attacks import CONFIDENCE, LADDER, gradient
from linfool.core import cli, datum, files, paths, prototxt, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.experiments.accuracy import accuracy
from linfool.experiments.pairs import describe, pair_sample
from linfool.model.gradients import Differentiable

TRANSFER_EPS = 16  # the budget of the transfer images (fool_model's default EPS)
IMAGES, PAIRS, STEPS = (stages.default("deep", k) for k in ("images", "pairs", "steps"))  # 10 val images x 5 targets
FILTERS = 8  # first-layer filters drawn per model (those of largest L2 norm)


def models(run, high=None):
    """[(label, Run)] of RUN's linear pair (`high`: its strongly regularized companion, default
    runs.sweep_names) and the deeper models trained so far on its data set: RUN first (RunError when
    it has no snapshot)."""
    first = runs.Run.named(run)
    if not first.has_snapshot():
        raise runs.RunError(f"no .caffemodel in {first.path}; run `make train RUN={run}` first")
    named = [("linear", run), ("linear", high or runs.sweep_names(run)[1])]
    for net, (weak, strong) in runs.deep_names(run).items():
        named += [(net, weak), (net, strong)]
    found = [(label, runs.Run.named(name)) for label, name in named if runs.Run.named(name).has_snapshot()]
    runs.same_data([r for _, r in found])
    return found


def load(run):
    """The run's deploy net + newest snapshot as a Differentiable with its data set's mean."""
    mean = datum.decode_mean(run.dataset().mean_file.read_bytes())
    return Differentiable(run.path / "deploy.prototxt", run.snapshot().path, mean=mean)


def _reached(model, images, targets, top1=None):
    """Whether each image's P(target) >= CONFIDENCE; `top1` (a list) also gets the top-1 == target rate."""
    probs = model.probs(images)
    if top1 is not None:
        top1.append(float((probs.argmax(axis=1) == targets).mean()))
    return probs[np.arange(len(targets)), targets] >= CONFIDENCE


def attack_curve(model, xs, targets, steps):
    """({"gradient": [...], "sign": [...], "iterative": [...], "iterative_top1": [...]}: fraction of the
    pairs fooled to P >= CONFIDENCE (and, for the iterative attack, to the target's top-1) at each
    LADDER budget, and "iterative_first": each pair's smallest budget the iterative attack fooled
    (inf: none); (images, targets) the iterative attack fooled at TRANSFER_EPS)."""
    curves, fooled = {"gradient": [], "sign": [], "iterative": [], "iterative_top1": []}, None
    first = np.full(len(targets), np.inf)
    for eps in LADDER:
        for kind, step in (("gradient", gradient.gradient_batch), ("sign", gradient.sign_batch)):
            curves[kind].append(float(_reached(model, step(model, xs, targets, eps), targets).mean()))
        made, _ = gradient.projected_batch(model, xs, targets, eps, iterations=steps, confidence=CONFIDENCE)
        ok = _reached(model, made, targets, curves["iterative_top1"])
        curves["iterative"].append(float(ok.mean()))
        first[ok & ~np.isfinite(first)] = eps
        if eps == TRANSFER_EPS:
            fooled = (made[ok], targets[ok])
    curves["iterative_first"] = first.tolist()  # each pair's smallest budget (inf: none): paired tests of runs
    return curves, fooled


def _seconds_per_gradient(model, xs, targets):
    """Measured seconds per image of one forward + backward at the sample's batch (after a warm-up)."""
    model.gradient(xs, targets)
    start = time.perf_counter()
    model.gradient(xs, targets)
    return (time.perf_counter() - start) / len(xs)


def first_weights(model):
    """The first learned layer's weights as the net holds them: an InnerProduct's (units, inputs), a
    Convolution's (filters, C, h, w) (a copy)."""
    name = next(n for n, layer in zip(model.net._layer_names, model.net.layers) if len(layer.blobs))
    return model.net.params[name][0].data.copy()


def val_accuracy(model, dataset, desc=""):
    """Top-1 over every val record of `dataset` (pycaffe forwards, as make eval; `desc`: its progress
    bar): {"top1", "ci" (its Wilson 95 % interval), "correct" (per record, in reading order), "images"}."""
    scored = accuracy(model, dataset.lmdb("val"), desc=desc, top_k=1)
    return {**scored, "ci": stats.proportion(int(scored["correct"].sum()), scored["images"])}


def first_filters(model):
    """The first learned layer's weights, (units, C, h, w), of the FILTERS units of largest L2 norm:
    an InnerProduct's rows reshaped to the net's input shape, a Convolution's kernels as they are."""
    weights = first_weights(model)
    weights = weights.reshape(len(weights), *model.shape) if weights.ndim == 2 else weights
    order = np.argsort(-np.linalg.norm(weights.reshape(len(weights), -1), axis=1))[:FILTERS]
    return weights[order].copy()


def transfer(made, all_models):
    """Matrix [source, dest] (in made's order, dests in all_models'): fraction of the source's fooled
    images (made[source] = (images, targets)) whose top-1 on dest is the target; nan when none."""
    matrix = []
    for images, wanted in made.values():
        matrix.append(
            [
                float((m.probs(images).argmax(axis=1) == wanted).mean()) if len(wanted) else float("nan")
                for m in all_models.values()
            ]
        )
    return matrix


def measure(found, n_images=IMAGES, pairs=PAIRS, steps=STEPS):
    """Every model's numbers for the (label, Run) pairs of models() (see the module docstring) as the
    result dict; filters are returned aside."""
    dataset = found[0][1].dataset()
    loaded = {r.name: load(r) for _, r in found}
    xs, _, which, targets, about = pair_sample(dataset.lmdb("val"), dataset.num_classes, n_images=n_images, pairs=pairs)
    xs = xs[which]
    per_pair = len(LADDER) * (steps + 2)
    seconds = sum(_seconds_per_gradient(m, xs, targets) for m in loaded.values()) * len(targets) * per_pair
    gradients = len(found) * len(targets) * per_pair
    line = describe(about, gradients, seconds / gradients).replace("pycaffe forwards", "gradients at most")
    print(f"deep: {len(found)} models; {line}", flush=True)
    result = {"models": [], "ladder": list(LADDER), "steps": steps, "transfer_eps": TRANSFER_EPS, **about}
    made, filters = {}, {}
    for label, r in cli.progress(found, total=len(found), desc="deep: attacking each model", unit="model"):
        model = loaded[r.name]
        curves, made[r.name] = attack_curve(model, xs, targets, steps)
        filters[r.name] = first_filters(model)
        first = np.array(curves["iterative_first"])
        scored = val_accuracy(model, dataset)
        result["models"].append(
            {
                "run": r.name,
                "kind": label,
                "weight_decay": weight_decay(r),
                "val_top1": scored["top1"],
                "val_top1_ci": scored["ci"],
                "curves": curves,
                # the iterative curve's Clopper-Pearson 95 % band over the n pairs
                "iterative_band": stats.bands(first[None, :] <= np.array(LADDER)[:, None]),
                "fooled_at_transfer_eps": len(made[r.name][1]),
            }
        )
    result["transfer"] = transfer(made, loaded)
    result["data"] = dataset.name
    result["sources"] = [r.source() for _, r in found]
    return result, filters


def weight_decay(run):
    """The weight decay the run trained with (its solver.prototxt, as make train wrote it)."""
    return float(f"{prototxt.read_solver(run.path / 'solver.prototxt').weight_decay:.7g}")  # float32 field


def _label(m):
    return f"{m['run']} ({m['kind']}, wd {m['weight_decay']:g}, top-1 {100 * m['val_top1']:.0f} %)"


def plot_curves(result, out):
    """Fooled fraction vs Linf: one colour per model, iterative solid, sign step dotted."""
    fig, ax = plt.subplots(figsize=(10, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, color in zip(result["models"], colors):
        if "iterative_band" in m:
            ax.fill_between(result["ladder"], *m["iterative_band"], color=color, alpha=0.12, linewidth=0)
        ax.plot(result["ladder"], m["curves"]["iterative"], "-o", ms=3, color=color, label=_label(m))
        ax.plot(result["ladder"], m["curves"]["sign"], ":", color=color)
        ax.plot(result["ladder"], m["curves"]["gradient"], "--", color=color, lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(result["ladder"], [str(e) for e in result["ladder"]])
    ax.set(
        xlabel="Linf budget (0..255 pixel units)",
        ylabel=f"fraction fooled to P >= {CONFIDENCE}",
        ylim=(-0.02, 1.02),
        title=f"Backprop fooling, n = {result['pairs']} pairs\niterative ({result['steps']} steps) solid with its "
        "95 % band, one sign step dotted, one gradient step dashed",
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="one colour per model", title_fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, out)


def filter_picture(w):
    """(C, h, w) weights -> (h, w, 3) RGB in 0..1, stretched to its own range (BGR flipped)."""
    w = w[::-1] if len(w) == 3 else np.repeat(w[:1], 3, axis=0)
    w = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
    return np.transpose(w, (1, 2, 0))


def plot_filters(result, filters, out):
    """One row per model: its first layer's FILTERS largest filters, each stretched to its own range."""
    rows = result["models"]
    fig, axes = plt.subplots(len(rows), FILTERS, figsize=(1.2 * FILTERS, 1.35 * len(rows)), squeeze=False)
    for i, m in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            ax.axis("off")
            if j < len(filters[m["run"]]):
                ax.imshow(filter_picture(filters[m["run"]][j]), interpolation="nearest")
        axes[i][0].set_title(f"{m['run']} ({m['kind']})", fontsize=8, loc="left")
    fig.suptitle("First-layer weights (largest 8 by L2 norm): templates, hidden units, 5x5 filters", fontsize=9)
    fig.tight_layout()
    save(fig, out)


def plot_transfer(result, out):
    """Heat map: rows = model the fooling images were made on, columns = model classifying them."""
    names = [m["run"] for m in result["models"]]
    matrix = np.array(result["transfer"], float)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 3, 0.8 * len(names) + 2))
    ax.imshow(np.nan_to_num(matrix), vmin=0, vmax=1, cmap="viridis")
    made = [m["fooled_at_transfer_eps"] for m in result["models"]]
    for (i, j), value in np.ndenumerate(matrix):
        found = stats.proportion(round(value * made[i]), made[i], "exact") if made[i] else None
        text = "-" if found is None else f"{100 * value:.0f}%\n{100 * found['low']:.0f}-{100 * found['high']:.0f}%"
        ax.text(j, i, text, ha="center", va="center", color="w" if not value >= 0.6 else "k", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), [f"{m['run']} (n={m['fooled_at_transfer_eps']})" for m in result["models"]])
    ax.set(
        xlabel="classified by",
        ylabel=f"fooled (iterative, Linf {result['transfer_eps']}) on",
        title="Transfer: fraction classified as the target\n(95 % Clopper-Pearson under each)",
    )
    fig.tight_layout()
    save(fig, out)


def table(result) -> str:
    """The printed summary: one line per model, fooled fraction at each budget (iterative / sign)."""
    head = f"{'model':<16} {'kind':<7} {'wd':>8} {'top-1':>6}  " + " ".join(f"{e:>9}" for e in result["ladder"])
    lines = [head + f"   (Linf: iterative/sign fooled % of n = {result['pairs']} pairs)"]
    for m in result["models"]:
        cells = " ".join(
            f"{100 * a:>4.0f}/{100 * b:<4.0f}" for a, b in zip(m["curves"]["iterative"], m["curves"]["sign"])
        )
        lines.append(f"{m['run']:<16} {m['kind']:<7} {m['weight_decay']:>8g} {100 * m['val_top1']:>5.1f}%  {cells}")
    return "\n".join([*lines, "95 % Clopper-Pearson bands: deep/attack_curves.png and deep.json"])


def main(argv=None) -> int:
    args = stages.parse("deep", argv)

    def body():
        if args.high is not None:
            paths.check_name(args.high, "HIGH")
        found = models(args.run, args.high)
        missing = [
            name
            for pair in runs.deep_names(args.run).values()
            for name in pair
            if name not in {r.name for _, r in found}
        ]
        if missing:
            raise runs.RunError(
                f"make deep compares {args.run} with the deeper models, and {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not trained yet: "
                f"`make deep-sweep{'' if args.data in (None, 'synthetic') else ' DATA=' + args.data}` trains them"
            )
        group = [r for _, r in found]
        with runs.locked(write=group[:1], read=group[1:]):
            result, filters = measure(found, args.images, args.pairs, args.steps)
            result["command"] = stages.command("deep", args)
            with files.building_dir(group[0].path / "deep") as out:
                plot_curves(result, out / "attack_curves.png")
                plot_filters(result, filters, out / "filters.png")
                plot_transfer(result, out / "transfer.png")
                files.write_json(out / "deep.json", result)
        print(table(result))
        print(f"Done: {group[0].path / 'deep'}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
