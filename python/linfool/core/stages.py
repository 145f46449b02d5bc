"""Every stage and make target, declared once: its name, module, make targets, the results of other
stages it reads, its JSON result, and its options (flag, make variable, kind, default, help).

From this table come `python -m linfool`'s dispatcher, each stage's parser (a bad option is one
`ERROR:` line; --run/--data handled the same way everywhere), the make variables a target takes (the
Makefile passes its command-line variables through as `NAME=value` words; a name no target takes is
refused in one line), the make command a result records, `make help` (in sections), and the order of
`make demo` and `make open-questions` (a target runs after the ones it reads). Standard library only:
`make help` runs it before anything is set up.

    parse("eval", argv) -> argparse.Namespace     from_make("sweep", ["RUN=x", "SET=a=1 b=2"]) -> argv
    default("blackbox", "queries") -> 10000       command("eval", args) -> 'make eval RUN=blog'
    plan("demo") -> ['data DATA= IMAGENET=', 'sweep DATA=', 'eval RUN=blog', ...]
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linfool.core import cli, conventions

# --- the declaration's parts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option of a stage. kind: 'text' | 'count' (a whole number >= 1) | 'int' | 'number' (a finite
    number in (low, high]) | 'choice' | 'flag' (make: VAR=1) | 'list' (repeatable; make: words of one
    VAR) | 'rest' (after --, for `caffe train`) | 'positional'."""

    flag: str
    make: str | None = None  # its make variable; None: `python -m linfool` only
    kind: str = "text"
    default: object = None
    help: str = ""
    choices: tuple = ()
    low: float = 0.0
    high: float | None = None
    dest: str | None = None
    required: bool = False

    @property
    def name(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Target:
    """A make target. stage: the stage it runs (None: its recipe is in the Makefile); fixed: the flags
    it adds (make sweep = train --sweep); demo: its variables in `make demo` (None: not part of it);
    after_demo: part of `make open-questions`."""

    name: str
    section: str
    help: str
    stage: str | None = None
    fixed: tuple = ()
    variables: tuple = ()  # make variables of a target without a stage (setup: GPU, CUDA_ARCH)
    demo: dict | None = None
    after_demo: dict | None = None


@dataclass(frozen=True)
class Stage:
    """One stage: `python -m linfool NAME`, in `module` (whose main(argv) runs it)."""

    name: str
    module: str
    about: str
    options: tuple = ()
    reads: tuple = ()  # stages whose results it reads (required or when present)
    result: str | None = None  # its JSON result in the run's folder, which claims and the report read
    run_from_data: bool = False  # --run defaults to runs.default_run(--data) (blog on the embedded set)


RUN = Option("--run", "RUN", help="the run (default: blog on the embedded set, else the data set's name)")
DATA = Option("--data", "DATA", help="the data set, naming the default run (synthetic -> blog, imagenet -> imagenet)")
LOW = Option("--low", "LOW", help="the weakly regularized run compared with RUN (default: its sweep's)")
HIGH = Option("--high", "HIGH", help="the strongly regularized run compared with RUN (default: its sweep's)")
GROUP = (RUN, DATA, LOW, HIGH)
# Every target: where Caffe computes (make exports it as LINFOOL_GPU), the CUDA architectures and release
# (setup's; every target runs setup first).
GLOBAL_VARIABLES = ("GPU", "CUDA_ARCH", "CUDA")

START, PIPELINE, QUESTIONS, OWN, DEVELOP, IMAGES = (
    "start",
    "the blog's pipeline, in order",
    "the post's open questions",
    "your own model",
    "develop",
    "images",
)
SECTIONS = (START, PIPELINE, QUESTIONS, OWN, DEVELOP, IMAGES)


def _count(flag, make, default, help_):
    return Option(flag, make, "count", default, help_)


# attack-curves and transfer: the same seeded sample (linfool.experiments.pairs), 30 x 17 = 510 pairs:
# every other class of the embedded set as a target
PAIR_SAMPLE = (
    _count("--images", "IMAGES", 30, "val images in the sample"),
    _count("--pairs", "PAIRS", 510, "(image, target) pairs in the sample"),
)


# --- the stages ----------------------------------------------------------------------------------

STAGES = {
    s.name: s
    for s in (
        Stage(
            "data",
            "linfool.data.build",
            "build train/val LMDBs, mean and labels, published whole",
            (
                Option(
                    "--imagenet", "IMAGENET", help="ILSVRC2012-style root (train/<wnid>/, val/); default: embedded set"
                ),
                Option("--name", "DATA", help="data set name under data/ (default: synthetic or imagenet)"),
                Option(
                    "--val-txt",
                    "VAL_TXT",
                    help="Caffe val.txt with val labels (default: ROOT/val.txt or the official map)",
                ),
                _count("--train-per-class", None, 300, "embedded set: train images per class"),
                _count("--val-per-class", None, 50, "embedded set: val images per class"),
                Option("--replace", "REPLACE", "flag", help="replace a set built from another source"),
            ),
        ),
        Stage(
            "train",
            "linfool.model.train",
            "caffe train a run, or a sweep",
            (
                Option(
                    "--run",
                    "RUN",
                    help="run name: runs/<run>/ (default: blog on the embedded set, else the data set's name)",
                ),
                Option("--data", "DATA", help="data set name under data/ (default: synthetic; resume: the run's)"),
                Option(
                    "--solver", "SOLVER", help="solver prototxt (default: prototxt/solver.prototxt; resume: the run's)"
                ),
                Option(
                    "--overlay",
                    "OVERLAY",
                    "list",
                    help="solver prototxt merged over --solver (default on the embedded set: prototxt/solver_demo.prototxt)",
                ),
                Option(
                    "--set", "SET", "list", dest="settings", help='solver key=value (SET="max_iter=1000 snapshot=500")'
                ),
                Option("--gpu", help="auto, cpu, N, list, all (default: $LINFOOL_GPU, which make sets from GPU=)"),
                Option(
                    "--resume",
                    "RESUME",
                    "flag",
                    help="continue from the newest .solverstate; --solver, --overlay and --set are then logged changes",
                ),
                Option(
                    "--fresh",
                    "FRESH",
                    "flag",
                    help="train again from scratch: delete the run's snapshots and train.log first",
                ),
                Option("--sweep", kind="flag", help="train RUN's sweep: <low>, RUN, <high> (runs.sweep_names)"),
                Option("--deep", kind="flag", help="train the deeper models beside RUN (runs.deep_names)"),
                Option("--keep-epochs", "KEEP_EPOCHS", "flag", help="several GPUs: divide max_iter by their number"),
                Option("extra", "ARGS", "rest", help="more flags for `caffe train` (after --)"),
            ),
            reads=("data",),
        ),
        Stage(
            "decay-search",
            "linfool.model.decay_search",
            "a deeper model's weight-decay search, each candidate a short caffe train",
            (
                Option("--net", "NET", "choice", help="the deeper model", choices=("mlp", "conv"), required=True),
                Option("--data", "DATA", help="the data set (default: synthetic)"),
                Option("--decays", "DECAYS", default="0.0005,0.005,0.05,0.5", help="comma-separated weight decays"),
                _count("--iters", "ITERS", 250, "iterations per candidate"),
                Option("--bisect", None, "int", 2, "bisections after the grid"),
            ),
            reads=("data",),
        ),
        Stage(
            "adv-train",
            "linfool.experiments.adversarial",
            "adversarial training by Caffe's solver, compared with weight decay at the same accuracy",
            (
                Option("--run", "RUN", help="run name (default: adv, mlp_adv, conv_adv; <data>_adv ... elsewhere)"),
                Option("--data", "DATA", help="data set name under data/ (default: synthetic; resume: the run's)"),
                Option(
                    "--net",
                    "NET",
                    "choice",
                    help="the model (default linear; resume: the run's)",
                    choices=("linear", "mlp", "conv"),
                ),
                Option(
                    "--eps",
                    "EPS",
                    "number",
                    help="the fast gradient sign step, Linf in 0..255 pixel units (default 8; resume: the run's)",
                    high=255.0,
                ),
                Option(
                    "--alpha",
                    "ALPHA",
                    "number",
                    help="weight of the clean half of the loss, 0 < ALPHA < 1 (default 0.5, Goodfellow's)",
                    high=1.0,
                ),
                Option(
                    "--set", "SET", "list", dest="settings", help='solver key=value (SET="max_iter=1000 snapshot=500")'
                ),
                Option("--gpu", help="auto, cpu, N (one GPU; default: $LINFOOL_GPU, which make sets from GPU=)"),
                Option(
                    "--resume",
                    "RESUME",
                    "flag",
                    help="continue from the newest .solverstate with the run's NET, EPS, ALPHA",
                ),
                Option("--fresh", "FRESH", "flag", help="train again from scratch: delete the run's snapshots first"),
                Option(
                    "--compare",
                    "COMPARE",
                    "list",
                    help="the weight-decay runs compared with (default: the data set's sweep, e.g. blog reg_low reg_high)",
                ),
            ),
            reads=("train", "eval", "attack-curves"),
            result="adversarial/comparison.json",
        ),
        Stage(
            "curves",
            "linfool.model.curves",
            "training curves from a run's train.log",
            (RUN, DATA),
            reads=("train",),
            result="curves.json",
            run_from_data=True,
        ),
        Stage(
            "weights",
            "linfool.model.weights",
            "weights.npz (W, b, mean, labels) from a run's newest snapshot",
            (RUN, DATA),
            reads=("train",),
            run_from_data=True,
        ),
        Stage(
            "eval",
            "linfool.experiments.evaluate",
            "top-1/top-5 over every val record",
            (
                *GROUP,
                Option("--all", kind="flag", help="every trained run under runs/ instead"),
                _count(
                    "--val-per-class",
                    "VAL_PER_CLASS",
                    None,
                    "evaluate a seeded class-balanced val subset instead of all",
                ),
                _count("--train-sample", None, 10_000, "train records measured (a seeded uniform sample)"),
            ),
            reads=("train",),
            result="metrics.json",
            run_from_data=True,
        ),
        Stage(
            "figures",
            "linfool.experiments.figures",
            "the blog's figures and the report's explore data",
            (
                *GROUP,
                Option("--start", "START", help="class (wnid or name) of the val image to fool (default: kit fox)"),
                Option("--targets", "TARGETS", help="comma-separated target classes (default: goldfish,school bus)"),
            ),
            reads=("train",),
            result="figures/figures.json",
            run_from_data=True,
        ),
        Stage(
            "attack-curves",
            "linfool.experiments.attack_curves",
            "fooled fraction vs Linf budget, blog vs sign direction",
            (*GROUP, *PAIR_SAMPLE),
            reads=("train",),
            result="attacks/attack_curves.json",
            run_from_data=True,
        ),
        Stage(
            "transfer",
            "linfool.experiments.transfer",
            "fooling images of one run classified by the others",
            (*GROUP, *PAIR_SAMPLE),
            reads=("train",),
            result="transfer/transfer.json",
            run_from_data=True,
        ),
        Stage(
            "background",
            "linfool.experiments.background",
            "background-class rounds: fooling images + caffe fine-tuning",
            (
                RUN,
                DATA,
                _count("--rounds", "ROUNDS", 3, "rounds"),
                _count("--fool", "FOOL", 300, "fooling images added per round"),
                _count("--iters", "ITERS", 1000, "fine-tuning iterations per round"),
                _count("--measure-images", "MEASURE", 10, "val images per measurement"),
            ),
            reads=("train",),
            result="background/background.json",
            run_from_data=True,
        ),
        Stage(
            "blackbox",
            "linfool.experiments.blackbox",
            "fooling with scores only: square attack + exact template recovery",
            (
                *GROUP,
                _count("--images", "IMAGES", 6, "val images in the sample, one target each"),
                _count("--queries", "QUERIES", 10_000, "square attack: query budget per pair"),
            ),
            reads=("train",),
            result="blackbox/blackbox.json",
            run_from_data=True,
        ),
        Stage(
            "forest",
            "linfool.experiments.forest",
            "a random forest on the pixels fooled with scores only, beside RUN's linear model",
            (
                RUN,
                DATA,
                _count("--trees", "TREES", 100, "trees in the forest"),
                _count("--per-class", None, 300, "train records per class"),
                _count("--images", "IMAGES", 12, "val images, one target each"),
                _count("--queries", "QUERIES", 1000, "query budget per pair"),
            ),
            reads=("train",),
            result="forest/forest.json",
            run_from_data=True,
        ),
        Stage(
            "deep",
            "linfool.experiments.deep",
            "the linear, MLP and ConvNet runs fooled by backprop",
            (
                RUN,
                DATA,
                HIGH,
                _count("--images", "IMAGES", 10, "val images in the sample"),
                _count("--pairs", "PAIRS", 50, "(image, target) pairs in the sample"),
                _count("--steps", "STEPS", 20, "gradients per iterative attack"),
            ),
            reads=("train",),
            result="deep/deep.json",
            run_from_data=True,
        ),
        Stage(
            "fool",
            "linfool.experiments.fool_model",
            "fool any Caffe classifier by backprop",
            (
                Option("--model", "MODEL", help="the net's deploy prototxt"),
                Option("--weights", "WEIGHTS", help="its .caffemodel"),
                Option("--image", "IMAGE", help="the image file (or folder) to fool"),
                Option("--target", "TARGET", help="class number, or a name/wnid of LABELS"),
                Option("--mean", "MEAN", help="a mean.binaryproto"),
                Option("--mean-values", "MEAN_VALUES", help="per-channel means, e.g. 104,117,123"),
                Option("--scale", "SCALE", "number", 1.0, "transform_param scale > 0, e.g. 0.00390625"),
                Option("--channels", "CHANNELS", "choice", "bgr", "bgr (Caffe's), rgb or gray", ("bgr", "rgb", "gray")),
                Option("--labels", "LABELS", help="synsets/labels file, one class per line"),
                Option("--eps", "EPS", "number", 16.0, "Linf budget in (0, 255] pixel units", high=255.0),
                _count("--steps", "STEPS", 100, "attack steps at most"),
                _count("--images", "IMAGES", 20, "IMAGE a folder: its first N images"),
            ),
        ),
        Stage(
            "claims",
            "linfool.experiments.claims",
            "the blog's claims with test, n, p and verdict",
            (
                *GROUP,
                _count("--seeds", "SEEDS", 1, "repeat the rows that depend on training over N seeds of the sweep"),
            ),
            reads=("eval", "figures", "attack-curves", "background", "deep", "forest", "adv-train"),
            result="claims.json",
            run_from_data=True,
        ),
        Stage(
            "report",
            "linfool.report.page",
            "one HTML page with every figure and number",
            GROUP,
            reads=(
                "eval",
                "figures",
                "attack-curves",
                "transfer",
                "background",
                "claims",
                "blackbox",
                "forest",
                "deep",
                "adv-train",
            ),
            run_from_data=True,
        ),
        Stage("toy", "linfool.experiments.toy", "the blog's toy example, printed"),
        Stage(
            "lmdb",
            "linfool.data.lmdb_builder",
            "build one 64x64 Caffe LMDB from a Caffe list file",
            (
                Option("root", kind="positional", help="folder the list's paths are relative to"),
                Option("list_file", kind="positional", help="Caffe list file: 'relative/path label' per line"),
                Option("out", kind="positional", help="LMDB directory to create"),
                _count("--size", None, 64, "resize to SIZE x SIZE"),
                Option("--shuffle-seed", None, "int", help="shuffle the list with this seed first"),
                _count("--num-classes", None, None, "skip labels outside 0..N-1"),
                _count("--workers", None, None, "decoding threads (default: one per core)"),
            ),
        ),
        Stage(
            "records",
            "linfool.core.records",
            "stream an LMDB once and describe it",
            (Option("lmdb", kind="positional", help="the LMDB folder"),),
        ),
        Stage(
            "synthetic",
            "linfool.data.synthetic",
            "write the embedded synthetic image tree",
            (
                Option("out", kind="positional", help="folder to write the ILSVRC2012-style tree into"),
                _count("--train-per-class", None, 300, "train images per class"),
                _count("--val-per-class", None, 50, "val images per class"),
                Option("--seed", None, "int", 0, "the generator's seed"),
            ),
        ),
        Stage(
            "caffe",
            "linfool.core.caffe_env",
            "where Caffe is, its tools, the GPUs it sees",
            (
                Option("--check", kind="flag", help="import pycaffe, print where from"),
                Option("--tool", help="print the path of a Caffe tool binary"),
                Option("--device-query", kind="flag", help="report the GPUs Caffe sees"),
                Option("--blas", kind="flag", help="the OpenBLAS core Caffe runs with here (checked once per CPU)"),
            ),
        ),
    )
}

# --- the make targets, in `make help`'s order ----------------------------------------------------

TARGETS = {
    t.name: t
    for t in (
        Target("help", START, "list the targets"),
        Target("demo", START, "set up, then the whole pipeline on the embedded data, with a time per stage"),
        Target("test", START, "lint, Caffe's own tests once per Caffe build, then the test suite"),
        Target(
            "setup",
            START,
            "apt packages, Caffe built once (cached), .venv; GPU=1: the CUDA build",
            variables=("GPU", "CUDA_ARCH", "CUDA"),
        ),
        Target(
            "data",
            PIPELINE,
            "train/val LMDBs + mean + labels: the embedded set, or IMAGENET=/path",
            "data",
            demo={"DATA": "", "IMAGENET": ""},
        ),
        Target("train", PIPELINE, "caffe train into runs/RUN (a run with snapshots: RESUME=1 or FRESH=1)", "train"),
        Target(
            "sweep",
            PIPELINE,
            "train RUN and its regularization companions (wd 0.0005, 100, 10000)",
            "train",
            ("--sweep",),
            demo={"DATA": ""},
        ),
        Target("curves", PIPELINE, "training curves from RUN's train.log -> runs/RUN/curves.png", "curves"),
        Target("weights", PIPELINE, "runs/RUN/weights.npz (W, b, mean, labels) from the newest snapshot", "weights"),
        Target(
            "eval",
            PIPELINE,
            "top-1/top-5 of RUN and its sweep over every val record",
            "eval",
            demo={"RUN": conventions.DEMO_RUN},
        ),
        Target(
            "figures",
            PIPELINE,
            "the blog's figures -> runs/RUN/figures/",
            "figures",
            demo={"RUN": conventions.DEMO_RUN},
        ),
        Target(
            "attack-curves",
            PIPELINE,
            "fooled fraction vs Linf budget, blog vs sign direction",
            "attack-curves",
            demo={"RUN": conventions.DEMO_RUN, "PAIRS": 170, "IMAGES": 10},
        ),
        Target(
            "transfer",
            PIPELINE,
            "fooling images of each run of the sweep, classified by the others",
            "transfer",
            demo={"RUN": conventions.DEMO_RUN, "PAIRS": 170, "IMAGES": 10},
        ),
        Target(
            "background",
            QUESTIONS,
            "the background-class defence: rounds of fooling images + caffe fine-tuning",
            "background",
            demo={"RUN": conventions.DEMO_RUN, "ROUNDS": 2, "FOOL": 150, "ITERS": 400, "MEASURE": 5},
        ),
        Target(
            "claims",
            PIPELINE,
            "the blog's claims measured: test, n, p, verdict -> runs/RUN/claims.json",
            "claims",
            demo={"RUN": conventions.DEMO_RUN},
            after_demo={},
        ),
        Target(
            "blackbox",
            QUESTIONS,
            "fooling with scores only: square attack + exact template recovery",
            "blackbox",
            demo={"RUN": conventions.DEMO_RUN, "IMAGES": 4, "QUERIES": 3000},
        ),
        Target(
            "report",
            PIPELINE,
            "one HTML page with every figure and number -> runs/RUN/report.html",
            "report",
            demo={"RUN": conventions.DEMO_RUN},
            after_demo={},
        ),
        Target(
            "open-questions", QUESTIONS, "after make demo: deep-sweep, deep, forest, adv-train, then claims and report"
        ),
        Target(
            "deep-sweep",
            QUESTIONS,
            "caffe train the MLP and the ConvNet at a weak and a strong weight decay",
            "train",
            ("--deep",),
            after_demo={},
        ),
        Target(
            "deep",
            QUESTIONS,
            "the linear, MLP and ConvNet runs fooled by backprop -> runs/RUN/deep/",
            "deep",
            after_demo={},
        ),
        Target(
            "forest",
            QUESTIONS,
            "a random forest fooled with scores only, beside RUN's linear model",
            "forest",
            after_demo={},
        ),
        Target(
            "adv-train",
            QUESTIONS,
            "adversarial training (NET= EPS= ALPHA=), compared with weight decay at the same accuracy",
            "adv-train",
            after_demo={},
        ),
        Target(
            "decay-search",
            QUESTIONS,
            "a deeper model's weight decays, each a short caffe train: NET=mlp|conv",
            "decay-search",
        ),
        Target(
            "fool",
            OWN,
            "fool any Caffe classifier by backprop (IMAGE= a file, or a folder: fooled fraction vs Linf)",
            "fool",
        ),
        Target(
            "device-query",
            OWN,
            "the GPUs Caffe sees (caffe device_query), or one line saying why none",
            "caffe",
            ("--device-query",),
        ),
        Target("test-fast", DEVELOP, "lint, then the tests that need no Caffe (~1 min)"),
        Target("test-caffe", DEVELOP, "Caffe's own gtest suite against the cached libcaffe, run now (~4 min)"),
        Target("test-faults", DEVELOP, "SIGKILL at random points of data, train, figures, report, then rerun"),
        Target("rehearse", DEVELOP, "the README's ImageNet recipe end to end on a generated 1000-class tree"),
        Target(
            "test-gpu-build",
            DEVELOP,
            "build the CUDA Caffe and run its CPU tests and ours; no GPU needed",
            variables=("CUDA_ARCH", "CUDA"),
        ),
        Target("gpu-check", DEVELOP, "on a GPU box: Caffe's GPU tests, GPU vs CPU training -> runs/gpu_check.txt"),
        Target("bench", DEVELOP, "speed tables, each ratio measured in the same run (~14 min)"),
        Target(
            "readme-figures", DEVELOP, "the README's pictures (docs/img/*.png) from the demo run", variables=("RUN",)
        ),
        Target("clean", DEVELOP, "remove generated data and runs (keeps .venv and the Caffe cache)"),
        Target("test-docker", IMAGES, "build the CPU image and run make test + a short demo inside (~25 min cold)"),
        Target("docker-cpu", IMAGES, "build the CPU image linfool:cpu (Debian 12 + make setup, slim runtime)"),
        Target(
            "docker-gpu",
            IMAGES,
            "build the GPU image linfool:gpu (CUDA=11 and CUDA_ARCH=all by default: drivers >= 450, K40..H200)",
            variables=("CUDA_ARCH", "CUDA"),
        ),
    )
}


# --- questions answered from the table -----------------------------------------------------------


def staged(target: str) -> str:
    """The stage a make target runs; ValueError for a target whose recipe is the Makefile's own."""
    name = TARGETS[target].stage
    if name is None:
        raise ValueError(f"make {target} runs no stage")
    return name


def stage(name: str) -> Stage:
    return STAGES[name]


def option(stage_name: str, name: str) -> Option:
    """The option `name` (its dest, e.g. 'queries' or 'val_per_class') of a stage."""
    found = [o for o in STAGES[stage_name].options if o.name == name]
    if not found:
        raise KeyError(f"stage {stage_name} has no option {name}")
    return found[0]


def result(stage_name: str, run: Any) -> tuple[Path, str]:
    """(path, remake) of a stage's JSON result for a run handle (runs.Run): run.path / its declared
    result, and the make command that makes it for that run."""
    target = next(t for t in TARGETS.values() if t.stage == stage_name and not t.fixed)
    return run.path / STAGES[stage_name].result, f"make {target.name} RUN={run.name}"


def default(stage_name: str, name: str) -> Any:
    """The declared default of a stage's option: default('blackbox', 'queries') -> 10000."""
    return option(stage_name, name).default


def own_variables(target: str) -> tuple[str, ...]:
    """The make variables a target takes: its stage's options', else its own declared ones."""
    t = TARGETS[target]
    if t.stage is None:
        return t.variables
    return tuple(dict.fromkeys(o.make for o in STAGES[t.stage].options if o.make))


def variables(target: str) -> tuple[str, ...]:
    """own_variables, then the ones every target takes (GLOBAL_VARIABLES)."""
    return tuple(dict.fromkeys((*own_variables(target), *GLOBAL_VARIABLES)))


def every_variable() -> set[str]:
    """Every make variable some target takes."""
    return {v for t in TARGETS for v in variables(t)}


# --- the parser ----------------------------------------------------------------------------------


def _argparse_kwargs(opt: Option) -> dict:
    if opt.kind == "flag":
        return {"action": "store_true", "help": opt.help}
    if opt.kind == "list":
        return {"action": "append", "default": [], "dest": opt.name, "help": opt.help}
    if opt.kind == "rest":
        return {"nargs": "*", "help": opt.help}
    types = {"count": cli.positive_int, "int": int, "number": cli.number_in(opt.low, opt.high)}
    kwargs = {"help": opt.help, "default": opt.default}
    if opt.kind in types:
        kwargs["type"] = types[opt.kind]
    if opt.kind == "choice":
        kwargs["choices"] = opt.choices
    if opt.required:
        kwargs["required"] = True
    if opt.kind != "positional":
        kwargs["dest"] = opt.name
    if opt.default is not None and opt.kind != "positional":
        kwargs["help"] = f"{opt.help} (default: {opt.default})"
    return kwargs


def parser(stage_name: str) -> argparse.ArgumentParser:
    """The stage's parser, built from its declaration: each option with its make variable in its help."""
    s = STAGES[stage_name]
    p = cli.ArgumentParser(prog=f"python -m linfool {s.name}", description=s.about)
    for opt in s.options:
        kwargs = _argparse_kwargs(opt)
        if opt.make:
            kwargs["help"] = f"{kwargs['help']} [make: {opt.make}=]"
        p.add_argument(opt.flag, **kwargs)
    return p


def parse(stage_name: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The stage's options from argv; --run defaults to runs.default_run(--data) where the stage says so."""
    args = parser(stage_name).parse_args(argv)
    if STAGES[stage_name].run_from_data:
        args.run = args.run or conventions.default_run(args.data)
    return args


# --- make: variables -> options, and the command a result records --------------------------------


def from_make(target: str, words: list[str]) -> tuple[str, list[str]]:
    """(stage, argv) for `make TARGET NAME=value ...`: the target's fixed flags, then each variable
    the stage declares as its option (empty values left out; a 'list' variable's words one option
    each; a 'flag' variable takes 1). A variable of another target is ignored (make passes a compound
    target's variables to each part); one that no target takes is a UserError in one line."""
    t, stage_name = TARGETS[target], staged(target)
    by_make = {o.make: o for o in STAGES[stage_name].options if o.make}
    argv, rest = list(t.fixed), []
    for word in words:
        name, _, value = word.partition("=")
        if name not in by_make:
            if name not in every_variable():
                raise cli.UserError(
                    f"make {target}: no target takes {name}= (a typo?); make {target} takes "
                    f"{', '.join(v + '=' for v in variables(target))} (make help)"
                )
            continue
        opt = by_make[name]
        if value == "" or (opt.kind == "flag" and value == "0"):
            continue
        if opt.kind == "flag":
            if value != "1":
                raise cli.UserError(f"{name}={value}: {name} takes 1 (or nothing)")
            argv.append(opt.flag)
        elif opt.kind == "list":
            argv += [part for word_ in shlex.split(value) for part in (opt.flag, word_)]
        elif opt.kind == "rest":
            rest = shlex.split(value)
        else:
            argv += [opt.flag, value]
    for opt in by_make.values():
        if opt.required and opt.flag not in argv:
            choices = "|".join(opt.choices) if opt.choices else "..."
            raise cli.UserError(f"make {target} needs {opt.make}={choices} ({opt.help})")
    return stage_name, [*argv, "--", *rest] if rest or any(o.kind == "rest" for o in by_make.values()) else argv


def command(target: str, args: argparse.Namespace) -> str:
    """The make command that remakes a result, recorded in it: the one make passed in (LINFOOL_COMMAND)
    when it is for `target`, else `make TARGET` with RUN= and every other option that has a make
    variable and differs from its declared default."""
    values: dict[str, object] = {}
    for opt in STAGES[staged(target)].options:
        value = getattr(args, opt.name, None)
        if not opt.make or opt.kind == "rest" or value in (None, "", False, []):
            continue
        if opt.make != "RUN" and value == opt.default:
            continue
        values[opt.make] = 1 if value is True else " ".join(value) if isinstance(value, list) else value
    return cli.make_command(target, **values)


# --- make help and the demo's order --------------------------------------------------------------


def _wrapped(name: str, text: str, width: int = 99) -> list[str]:
    """'  name            text...' wrapped to `width` columns, continuation lines under the text."""
    return textwrap.wrap(text, width, initial_indent=f"  {name:<15} ", subsequent_indent=" " * 18) or [f"  {name}"]


def help_text() -> str:
    """`make help`: the targets in sections, each with the make variables it takes, lines < 100."""
    out = ["linfool — make TARGET [VAR=value ...]   (python -m linfool STAGE --help: a stage's options)"]
    for section in SECTIONS:
        out += ["", f"{section}:"]
        for t in (t for t in TARGETS.values() if t.section == section):
            takes = own_variables(t.name)
            text = t.help + (f" [{' '.join(v + '=' for v in takes)}]" if takes else "")
            out += _wrapped(t.name, text)
    out += ["", "Every target: GPU=auto|cpu|0|0,1|all (where Caffe computes)."]
    return "\n".join(out)


def _order(names: list[str]) -> list[str]:
    """`names` in an order where each target comes after the targets whose stages it reads (Kahn's
    algorithm, the declared order between independent ones)."""
    by_stage: dict[str, list[str]] = {}
    for name in names:
        by_stage.setdefault(staged(name), []).append(name)
    needs = {n: {m for s in STAGES[staged(n)].reads for m in by_stage.get(s, ()) if m != n} for n in names}
    done: list[str] = []
    while len(done) < len(names):
        ready = [n for n in names if n not in done and needs[n] <= set(done)]
        if not ready:
            raise ValueError(f"the reads of {sorted(set(names) - set(done))} form a cycle")
        done.append(ready[0])
    return done


def plan(which: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The make commands of `make demo` ('demo') or `make open-questions` ('open-questions'), in the
    order of their reads, each 'TARGET VAR=value ...'; a size given to make (in the environment,
    where make puts its command-line variables) wins over the demo's."""
    environ = os.environ if environ is None else environ
    fields = {"demo": "demo", "open-questions": "after_demo"}
    if which not in fields:
        raise cli.UserError(f"no plan {which!r}; the plans are demo and open-questions")
    field_ = fields[which]
    chosen = [t.name for t in TARGETS.values() if getattr(t, field_) is not None]
    lines = []
    for name in _order(chosen):
        sizes = getattr(TARGETS[name], field_)
        words = [f"{k}={environ.get(k, v) if v != '' else ''}" for k, v in sizes.items()]
        lines.append(" ".join([name, *words]))
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m linfool.core.stages help | plan demo|open-questions`."""
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `make help | head`: stop quietly, as a shell tool does
    if argv[:1] == ["plan"] and len(argv) == 2:
        try:
            print("\n".join(plan(argv[1])))
        except cli.UserError as err:
            print(f"ERROR: {err}", file=sys.stderr)
            return cli.EXIT_USER
        return 0
    print(help_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
