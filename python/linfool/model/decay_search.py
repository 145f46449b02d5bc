"""`make decay-search NET=mlp`: the short, recorded weight-decay search for a deeper model, the blog's
"manual binary search" over its linear model's weight decay done on a grid.

    python -m linfool decay-search --net mlp|conv [--data synthetic] [--decays 0.0005,0.005,0.05,0.5]
                                   [--iters 250] [--bisect 2]

Each decay is a real `caffe train` of prototxt/solver_<net>.prototxt (with the overlays make train
lays on the data set, max_iter --iters and one val test at the end) into runs/<net>_wd<decay>/
(ImageNet: runs/<data>_<net>_wd<decay>/); its val top-1 is that test's, from train.log. A candidate
already trained with the same settings on the same data set is reused (an interrupted search
continues). The rule: the weak decay is the grid's smallest (Caffe's default 0.0005); the strong one
is the largest whose val top-1 is at least half the best one's, so that it is still a classifier
and not a constant (the blog's reg_high, 100x its decay, kept most of its accuracy), refined by
--bisect geometric bisections towards the next decay of the grid (the blog's binary search). Writes
runs/<net>_decay_search/decay_search.json (every candidate with its snapshot and data set, the rule
and the choice) and decay_search.png, and prints the table; prototxt/solver_<net>_reg_high.prototxt
holds the choice for the embedded set, with this search's numbers in docs/RESULTS.md.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from linfool.core import cli, files, paths, runs, stages, stats
from linfool.core.plots import plt, save
from linfool.model import curves, train

DECAYS = tuple(float(d) for d in stages.default("decay-search", "decays").split(","))
ITERS = stages.default("decay-search", "iters")  # the embedded set: ~12 epochs of 5,400 images (docs/RESULTS.md)
KEEP = 0.5  # the strong decay keeps at least this fraction of the best val top-1
BISECT = stages.default(
    "decay-search", "bisect"
)  # geometric bisections after the grid, between the strong choice and the next decay up


def solver_file(net: str) -> str:
    """prototxt/solver_<net>.prototxt, the deeper model's solver (net: one of runs.DEEP_NETS)."""
    return str(paths.PROTOTXT / f"solver_{net}.prototxt")


def candidate_name(data: str | None, net: str, decay: float) -> str:
    """The run of one candidate: mlp_wd0.05 on the embedded set, imagenet_mlp_wd0.05 on imagenet."""
    weak, _ = runs.deep_names(runs.default_run(data))[net]
    return paths.check_name(f"{weak}_wd{decay:g}")


def _settings(decay, iters):
    return [f"weight_decay={decay:g}", f"max_iter={iters}", f"snapshot={iters}", f"test_interval={iters}"]


def _trained(run, data, solver, settings):
    """Whether `run` was trained already with these settings on the data set as it is now."""
    try:
        info = run.info
        run.dataset()
        return (
            run.has_snapshot()
            and info["data"] == data
            and info["solver"] == solver
            and info["settings"] == settings
            and runs.iteration(run.snapshot().path) == int(settings[1].split("=")[1])
        )
    except runs.RunError:
        return False


def val_top1(run: runs.Run) -> float:
    """The val top-1 of the run's last test in train.log (curves.json, written by make train)."""
    logged = files.read_json(run.path / "curves.json", f"make train RUN={run.name}")
    return float(logged["test"]["accuracy_top1"][-1][1])


def choose(found: list[tuple[float, float]]) -> tuple[float, float]:
    """(weak, strong) decays from [(decay, val_top1)]: the smallest, and the largest keeping KEEP of the best."""
    best = max(top1 for _, top1 in found)
    kept = [decay for decay, top1 in found if top1 >= KEEP * best]
    return min(decay for decay, _ in found), max(kept)


def _candidate(net, data, decay, iters, step):
    """Train (or reuse) one candidate; returns (decay, val top-1, its source)."""
    run = runs.Run.named(candidate_name(data, net, decay))
    solver, settings = solver_file(net), _settings(decay, iters)
    if _trained(run, data, solver, settings):
        print(f"== decay search {step}: {run.name} already trained with these settings", flush=True)
    else:
        print(f"== decay search {step}: {run.name} (weight_decay {decay:g}, {iters} iterations)", flush=True)
        code = train.train(  # a candidate is this stage's own run: one of other settings is remade
            run.name, data=data, solver_file=solver, settings=settings, command=_command(net, data), fresh=True
        )
        if code != 0:
            raise runs.RunError(f"caffe train of {run.name} exited with {code}; see {run.path / 'train.log'}")
        run = runs.Run.named(run.name)
    return decay, val_top1(run), {**run.source(), "test_images": curves.tested_images(run)}


def search(
    net: str, data: str | None, decays: Sequence[float] = DECAYS, iters: int = ITERS, bisect: int = BISECT
) -> dict:
    """The grid, then `bisect` geometric bisections between the strong choice and the next larger
    decay of the grid (the blog's binary search); returns the result dict (candidates, choice, rule,
    sources)."""
    data = data or train.DEMO_DATA
    decays = sorted(decays)
    print(
        f"decay search: {len(decays)} decays, then up to {bisect} bisections, each a `caffe train` of "
        f"{iters} iterations of {solver_file(net)} on '{data}' (its val test at the end)",
        flush=True,
    )
    found = [_candidate(net, data, d, iters, f"{n}/{len(decays)}") for n, d in enumerate(decays, start=1)]
    for n in range(1, bisect + 1):
        top = max(t for _, t, _ in found)
        _, strong = choose([(d, t) for d, t, _ in found])
        above = [d for d, _, _ in found if d > strong]
        if not above or strong == 0:
            break
        mid = float(f"{(strong * min(above)) ** 0.5:.2g}")
        if mid in (d for d, _, _ in found):
            break
        found.append(_candidate(net, data, mid, iters, f"bisection {n}/{bisect} (keep >= {100 * KEEP * top:.1f} %)"))
    found.sort()
    weak, strong = choose([(d, t) for d, t, _ in found])
    return {
        "net": net,
        "data": data,
        "iterations": iters,
        "candidates": [
            {
                "weight_decay": d,
                "val_top1": t,
                # Wilson 95 % over the test phase's images
                "val_top1_ci": stats.proportion(round(t * s.get("test_images", 0)), s.get("test_images", 0)),
                "run": s["run"],
            }
            for d, t, s in found
        ],
        "rule": f"weak: the smallest decay; strong: the largest whose val top-1 >= {KEEP:g} x the best "
        f"(grid, then {bisect} geometric bisections)",
        "weak": weak,
        "strong": strong,
        "command": _command(net, data),
        "sources": [{k: v for k, v in s.items() if k != "test_images"} for _, _, s in found],
    }


def _command(net, data):
    return cli.make_command("decay-search", NET=net, DATA=data if data != train.DEMO_DATA else None)


def plot(result: dict, out: Path) -> None:
    """Val top-1 against weight decay (log axis), the weak and strong choices marked."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    decays = [c["weight_decay"] for c in result["candidates"]]
    top1 = [100 * c["val_top1"] for c in result["candidates"]]
    ax.semilogx(decays, top1, "o-")
    if all("val_top1_ci" in c and c["val_top1_ci"]["n"] for c in result["candidates"]):
        low = [100 * c["val_top1_ci"]["low"] for c in result["candidates"]]
        high = [100 * c["val_top1_ci"]["high"] for c in result["candidates"]]
        ax.fill_between(decays, low, high, alpha=0.2, linewidth=0, label="95 % Wilson (Caffe's test images)")
    ax.axhline(KEEP * max(top1), color="0.5", ls=":", label=f"{KEEP:g} x the best val top-1")
    for key, color in (("weak", "tab:green"), ("strong", "tab:red")):
        ax.axvline(result[key], color=color, ls="--", label=f"{key}: weight decay {result[key]:g}")
    ax.set(
        xlabel="weight decay",
        ylabel="val top-1 (%)",
        title=f"{result['net']}: {result['iterations']} iterations per decay on '{result['data']}'",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, out)


def main(argv: list[str] | None = None) -> int:
    args = stages.parse("decay-search", argv)

    def body():
        if args.data is not None:
            paths.check_name(args.data, "DATA")
        try:
            decays = sorted({float(d) for d in args.decays.split(",") if d.strip()})
        except ValueError:
            raise cli.UserError(f"DECAYS={args.decays!r} is not a comma-separated list of numbers") from None
        if not decays or min(decays) < 0 or not all(math.isfinite(d) for d in decays):
            raise cli.UserError(f"DECAYS={args.decays!r} needs at least one weight decay, each finite and >= 0")
        result = search(args.net, args.data, decays, args.iters, max(args.bisect, 0))
        folder = runs.Run(paths.decay_search_dir(runs.deep_names(runs.default_run(args.data))[args.net][0]))
        with folder.lock(), files.building_dir(folder.path) as out:
            plot(result, out / "decay_search.png")
            files.write_json(out / "decay_search.json", result)
        print(f"{'weight decay':>12}  val top-1")
        for c in result["candidates"]:
            mark = " <- weak" if c["weight_decay"] == result["weak"] else ""
            mark += " <- strong" if c["weight_decay"] == result["strong"] else ""
            print(f"{c['weight_decay']:>12g}  {100 * c['val_top1']:6.1f} %{mark}")
        print(f"{result['rule']}; {folder.path / 'decay_search.json'}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
