"""`make claims`: the blog's claims, each measured on the user's own Caffe runs, with a verdict.

    python -m linfool claims --run blog [--low reg_low --high reg_high]     # runs/<run>/claims.json

--low/--high default to the run's sweep companions (linfool.core.runs.sweep_names); all three must be
trained on one data set.

One row per claim: the blog's words, how we measure it, the blog's value, this run's value, and
how sure it is: the row's test, its n, the effect with its 95 % interval and the p-value, and a
verdict by one rule (linfool.core.stats.RULE): "holds" when the test rejects its null in the claim's
direction at alpha = 0.05, "does not hold" when it rejects it the other way, "inconclusive at this
sample" otherwise (with the sample the observed effect would need), or "cannot be checked" (with
why). Paired claims are tested paired: McNemar for two runs' top-1 on the same val records, the sign
test for two runs' Linf on the same (image, target) pairs or templates on the same classes. The init and learning-rate rows
run Caffe afresh (a pycaffe forward at iteration 0; two short `caffe train` runs); the others read the
runs' snapshots and the results of `make eval`, `make figures` and `make attack-curves` (and, when
present, `make background`, `make deep` and `make forest`: the post's open questions), each refused in one line when missing or made from another snapshot or
data set than the runs' current ones (never recomputed here). claims.json records every source.
"""

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linfool.core import caffe_env, cli, conventions, files, prototxt, results, runs, stages, stats
from linfool.experiments import accuracy, adversarial, seeds, templates, toy
from linfool.model import adv_train, curves, train, weights

HOLDS, FAILS, INCONCLUSIVE, UNCHECKABLE = stats.HOLDS, stats.FAILS, stats.INCONCLUSIVE, "cannot be checked"
LR_ITERATIONS = 100  # "a few hundred iterations at most"
NEGLIGIBLE = 0.01  # regularization below 1 % of the data loss


def _row(claim, how, blog, value, verdict, why="", evidence=None):
    """One claim row; `evidence` (Evidence) is the test behind the verdict (None: cannot be checked)."""
    evidence = evidence or Evidence("none", None, "", None, None)
    return {"claim": claim, "how": how, "blog": blog, "value": value, "verdict": verdict, "why": why, **evidence.row()}


@dataclass
class Evidence:
    """A row's test: its name, n, the effect (a stats dict with value/low/high, or None) and what it
    is, the p-value of the claim's direction (None where no test applies: exact arithmetic), and the
    sample an inconclusive effect would need."""

    test: str
    n: object
    what: str
    effect: dict
    p: float
    needed: object = None

    def row(self) -> dict:
        return {
            "test": self.test,
            "n": self.n,
            "effect": self.effect,
            "effect_of": self.what,
            "p": self.p,
            "needed": self.needed,
        }


def _tested(claim, how, blog, value, evidence, p_down, why=""):
    """A row whose verdict follows the rule from the claim direction's p (evidence.p) and the other's."""
    verdict = stats.decide(evidence.p, p_down)
    if verdict == INCONCLUSIVE:
        said = (
            f"the observed effect would be decisive at n = {evidence.needed:,}"
            if evidence.needed
            else "no effect was observed that a larger sample of this kind could decide"
        )
        why = (why + "; " if why else "") + said
    return _row(claim, how, blog, value, verdict, why, evidence)


def _sign_test(more, fewer, unit):
    """Evidence of a paired sign test: of the items that differ, `more` moved the claim's way."""
    ties_out = more + fewer
    up, down = stats.one_sided(more, ties_out)
    effect = stats.proportion(more, ties_out, "exact")
    needed = stats.needed(more, ties_out) if ties_out else None
    what = f"share of the {unit} that differ which move the claim's way (0.5: no effect)"
    return Evidence("paired sign test (exact binomial, two-sided 0.05)", ties_out, what, effect, up, needed), down


def _exact(claim, how, blog, value, ok, why=""):
    """A row decided by exact arithmetic (no sample): holds or does not hold, no test."""
    return _row(
        claim, how, blog, value, HOLDS if ok else FAILS, why, Evidence("none: exact arithmetic", None, "", None, None)
    )


def _within(values, low, high):
    """(p that the mean lies inside (low, high): the larger of two one-sided t-tests, TOST; p that it
    lies outside: the smaller of the two tests the other way)."""
    inside = max(
        stats.t_test(values, low, "greater"),
        stats.t_test(values, high, "less"),
    )
    outside = min(stats.t_test(values, low, "less"), stats.t_test(values, high, "greater"))
    return inside, outside


FLT_MIN = float(np.finfo(np.float32).tiny)  # Caffe's SoftmaxWithLoss clamps p at FLT_MIN


def initial_losses(run_dir, std, num_output=1000, seed=conventions.SEED) -> np.ndarray:
    """(batch,) per-image SoftmaxWithLoss of one TRAIN batch (pycaffe forward, iteration 0) for the
    run's net with `num_output` outputs and a Gaussian weight std of `std`: -ln max(p_label, FLT_MIN)
    from the scores the loss layer reads (their mean is Caffe's loss)."""
    caffe = caffe_env.import_caffe()
    net = prototxt.read_net(run_dir / "train_val.prototxt")
    fc = prototxt.fc_layer(net)
    fc.inner_product_param.num_output = num_output
    fc.inner_product_param.weight_filler.std = std
    loss = next(layer for layer in net.layer if layer.type == "SoftmaxWithLoss")
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as tmp:
        tmp.write(prototxt.text(net))
        tmp.flush()
        caffe_env.use_device()
        caffe.set_random_seed(seed)
        forward = caffe.Net(tmp.name, caffe.TRAIN)
        forward.forward()
        scores = forward.blobs[loss.bottom[0]].data.astype(np.float64)
        labels = forward.blobs[loss.bottom[1]].data.astype(int).ravel()
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    return -np.log(np.maximum(probs[np.arange(len(labels)), labels], FLT_MIN))


def initial_loss(run_dir, std, num_output=1000, seed=conventions.SEED) -> float:
    """Caffe's SoftmaxWithLoss of that batch: the mean of initial_losses."""
    return float(initial_losses(run_dir, std, num_output, seed).mean())


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
        (Path(tmp) / "solver.prototxt").write_text(prototxt.text(solver))
        code, stopped = train.run_caffe(Path(tmp), flag, None, [], echo=False)
        log = (Path(tmp) / "train.log").read_text()
    if stopped:
        raise KeyboardInterrupt  # Ctrl-C reached Caffe, which stopped: no claim from a cut-short run
    if code != 0:
        last = log.strip().splitlines()[-1:] or ["no output"]
        raise cli.UserError(f"a short caffe train at base_lr={base_lr:g} exited with {code}: {last[0][:200]}")
    return curves.parse_log(log)["train"]


def claim_init(run_dir):
    low, high = initial_losses(run_dir, 1e-4), initial_losses(run_dir, 0.01)
    ln = math.log(1000)
    (near, far), (big, small) = (
        _within(low, 0.9 * ln, 1.1 * ln),
        (
            stats.t_test(high, 40, "greater"),
            stats.t_test(high, 40, "less"),
        ),
    )
    found = stats.mean(low)
    evidence = Evidence(
        "two one-sided t-tests: std 1e-4's mean loss within ln(1000) +- 10 %, std 0.01's above 40",
        len(low),
        "mean starting loss at std 1e-4 (95 % t interval)",
        found,
        max(near, big),
    )
    return _tested(
        "init std 0.0001 gives a starting loss of ~7.0 = -ln(1/1000); the default 0.01 gives ~80",
        "pycaffe forward of one train batch at iteration 0, 1000 outputs, Caffe's gaussian filler: the "
        "mean of the batch's per-image losses",
        "6.9 / ~80",
        f"{found['value']:.2f} ({found['low']:.2f}-{found['high']:.2f}) / {high.mean():.1f} over {len(low)} images",
        evidence,
        min(far, small),
        "Caffe's SoftmaxWithLoss clamps each image's loss at -ln(FLT_MIN) = 87.3",
    )


LAST = 5  # logged train losses averaged for "the final loss" (each a mean over one batch)


def claim_learning_rate(run_dir):
    fast, slow = short_run_losses(run_dir, 0.01), short_run_losses(run_dir, 1e-7)
    claim = "a learning rate of the usual kind (0.01) makes the loss explode; ~1e-7 makes it fall"
    how = (
        f"two real `caffe train` runs of {LR_ITERATIONS} iterations from the run's solver, lr 0.01 and 1e-7: "
        f"the last {LAST} logged batch losses against the first (exploded: above twice it, or not finite)"
    )
    if not fast or not slow:
        return _row(claim, how, "explodes / falls", "no log", UNCHECKABLE, "caffe train produced no loss lines")
    end_fast = [loss for _, loss in fast[-LAST:]]
    end_slow = [loss for _, loss in slow[-LAST:]]
    blown = not all(map(math.isfinite, end_fast))
    explode = (
        (0.0, 1.0)
        if blown
        else (stats.t_test(end_fast, 2 * fast[0][1], "greater"), stats.t_test(end_fast, 2 * fast[0][1], "less"))
    )
    fall = (stats.t_test(end_slow, slow[0][1], "less"), stats.t_test(end_slow, slow[0][1], "greater"))
    found = stats.mean(end_slow)
    evidence = Evidence(
        f"one-sided t-tests over the last {LAST} logged losses of each run (one training per rate: its "
        "batches' noise, not the variance over seeds)",
        LAST,
        "final loss at lr 1e-7 (95 % t interval), to compare with its first",
        found,
        max(explode[0], fall[0]),
    )
    value = (
        f"lr 0.01: {fast[0][1]:.2f} -> {float(np.mean(end_fast)):.4g}; lr 1e-7: {slow[0][1]:.2f} -> "
        f"{found['value']:.2f} ({found['low']:.2f}-{found['high']:.2f})"
    )
    return _tested(claim, how, "explodes / falls", value, evidence, min(explode[1], fall[1]))


def _regularization_ratio(run_dir):
    """(weight decay, 0.5 * wd * ||W||^2, the last LAST logged train losses) of a trained run."""
    run_dir = runs.as_run(run_dir)
    solver = prototxt.read_solver(run_dir.path / "solver.prototxt")
    W = weights.load(run_dir)["W"].astype(np.float64)
    losses = curves.parse_log((run_dir.path / "train.log").read_text())["train"]
    return solver.weight_decay, 0.5 * solver.weight_decay * float((W**2).sum()), [loss for _, loss in losses[-LAST:]]


def claim_weight_decay(low_dir, blog_dir):
    (wd_low, reg_low, loss_low), (wd_blog, reg_blog, loss_blog) = map(_regularization_ratio, (low_dir, blog_dir))
    # ratio < NEGLIGIBLE  <=>  data loss > reg / NEGLIGIBLE: a t-test on the logged losses
    small = (
        stats.t_test(loss_low, reg_low / NEGLIGIBLE, "greater"),
        stats.t_test(loss_low, reg_low / NEGLIGIBLE, "less"),
    )
    large = (
        stats.t_test(loss_blog, reg_blog / NEGLIGIBLE, "less"),
        stats.t_test(loss_blog, reg_blog / NEGLIGIBLE, "greater"),
    )
    found = stats.mean(loss_blog)  # the ratio's interval is the data loss's, inverted (a loss > 0)
    ratio = {
        **found,
        "value": reg_blog / found["value"],
        "low": reg_blog / found["high"],
        "high": reg_blog / found["low"] if found["low"] > 0 else math.inf,
    }
    evidence = Evidence(
        f"one-sided t-tests of each run's last {LAST} logged data losses against ||W||^2's term / 1 %",
        found["n"],
        f"0.5 wd ||W||^2 / data loss at wd {wd_blog:g} (95 % interval from the loss's)",
        ratio,
        max(small[0], large[0]),
    )
    return _tested(
        "weight decay 0.0005 is negligible with 12K inputs; 100 is not",
        "0.5 * wd * ||W||^2 over the final train loss (Caffe logs the data loss only), each run's own W; "
        "negligible: below 1 %",
        "negligible / not",
        f"wd {wd_low:g}: {100 * reg_low / np.mean(loss_low):.3g} %; wd {wd_blog:g}: {100 * ratio['value']:.3g} % "
        f"({100 * ratio['low']:.3g}-{100 * ratio['high']:.3g})",
        evidence,
        min(small[1], large[1]),
    )


def claim_accuracy(metrics, num_classes):
    top1, top5 = (metrics.get(f"val_top{k}_ci") for k in (1, 5))
    value = (
        f"top-1 {100 * metrics['val_top1']:.1f} %, top-5 {100 * metrics['val_top5']:.1f} % "
        f"({metrics['val_images']} val images)"
    )
    how = f"make eval on the val LMDB ({metrics['val_subset']}); holds within a factor 2 of the blog's numbers"
    claim = "~3.0 % top-1 and ~10 % top-5 on ImageNet"
    if num_classes != 1000:
        return _row(
            claim,
            how,
            "3.0 % / 10 %",
            value,
            UNCHECKABLE,
            f"the data has {num_classes} classes, not ImageNet's 1000 (chance {100 / num_classes:.1f} %)",
        )
    if top1 is None:
        return _row(
            claim, how, "3.0 % / 10 %", value, UNCHECKABLE, "metrics.json has no intervals: `make eval` remakes it"
        )
    n = metrics["val_images"]
    inside = [stats.one_sided(found["k"], n, low)[0] for found, low in ((top1, 0.015), (top5, 0.05))]
    inside += [stats.one_sided(found["k"], n, high)[1] for found, high in ((top1, 0.06), (top5, 0.20))]
    outside = [stats.one_sided(top1["k"], n, 0.015)[1], stats.one_sided(top1["k"], n, 0.06)[0]]
    outside += [stats.one_sided(top5["k"], n, 0.05)[1], stats.one_sided(top5["k"], n, 0.20)[0]]
    evidence = Evidence(
        "exact binomial tests that top-1 lies in 1.5-6 % and top-5 in 5-20 %",
        n,
        "val top-1 (Wilson 95 %)",
        top1,
        max(inside),
    )
    return _tested(claim, how, "3.0 % / 10 %", value, evidence, min(outside))


def claims_regularization(low_dir, high_dir, curves_low, curves_high):
    """Three rows: smoother templates, lower accuracy, harder to fool at higher regularization."""
    pair = (low_dir, high_dir)
    W = [weights.load(d)["W"] for d in pair]
    return training_rows(W, [results.read_metrics(d) for d in pair], [curves_low, curves_high], [d.name for d in pair])


def claim_smoother(W, names):
    """Smoother templates: each class's template at both decays, paired over the classes (sign test)."""
    per_class = np.array([[templates.smoothness(w[c : c + 1]) for c in range(len(w))] for w in W])
    evidence, down = _sign_test(
        int((per_class[1] < per_class[0]).sum()), int((per_class[1] > per_class[0]).sum()), "classes"
    )
    smooth = [templates.smoothness(w) for w in W]
    return _tested(
        "higher regularization gives smoother templates",
        f"mean |neighbour difference| of the normalised templates (0..1, lower = smoother), {names}; per class",
        "smoother",
        f"{smooth[0]:.3f} vs {smooth[1]:.3f}; smoother at the higher decay: {evidence.effect['k']} of {evidence.n} classes",
        evidence,
        down,
    )


def claim_lower_accuracy(low, high, low_name, high_name):
    """Lower accuracy: both runs' top-1 on the same val records, McNemar's exact test."""
    claim, blog = "higher regularization gives lower accuracy", "lower"
    how = f"val top-1, {low_name} vs {high_name}, on the same val records: exact McNemar test of the images one gets right and the other wrong"
    value = (
        f"{accuracy.interval_text(low['val_top1_ci'])} vs {accuracy.interval_text(high['val_top1_ci'])}"
        if "val_top1_ci" in low and "val_top1_ci" in high
        else ""
    )
    same = all(k in m for m in (low, high) for k in ("val_correct", "val_top1_ci")) and (
        low["val_images"] == high["val_images"] and low["val_subset"] == high["val_subset"]
    )
    if not same:
        return _row(
            claim,
            how,
            blog,
            value,
            UNCHECKABLE,
            "metrics.json without per-image results, or of other val records: `make eval` remakes them",
        )
    n = low["val_images"]
    right = [accuracy.unpack(m["val_correct"], n) for m in (low, high)]
    only_low, only_high = int((right[0] & ~right[1]).sum()), int((~right[0] & right[1]).sum())
    evidence, down = _sign_test(only_low, only_high, "val images")
    evidence.test = "exact McNemar test (two-sided 0.05)"
    evidence.what = f"share of the {only_low + only_high} discordant val images that only {low_name} gets right"
    if evidence.needed:  # discordant images needed -> val images at this discordance rate
        evidence.needed = math.ceil(evidence.needed * n / (only_low + only_high))
    value += f"; only {low_name} right on {only_low}, only {high_name} on {only_high} of {n}; p = {stats.mcnemar(only_low, only_high):.2g}"
    row = _tested(
        claim,
        how,
        blog,
        value,
        evidence,
        down,
        f"train top-1 {100 * low['train_top1']:.1f} % vs {100 * high['train_top1']:.1f} %",
    )
    row["n"] = n
    return row


def claim_harder(curves_low, curves_high, names):
    """Harder to fool: the Linf each pair needs on both runs, paired over the same pairs (sign test)."""
    claim, blog = "higher regularization makes images harder to fool", "harder"
    how = f"Linf (0..255) each (val image, target) pair needs for P >= 0.99 along the blog's direction, {names}, same pairs"
    eps = [c["median_epsilon_ci"]["blog"] if "median_epsilon_ci" in c else None for c in (curves_low, curves_high)]
    same = all("first_epsilon" in c for c in (curves_low, curves_high)) and all(
        curves_low.get(k) == curves_high.get(k) for k in ("seed", "pairs", "images", "targets_per_image")
    )
    if not same or None in eps:
        return _row(
            claim,
            how,
            blog,
            "",
            UNCHECKABLE,
            "attack curves without per-pair results, or of other pairs: `make attack-curves` remakes them",
        )
    low, high = (np.array(c["first_epsilon"]["blog"]) for c in (curves_low, curves_high))
    evidence, down = _sign_test(int((high > low).sum()), int((high < low).sum()), "pairs")
    value = f"median {stats.linf_text(eps[0])} vs {stats.linf_text(eps[1])}; more Linf needed on {evidence.effect['k']} of {evidence.n} differing pairs"
    row = _tested(claim, how, blog, value, evidence, down)
    row["n"] = len(low)
    return row


def claim_fooling(curve, figure_numbers):
    """~100 %: the pairs fooled within Linf 255, one-sided exact binomial against 95 %."""
    fooled = np.isfinite(curve["first_epsilon"]["blog"]) if "first_epsilon" in curve else None
    noise = figure_numbers.get("fooling_noise", [])
    noise_ok = sum(r["fooled"] for r in noise)
    claim = "any image, or noise, can be made any class with ~100 % confidence"
    how = (
        f"fraction of the {curve['pairs']} (val image, target) pairs reaching P >= 0.99 along the blog's "
        "direction within Linf 255 (holds: above 95 %); noise start: targets fooled in make figures"
    )
    if fooled is None:
        return _row(
            claim,
            how,
            "100 %",
            "",
            UNCHECKABLE,
            "attack curves without per-pair results: `make attack-curves` remakes them",
        )
    k, n = int(fooled.sum()), len(fooled)
    up, down = stats.one_sided(k, n, 0.95)
    evidence = Evidence(
        "exact binomial test against 95 % (one-sided each way)",
        n,
        "fraction of the pairs fooled (Clopper-Pearson 95 %)",
        stats.proportion(k, n, "exact"),
        up,
        stats.needed(k, n, 0.95),
    )
    value = f"images {k}/{n} ({100 * evidence.effect['low']:.1f}-{100 * evidence.effect['high']:.1f} %); noise {noise_ok}/{len(noise)}"
    return _tested(claim, how, "100 %", value, evidence, down)


def claim_background(run_dir):
    """The blog's closing claim, from `make background` (runs Caffe fine-tuning; not run here)."""
    claim = "a background class of fooling images, added iteratively during training, is not effective"
    how = (
        "last round of make background: val pairs still fooled within Linf 255 (blog direction; holds: above 95 %, "
        "exact binomial), and the Linf each pair needs against the control fine-tuned as long without "
        "background, on the same pairs (holds: below 1.5x the control's on more than half, sign test)"
    )
    try:
        background = results.read_result(*stages.result("background", run_dir), "the background-class rounds")
    except (runs.RunError, files.DamagedFile) as err:
        return _row(claim, how, "not effective", "not measured", UNCHECKABLE, str(err))
    last = background["rounds"][-1]
    if "first_epsilon" not in last or "first_epsilon" not in last["control"]:
        return _row(
            claim,
            how,
            "not effective",
            "",
            UNCHECKABLE,
            f"background.json without per-pair results: `make background RUN={run_dir.name}` remakes it",
        )
    mine, control = (np.array(r["first_epsilon"]["blog"]) for r in (last, last["control"]))
    k, n = int(np.isfinite(mine).sum()), len(mine)
    still = stats.one_sided(k, n, 0.95)
    near, _ = _sign_test(int((mine < 1.5 * control).sum()), int((mine >= 1.5 * control).sum()), "pairs")
    near_down = stats.one_sided(near.effect["k"], near.n)[1]
    evidence = Evidence(
        "exact binomial test against 95 %, and a sign test against 1.5x the control's Linf (same pairs)",
        n,
        "fraction of the pairs still fooled (Clopper-Pearson 95 %)",
        stats.proportion(k, n, "exact"),
        max(still[0], near.p),
    )
    eps, ctl = last["median_epsilon_ci"]["blog"], last["control"]["median_epsilon_ci"]["blog"]
    value = (
        f"round {last['round']}: {k}/{n} still fooled; median Linf {stats.linf_text(eps)} vs control {stats.linf_text(ctl)}; "
        f"below 1.5x the control's on {near.effect['k']} of {near.n} pairs"
    )
    return _tested(claim, how, "not effective", value, evidence, min(still[1], near_down))


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
    fool? Per net in make deep's result: the smallest ladder budget at which the iterative attack
    fools each pair, strong decay against weak on the same pairs (sign test); every net must hold."""
    claim = "more regularization makes deeper models harder to fool too"
    how = (
        "make deep: the smallest Linf of 1..128 at which the iterative attack fools each pair to P >= 0.99, "
        "strong vs weak weight decay on the same pairs, for the MLP and the ConvNet (sign test each); holds "
        "if it holds for every deeper net"
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
    if not all("iterative_first" in m["curves"] for v in pairs.values() for m in v):
        return _row(claim, how, blog, "", UNCHECKABLE, "deep.json without per-pair results: `make deep` remakes it")
    parts, tests = [], []
    for kind, (weak, strong) in pairs.items():
        first = [np.array(m["curves"]["iterative_first"]) for m in (weak, strong)]
        evidence, down = _sign_test(int((first[1] > first[0]).sum()), int((first[1] < first[0]).sum()), "pairs")
        budgets = [median_budget(m["curves"]["iterative"], deep["ladder"]) for m in (weak, strong)]
        tests.append((kind, evidence, down))
        parts.append(
            f"{kind}: median Linf {_budget_text(budgets[0])} -> {_budget_text(budgets[1])}; harder on "
            f"{evidence.effect['k']} of {evidence.n} differing pairs (p {evidence.p:.2g})"
        )
    kind, worst, _ = max(tests, key=lambda t: t[1].p)  # every net must hold: the weakest decides
    worst.what = f"{kind}: {worst.what}"
    row = _tested(claim, how, blog, "; ".join(parts), worst, min(down for _, _, down in tests))
    row["n"] = deep["pairs"]
    return row


def claim_transfer(deep, num_classes, why=""):
    """Do fooling images made on one kind of model (linear, MLP, ConvNet) fool the others? From make
    deep's transfer matrix: how often the target is the other kind's top-1, against chance (one-sided
    exact binomial tests, each way)."""
    claim = "fooling images transfer across models (linear <-> deep)"
    chance = 1 / num_classes
    how = (
        "make deep: images fooled by the iterative attack on one model, classified by every other; holds if "
        f"linear -> deep and deep -> linear both reach the target above chance (1/{num_classes}), exact binomial"
    )
    blog = "not measured (Szegedy et al.: they transfer)"
    if deep is None:
        return _row(claim, how, blog, "not measured", UNCHECKABLE, why)
    kinds = [m["kind"] for m in deep["models"]]
    made = [m.get("fooled_at_transfer_eps", 0) for m in deep["models"]]
    ways = {"linear -> deep": [0, 0], "deep -> linear": [0, 0]}  # [target hits, images]
    for (i, j), rate in np.ndenumerate(np.array(deep["transfer"], float)):
        if kinds[i] != kinds[j] and "linear" in (kinds[i], kinds[j]) and np.isfinite(rate):
            way = ways["linear -> deep" if kinds[i] == "linear" else "deep -> linear"]
            way[0], way[1] = way[0] + round(rate * made[i]), way[1] + made[i]
    if not all(n for _, n in ways.values()):
        return _row(claim, how, blog, "no linear and deep pair", UNCHECKABLE, "make deep-sweep, then make deep")
    tests = {way: stats.one_sided(k, n, chance) for way, (k, n) in ways.items()}
    weakest = max(tests, key=lambda way: tests[way][0])
    k, n = ways[weakest]
    evidence = Evidence(
        "exact binomial tests against chance, one per way",
        sum(n for _, n in ways.values()),
        f"{weakest}: share of the images whose target is the other model's top-1 (Clopper-Pearson 95 %)",
        stats.proportion(k, n, "exact"),
        tests[weakest][0],
        stats.needed(k, n, chance),
    )
    value = (
        ", ".join(f"{way} {k}/{n} ({100 * k / n:.0f} %, p {tests[way][0]:.2g})" for way, (k, n) in ways.items())
        + f"; chance {100 * chance:.1f} %"
    )
    return _tested(claim, how, blog, value, evidence, min(t[1] for t in tests.values()))


def claim_forest(forest, num_classes, why=""):
    """The post's unconfirmed claim: a random forest, fooled with scores only (make forest): the
    forest's top-1 reaching the target at the largest budget, against chance (exact binomial)."""
    claim = "even random forests are not safe (fooled with class scores only)"
    how = (
        "make forest: square attack with predict_proba as the only oracle, at the largest Linf budget, beside "
        "the run's linear model (which the blog breaks) on the same pairs and queries; holds if the forest's "
        f"target becomes its top-1 more often than chance (1/{num_classes}), exact binomial (a forest's "
        "probability is a fraction of trees, too coarse for 0.99)"
    )
    blog = "unconfirmed ('I haven't seen anyone empirically confirm this')"
    if forest is None:
        return _row(claim, how, blog, "not measured", UNCHECKABLE, why)
    last = {model: rates[-1] for model, rates in forest["attacks"].items()}
    if "top1_ci" not in last["forest"]:
        return _row(claim, how, blog, "", UNCHECKABLE, "forest.json without counts: `make forest` remakes it")
    top1 = last["forest"]["top1_ci"]
    up, down = stats.one_sided(top1["k"], top1["n"], 1 / num_classes)
    evidence = Evidence(
        "exact binomial test against chance",
        top1["n"],
        "forest's top-1 rate (Clopper-Pearson 95 %)",
        top1,
        up,
        stats.needed(top1["k"], top1["n"], 1 / num_classes),
    )
    value = (
        f"Linf {last['forest']['linf']:g}, {forest['max_queries']} queries: forest top-1 {top1['k']}/{top1['n']} "
        f"(P >= 0.99: {100 * last['forest']['reached']:.0f} %); linear {100 * last['linear']['top1']:.0f} % "
        f"({100 * last['linear']['reached']:.0f} %)"
    )
    return _tested(claim, how, blog, value, evidence, down)


def claims_open_questions(run_dir, num_classes):
    """The rows of the post's open questions (make open-questions), 'cannot be checked' with the
    make command when make deep's or make forest's result is missing or stale."""
    deep, deep_why = _optional(*stages.result("deep", run_dir), "make deep")
    forest, forest_why = _optional(*stages.result("forest", run_dir), "make forest")
    return [
        claim_deep_regularization(deep, deep_why),
        claim_transfer(deep, num_classes, deep_why),
        claim_forest(forest, num_classes, forest_why),
    ]


MODELS = {"linear": "the linear model", "mlp": "the MLP", "conv": "the ConvNet"}


def claim_adversarial(comparison, role, why="", net="linear"):
    """The post's closing hope, measured (make adv-train): the Linf each pair needs under the iterative
    attack (the strongest here) on the adversarially trained `net` run against the sweep's `role` run
    ('matched': the closest val top-1; 'strong': the strongest weight decay), same pairs, sign test;
    for the linear model the sign direction and the closed-form bound are said beside it."""
    against = "weight decay at the same accuracy" if role == "matched" else "the sweep's strongest weight decay"
    claim = f"adversarial training makes {MODELS[net]} harder to fool than {against}"
    other_run = "the sweep run of the closest val top-1" if role == "matched" else "the strongly regularized run"
    how = (
        "make adv-train: the smallest Linf (1..128, doubling) at which the iterative attack fools each (val image, "
        f"target) pair to P >= 0.99, the adversarially trained run vs {other_run}, same pairs: paired sign test"
    )
    blog = "a hope ('more resistant architectures or objectives')"
    if comparison is None:
        return _row(claim, how, blog, "not measured", UNCHECKABLE, why)
    if "paired_iterative" not in comparison:
        return _row(claim, how, blog, "", UNCHECKABLE, "a comparison of an older linfool: `make adv-train` remakes it")
    adv, other = comparison["run"], comparison[role]
    test = comparison["paired_iterative"][other]
    evidence, down = _sign_test(test["more"], test["fewer"], "pairs")
    accuracy_p = comparison["accuracy_tests"][other]["p"]
    value = (
        f"{adv} vs {other}: top-1 {accuracy.interval_text(comparison['top1'][adv])} vs "
        f"{accuracy.interval_text(comparison['top1'][other])} (McNemar p = {accuracy_p:.2g}); iterative median Linf "
        f"{adversarial.iterative_text(comparison['iterative'][adv]['median'])} vs "
        f"{adversarial.iterative_text(comparison['iterative'][other]['median'])}, "
        f"more on {test['more']}, less on {test['fewer']} pairs" + _linear_evidence(comparison, other)
    )
    if role == "matched" and accuracy_p < 0.05:  # the claim's condition is not met: no verdict on it
        why = (
            f"no sweep run at the same accuracy: the closest, {other}, differs in val top-1 (McNemar p = "
            f"{accuracy_p:.2g}); train a weight decay of that accuracy (make decay-search) and COMPARE= it"
        )
        row = _row(claim, how, blog, value, INCONCLUSIVE, why, evidence)
    else:
        row = _tested(claim, how, blog, value, evidence, down)
    row["n"] = comparison["pairs"]
    return row


def _linear_evidence(comparison, other):
    """'; sign direction ...; closed-form bound ...' of a linear comparison (its paired tests), else ''."""
    if "paired" not in comparison:
        return ""
    adv, median = comparison["run"], comparison["median_linf"]
    sign, bound = (comparison["paired"][other][kind] for kind in ("sign", "bound"))
    return (
        f"; sign direction {stats.linf_text(median[adv]['sign'])} vs {stats.linf_text(median[other]['sign'])} (more on "
        f"{sign['more']}, less on {sign['fewer']}); closed-form bound {median[adv]['bound']['value']:.3g} vs "
        f"{median[other]['bound']['value']:.3g} (more on {bound['more']}, less on {bound['fewer']})"
    )


def claims_adversarial(run_dir):
    """The rows of make adv-train's comparisons on run_dir's data set: the linear run's always ('cannot
    be checked' with the make command when it was not run or is stale), the MLP's and the ConvNet's when
    their adversarial runs exist (make adv-train NET=mlp|conv)."""
    rows = []
    for net in MODELS:
        adv = runs.Run.named(adv_train.run_name(net, run_dir.dataset().name))
        if net != "linear" and not adv.path.is_dir():
            continue
        comparison, why = _optional(*stages.result("adv-train", adv), f"make adv-train NET={net}")
        rows += [claim_adversarial(comparison, role, why, net) for role in ("matched", "strong")]
    return rows


def claim_toy():
    n = toy.toy_numbers()
    ok = (
        round(n["score"]) == -3
        and round(n["prob"], 4) == 0.0474
        and round(n["score_adv"]) == 2
        and round(n["prob_adv"], 2) == 0.88
    )
    return _exact(
        "toy: w.x = -3, P = 0.0474; after x + 0.5w: w.x = 2, P = 0.88",
        "linfool.experiments.toy on the blog's x, w",
        "-3, 0.0474; 2, 0.88",
        f"{n['score']:g}, {n['prob']:.4f}; {n['score_adv']:g}, {n['prob_adv']:.2f}",
        ok,
    )


def _attack_curves(run):
    return results.read_result(*stages.result("attack-curves", run), f"the attack curves of run {run.name}")


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
    figure_numbers = results.read_result(*stages.result("figures", run_dir), f"the figures of run {run}")
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
        ("adversarial training (make adv-train)", lambda: claims_adversarial(run_dir)),
    ]
    rows = []
    for n, (what, measure) in enumerate(steps, start=1):
        print(f"claims {n}/{len(steps)}: {what}", flush=True)
        rows += measure()
    return rows


def table(rows) -> str:
    """The printed table: verdict, n, p, the effect with its interval, the claim and (below it) the
    row's test; then the rule."""
    lines = [f"{'verdict':<27} {'n':>6} {'p':>8}  {'effect (95 % interval)':<24} claim"]
    for r in rows:
        lines.append(
            f"{r['verdict']:<27} {n_text(r['n']):>6} {p_text(r['p']):>8}  {effect_text(r['effect']):<24} {r['claim']}"
        )
        if r["test"] != "none":
            lines.append(f"{'':<69}test: {r['test']}")
    return "\n".join([*lines, f"rule: {stats.RULE}"])


def n_text(n):
    return "-" if n is None else f"{n:,}"


def p_text(p):
    return "-" if p is None else f"{p:.2g}"


def effect_text(effect):
    """'0.52 (0.43-0.60)' of a row's effect (value, low, high), or '-'."""
    if not effect or effect.get("value") is None:
        return "-"
    return f"{effect['value']:.3g} ({effect['low']:.3g}-{effect['high']:.3g})"


def training_rows(W, metrics, curves, names):
    """The rows that depend on training, for one (low, high) pair of runs: make claims SEEDS= repeats
    them over seeds (linfool.experiments.seeds)."""
    pair = f"{names[0]} vs {names[1]}"
    return [
        claim_smoother(W, pair),
        claim_lower_accuracy(*metrics, *names),
        claim_harder(*curves, pair),
    ]


def over_seeds(run, low, high, n_seeds, command):
    """make claims SEEDS=N: the training-dependent rows over N seeds of (low, high), its cost said first."""
    low_dir, high_dir = (runs.Run.named(n) for n in runs.companions(run, low, high))
    curves = [_attack_curves(d) for d in (low_dir, high_dir)]
    print(seeds.cost([low_dir, high_dir], n_seeds, curves[0]), flush=True)
    return seeds.spread(low_dir, high_dir, n_seeds, *curves, training_rows, command)


def main(argv=None) -> int:
    args = stages.parse("claims", argv)

    def body():
        group = runs.group(args.run, args.low, args.high)
        command = stages.command("claims", args)
        with runs.locked(write=group[:1], read=group[1:]):
            rows = check_claims(args.run, args.low, args.high)
            spread = over_seeds(args.run, args.low, args.high, args.seeds, command) if args.seeds > 1 else None
            result = {"command": command, "rule": stats.RULE, "rows": rows, "sources": [r.source() for r in group]}
            files.write_json(group[0].path / "claims.json", {**result, **({"seeds": spread} if spread else {})})
        print(table(rows))
        if spread:
            print(seeds.table(spread))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
