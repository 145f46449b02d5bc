"""Training curves from Caffe's log: train loss, val loss, top-1, top-5 against iteration.

    python -m linfool curves --run NAME     # runs/<name>/curves.png and curves.json

curves.json records the snapshot the log led to (the report shows the curves only when that is
still the run's newest); the picture is written first and curves.json last, each whole.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from linfool.core import cli, files, prototxt, runs, stages, stats
from linfool.core.plots import plt, save

_ITER = re.compile(r"Iteration (\d+)")
_TRAIN = re.compile(r"Iteration (\d+).*, loss = ([\d.eE+-]+|nan|inf)")
_TEST = re.compile(r"Test net output #\d+: (\w+) = ([\d.eE+-]+|nan|inf)")


def parse_log(text: str) -> dict:
    """{'train': [(iter, loss)], 'test': {name: [(iter, value)]}} from a `caffe train` log."""
    train: list[tuple[int, float]] = []
    test: dict[str, list[tuple[int, float]]] = {}
    iteration = 0
    for line in text.splitlines():
        if m := _TRAIN.search(line):
            train.append((int(m.group(1)), float(m.group(2))))
        elif m := _TEST.search(line):
            test.setdefault(m.group(1), []).append((iteration, float(m.group(2))))
        elif "Testing net" in line and (m := _ITER.search(line)):
            iteration = int(m.group(1))
    return {"train": train, "test": test}


def tested_images(run: runs.Run) -> int:
    """Images in the run's test phase: test_iter x the TEST Data layers' batch (what each logged val
    accuracy is a fraction of: Caffe averages equal batches); 0 without a test phase."""
    solver = prototxt.read_solver(run.path / "solver.prototxt")
    if not solver.test_iter:
        return 0
    net = prototxt.read_net(run.path / "train_val.prototxt")
    return int(solver.test_iter[0]) * prototxt.data_batch(net, "TEST")


def plot(curves: dict, out: Path, title: str) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if curves["train"]:
        ax_loss.plot(*zip(*curves["train"]), label="train loss", lw=1)
    if "loss" in curves["test"]:
        ax_loss.plot(*zip(*curves["test"]["loss"]), "o-", label="val loss")
    ax_loss.set(xlabel="iteration", ylabel="softmax loss", title=f"{title}: loss")
    ax_loss.legend()
    n = curves.get("test_images", 0)
    for name, label in (("accuracy_top1", "val top-1"), ("accuracy_top5", "val top-5")):
        if name in curves["test"]:
            iters, values = zip(*curves["test"][name])
            line = ax_acc.plot(iters, [100 * v for v in values], "o-", label=label)
            if n:  # each test's Wilson 95 % over its n images
                found = [stats.proportion(round(v * n), n) for v in values]
                low, high = [100 * f["low"] for f in found], [100 * f["high"] for f in found]
                ax_acc.fill_between(iters, low, high, color=line[0].get_color(), alpha=0.15, linewidth=0)
    tested = f" (n = {n} images a test; 95 % bands)" if n else ""
    ax_acc.set(xlabel="iteration", ylabel="accuracy (%)", title=f"{title}: val accuracy{tested}", ylim=(0, 100))
    ax_acc.legend()
    fig.tight_layout()
    save(fig, out, dpi=100)


def make_curves(run: runs.Run) -> Path:
    run = runs.as_run(run)
    log = run.path / "train.log"
    if not log.is_file():
        raise runs.RunError(f"no {log}; run `make train RUN={run.name}` first")
    curves = {**parse_log(log.read_text()), "test_images": tested_images(run)}
    with files.atomic_path(run.path / "curves.png") as tmp:
        plot(curves, tmp, run.name)
    files.write_json(run.path / "curves.json", {**curves, "sources": [run.source()]})
    return run.path / "curves.png"


def main(argv: list[str] | None = None) -> int:
    args = stages.parse("curves", argv)

    def body():
        run = runs.Run.named(args.run)
        with runs.locked(write=[run]):
            print(make_curves(run))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
