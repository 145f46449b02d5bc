"""`make claims`: the blog's claims, each measured on the user's own Caffe runs, with a verdict.

    python -m linfool claims --run blog [--low reg_low --high reg_high]     # runs/<run>/claims.json

--low/--high default to the run's sweep companions (linfool.core.runs.sweep_names); all three must be
trained on one data set.

One row per claim: the blog's words, how we measure it, the blog's value, this run's value, and a
verdict: "holds", "does not hold", or "cannot be checked" (with why). The init and learning-rate rows
run Caffe afresh (a pycaffe forward at iteration 0; two short `caffe train` runs); the others read the
runs' snapshots and the results of `make eval`, `make figures` and `make attack-curves` (and, when
present, `make background`, `make deep` and `make forest`: the post's open questions), each refused in one line when missing or made from another snapshot or
data set than the runs' current ones (never recomputed here). claims.json records every source.
"""

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from linfool.core import caffe_env, cli, files, prototxt, results, runs
from linfool.experiments import templates, toy
from linfool.model import curves, train, weights

HOLDS, FAILS, UNCHECKABLE = "holds", "does not hold", "cannot be checked"
LR_ITERATIONS = 100  # "a few hundred iterations at most"
NEGLIGIBLE = 0.01  # regularization below 1 % of the data loss


def _row(claim, how, blog, value, verdict, why=""):
    return {"claim": claim, "how": how, "blog": blog, "value": value, "verdict": verdict, "why": why}


def _verdict(ok):
    return HOLDS if ok else FAILS


def initial_loss(run_dir, std, num_output=1000, seed=1701):
    """SoftmaxWithLoss of one TRAIN batch (pycaffe forward, iteration 0) for the run's net with
    `num_output` outputs and a Gaussian weight std of `std`."""
    caffe = caffe_env.import_caffe()
    pb2 = caffe.proto.caffe_pb2
    net = text_format.Parse((run_dir / "train_val.prototxt").read_text(), pb2.NetParameter())
    fc = prototxt.fc_layer(net)
    fc.inner_product_param.num_output = num_output
    fc.inner_product_param.weight_filler.std = std
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as tmp:
        tmp.write(text_format.MessageToString(net))
        tmp.flush()
        caffe_env.use_device()
        caffe.set_random_seed(seed)
        return float(caffe.Net(tmp.name, caffe.TRAIN).forward()["loss"])


def short_run_losses(run_dir, base_lr, iterations=LR_ITERATIONS):
    """Train losses [(iter, loss)] of a short real `caffe train` of the run's net at `base_lr`, on the
    device GPU= chose (train.gpu_flag)."""
    flag = train.gpu_flag()
    solver = prototxt.read_solver(
        run_dir / "solver.prototxt",
        settings=[
            f"base_lr={base_lr}",
            f"max_iter={iterations}",
            f"display={max(iterations // 20, 1)}",
            "snapshot=0",
            "snapshot_after_train=false",
            "test_interval=100000000",
            "test_initialization=false",
            f"solver_mode={'GPU' if flag else 'CPU'}",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "solver.prototxt"
        path.write_text(text_format.MessageToString(solver))
        run = subprocess.run(
            [str(caffe_env.tool("caffe")), "train", f"--solver={path}", *([f"--gpu={flag}"] if flag else [])],
            capture_output=True,
            text=True,
            env=caffe_env.tool_env(),
        )
    return curves.parse_log(run.stderr)["train"]


def claim_init(run_dir):
    low, high = initial_loss(run_dir, 1e-4), initial_loss(run_dir, 0.01)
    ln = math.log(1000)
    ok = abs(low - ln) / ln < 0.1 and high > 40
    return _row(
        "init std 0.0001 gives a starting loss of ~7.0 = -ln(1/1000); the default 0.01 gives ~80",
        "pycaffe forward of one train batch at iteration 0, 1000 outputs, Caffe's gaussian filler",
        "6.9 / ~80",
        f"{low:.2f} / {high:.1f}",
        _verdict(ok),
        "Caffe's SoftmaxWithLoss clamps each image's loss at -ln(FLT_MIN) = 87.3",
    )


def claim_learning_rate(run_dir):
    fast, slow = short_run_losses(run_dir, 0.01), short_run_losses(run_dir, 1e-7)
    if not fast or not slow:
        return _row(
            "higher learning rates explode; ~1e-7 works",
            "two short caffe train runs",
            "explodes / falls",
            "no log",
            UNCHECKABLE,
            "caffe train produced no loss lines",
        )
    exploded = not math.isfinite(fast[-1][1]) or fast[-1][1] > max(2 * fast[0][1], 20)
    falls = slow[-1][1] < slow[0][1]
    return _row(
        "a learning rate of the usual kind (0.01) makes the loss explode; ~1e-7 makes it fall",
        f"two real `caffe train` runs of {LR_ITERATIONS} iterations from the run's solver, lr 0.01 and 1e-7",
        "explodes / falls",
        f"lr 0.01: {fast[0][1]:.2f} -> {fast[-1][1]:.4g}; lr 1e-7: {slow[0][1]:.2f} -> {slow[-1][1]:.2f}",
        _verdict(exploded and falls),
    )


def _regularization_ratio(run_dir):
    """(weight decay, 0.5 * wd * ||W||^2 / final train loss) of a trained run."""
    run_dir = runs.as_run(run_dir)
    solver = prototxt.read_solver(run_dir.path / "solver.prototxt")
    W = weights.load(run_dir)["W"].astype(np.float64)
    losses = curves.parse_log((run_dir.path / "train.log").read_text())["train"]
    data_loss = float(np.mean([loss for _, loss in losses[-5:]]))
    return solver.weight_decay, 0.5 * solver.weight_decay * float((W**2).sum()) / data_loss


def claim_weight_decay(low_dir, blog_dir):
    (wd_low, r_low), (wd_blog, r_blog) = _regularization_ratio(low_dir), _regularization_ratio(blog_dir)
    return _row(
        "weight decay 0.0005 is negligible with 12K inputs; 100 is not",
        "0.5 * wd * ||W||^2 over the final train loss (Caffe logs the data loss only), each run's own W",
        "negligible / not",
        f"wd {wd_low:g}: {100 * r_low:.3g} %; wd {wd_blog:g}: {100 * r_blog:.3g} %",
        _verdict(r_low < NEGLIGIBLE <= r_blog),
    )


def claim_accuracy(metrics, num_classes):
    value = (
        f"top-1 {100 * metrics['val_top1']:.1f} %, top-5 {100 * metrics['val_top5']:.1f} % "
        f"({metrics['val_images']} val images)"
    )
    how = f"make eval on the val LMDB ({metrics['val_subset']}); holds within a factor 2 of the blog's numbers"
    if num_classes != 1000:
        return _row(
            "~3.0 % top-1 and ~10 % top-5 on ImageNet",
            how,
            "3.0 % / 10 %",
            value,
            UNCHECKABLE,
            f"the data has {num_classes} classes, not ImageNet's 1000 (chance {100 / num_classes:.1f} %)",
        )
    ok = 0.015 <= metrics["val_top1"] <= 0.06 and 0.05 <= metrics["val_top5"] <= 0.20
    return _row("~3.0 % top-1 and ~10 % top-5 on ImageNet", how, "3.0 % / 10 %", value, _verdict(ok))


def claims_regularization(low_dir, high_dir, curves_low, curves_high):
    """Three rows: smoother templates, lower accuracy, harder to fool at higher regularization."""
    smooth = [templates.smoothness(weights.load(d)["W"]) for d in (low_dir, high_dir)]
    metrics = [results.read_metrics(d) for d in (low_dir, high_dir)]
    top1 = [m["val_top1"] for m in metrics]
    eps = [c["median_epsilon"]["blog"] for c in (curves_low, curves_high)]
    names = f"{low_dir.name} vs {high_dir.name}"
    return [
        _row(
            "higher regularization gives smoother templates",
            f"mean |neighbour difference| of the normalised templates (0..1, lower = smoother), {names}",
            "smoother",
            f"{smooth[0]:.3f} vs {smooth[1]:.3f}",
            _verdict(smooth[1] < smooth[0]),
        ),
        _row(
            "higher regularization gives lower accuracy",
            f"val top-1, {names}",
            "lower",
            f"{100 * top1[0]:.1f} % vs {100 * top1[1]:.1f} %",
            _verdict(top1[1] < top1[0]),
            f"train top-1 {100 * metrics[0]['train_top1']:.1f} % vs {100 * metrics[1]['train_top1']:.1f} %",
        ),
        _row(
            "higher regularization makes images harder to fool",
            f"median Linf (0..255) for P >= 0.99 along the blog's direction over the attack-curve pairs, {names}",
            "harder",
            f"{eps[0]:.1f} vs {eps[1]:.1f}",
            _verdict(eps[1] > eps[0]),
        ),
    ]


def claim_fooling(curve, figure_numbers):
    reached = curve["curves"]["blog"][-1]
    noise = figure_numbers.get("fooling_noise", [])
    noise_ok = sum(r["fooled"] for r in noise)
    return _row(
        "any image, or noise, can be made any class with ~100 % confidence",
        f"fraction of the {curve['pairs']} (val image, target) pairs reaching P >= 0.99 along the blog's "
        "direction within Linf 255; noise start: targets fooled in make figures",
        "100 %",
        f"images {100 * reached:.0f} %; noise {noise_ok}/{len(noise)}",
        _verdict(reached >= 0.95 and noise_ok == len(noise)),
    )


def claim_background(run_dir):
    """The blog's closing claim, from `make background` (runs Caffe fine-tuning; not run here)."""
    claim = "a background class of fooling images, added iteratively during training, is not effective"
    how = (
        "last round of make background: val pairs still fooled within Linf 255 (blog direction), and its "
        "median Linf vs the control fine-tuned as long without background; holds if >= 95 % are still "
        "fooled and the median is below 1.5x the control's"
    )
    try:
        background = results.read_result(
            run_dir.path / "background" / "background.json",
            f"make background RUN={run_dir.name}",
            "the background-class rounds",
        )
    except (runs.RunError, files.DamagedFile) as err:
        return _row(claim, how, "not effective", "not measured", UNCHECKABLE, str(err))
    last = background["rounds"][-1]
    still = last["curves"]["blog"][-1]
    eps, control = last["median_epsilon"]["blog"], last["control"]["median_epsilon"]["blog"]
    return _row(
        claim,
        how,
        "not effective",
        f"round {last['round']}: {100 * still:.0f} % still fooled; median Linf {eps:.1f} vs control {control:.1f}",
        _verdict(still >= 0.95 and eps < 1.5 * control),
    )


def _optional(path, remake, what):
    """(result, '') from read_result, or (None, why) when it is missing, damaged or stale."""
    try:
        return results.read_result(path, remake, what), ""
    except (runs.RunError, files.DamagedFile) as err:
        return None, str(err)


def median_budget(curve, ladder):
    """The smallest Linf of the ladder at which at least half the pairs are fooled (inf if none)."""
    return next((eps for eps, fooled in zip(ladder, curve) if fooled >= 0.5), math.inf)


def _budget_text(value):
    return f"{value:g}" if math.isfinite(value) else "none <= 128"


def claim_deep_regularization(deep, why=""):
    """The post's open question: does stronger weight decay make the MLP and the ConvNet harder to
    fool? Per net in make deep's result: the mean fooled fraction over the Linf ladder (iterative
    attack) of its strong-decay run against its weak one."""
    claim = "more regularization makes deeper models harder to fool too"
    how = (
        "make deep: mean fraction of the pairs fooled to P >= 0.99 over Linf 1..128 by the iterative attack, "
        "strong vs weak weight decay, for the MLP and the ConvNet; holds if lower for every deeper net (the "
        "fraction pushed to the target's top-1 only is shown beside it)"
    )
    blog = "not obvious (open question)"
    if deep is None:
        return _row(claim, how, blog, "not measured", UNCHECKABLE, why)
    found = {}
    for m in deep["models"]:
        found.setdefault(m["kind"], []).append(m)
    pairs = {k: sorted(v, key=lambda m: m["weight_decay"]) for k, v in found.items() if k != "linear" and len(v) == 2}
    if not pairs:
        return _row(claim, how, blog, "no deeper net at two decays", UNCHECKABLE, "make deep-sweep trains them")
    parts, lower = [], []
    for kind, (weak, strong) in pairs.items():
        means = [float(np.mean(m["curves"]["iterative"])) for m in (weak, strong)]
        top1 = [float(np.mean(m["curves"]["iterative_top1"])) for m in (weak, strong)]
        budgets = [median_budget(m["curves"]["iterative"], deep["ladder"]) for m in (weak, strong)]
        lower.append(means[1] < means[0])
        parts.append(
            f"{kind} {means[0]:.2f} -> {means[1]:.2f} (median Linf {_budget_text(budgets[0])} -> "
            f"{_budget_text(budgets[1])}; to top-1 only: {top1[0]:.2f} -> {top1[1]:.2f})"
        )
    return _row(claim, how, blog, "; ".join(parts), _verdict(all(lower)))


def claim_transfer(deep, num_classes, why=""):
    """Do fooling images made on one kind of model (linear, MLP, ConvNet) fool the others? From make
    deep's transfer matrix: the target's top-1 rate between models of different kinds, against chance."""
    claim = "fooling images transfer across models (linear <-> deep)"
    chance = 1 / num_classes
    how = (
        f"make deep: images fooled by the iterative attack on one model, classified by every other; holds if "
        f"linear -> deep and deep -> linear both reach the target at >= 3x chance (1/{num_classes})"
    )
    blog = "not measured (Szegedy et al.: they transfer)"
    if deep is None:
        return _row(claim, how, blog, "not measured", UNCHECKABLE, why)
    kinds = [m["kind"] for m in deep["models"]]
    pairs = {}  # (made on kind, classified by kind) -> rates
    for (i, j), value in np.ndenumerate(np.array(deep["transfer"], float)):
        if kinds[i] != kinds[j] and np.isfinite(value):
            pairs.setdefault((kinds[i], kinds[j]), []).append(value)
    ways = {"linear -> deep": [], "deep -> linear": []}
    for (src, dst), values in pairs.items():
        if "linear" in (src, dst):
            ways["linear -> deep" if src == "linear" else "deep -> linear"] += values
    if not all(ways.values()):
        return _row(claim, how, blog, "no linear and deep pair", UNCHECKABLE, "make deep-sweep, then make deep")
    means = {way: float(np.mean(v)) for way, v in ways.items()}
    detail = ", ".join(f"{src}->{dst} {100 * np.mean(v):.0f} %" for (src, dst), v in pairs.items())
    value = ", ".join(f"{k} {100 * v:.0f} %" for k, v in means.items()) + f" (chance {100 * chance:.1f} %; {detail})"
    return _row(claim, how, blog, value, _verdict(all(v >= 3 * chance for v in means.values())))


def claim_forest(forest, why=""):
    """The post's unconfirmed claim: a random forest, fooled with scores only (make forest)."""
    claim = "even random forests are not safe (fooled with class scores only)"
    how = (
        "make forest: square attack with predict_proba as the only oracle, at the largest Linf budget, beside "
        "the run's linear model (which the blog breaks) on the same pairs and queries; holds if the forest's "
        "target becomes its top-1 on some pairs and at least half as often as the linear model's (a forest's "
        "probability is a fraction of trees, too coarse for 0.99)"
    )
    blog = "unconfirmed ('I haven't seen anyone empirically confirm this')"
    if forest is None:
        return _row(claim, how, blog, "not measured", UNCHECKABLE, why)
    last = {model: rates[-1] for model, rates in forest["attacks"].items()}
    value = (
        f"Linf {last['forest']['linf']:g}, {forest['max_queries']} queries: forest top-1 "
        f"{100 * last['forest']['top1']:.0f} % (P >= 0.99: {100 * last['forest']['reached']:.0f} %); linear "
        f"{100 * last['linear']['top1']:.0f} % ({100 * last['linear']['reached']:.0f} %)"
    )
    forest_top1, linear_top1 = last["forest"]["top1"], last["linear"]["top1"]
    return _row(claim, how, blog, value, _verdict(forest_top1 > 0 and forest_top1 >= 0.5 * linear_top1))


def claims_open_questions(run_dir, num_classes):
    """The rows of the post's open questions (make open-questions), 'cannot be checked' with the
    make command when make deep's or make forest's result is missing or stale."""
    deep, deep_why = _optional(run_dir.path / "deep" / "deep.json", f"make deep RUN={run_dir.name}", "make deep")
    forest, forest_why = _optional(
        run_dir.path / "forest" / "forest.json", f"make forest RUN={run_dir.name}", "make forest"
    )
    return [
        claim_deep_regularization(deep, deep_why),
        claim_transfer(deep, num_classes, deep_why),
        claim_forest(forest, forest_why),
    ]


def claim_toy():
    n = toy.toy_numbers()
    ok = (
        round(n["score"]) == -3
        and round(n["prob"], 4) == 0.0474
        and round(n["score_adv"]) == 2
        and round(n["prob_adv"], 2) == 0.88
    )
    return _row(
        "toy: w.x = -3, P = 0.0474; after x + 0.5w: w.x = 2, P = 0.88",
        "linfool.experiments.toy on the blog's x, w",
        "-3, 0.0474; 2, 0.88",
        f"{n['score']:g}, {n['prob']:.4f}; {n['score_adv']:g}, {n['prob_adv']:.2f}",
        _verdict(ok),
    )


def _attack_curves(run):
    return results.read_result(
        run.path / "attacks" / "attack_curves.json",
        f"make attack-curves RUN={run.name}",
        f"the attack curves of run {run.name}",
    )


def check_claims(run, low, high):
    """Every claim row for `run` (the blog's settings) compared with `low` and `high`."""
    low, high = runs.companions(run, low, high)
    trained = {d.name: d for d in runs.group(run, low, high)}
    missing = [name for name in (low, high) if name not in trained]
    if missing:
        raise runs.RunError(
            f"the claims compare {run} with {low} and {high}; {' and '.join(missing)} "
            f"not trained yet: `make sweep` (DATA= the data set of {run})"
        )
    run_dir, low_dir, high_dir = trained[run], trained[low], trained[high]
    figure_numbers = results.read_result(
        run_dir.path / "figures" / "figures.json", f"make figures RUN={run}", f"the figures of run {run}"
    )
    curve = _attack_curves(run_dir)
    steps = [
        ("the loss at initialisation (two pycaffe forwards)", lambda: [claim_init(run_dir.path)]),
        ("learning rates (two short caffe train runs)", lambda: [claim_learning_rate(run_dir.path)]),
        ("weight decay", lambda: [claim_weight_decay(low_dir, run_dir)]),
        ("accuracy", lambda: [claim_accuracy(results.read_metrics(run_dir), len(weights.load(run_dir)["W"]))]),
        (
            "regularization",
            lambda: claims_regularization(low_dir, high_dir, _attack_curves(low_dir), _attack_curves(high_dir)),
        ),
        (
            "fooling, background class, toy",
            lambda: [claim_fooling(curve, figure_numbers), claim_background(run_dir), claim_toy()],
        ),
        (
            "the open questions (make deep, make forest)",
            lambda: claims_open_questions(run_dir, run_dir.dataset().num_classes),
        ),
    ]
    rows = []
    for n, (what, measure) in enumerate(steps, start=1):
        print(f"claims {n}/{len(steps)}: {what}", flush=True)
        rows += measure()
    return rows


def table(rows) -> str:
    lines = [f"{'verdict':<17} {'this run':<44} claim"]
    lines += [f"{r['verdict']:<17} {r['value'][:44]:<44} {r['claim']}" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    runs.add_group_arguments(parser)
    args = parser.parse_args(argv)
    runs.group_run(args)

    def body():
        group = runs.group(args.run, args.low, args.high)
        with runs.locked(write=group[:1], read=group[1:]):
            rows = check_claims(args.run, args.low, args.high)
            command = cli.make_command("claims", RUN=args.run, LOW=args.low, HIGH=args.high)
            files.write_json(
                group[0].path / "claims.json",
                {"command": command, "rows": rows, "sources": [r.source() for r in group]},
            )
        print(table(rows))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
