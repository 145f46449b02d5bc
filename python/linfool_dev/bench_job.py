"""`make bench`, the last table: the README's ImageNet recipe as one per-stage table, on this machine
and on a 16-core GPU box.

    python -m linfool_dev.bench --parts job

A stage's time is its work times unit costs. The work is counted at ImageNet's size (1,281,167 train
+ 50,000 val JPEGs, 1000 classes, each stage at its defaults) from the stages' own constants and the
prototxt (`Work`): JPEGs decoded, images through `caffe train` and its test phase, `caffe`
processes started, images through pycaffe forwards, forward calls (a square-attack query is one call),
and the seconds of the figures' and report's other work. The unit costs (`Costs`) say where each
comes from:
  - this machine: measured in this run (the builder, `caffe train`, a pycaffe forward per image and per
    call, the host's part of a forwarded image, the figures and the report at 1000 classes);
  - the GPU box: the card `make gpu-check` wrote on that box (runs/gpu_card.json) when there is one,
    else RECORDED_CARD, the figures recorded on the H100/H200 boxes (docs/GPU.md); the host's parts are
    this machine's (its cores are taken to be no slower), and a cost nobody measured is named in the
    table with the value used.
Every time is a projection from those costs; none of these stages ran at ImageNet size here.
"""

import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from linfool.attacks import EPSILONS, IMAGES_PER_FORWARD, blog, linf
from linfool.core import caffe_env, files, paths, prototxt, records
from linfool.experiments import accuracy, background, blackbox, claims, explore, pairs
from linfool.model import train
from linfool_dev import bench_scale

IMAGENET_TRAIN, IMAGENET_VAL, CLASSES = 1_281_167, 50_000, 1000
GOAL_MIN = 15  # issue 23: the whole job on one GPU box
CARD = paths.RUNS / "gpu_card.json"  # written by `make gpu-check` on a GPU box

# Recorded on the GPU boxes lent to earlier sessions (docs/GPU.md, ../shared/gpu-machine/README.md):
# (value, where it comes from). The slowest of each set of runs, so the projection is not the best case.
RECORDED_CARD = {
    "device": "NVIDIA H100 80GB / H200 with 16 cores (recorded 2026-11, docs/GPU.md)",
    "jpegs_per_s": (4_423, "recorded: the LMDB builder with 16 workers on the H200 box (the process-pool builder)"),
    "train_images_per_s": (148_091, "recorded: the slowest of 15 `caffe train` runs on H100s (148,091-188,179/s)"),
    "forward_images_per_s": (542_209, "recorded: pycaffe forwards at batch 1024 on the H100, slowest of 4 builds"),
    "call_s": (1e-3, "NOT MEASURED on a GPU: 1 ms assumed per forward call (`make gpu-check` measures it)"),
    "start_s": (1.2, "derived: 3,000 demo iterations took 15.5 s wall at 53,600 images/s on the H200"),
}


@dataclass
class Work:
    """What a stage does at ImageNet size. Counts, except `other_s` (seconds of the work that is none
    of these, as measured on this machine)."""

    jpegs: int = 0  # JPEGs decoded, resized and written by the LMDB builder
    train: int = 0  # images through a `caffe train` step (forward, backward, update)
    test: int = 0  # images through `caffe train`'s test phase
    starts: int = 0  # `caffe` processes started
    forwards: int = 0  # images through pycaffe forwards of a deploy net
    calls: int = 0  # pycaffe forward calls
    other_s: float = 0.0
    upper_bound: bool = False  # data-dependent counts (square attack budgets) taken at their maximum

    def __add__(self, other):
        sums = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        return Work(**sums | {"upper_bound": self.upper_bound or other.upper_bound})


@dataclass
class Costs:
    """Seconds per unit of Work on one machine, and where each number comes from."""

    jpeg_s: float
    train_s: float  # per image through `caffe train`; its test phase is taken at the same rate
    start_s: float
    forward_s: float  # per image, the net's share
    host_s: float  # per forwarded image, numpy's share: the perturbed batch, the mean, the copies
    call_s: float  # per forward call beyond its images
    sources: dict

    def seconds(self, work):
        return (
            work.jpegs * self.jpeg_s
            + (work.train + work.test) * self.train_s
            + work.starts * self.start_s
            + work.forwards * (self.forward_s + self.host_s)
            + work.calls * self.call_s
            + work.other_s
        )


def _solver_work(solver, overlays=(), settings=()):
    """`caffe train` of a solver: (train images, test images) from its max_iter, test_interval,
    test_iter and the net's batch sizes. Caffe tests at iteration 0 (test_initialization), every
    test_interval, and after the last iteration when it falls on one."""
    s = prototxt.read_solver(solver, overlays, settings)
    net = text_format.Parse((paths.ROOT / s.net).read_text(), caffe_env.import_caffe().proto.caffe_pb2.NetParameter())
    tests = (s.max_iter // s.test_interval) + (1 if s.test_initialization else 0) if s.test_interval else 0
    return s.max_iter * prototxt.data_batch(net, "TRAIN"), tests * sum(s.test_iter) * prototxt.data_batch(net, "TEST")


def _fine_tune_work(settings=()):
    train_images, test_images = _solver_work(paths.PROTOTXT / "solver.prototxt", settings=settings)
    return Work(train=train_images, test=test_images, starts=1)


def _forwards(n, per_call=records.BATCH):
    return Work(forwards=n, calls=math.ceil(n / per_call))


def _attack_curves_work(pairs_n):
    """difficulty.attack_curves on `pairs_n` pairs: 256 budgets x 2 directions + the bound's scores."""
    return _forwards(pairs_n * len(EPSILONS) * len(linf.KINDS), IMAGES_PER_FORWARD) + _forwards(
        pairs_n, IMAGES_PER_FORWARD
    )


def _eval_work():
    return _forwards(IMAGENET_VAL + accuracy.TRAIN_SAMPLE)


def _fool_each_work(pairs_n):
    """blog.fool_each: FORWARDS batched forwards of every pair (PAIRS_PER_FORWARD at a time)."""
    return Work(forwards=pairs_n * blog.FORWARDS, calls=blog.FORWARDS * math.ceil(pairs_n / blog.PAIRS_PER_FORWARD))


def recipe_work(measured_other, here):
    """[(stage, Work)] of the README's ImageNet recipe at ImageNet size, each stage at its defaults.
    measured_other: {'figures': s, 'report': s} measured on this machine at 1000 classes, whose
    forwards are taken out with this machine's Costs `here` (what is left is matplotlib and HTML)."""
    runs_n = 3  # the sweep: reg_low, the blog's run, reg_high; eval to blackbox take all three
    sweep = Work()
    for overlays in ((train.SWEEP_OVERLAYS[0],), (), (train.SWEEP_OVERLAYS[1],)):
        t, v = _solver_work(paths.PROTOTXT / "solver.prototxt", [paths.ROOT / o for o in overlays])
        sweep += Work(train=t, test=v, starts=1)
    starts = 1 + explore.VAL_STARTS + 1  # explore.start_images: the figure's, the seeded val ones, the noise one
    figures = Work(forwards=starts * blog.FORWARDS * CLASSES, calls=starts * blog.FORWARDS)
    figures.other_s = max(measured_other["figures"] - here.seconds(figures), 0.0)
    curves = _attack_curves_work(pairs.PAIRS)
    transfer = _fool_each_work(pairs.PAIRS) + _forwards(runs_n * pairs.PAIRS, pairs.PAIRS)
    rounds, fool_n, iters = background.ROUNDS, background.FOOL, background.ITERS
    measure = _attack_curves_work(background.MEASURE_IMAGES * background.MEASURE_TARGETS) + _eval_work()
    one_round = (
        _fool_each_work(fool_n)
        + _fine_tune_work([f"max_iter={iters}"])
        + _fine_tune_work([f"max_iter={iters}"])  # its control arm
        + _forwards(fool_n, fool_n)  # this round's images classified
    )
    bg = Work()
    for _ in range(rounds):
        bg += one_round + measure + measure
    bg += measure  # round 0
    recovery = _forwards(1 + 3 * 64 * 64, IMAGES_PER_FORWARD)
    squares = Work(forwards=blackbox.PAIRS * blackbox.MAX_QUERIES, calls=blackbox.MAX_QUERIES, upper_bound=True)
    box = recovery + _fool_each_work(blackbox.PAIRS) + _fool_each_work(blackbox.PAIRS) + squares
    short = Work(train=claims.LR_ITERATIONS * records.BATCH, starts=1)
    claim = short + short + _forwards(2 * records.BATCH, records.BATCH)
    report = Work(other_s=measured_other["report"])
    return [
        ("make data", Work(jpegs=IMAGENET_TRAIN + IMAGENET_VAL)),
        ("make sweep (3 x 50,000 iterations)", sweep),
        ("make eval (3 runs)", _scaled(_eval_work(), runs_n)),
        ("make figures", figures),
        (f"make attack-curves ({pairs.PAIRS} pairs x 3 runs)", _scaled(curves, runs_n)),
        ("make transfer", _scaled(transfer, runs_n)),
        (f"make background ({rounds} rounds of {fool_n}, {iters} iterations)", bg),
        (f"make blackbox ({blackbox.PAIRS} pairs x 3 runs, <= {blackbox.MAX_QUERIES:,} queries)", _scaled(box, runs_n)),
        ("make claims", claim),
        ("make report", report),
    ]


def questions_work(adv_ratio):
    """[(stage, Work)] of the open questions beyond the recipe, at ImageNet size: make adv-train's linear
    run (the blog's solver; a step costs adv_ratio `caffe train` steps, measured by make bench) with its
    comparison (eval and attack curves of the one new run; make deep's iterative attack on 3-4 runs of
    the attack curves' pairs is not counted)."""
    train_images, test_images = _solver_work(paths.PROTOTXT / "solver.prototxt")
    adv = Work(train=round(adv_ratio * train_images), test=test_images, starts=1)
    return [
        (
            f"make adv-train (50,000 steps, {adv_ratio:.1f}x a train step)",
            adv + _eval_work() + _attack_curves_work(pairs.PAIRS),
        )
    ]


def _scaled(work, n):
    total = Work()
    for _ in range(n):
        total += work
    return total


def times_s(fn, reps):
    """Seconds of each of `reps` calls of fn, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def forward_costs(gpu=None, batch=1024, reps=5, calls=200):
    """Seconds of a Classifier-style forward of the blog's deploy net (12288 -> 1000) on the device
    caffe_env chose: {'forward_s': the net's per image at `batch`, 'host_s': numpy's per image
    (the perturbed batch clip(x + eps * d), minus the mean, into the blob; the probabilities out),
    'call_s': a one-image call minus those two (Python, Caffe's layer calls, the copies, a sync)}.
    Medians of `reps` batches and of `calls` one-image calls. gpu: as caffe_env.use_device's."""
    caffe = caffe_env.use_device(gpu)
    net = caffe.Net(str(paths.PROTOTXT / "deploy.prototxt"), caffe.TEST)
    rng = np.random.default_rng(0)
    net.params["fc"][0].data[...] = rng.normal(0, 1e-4, net.params["fc"][0].data.shape)
    x = rng.uniform(0, 255, (batch, 3, 64, 64)).astype(np.float32)
    d = np.sign(rng.normal(size=x.shape)).astype(np.float32)
    mean = np.full((3, 64, 64), 127.5, np.float32)

    def prepare(images):
        net.blobs["data"].reshape(*images.shape)
        net.blobs["data"].data[...] = np.clip(images + 4.0 * d[: len(images)], 0, 255) - mean

    def median_s(fn, n):
        return float(np.median(times_s(fn, n)))

    prepare(x)
    forward_s = median_s(lambda: net.forward()["prob"].copy(), reps) / batch
    host_s = median_s(lambda: prepare(x), reps) / batch
    one = x[:1]
    call = median_s(lambda: (prepare(one), net.forward()["prob"].copy()), calls)
    return {"forward_s": forward_s, "host_s": host_s, "call_s": max(call - forward_s - host_s, 0.0)}


def here_costs(measured, forward):
    """This machine's Costs: measured = {'jpegs_per_s', 'train_ms' (batch 256), 'start_s'}."""
    sources = {
        "jpeg_s": f"measured: the builder, {measured['jpegs_per_s']:,.0f} JPEGs/s on ~500x375 JPEGs",
        "train_s": f"measured: `caffe train` {measured['train_ms']:.0f} ms a step of 256",
        "start_s": f"measured: {measured['start_s']:.1f} s to start `caffe train`",
        "forward_s": f"measured: pycaffe {1 / forward['forward_s']:,.0f} images/s at batch 1024",
        "host_s": f"measured: {forward['host_s'] * 1e6:.0f} us of numpy per forwarded image",
        "call_s": f"measured: {forward['call_s'] * 1e3:.2f} ms per forward call",
    }
    return Costs(
        jpeg_s=1 / measured["jpegs_per_s"],
        train_s=measured["train_ms"] / 1000 / records.BATCH,
        start_s=measured["start_s"],
        forward_s=forward["forward_s"],
        host_s=forward["host_s"],
        call_s=forward["call_s"],
        sources=sources,
    )


def read_card(path=CARD):
    """The GPU box's card: the one `make gpu-check` wrote (its measured fields), the rest recorded. A
    damaged card is said in one line and the recorded one used."""
    card = dict(RECORDED_CARD)
    if not path.is_file():
        return card
    try:
        measured = files.read_json(path, "make gpu-check")
        where = f"measured by make gpu-check on {measured['device']} ({measured['when']})"
    except (files.DamagedFile, KeyError, TypeError) as err:
        print(f"(not using {path}: {err}; the recorded card instead)")
        return card
    card["device"] = measured["device"]
    for key, value in measured.items():
        if key in RECORDED_CARD and key != "device" and value is not None:
            card[key] = (value, where)
    return card


def box_costs(card, here):
    """The GPU box's Costs from its card; numpy's share of a forward is this machine's."""
    sources = {key: card[key][1] for key in ("jpegs_per_s", "train_images_per_s", "start_s", "call_s")}
    return Costs(
        jpeg_s=1 / card["jpegs_per_s"][0],
        train_s=1 / card["train_images_per_s"][0],
        start_s=card["start_s"][0],
        forward_s=1 / card["forward_images_per_s"][0],
        host_s=here.host_s,
        call_s=card["call_s"][0],
        sources={
            "jpeg_s": sources["jpegs_per_s"],
            "train_s": sources["train_images_per_s"] + "; its test phase taken at the same rate",
            "start_s": sources["start_s"],
            "forward_s": card["forward_images_per_s"][1],
            "host_s": "this machine's (the box's cores taken to be no slower)",
            "call_s": sources["call_s"],
        },
    )


def write_card(device, train_images_per_s, forward, path=CARD):
    """Called by `make gpu-check` on a GPU box: the box's measured unit costs for this table."""
    card = {
        "device": device,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "train_images_per_s": train_images_per_s,
        "forward_images_per_s": 1 / forward["forward_s"],
        "call_s": forward["call_s"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, card)


def measure_other(work_dir):
    """Seconds of `make figures` and `make report` at 1000 classes here, on a small 1000-class set
    (3,000 train / 2,000 val random records) and a 2-iteration run: their work hardly depends on the
    set's size (templates, mosaic, explore's 5 x 1000 fooled targets, the page)."""
    data, runs_dir = work_dir / "data", work_dir / "runs"
    env = {**os.environ, "LINFOOL_DATA": str(data), "LINFOOL_RUNS": str(runs_dir)}
    bench_scale.write_dataset(data / "job", 3000, 2000)
    py = [sys.executable, "-m", "linfool"]
    bench_scale.train_short(env, "job", "job")
    return {
        "figures": bench_scale.stage([*py, "figures", "--run", "job"], env)[0],
        "report": bench_scale.stage([*py, "report", "--run", "job"], env)[0],
    }


def _minutes(seconds):
    return f"{seconds / 60:.1f}"


def print_table(rows, here, box, device, beyond=()):
    """The per-stage table: minutes here and on the GPU box, and the totals against the goal; then the
    `beyond` rows (the open questions), not in the total."""
    print(f"\nThe ImageNet recipe (README), per stage, projected from unit costs (minutes); GPU box: {device}")
    print(f"{'stage':<58} {'2-core here':>11} {'GPU box':>8}   work")
    total_here = total_box = 0.0
    for name, work in rows:
        s_here, s_box = here.seconds(work), box.seconds(work)
        total_here, total_box = total_here + s_here, total_box + s_box
        print(f"{name:<58} {_minutes(s_here):>11} {_minutes(s_box):>8}   {describe(work)}")
    verdict = "within" if total_box <= GOAL_MIN * 60 else "OVER"
    print(f"{'total':<58} {_minutes(total_here):>11} {_minutes(total_box):>8}   ({verdict} the {GOAL_MIN}-minute goal)")
    for name, work in beyond:
        print(
            f"{'beyond the recipe: ' + name:<58} {_minutes(here.seconds(work)):>11} {_minutes(box.seconds(work)):>8}   {describe(work)}"
        )
    print("unit costs, this machine:")
    for key, text in here.sources.items():
        print(f"  {key:<10} {text}")
    print("unit costs, GPU box:")
    for key, text in box.sources.items():
        print(f"  {key:<10} {text}")
    return total_here, total_box


def describe(work):
    parts = []
    for label, value in (
        ("JPEGs", work.jpegs),
        ("train images", work.train),
        ("test images", work.test),
        ("caffe starts", work.starts),
        ("forwarded images", work.forwards),
        ("forward calls", work.calls),
    ):
        if value:
            parts.append(f"{value:,} {label}")
    if work.other_s:
        parts.append(f"{work.other_s:.0f} s other (measured here)")
    return ("at most " if work.upper_bound else "") + ", ".join(parts)


def bench_job(work_dir, measured):
    """Print the table; returns (minutes here, minutes on the GPU box)."""
    forward = forward_costs()
    here = here_costs(measured, forward)
    card = read_card()
    box = box_costs(card, here)
    rows = recipe_work(measure_other(Path(work_dir)), here)
    total_here, total_box = print_table(rows, here, box, card["device"], questions_work(measured["adv_ratio"]))
    return total_here / 60, total_box / 60
