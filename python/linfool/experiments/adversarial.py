"""`make adv-train`: adversarial training (linfool.model.adv_train), then the run compared with the
weight-decay sweep at the same clean accuracy: the post's closing hope measured.

    python -m linfool adv-train [--net linear] [--eps 8] [--alpha 0.5] [--run adv] [--data synthetic] ...

The comparison (runs/<adv run>/adversarial/comparison.json and comparison.png, published whole):
- the sweep run (of the data set's default run: blog, reg_low, reg_high on the embedded set) whose val
  top-1 is closest to the adversarial run's ("matched"), and the strongly regularized one ("strong");
  each top-1 with its Wilson 95 % interval, and the exact McNemar p of the adversarial run against each;
- on the sweep's own pair sample (make attack-curves: same seed, images and targets), the Linf each
  pair needs for P >= 0.99 along the blog's direction, the sign direction and the closed-form bound
  (no Linf attack fools below it: a lower bound, not an attack), with the fooled-fraction curves and
  their 95 % bands, the median Linf and its 95 % interval; the same for make deep's iterative attack
  (the strongest here; budgets 1..128 doubling); the paired sign tests of the adversarial run against
  each on the same pairs;
- transfer: the images the iterative attack fooled on the data set's default run (blog) at Linf 16,
  classified by each: the fraction whose top-1 is the target;
- the templates side by side, with their smoothness (linfool.experiments.templates) and their Hoyer
  sparsity (0: every weight the same size, 1: one weight; an L1 penalty makes templates sparser).
NET=mlp and NET=conv runs are compared with the same net's weak and strong decay (make deep-sweep) on
make deep's pair sample, by what applies to any net: the top-1 tests, the iterative attack (with the
sign direction's fractions on its ladder), the transfer from the weak-decay run, and the first layer's
filters with their sparsity (no blog direction or closed-form bound: those are the linear model's).
make claims reads it for its rows "adversarial training makes the linear model (the MLP, the ConvNet)
harder to fool than weight decay at the same accuracy" (and than the strongest decay), decided on the
iterative attack; make report shows it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from linfool.attacks import LADDER
from linfool.attacks.linf import KINDS
from linfool.core import cli, files, paths, results, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.experiments import accuracy, deep, templates
from linfool.experiments.difficulty import attack_curves
from linfool.experiments.pairs import pair_sample
from linfool.model import adv_train, train, weights

EPS, ALPHA, NET = 8.0, 0.5, "linear"  # the defaults (make help: stages' declaration says them)
RESULT = "adversarial/comparison.json"


def hoyer_sparsity(W: np.ndarray) -> float:
    """Mean over classes of Hoyer's sparsity of a template (12288,): (sqrt(n) - L1/L2) / (sqrt(n) - 1),
    0 when every weight has the same magnitude, 1 when one weight holds all."""
    W = np.asarray(W, np.float64)
    n = W.shape[1]
    ratio = np.abs(W).sum(axis=1) / np.maximum(np.linalg.norm(W, axis=1), 1e-30)
    return float(np.mean((np.sqrt(n) - ratio) / (np.sqrt(n) - 1)))


def _metrics(run: runs.Run, linear: bool) -> dict:
    """The run's val top-1 with its Wilson interval and per-record correctness (val_correct, for McNemar):
    a linear run's metrics.json (make eval's), measured now when missing or stale; an MLP's or a ConvNet's
    measured here as make deep does (its deploy net's pycaffe forwards over every val record)."""
    if linear:
        try:
            return results.read_metrics(run)
        except (runs.RunError, results.Stale):
            return accuracy.measure(run, command=f"make eval RUN={run.name}")
    scored = deep.val_accuracy(deep.load(run), run.dataset(), desc=f"val top-1 of {run.name}")
    return {
        "val_top1": scored["top1"],
        "val_top1_ci": scored["ci"],
        "val_images": scored["images"],
        "val_correct": accuracy.pack(scored["correct"]),
    }


def _paired(adv: dict, other: dict, kind: str) -> dict:
    """The paired sign test of two runs' per-pair Linf (attack curves) on the same pairs, `kind` of KINDS
    or "bound" (_paired_first)."""
    return _paired_first(adv["first_epsilon"][kind], other["first_epsilon"][kind])


def _paired_first(adv: list, other: list) -> dict:
    """The paired sign test of two runs' per-pair Linf on the same pairs: how many pairs need more Linf on
    the adversarial run, fewer, the same; p of 'more' and of 'fewer' (one-sided exact)."""
    a, b = np.array(adv), np.array(other)
    more, fewer = int((a > b).sum()), int((a < b).sum())
    up, down = stats.one_sided(more, more + fewer)
    return {"more": more, "fewer": fewer, "same": int(len(a) - more - fewer), "p_more": up, "p_fewer": down}


def _mcnemar(a: dict, b: dict) -> dict:
    """Val images only `a` gets right, only `b` does, and McNemar's exact p (same val records)."""
    n = a["val_images"]
    right = [accuracy.unpack(m["val_correct"], n) for m in (a, b)]
    only_a, only_b = int((right[0] & ~right[1]).sum()), int((~right[0] & right[1]).sum())
    return {"only_adv": only_a, "only_other": only_b, "p": stats.mcnemar(only_a, only_b)}


def sweep_of(run: runs.Run, names: list | None = None) -> list[runs.Run]:
    """The weight-decay runs the adversarial run is compared with: `names` (COMPARE=), else those trained
    of the data set's default run and its sweep companions (runs.sweep_names) for a linear run, of the
    same net's weak and strong decay (runs.deep_names: make deep-sweep) for an MLP or ConvNet; RunError (one line)
    when none is, or when a named one has no snapshot; RunMismatch for runs of another data set."""
    if names:
        found = [runs.Run.named(paths.check_name(n, "COMPARE")) for n in names]
        missing = [r.name for r in found if not r.has_snapshot()]
        if missing:
            raise runs.RunError(f"COMPARE: {', '.join(missing)} not trained (no snapshot): `make train RUN=...` first")
    else:
        data = run.dataset().name
        base = runs.default_run(data)
        net = run.info["adversarial"]["net"]
        default = (base, *runs.sweep_names(base)) if net == "linear" else runs.deep_names(base)[net]
        found = [runs.Run.named(n) for n in default if runs.Run.named(n).has_snapshot()]
        if not found:
            make = f"make sweep DATA={data}" if net == "linear" else f"make deep-sweep DATA={data}"
            raise runs.RunError(
                f"no weight-decay sweep to compare {run.name} with: `{make}` "
                "(or COMPARE= the runs), then `make adv-train` again compares without training"
            )
    runs.same_data([run, *found])
    return found


def closest(top1: dict, adv: str, names: list) -> str:
    """The name among `names` whose val top-1 (top1: {name: fraction}) is closest to the run `adv`'s;
    a tie goes to the first named."""
    return min(names, key=lambda name: abs(top1[name] - top1[adv]))


def iterative_attacks(run: runs.Run, names: list, standard: runs.Run, sample: dict) -> tuple[dict, dict]:
    """The iterative Linf attack (make deep's: at most deep.STEPS gradients per pair and budget of the
    LADDER) on each named run, on the attack curves' pairs: {name: fooled fraction per budget with its
    95 % band, each pair's smallest budget, their median with its 95 % interval}; and the transfer of
    the images it fooled on `standard` (the data set's default run) at deep.TRANSFER_EPS: {name: the
    fraction whose top-1 is the target}."""
    dataset = run.dataset()
    images, _, which, targets, _ = pair_sample(
        dataset.lmdb("val"), dataset.num_classes, n_images=sample["images"], pairs=sample["pairs"]
    )
    models = {name: deep.load(runs.Run.named(name)) for name in dict.fromkeys([*names, standard.name])}
    found, made = {}, {}
    for name, model in cli.progress(models.items(), total=len(models), desc="adv-train: iterative attack", unit="run"):
        curves, made[name] = deep.attack_curve(model, images[which], targets, deep.STEPS)
        first = np.array(curves["iterative_first"])
        found[name] = {
            "ladder": list(LADDER),
            "fooled": curves["iterative"],
            "sign": curves["sign"],
            "band": stats.bands(first[None, :] <= np.array(LADDER)[:, None]),
            "first": curves["iterative_first"],
            "median": stats.median(first),
        }
    fooled_images, wanted = made[standard.name]
    transfer = {
        "source": standard.name,
        "eps": deep.TRANSFER_EPS,
        "images": len(wanted),
        "top1_is_target": {
            name: float((models[name].probs(fooled_images).argmax(axis=1) == wanted).mean()) if len(wanted) else None
            for name in names
        },
    }
    return {name: found[name] for name in names}, transfer


def first_layer(run: runs.Run) -> np.ndarray:
    """The run's first learned layer's weights as (units, inputs): the linear model's templates
    (classes, 12288), the MLP's hidden units (units, 12288), the ConvNet's filters (filters, 3 * 5 * 5)."""
    w = deep.first_weights(deep.load(run))
    return w.reshape(len(w), -1)


def _linear_measures(run: runs.Run, matched: runs.Run, strong: runs.Run) -> dict:
    """What only a linear model has, on the sweep's own attack-curve pairs (make attack-curves): the
    blog's direction, the sign direction and the closed-form bound per pair, their curves, medians and
    paired sign tests."""
    curves = {}
    for other in dict.fromkeys([matched, strong]):
        curves[other.name] = results.read_result(
            *stages.result("attack-curves", other), f"the attack curves of run {other.name}"
        )
    sample = curves[matched.name]
    curves[run.name] = attack_curves(run, n_images=sample["images"], pairs=sample["pairs"])
    return {
        "images": sample["images"],
        "pairs": sample["pairs"],
        "median_linf": {name: c["median_epsilon_ci"] for name, c in curves.items()},
        "curves": {name: {k: c[k] for k in ("epsilons", "curves", "bands")} for name, c in curves.items()},
        "first_epsilon": {name: c["first_epsilon"] for name, c in curves.items()},
        "paired": {
            name: {kind: _paired(curves[run.name], curves[name], kind) for kind in (*KINDS, "bound")}
            for name in (matched.name, strong.name)
        },
    }


def compare(run: runs.Run, command: str, names: list | None = None) -> dict:
    """The comparison's dict (module docstring) for a trained adversarial run, against the runs of
    sweep_of(run, names): the one of the closest val top-1 ("matched") and the one of the largest
    weight decay ("strong"; the first of them the "standard" run whose fooling images transfer). For a
    linear run also _linear_measures on the sweep's attack-curve pairs; for an MLP or a ConvNet the pairs
    are make deep's sample (deep.IMAGES images, deep.PAIRS pairs)."""
    sweep = sweep_of(run, names)
    linear = run.info["adversarial"]["net"] == "linear"
    metrics = {r.name: _metrics(r, linear) for r in [run, *sweep]}
    top1 = {name: m["val_top1"] for name, m in metrics.items()}
    matched = runs.Run.named(closest(top1, run.name, [r.name for r in sweep]))
    strong = max(sweep, key=deep.weight_decay)
    compared = list(dict.fromkeys([run.name, matched.name, strong.name]))
    measures = _linear_measures(run, matched, strong) if linear else {"images": deep.IMAGES, "pairs": deep.PAIRS}
    iterative, transfer = iterative_attacks(run, compared, sweep[0], measures)
    first = {name: first_layer(runs.Run.named(name)) for name in compared}
    return {
        "run": run.name,
        "adversarial": run.info["adversarial"],
        "matched": matched.name,
        "strong": strong.name,
        "top1": {name: metrics[name]["val_top1_ci"] for name in compared},
        "accuracy_tests": {name: _mcnemar(metrics[run.name], metrics[name]) for name in (matched.name, strong.name)},
        **measures,
        "iterative": iterative,
        "paired_iterative": {
            name: _paired_first(iterative[run.name]["first"], iterative[name]["first"])
            for name in (matched.name, strong.name)
        },
        "transfer": transfer,
        # smoothness of 64x64x3 pictures only (templates, the MLP's hidden units; not 5x5 filters)
        "smoothness": {name: templates.smoothness(w) for name, w in first.items() if w.shape[1] == 12288},
        "sparsity": {name: hoyer_sparsity(w) for name, w in first.items()},
        "command": command,
        "sources": [r.source() for r in (run, matched, strong)],
    }


def _curve(result: dict, name: str) -> tuple:
    """(budgets, fooled fraction, 95 % band, median text, what) of one run's curve in the figure: the sign
    direction on the attack curves' budgets for a linear run, the iterative attack on its ladder otherwise."""
    if "curves" in result:
        c = result["curves"][name]
        return (
            c["epsilons"],
            c["curves"]["sign"],
            c["bands"]["sign"],
            stats.linf_text(result["median_linf"][name]["sign"]),
            "sign direction",
        )
    c = result["iterative"][name]
    return c["ladder"], c["fooled"], c["band"], iterative_text(c["median"]), "iterative attack"


def _pictures(name: str, linear: bool) -> list:
    """Three ((h, w, 3) picture in 0..1, title) of the run's first layer: a linear run's first three
    class templates, a deeper run's three first-layer filters of largest norm (make deep's)."""
    run = runs.Run.named(name)
    if linear:
        params = weights.load(run)
        return [
            (templates.template_rgb(params["W"][i]), str(params["names"][i])) for i in range(min(3, len(params["W"])))
        ]
    filters = deep.first_filters(deep.load(run))
    return [(deep.filter_picture(w), f"unit {i + 1}") for i, w in enumerate(filters[:3])]


def plot(result: dict, out) -> None:
    """comparison.png: fooled fraction vs Linf (95 % bands) of the three runs (_curve), and three
    pictures of each one's first layer (_pictures), side by side."""
    names = list(dict.fromkeys([result["run"], result["matched"], result["strong"]]))
    fig = plt.figure(figsize=(11, 3.2 * len(names) / 1.5))
    grid = fig.add_gridspec(len(names), 5)
    ax = fig.add_subplot(grid[:, :2])
    for name, color in zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        budgets, fooled, (low, high), median, what = _curve(result, name)
        ax.fill_between(budgets, low, high, color=color, alpha=0.15, linewidth=0)
        top1 = result["top1"][name]
        ax.plot(budgets, fooled, color=color, label=f"{name}: top-1 {100 * top1['value']:.1f} %, median Linf {median}")
    ax.set(xlabel=f"Linf budget (0..255), {what}", ylabel="fraction fooled to P >= 0.99", ylim=(-0.02, 1.02))
    ax.set_xscale("symlog", linthresh=4)
    ax.set_xlim(0, 255)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title(f"n = {result['pairs']} pairs; 95 % bands", fontsize=9)
    for row, name in enumerate(names):
        for col, (picture, title) in enumerate(_pictures(name, "curves" in result)):
            tax = fig.add_subplot(grid[row, 2 + col])
            tax.imshow(picture)
            tax.set_xticks([])
            tax.set_yticks([])
            if row == 0:
                tax.set_title(title, fontsize=8)
            if col == 0:
                tax.set_ylabel(f"{name}\nsparsity {result['sparsity'][name]:.2f}", fontsize=7)
    about = result["adversarial"]
    fig.suptitle(
        f"Adversarial training ({about['net']}, EPS {about['eps']:g}, ALPHA {about['alpha']:g}) against weight decay"
    )
    fig.tight_layout()
    save(fig, out)


def compare_and_say(run: runs.Run, command: str, names: list | None = None) -> dict:
    """compare, written whole into run/adversarial/, and the result said in a few lines."""
    result = compare(run, command, names)
    with files.building_dir(run.path / "adversarial") as out:
        plot(result, out / "comparison.png")
        files.write_json(out / "comparison.json", result)
    adv = run.name
    for name in dict.fromkeys([result["matched"], result["strong"]]):
        test = result["paired_iterative"][name]
        print(
            f"{adv} against {name}: top-1 {accuracy.interval_text(result['top1'][adv])} vs "
            f"{accuracy.interval_text(result['top1'][name])} (McNemar p = {result['accuracy_tests'][name]['p']:.2g}); "
            f"iterative attack median Linf {iterative_text(result['iterative'][adv]['median'])} vs "
            f"{iterative_text(result['iterative'][name]['median'])}: more Linf needed on {test['more']} pairs, less on "
            f"{test['fewer']} (sign test p = {test['p_more']:.2g})" + _linear_text(result, name),
            flush=True,
        )
    moved = result["transfer"]
    print(
        f"{moved['images']} images the iterative attack fooled on {moved['source']} at Linf {moved['eps']}: top-1 is "
        "the target on "
        + ", ".join(
            f"{name} {100 * share:.0f} %" for name, share in moved["top1_is_target"].items() if share is not None
        ),
        flush=True,
    )
    return result


def _linear_text(result: dict, name: str) -> str:
    """'; sign direction A vs B; closed-form bound A vs B' of a linear comparison, '' otherwise."""
    if "median_linf" not in result:
        return ""
    adv, median = result["run"], result["median_linf"]
    return (
        f"; sign direction {stats.linf_text(median[adv]['sign'])} vs {stats.linf_text(median[name]['sign'])}; "
        f"closed-form bound {stats.linf_text(median[adv]['bound'])} vs {stats.linf_text(median[name]['bound'])}"
    )


def iterative_text(found: dict) -> str:
    """'64 (64-64)' of the iterative attack's median Linf; '>128' where it fooled none within its ladder."""
    return stats.median_text(found, never=f">{LADDER[-1]}")


def _options(args: Any, run: runs.Run) -> dict:
    """NET, EPS and ALPHA of this training: the given ones (else the defaults), or for RESUME=1 the
    run's (a resumed run keeps them: a change is refused in one line)."""
    given = {"net": args.net, "eps": args.eps, "alpha": args.alpha}
    if not args.resume:
        defaults = {"net": NET, "eps": EPS, "alpha": ALPHA}
        return {k: v if v is not None else defaults[k] for k, v in given.items()}
    recorded = run.info.get("adversarial")
    if not recorded:
        raise cli.UserError(f"run {run.name} was not trained by `make adv-train`: `make train RUN={run.name} RESUME=1`")
    changed = [f"{k.upper()}={v} (the run's: {recorded[k]})" for k, v in given.items() if v not in (None, recorded[k])]
    if changed:
        raise cli.UserError(f"a resumed run keeps its NET, EPS and ALPHA, not {', '.join(changed)}: train a new RUN=")
    return dict(recorded)


def main(argv: list[str] | None = None) -> int:
    args = stages.parse("adv-train", argv)

    def body():
        if args.data is not None:
            paths.check_name(args.data, "DATA")
        if args.fresh and args.resume:
            raise cli.UserError("RESUME=1 continues a run, FRESH=1 starts it over: give one of them")
        run = runs.Run.named(paths.check_name(args.run or adv_train.run_name(args.net or NET, args.data)))
        options = _options(args, run)
        if options["alpha"] >= 1:
            raise cli.UserError("ALPHA=1 leaves no adversarial term (that is `make train`): give 0 < ALPHA < 1")
        command = stages.command("adv-train", args)
        code = train.train(
            run.name,
            data=args.data,
            solver_file=None if args.resume else adv_train.solver_file(options["net"]),
            settings=args.settings,
            gpu=args.gpu,
            resume=args.resume,
            fresh=args.fresh,
            adversarial=options,
            command=command,
        )
        if code != 0:
            if code != cli.EXIT_INTERRUPTED:
                print(f"ERROR: adversarial training exited with {code}; see {run.path / 'train.log'}", file=sys.stderr)
            return code
        with runs.locked(write=[run], read=sweep_of(run, args.compare)):
            compare_and_say(run, command, args.compare)
        print(f"Done: {run.path}")
        return 0

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
