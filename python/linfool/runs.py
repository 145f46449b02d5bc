"""Runs under runs/: what each was trained on, read from its run.json only (never recovered from a
generated prototxt), its newest snapshot, and the one naming rule of a regularization sweep.

    info(run_dir) -> dict        run.json: data, data_dir, solver, overlays, settings, gpu, command, history
    data_dir(run_dir) -> Path    the data set folder it trained on
    newest(run_dir, ".caffemodel" | ".solverstate") -> Path or None
    sweep_names(run) -> (low, high)     'blog' -> ('reg_low', 'reg_high'); 'imagenet' -> ('imagenet_reg_low', ...)
    companions(run, low, high) -> (low, high)   the given names, else the sweep's
    same_data(run_dirs) -> data name, or RunMismatch saying which runs differ
"""
import json
import re
from pathlib import Path

from linfool import paths

SNAPSHOT_PREFIX = "snap"          # Caffe writes <prefix>_iter_N.caffemodel / .solverstate
DEMO_RUN = "blog"                 # the embedded demo's blog-settings run; its sweep is reg_low / reg_high


class RunMismatch(ValueError):
    """Runs that must not be compared (trained on different data sets); the message names them."""


def info(run_dir) -> dict:
    """The run's run.json (written by make train)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: {Path(run_dir).name} is not a run made by `make train`")
    return json.loads(path.read_text())


def data_dir(run_dir) -> Path:
    """The data set folder the run trained on: the recorded absolute folder when it still exists
    (tests, LINFOOL_DATA), else data/<recorded name> (a run moved to another machine or container)."""
    recorded = info(run_dir)
    folder = Path(recorded.get("data_dir", ""))
    return folder if recorded.get("data_dir") and folder.is_dir() else paths.dataset_dir(recorded["data"])


def newest(run_dir, suffix=".caffemodel"):
    """The run's snapshot file with the highest iteration (Caffe's _iter_N naming), or None."""
    found = list(Path(run_dir).glob(f"*_iter_*{suffix}"))
    return max(found, key=lambda p: int(re.search(r"_iter_(\d+)", p.name).group(1)), default=None)


def iteration(snapshot) -> int:
    """N of a <prefix>_iter_N.caffemodel / .solverstate file."""
    return int(re.search(r"_iter_(\d+)", Path(snapshot).name).group(1))


def sweep_names(run):
    """The weakly and strongly regularized companions of `run` in a sweep (make sweep trains all three)."""
    return ("reg_low", "reg_high") if run == DEMO_RUN else (f"{run}_reg_low", f"{run}_reg_high")


def companions(run, low=None, high=None):
    """(low, high): the given names, else run's sweep companions (sweep_names)."""
    low_default, high_default = sweep_names(run)
    return low or low_default, high or high_default


def same_data(run_dirs) -> str:
    """The data set name all runs were trained on; RunMismatch (one line) when they differ."""
    data = {Path(d).name: info(d)["data"] for d in run_dirs}
    if len(set(data.values())) > 1:
        listed = ", ".join(f"{run} on '{name}'" for run, name in data.items())
        raise RunMismatch(f"runs trained on different data sets cannot be compared ({listed}); "
                          "use runs of one data set, e.g. `make sweep DATA=imagenet` then RUN=imagenet")
    return next(iter(data.values()))


def group(run, low=None, high=None) -> list:
    """[run, low, high] as run directories (low/high default to run's sweep companions), without
    repeats and without companions that have no snapshot yet; FileNotFoundError when `run` itself
    has none, RunMismatch when they were trained on different data sets."""
    names = dict.fromkeys([run, *companions(run, low, high)])
    if newest(paths.run_dir(run)) is None:
        raise FileNotFoundError(f"no .caffemodel in {paths.run_dir(run)}; run `make train RUN={run}` first")
    dirs = [paths.run_dir(name) for name in names if newest(paths.run_dir(name)) is not None]
    same_data(dirs)
    return dirs


def add_group_arguments(parser):
    """--run (required) and --low/--high, the companions it is compared with (default: sweep_names);
    every module that works on a run and its sweep takes these."""
    parser.add_argument("--run", required=True, help="the run with the blog's settings")
    parser.add_argument("--low", help="weakly regularized run (default: runs.sweep_names)")
    parser.add_argument("--high", help="strongly regularized run (default: runs.sweep_names)")
