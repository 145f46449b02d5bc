"""`make train`: run the real `caffe train` on the blog's prototxt into runs/<name>/.

    python -m linfool train --run blog --data synthetic [--overlay prototxt/solver_demo.prototxt]
                            [--set max_iter=100] [--gpu auto|cpu|0|0,1|all] [-- caffe flags]
    python -m linfool train --run blog --resume [--change-solver --set max_iter=6000]
    python -m linfool train --sweep --run blog --data synthetic ...   # reg_low, blog, reg_high
    python -m linfool train --deep --run blog --data synthetic ...    # mlp, mlp_reg_high, conv, conv_reg_high

runs/<name>/ receives the exact solver.prototxt, train_val.prototxt and deploy.prototxt used,
run.json (data set and its identity, solver, overlays, settings, command, resume history), train.log
(Caffe's full log), snap_iter_N.caffemodel / .solverstate snapshots and the training curves
(curves.png, curves.json: linfool.model.curves). One trainer per run (its
lock); the data set cannot be rebuilt while it trains. Ctrl-C makes Caffe snapshot and stop, and the
command exits 130 saying how to continue; a snapshot cut short (a full disk) is removed, never left
as the newest.
--resume continues from the newest .solverstate with the run's recorded data set, solver, overlays
and settings (run.json); changing them needs --change-solver and is logged in run.json and train.log.
Caffe does not store its position in the LMDB, so a resumed run re-reads the data from the start:
it equals an uninterrupted run when the stop falls on an epoch boundary.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linfool.core import caffe_env, cli, conventions, datasets, files, paths, prototxt, records, runs, stages
from linfool.core.prototxt import TrainConfigError, _caffe_pb2, data_batch, deploy_file, fc_layer, read_solver
from linfool.core.remake import remake_for
from linfool.model import adv_train, curves

SWEEP_OVERLAYS = ("prototxt/solver_reg_low.prototxt", "prototxt/solver_reg_high.prototxt")
DEMO_DATA = conventions.DEMO_DATA  # the embedded set: `make data` without IMAGENET=
DEMO_OVERLAY = "prototxt/solver_demo.prototxt"  # laid over the blog's solver on it (iterations, test counts)


RUN_FILES = ("solver.prototxt", "train_val.prototxt", "deploy.prototxt")  # written by make train, recorded


def render_run_files(
    run_dir: Path, dataset: datasets.DataSet, solver: Any, gpu_mode: bool
) -> tuple[dict[str, str], Any]:
    """The run's solver, train_val and deploy prototxt as {file name: text}, and the train_val
    NetParameter: paths and num_output for this data; the deploy net is the one beside the solver's
    net (prototxt.deploy_file). Each Data layer reads the LMDB of the same folder name (train_lmdb,
    val_lmdb, ...) in the data set's published version; an Accuracy layer's top_k is capped at the
    number of classes (Caffe aborts on top_k > classes). `solver` is changed in place (net, prefix)."""
    pb2 = _caffe_pb2()
    net = prototxt.read_net(solver.net)
    num_classes = dataset.num_classes
    for layer in net.layer:
        if layer.type == "Data":  # the template names each LMDB by its folder name in the data set
            layer.data_param.source = str(dataset.root / Path(layer.data_param.source).name)
            layer.transform_param.mean_file = str(dataset.mean_file)
        if layer.type == "Accuracy" and layer.accuracy_param.top_k > num_classes:
            layer.accuracy_param.top_k = num_classes
    fc_layer(net).inner_product_param.num_output = num_classes
    deploy = prototxt.read_net(deploy_file(solver.net))
    fc_layer(deploy).inner_product_param.num_output = num_classes
    solver.net = str(run_dir / "train_val.prototxt")
    solver.snapshot_prefix = str(run_dir / runs.SNAPSHOT_PREFIX)
    solver.solver_mode = pb2.SolverParameter.GPU if gpu_mode else pb2.SolverParameter.CPU
    texts = {
        "solver.prototxt": prototxt.text(solver),
        "train_val.prototxt": prototxt.text(net),
        "deploy.prototxt": prototxt.text(deploy),
    }
    return texts, net


def _solver_fields(text):
    """{field: value} of a solver prototxt's top-level fields as text, the device (solver_mode) left out."""
    solver = prototxt.parse(text, "SolverParameter")
    solver.ClearField("solver_mode")
    return {fd.name: ",".join(map(str, v)) if fd.is_repeated else str(v) for fd, v in solver.ListFields()}


def trainer_target(run: runs.Run) -> str:
    """The make target that trains `run`: adv-train for a run `make adv-train` made (its run.json
    records the EPS and ALPHA), else train."""
    try:
        return "adv-train" if "adversarial" in json.loads((run.path / "run.json").read_text()) else "train"
    except (OSError, ValueError):
        return "train"


def check_hand_edits(run: runs.Run) -> None:
    """TrainConfigError (one line) when a prototxt make train wrote into the run (run.json records
    their sha256) was changed by hand since: linfool writes them from run.json, so the edit would be
    silently lost. An edited solver.prototxt is answered with the SET= that makes the same change."""
    recorded = run.info.get("files") or {}
    edited = [
        name for name, sha in recorded.items() if (run.path / name).is_file() and files.sha256(run.path / name) != sha
    ]
    if not edited:
        return
    if edited == ["solver.prototxt"]:
        now = _solver_fields((run.path / "solver.prototxt").read_text())
        before = _solver_fields(run.info.get("solver_text", ""))
        changed = {k: v for k, v in now.items() if before.get(k) != v}
        if changed and all(k not in ("net", "snapshot_prefix") for k in changed):
            sets = " ".join(f"{k}={v}" for k, v in changed.items())
            listed = ", ".join(f"{k}: {before.get(k)} -> {v}" for k, v in changed.items())
            raise TrainConfigError(
                f"{run.path / 'solver.prototxt'} was edited by hand ({listed}); "
                f"linfool writes that file from run.json, so the edit would be lost: give it as "
                f'`make {trainer_target(run)} RUN={run.name} RESUME=1 SET="{sets}"` (recorded in run.json), or undo the edit'
            )
    raise TrainConfigError(
        f"{', '.join(str(run.path / n) for n in edited)} {'was' if len(edited) == 1 else 'were'} edited by hand after "
        f"`make train` wrote {'it' if len(edited) == 1 else 'them'}; linfool writes them from run.json and the "
        f"solver's net, so the edit would be lost: change the solver or net files in prototxt/ (or SET=, "
        f"SOLVER=) and train a new RUN=, or undo the edit"
    )


def check_solver(solver: Any) -> None:
    """The solver values Caffe would abort on or silently misuse, refused in one line."""
    for key, low in (("max_iter", 1), ("snapshot", 0), ("display", 0), ("test_interval", 1)):
        if getattr(solver, key) < low:
            raise TrainConfigError(
                f'{key}={getattr(solver, key)} is out of range (needs >= {low}); e.g. SET="{key}={max(low, 1)}"'
            )
    if any(n < 0 for n in solver.test_iter):
        raise TrainConfigError(f"test_iter={list(solver.test_iter)} is out of range (needs >= 0)")
    if not solver.base_lr > 0:
        raise TrainConfigError(f"base_lr={solver.base_lr} is out of range (needs > 0; the blog's is 1e-7)")


def preflight(net: Any) -> None:
    """Check what Caffe would die on with a glog abort, and say it in one line instead."""
    num_output = fc_layer(net).inner_product_param.num_output
    for layer in net.layer:
        if layer.type == "Data":
            records.check(layer.data_param.source, num_output)
            if not Path(layer.transform_param.mean_file).is_file():
                mean = layer.transform_param.mean_file
                raise TrainConfigError(f"no mean file {mean}; rebuild its data set: `{remake_for(Path(mean).parent)}`")


def gpu_flag(gpu: str | None = None) -> str | None:
    """Caffe's --gpu value for GPU=auto|cpu|N|list|all (default: caffe_env.requested(); caffe_env.device
    decides), or None for the CPU."""
    if caffe_env.caffe_has_cuda() and not caffe_env.gpu_visible():
        # Caffe's data prefetch thread calls cudaGetDevice even in CPU mode and aborts without a GPU.
        raise TrainConfigError(
            "this Caffe is a CUDA build and no GPU is visible (nvidia-smi); a CUDA "
            "build needs a GPU even to train on the CPU: `make setup GPU=cpu` for the CPU build"
        )
    return caffe_env.device(gpu if gpu is not None else caffe_env.requested())


def multi_gpu(
    flag: str | None, solver: Any, net: Any, n_records: int, keep_epochs: bool = False
) -> tuple[str | None, list[str]]:
    """For several GPUs: (one line saying what they change, solver settings). Caffe's P2PSync gives
    each GPU its own TRAIN batch and averages the N gradients: an effective batch of N x 256 at the
    same learning rate, and max_iter iterations read N times the images. Default: keep max_iter (the
    blog's number of updates at its learning rate, each on N times the data); keep_epochs divides
    max_iter, snapshot and test_interval by N (the blog's ~10 epochs, N times fewer updates)."""
    n = caffe_env.gpus() if flag == "all" else len(flag.split(",")) if flag else 1
    if n < 2:
        return None, []
    batch = data_batch(net, "TRAIN")
    epochs = solver.max_iter * batch / max(n_records, 1)
    line = (
        f"{n} GPUs: Caffe's P2PSync averages {n} batches of {batch} per iteration (an effective batch of "
        f"{n * batch} at the same learning rate); "
    )
    if not keep_epochs:
        return line + (
            f"max_iter {solver.max_iter} reads {n * epochs:.1f} epochs instead of {epochs:.1f}; "
            f"KEEP_EPOCHS=1 (--keep-epochs) runs max_iter {solver.max_iter // n} instead"
        ), []
    settings = [
        f"max_iter={max(1, solver.max_iter // n)}",
        f"snapshot={max(1, solver.snapshot // n)}",
        f"test_interval={max(1, solver.test_interval // n)}",
    ]
    return line + f"keeping {epochs:.1f} epochs: max_iter {solver.max_iter} -> {solver.max_iter // n}", settings


def _child_dies_with_parent():
    """In the caffe child: Ctrl-C is Caffe's own (it snapshots and stops), and when the wrapper dies
    the kernel stops Caffe too (SIGINT: it snapshots), so no trainer is left writing unseen."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Log:
    """train.log, appended line by line; a write that fails (a full disk) stops the log, not the
    training, and is said once at the end."""

    def __init__(self, path):
        self.path, self.error = path, None
        self.handle = open(path, "a")

    def write(self, line: str) -> None:
        if self.error is None:
            try:
                self.handle.write(line)
                self.handle.flush()
            except OSError as err:
                self.error = err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.handle.close()
        except OSError as err:
            self.error = self.error or err
        if self.error is not None:
            print(
                f"ERROR: {self.path} could not be written ({self.error.strerror}); Caffe's log is incomplete",
                file=sys.stderr,
            )
        return False


def run_caffe(
    run_dir: Path,
    gpu: str | None,
    state: str | Path | None,
    extra: Sequence[str],
    echo: bool = True,
    program: Sequence[str] | None = None,
) -> tuple[int, bool]:
    """Run `caffe train` on run_dir/solver.prototxt (from solver state `state` when resuming), teeing
    its log to run_dir/train.log (and its progress lines to stdout when `echo`); returns (Caffe's exit
    code, whether it stopped early: Ctrl-C here, or a SIGINT sent to caffe alone, which Caffe answers
    with a snapshot, "Optimization stopped early" and exit 0). The one place linfool launches Caffe's
    trainer: its signals, locks and log are handled here for every caller. `program`: a trainer that
    takes `caffe train`'s flags and log instead (make adv-train's, linfool.model.adv_train)."""
    cmd = [*(program or [str(caffe_env.tool("caffe")), "train"]), f"--solver={run_dir / 'solver.prototxt'}"]
    if gpu:
        cmd.append(f"--gpu={gpu}")
    if state:
        cmd.append(f"--snapshot={state}")
        print(f"Resuming from {Path(state).name}", flush=True)
    cmd += list(extra)
    if echo:
        print(f"Training on {'GPU ' + gpu if gpu else 'CPU'}: {' '.join(cmd)}", flush=True)
    interesting = re.compile(r"Iteration \d+|Test net output|Snapshotting to|Optimization|Error|Check failed")
    stopped = []
    previous = signal.signal(signal.SIGINT, lambda *_: stopped.append(True))  # Caffe gets it too, and stops
    proc = None
    try:
        with _Log(run_dir / "train.log") as log:
            proc = subprocess.Popen(
                cmd,
                stderr=subprocess.PIPE,
                text=True,
                env=caffe_env.tool_env(),
                pass_fds=files.lock_fds(),
                preexec_fn=_child_dies_with_parent,
            )
            assert proc.stderr is not None  # stderr=PIPE
            for line in proc.stderr:
                log.write(line)
                if echo and interesting.search(line):
                    print(line.split("] ", 1)[-1].rstrip(), flush=True)
                if "Optimization stopped early" in line:
                    stopped.append(True)
            return proc.wait(), bool(stopped)
    finally:
        if proc is not None and proc.poll() is None:  # we are being stopped (SIGTERM, make killed)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        signal.signal(signal.SIGINT, previous)


def _damaged_newest(run):
    """(path, problem) of a file of the newest snapshot pair that does not parse whole, or None."""
    for path in run.newest_files():
        problem = runs.check_file(path)[0]
        if problem:
            return path, problem
    return None


def drop_damaged_snapshots(run: runs.Run) -> list[str]:
    """Remove the newest snapshot pair while one of its files does not parse whole (Caffe was cut
    short writing it, e.g. by a full disk), so that no later stage takes it as the newest; returns
    one line per removal."""
    lines = []
    while found := _damaged_newest(run):
        path, problem = found
        step = runs.iteration(path)
        for part in run.path.glob(f"{runs.SNAPSHOT_PREFIX}_iter_{step}.*"):
            part.unlink()
        free = shutil.disk_usage(run.path).free
        lines.append(
            f"the snapshot at iteration {step} was cut short ({path.name}: {problem}; {free / 1e9:.2f} GB "
            f"free on the disk of {run.path}): removed it"
        )
    return lines


def _resume_config(run, data, solver_file, overlays, settings):
    """The recorded (data, solver, overlays, settings, changes) of a run to resume, with the given
    solver, overlays and settings laid over the recorded ones as logged changes."""
    recorded = run.info
    if data not in (None, recorded["data"]):
        raise TrainConfigError(
            f"{run.name} was trained on '{recorded['data']}', not '{data}'; "
            "a resumed run keeps its data set (train a new RUN instead)"
        )
    changes = (
        ([f"solver {solver_file}"] if solver_file not in (None, recorded["solver"]) else [])
        + [f"overlay {o}" for o in overlays]
        + [f"set {s}" for s in settings]
    )
    return (
        recorded["data"],
        solver_file or recorded["solver"],
        [*recorded["overlays"], *overlays],
        [*recorded["settings"], *settings],
        changes,
    )


def _record(run, setup, command):
    """run.json: the data set, solver, overlays, settings, device, command, resume history, and the
    sha256 of the prototxt written."""
    files.write_json(
        run.path / "run.json",
        {
            "data": setup.dataset.name,
            "data_identity": setup.dataset.identity,
            "solver": str(setup.solver_file),
            "overlays": [str(o) for o in setup.overlays],
            "settings": list(setup.settings),
            "gpu": setup.flag,
            "command": command,
            "history": setup.history,
            # what make train wrote, so that a hand edit is seen (check_hand_edits) instead of overwritten
            "files": {name: files.sha256(run.path / name) for name in RUN_FILES},
            "solver_text": (run.path / "solver.prototxt").read_text(),
            **({"adversarial": setup.adversarial} if setup.adversarial else {}),
        },
    )


def _solver(solver_file, overlays, settings):
    solver = read_solver(solver_file, overlays, settings)
    solver.net = str(paths.ROOT / solver.net)  # a relative net path is relative to the repo
    if not Path(solver.net).is_file():
        raise TrainConfigError(f"the solver's net {solver.net} does not exist")
    check_solver(solver)
    return solver


def _snapshot_files(run):
    return sorted(run.path.glob(f"{runs.SNAPSHOT_PREFIX}_iter_*"), key=runs.iteration)


def _start(run, state, changes, history):
    """A fresh run's log (and any leftover of an attempt that made no snapshot) cleared, or a resumed
    run's solver changes logged."""
    if state is None:
        (run.path / "train.log").unlink(missing_ok=True)
    elif changes:
        history.append({"resumed_from": state.path.name, "changes": changes})
        with open(run.path / "train.log", "a") as log:
            log.write(f"linfool: resuming with solver changes: {'; '.join(changes)}\n")
        print(f"Resuming with solver changes: {'; '.join(changes)}", flush=True)


def start_over(run: runs.Run) -> str:
    """FRESH=1: delete the run's snapshots, train.log and curves, saying how many; returns that line."""
    old = _snapshot_files(run)
    steps = sorted({runs.iteration(p) for p in old})
    for path in old + [run.path / name for name in ("train.log", "curves.png", "curves.json")]:
        path.unlink(missing_ok=True)
    return (
        f"FRESH=1: deleted run {run.name}'s {len(old)} snapshot files (iterations {', '.join(map(str, steps))}) "
        "and its train.log; training it again"
    )


def existing_run(
    run: runs.Run, texts: dict[str, str], dataset: datasets.DataSet, max_iter: int, extra: Sequence[str]
) -> str:
    """What a fresh `make train` may do with a run that has snapshots: 'up to date' when it finished
    (its newest snapshot at max_iter) on the same data set with the same solver and net files, else
    RunError (one line) naming RESUME=1 and FRESH=1: no snapshot is ever deleted unasked."""
    newest = max(runs.iteration(p) for p in _snapshot_files(run))
    recorded = (run.path / "run.json").is_file()
    if recorded:
        check_hand_edits(run)
    differs = _differences(run, texts, dataset) if recorded else ["no run.json"]
    if not differs and newest == max_iter and not extra and not _stopped_early(run):
        return "up to date"
    resume = f"`make {trainer_target(run)} RUN={run.name} RESUME=1` continues it"
    if differs:
        why = f"trained to iteration {newest} with other settings: {'; '.join(differs)}"
        wanted = {
            k: v for k, v in _solver_fields(texts["solver.prototxt"]).items() if k not in ("net", "snapshot_prefix")
        }
        if all(d.split(":")[0] in wanted for d in differs):
            sets = " ".join(f"{d.split(':')[0]}={wanted[d.split(':')[0]]}" for d in differs)
            resume = f'`make {trainer_target(run)} RUN={run.name} RESUME=1 SET="{sets}"` continues it with them'
    elif newest < max_iter or _stopped_early(run):
        why = f"stopped at iteration {newest} of {max_iter}"
    else:
        why = f"trained to iteration {newest}; the extra caffe flags {' '.join(extra)} ask for a new training"
    raise runs.RunError(
        f"run {run.name} already has snapshots ({why}); {resume}, FRESH=1 deletes its snapshots and "
        "trains it again, or choose another RUN="
    )


def _differences(run: runs.Run, texts: dict[str, str], dataset: datasets.DataSet) -> list[str]:
    """What a requested training changes against the run's: its data set, 'key: old -> new' per
    solver field, the net files."""
    found = []
    if run.info.get("data_identity") != dataset.identity:
        found.append(
            f"data set '{run.info.get('data')}' {run.info.get('data_identity')} -> '{dataset.name}' {dataset.identity}"
        )
    old = _solver_fields((run.path / "solver.prototxt").read_text())
    new = _solver_fields(texts["solver.prototxt"])
    found += [f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    found += [
        f"{n} differs" for n in RUN_FILES[1:] if (run.path / n).is_file() and texts[n] != (run.path / n).read_text()
    ]
    return found


def _stopped_early(run):
    log = run.path / "train.log"
    return log.is_file() and "Optimization stopped early" in log.read_text(errors="replace")[-4000:]


def set_aside_damaged(run: runs.Run) -> list[str]:
    """RESUME=1: rename the newest snapshot pair aside (<file>.damaged) while one of its files does not
    parse whole, so that the run continues from the newest good one; one line per pair."""
    lines = []
    while found := _damaged_newest(run):
        step = runs.iteration(found[0])
        for part in run.path.glob(f"{runs.SNAPSHOT_PREFIX}_iter_{step}.*"):
            if part.suffix in (".caffemodel", ".solverstate"):
                part.rename(part.with_name(part.name + ".damaged"))
        lines.append(f"set aside the damaged snapshot at iteration {step} (renamed to *.damaged)")
    return lines


_STOPPED_BY = {128 + signal.SIGHUP, 128 + signal.SIGINT, 128 + signal.SIGKILL, 128 + signal.SIGTERM}


def _finish(run, code, stopped, max_iter):
    """Exit code after Caffe: a snapshot cut short is removed (1); stopped before max_iter (Ctrl-C, a
    SIGINT or SIGTERM to caffe itself) says the iteration reached and how to continue (130 or 128+N)."""
    if code < 0:  # killed by a signal (SIGABRT: a glog CHECK): as a shell says it
        print(f"ERROR: caffe train was stopped by signal {-code} ({signal.Signals(-code).name})", file=sys.stderr)
        code = 128 - code
    for line in drop_damaged_snapshots(run):
        print(f"ERROR: {line}", file=sys.stderr)
        code = code or 1
    at = max((runs.iteration(p) for p in _snapshot_files(run)), default=0)
    if stopped or (code in _STOPPED_BY and at):
        print(
            f"ERROR: stopped at iteration {at} of {max_iter}; `make {trainer_target(run)} RUN={run.name} RESUME=1` continues",
            file=sys.stderr,
        )
        return code if code > 128 else cli.EXIT_INTERRUPTED
    return code


def default_overlays(data: str | None, overlays: Sequence[str], resume: bool) -> list[str]:
    """The overlays of a fresh run: the given ones; on the embedded demo set, when none are given,
    the demo overlay (shorter runs and test counts: prototxt/solver_demo.prototxt)."""
    if resume or overlays or (data or DEMO_DATA) != DEMO_DATA:
        return list(overlays)
    return [DEMO_OVERLAY]


@dataclass
class _Setup:
    """What a training needs, decided before anything is written: the data set, the solver (its
    file, overlays, settings and the parsed result), the Caffe --gpu flag, and for a resume the
    solver state, the logged changes and run.json's history."""

    dataset: datasets.DataSet
    solver_file: str
    overlays: list
    settings: list
    solver: Any
    flag: str | None
    state: runs.Snapshot | None = None
    changes: list = field(default_factory=list)
    history: list = field(default_factory=list)
    adversarial: dict | None = None  # make adv-train's net, EPS and ALPHA (linfool.model.adv_train)


def _setup(run, *, data, solver_file, overlays, settings, gpu, resume, keep_epochs):
    """The _Setup of a fresh or resumed training of `run` (the multi-GPU note printed)."""
    state, changes, history = None, [], []
    if resume:
        for line in set_aside_damaged(run):
            print(line, flush=True)
        check_hand_edits(run)
        state = run.solverstate()  # checked whole; names the newest good one if not
        data, solver_file, overlays, settings, changes = _resume_config(run, data, solver_file, overlays, settings)
        history = run.info.get("history", [])
    dataset = run.dataset() if resume else datasets.DataSet.named(data or DEMO_DATA)
    solver_file = solver_file or str(paths.PROTOTXT / "solver.prototxt")
    solver = _solver(solver_file, overlays, settings)
    flag = gpu_flag(gpu)
    template = prototxt.read_net(solver.net)
    note, epoch_settings = multi_gpu(
        flag, solver, template, records.count(dataset.lmdb("train")), keep_epochs and not resume
    )
    if epoch_settings:
        settings = [*settings, *epoch_settings]
        solver = _solver(solver_file, overlays, settings)
    if note:
        print(note, flush=True)
    return _Setup(dataset, solver_file, list(overlays), list(settings), solver, flag, state, changes, history)


def _nothing_to_do(
    run: runs.Run, setup: _Setup, texts: dict[str, str], fresh: bool, extra: Sequence[str], owned: bool = False
) -> bool:
    """Before a fresh training of a run that has snapshots: FRESH=1 deletes them (said); a run that
    finished with these settings is up to date (said, True); anything else is refused (existing_run),
    or, for a stage's own run (`owned`: make claims SEEDS='s seed runs), deleted and trained again
    (said). A resume that would run no iteration is refused."""
    max_iter = setup.solver.max_iter
    if setup.state is not None:
        if setup.state.iteration >= max_iter:
            raise TrainConfigError(
                f"run {run.name} is at iteration {setup.state.iteration} and its max_iter is {max_iter}: a resume "
                f'would run no iteration; raise it: `make {trainer_target(run)} RUN={run.name} RESUME=1 SET="max_iter=...'
                f'"` (e.g. max_iter={2 * max_iter})'
            )
        return False
    if not run.has_snapshot():
        return False
    if fresh:
        print(start_over(run), flush=True)
        return False
    try:
        existing_run(run, texts, setup.dataset, max_iter, extra)
    except runs.RunError:
        if not owned:
            raise
        print(start_over(run).replace("FRESH=1", "a stage's own run, of other settings"), flush=True)
        return False
    print(
        f"Run {run.name}: trained already with these settings (iteration {max_iter} of {max_iter}, data set "
        f"'{setup.dataset.name}' {setup.dataset.identity}); nothing to do (FRESH=1 trains it again)",
        flush=True,
    )
    return True


def train(
    run_name: str,
    *,
    data: str | None = None,
    solver_file: str | None = None,
    overlays: Sequence[str] = (),
    settings: Sequence[str] = (),
    gpu: str | None = None,
    resume: bool = False,
    fresh: bool = False,
    extra: Sequence[str] = (),
    keep_epochs: bool = False,
    command: str | None = None,
    check_only: bool = False,
    owned: bool = False,
    adversarial: dict | None = None,
) -> int:
    """Prepare runs/<run>/ and train under the run's lock (the data set's shared); returns the exit
    code (Caffe's, 1 for a cut-short snapshot, 130 for Ctrl-C or another early stop). Raises
    TrainConfigError and other cli.UserErrors. A fresh run defaults to the embedded data set, the
    blog's solver and, on that set, the demo overlay; one that has snapshots already is left alone
    when it finished with the same settings, refused otherwise, and only `fresh` (FRESH=1) deletes
    them (_nothing_to_do). A resumed one uses its run.json, with the given solver, overlays and
    settings laid over it as logged changes (_resume_config). gpu: GPU= (default: caffe_env's choice,
    from $LINFOOL_GPU). With several GPUs see multi_gpu (keep_epochs). `command`: the make command
    recorded in run.json (default cli.make_command). check_only: refuse as above, train nothing.
    owned: the run is a stage's own result (up to date: left alone; else trained again). adversarial:
    make adv-train's {"net", "eps", "alpha"}: the run trains on clean and adversarial batches
    (linfool.model.adv_train, one GPU at most); a run made so is resumed by make adv-train only."""
    command = command or cli.make_command("train", RUN=run_name, DATA=data)
    overlays = default_overlays(data, overlays, resume)
    run = runs.Run.named(run_name)
    with run.lock():
        setup = _setup(
            run,
            data=data,
            solver_file=solver_file,
            overlays=overlays,
            settings=settings,
            gpu=gpu,
            resume=resume,
            keep_epochs=keep_epochs,
        )
        _check_trainer(run, setup, adversarial)
        with setup.dataset.lock(shared=True):
            texts, net = render_run_files(run.path, setup.dataset, setup.solver, setup.flag is not None)
            preflight(net)
            program = None
            if adversarial:
                texts["train_val.prototxt"] = adv_train.net_text(net, adversarial)
                program = adv_train.trainer(adversarial["eps"], setup.dataset.lmdb("train"), setup.dataset.mean_file)
            if check_only:
                if not (fresh or resume) and run.has_snapshot():
                    existing_run(run, texts, setup.dataset, setup.solver.max_iter, extra)
                return 0
            if _nothing_to_do(run, setup, texts, fresh, extra, owned):
                return 0
            run.path.mkdir(parents=True, exist_ok=True)
            for name, text in texts.items():
                files.write_text(run.path / name, text)
            _start(run, setup.state, setup.changes, setup.history)
            _record(run, setup, command)
            state = setup.state.path if setup.state else None
            code, stopped = run_caffe(run.path, setup.flag, state, extra, program=program)
            code = _finish(run, code, stopped, setup.solver.max_iter)
            if code in (0, cli.EXIT_INTERRUPTED) and run.has_snapshot():
                curves.make_curves(run)  # train.log -> curves.png / curves.json, beside the snapshots
            return code


def _check_trainer(run: runs.Run, setup: _Setup, adversarial: dict | None) -> None:
    """A resume by the target that made the run (make train cannot continue make adv-train's run:
    its TRAIN data is an Input that only linfool.model.adv_train fills); make adv-train on one GPU at
    most (pycaffe drives one device). Records the adversarial settings in `setup`."""
    if setup.state is not None and trainer_target(run) != ("adv-train" if adversarial else "train"):
        raise TrainConfigError(
            f"run {run.name} was trained by `make {trainer_target(run)}`: `make {trainer_target(run)} RUN={run.name} RESUME=1` continues it"
        )
    if adversarial and setup.flag and not setup.flag.isdigit():
        raise TrainConfigError(
            f"make adv-train runs on one GPU (pycaffe drives one device), not GPU={setup.flag}: e.g. GPU=0"
        )
    setup.adversarial = adversarial


def _train_each(plan, what, *, data, overlays, settings, gpu, extra, keep_epochs, command, fresh=False):
    """Train each (run name, solver file, extra overlays) of `plan` afresh, in order, with the given
    overlays (default_overlays) and settings; every run is checked first (one that would be refused
    is refused before any trains: train's check_only). Returns the first non-zero exit code, or 0."""
    overlays = default_overlays(data, overlays, False)
    for check_only in (True, False):
        for name, solver_file, extra_overlays in plan:
            if not check_only:
                print(f"== {what}: run {name}", flush=True)
            code = train(
                name,
                data=data,
                solver_file=solver_file,
                overlays=[*overlays, *extra_overlays],
                settings=settings,
                gpu=gpu,
                fresh=fresh,
                extra=extra,
                keep_epochs=keep_epochs,
                command=command,
                check_only=check_only,
            )
            if code != 0:
                return code
    return 0


def sweep(run: str, *, data: str | None = None, solver_file: str | None = None, **options: Any) -> int:
    """The regularization sweep: runs.sweep_names(run)[0] (weight decay 0.0005), `run` (the blog's
    100) and [1] (10,000), each a fresh `caffe train` (options: those of _train_each). Returns the
    first non-zero exit code, or 0."""
    low, high = runs.sweep_names(paths.check_name(run))
    plan = [(low, solver_file, [SWEEP_OVERLAYS[0]]), (run, solver_file, []), (high, solver_file, [SWEEP_OVERLAYS[1]])]
    return _train_each(plan, "sweep", data=data, command=cli.make_command("sweep", RUN=run, DATA=data), **options)


def deep_sweep(run: str, *, data: str | None = None, **options: Any) -> int:
    """The deeper models beside `run` on its data set (runs.deep_names): for each net, its solver
    (prototxt/solver_<net>.prototxt, the weak weight decay) and the same with its strong-decay overlay
    (prototxt/solver_<net>_reg_high.prototxt, chosen by make decay-search), each a fresh `caffe train`
    (options: those of _train_each). Returns the first non-zero exit code, or 0."""
    plan = []
    for net, (weak, strong) in runs.deep_names(run).items():
        solver_file = str(paths.PROTOTXT / f"solver_{net}.prototxt")
        plan += [
            (weak, solver_file, []),
            (strong, solver_file, [str(paths.PROTOTXT / f"solver_{net}_reg_high.prototxt")]),
        ]
    return _train_each(plan, "deep sweep", data=data, command=cli.make_command("deep-sweep", DATA=data), **options)


def main(argv: list[str] | None = None) -> int:
    args = stages.parse("train", argv)

    def body():
        if args.data is not None:
            paths.check_name(args.data, "DATA")
        run = paths.check_name(args.run or runs.default_run(args.data))
        options = dict(
            data=args.data,
            solver_file=args.solver,
            overlays=args.overlay,
            settings=args.settings,
            gpu=args.gpu,
            extra=args.extra,
            keep_epochs=args.keep_epochs,
            fresh=args.fresh,
        )
        if args.fresh and args.resume:
            raise cli.UserError("RESUME=1 continues a run, FRESH=1 starts it over: give one of them")
        if args.deep:
            if args.solver or args.sweep or args.resume:
                raise cli.UserError(
                    "--deep trains each deeper net with its own solver: no --solver, --sweep or --resume"
                )
            options.pop("solver_file")
            code = deep_sweep(run, **options)
        elif args.sweep:
            code = sweep(run, **options)
        else:
            code = train(run, resume=args.resume, **options)
        if code == 0:
            print(f"Done: {paths.run_dir(run)}")
        elif code != cli.EXIT_INTERRUPTED:
            print(f"ERROR: caffe train exited with {code}; see {paths.run_dir(run) / 'train.log'}", file=sys.stderr)
        return code

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
