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

import ctypes
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from google.protobuf import text_format

from linfool.core import caffe_env, cli, datasets, files, paths, records, runs
from linfool.core.prototxt import TrainConfigError, _caffe_pb2, data_batch, deploy_file, fc_layer, read_solver
from linfool.model import curves

SWEEP_OVERLAYS = ("prototxt/solver_reg_low.prototxt", "prototxt/solver_reg_high.prototxt")
DEMO_DATA = "synthetic"  # the embedded set: `make data` without IMAGENET=
DEMO_OVERLAY = "prototxt/solver_demo.prototxt"  # laid over the blog's solver on it (iterations, test counts)


def write_run_files(run_dir, dataset, solver, gpu_mode):
    """Write the run's solver, train_val and deploy prototxt (paths and num_output for this data; the
    deploy net is the one beside the solver's net: prototxt.deploy_file).
    Each Data layer reads the LMDB of the same folder name (train_lmdb, val_lmdb, ...) in the data
    set's published version; an Accuracy layer's top_k is capped at the number of classes (Caffe
    aborts on top_k > classes). Returns the train_val NetParameter."""
    pb2 = _caffe_pb2()
    net = text_format.Parse(Path(solver.net).read_text(), pb2.NetParameter())
    num_classes = dataset.num_classes
    for layer in net.layer:
        if layer.type == "Data":  # the template names each LMDB by its folder name in the data set
            layer.data_param.source = str(dataset.root / Path(layer.data_param.source).name)
            layer.transform_param.mean_file = str(dataset.mean_file)
        if layer.type == "Accuracy" and layer.accuracy_param.top_k > num_classes:
            layer.accuracy_param.top_k = num_classes
    fc_layer(net).inner_product_param.num_output = num_classes
    deploy = text_format.Parse(deploy_file(solver.net).read_text(), pb2.NetParameter())
    fc_layer(deploy).inner_product_param.num_output = num_classes
    solver.net = str(run_dir / "train_val.prototxt")
    solver.snapshot_prefix = str(run_dir / runs.SNAPSHOT_PREFIX)
    solver.solver_mode = pb2.SolverParameter.GPU if gpu_mode else pb2.SolverParameter.CPU
    files.write_text(run_dir / "train_val.prototxt", text_format.MessageToString(net))
    files.write_text(run_dir / "deploy.prototxt", text_format.MessageToString(deploy))
    files.write_text(run_dir / "solver.prototxt", text_format.MessageToString(solver))
    return net


def check_solver(solver):
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


def preflight(net):
    """Check what Caffe would die on with a glog abort, and say it in one line instead."""
    num_output = fc_layer(net).inner_product_param.num_output
    for layer in net.layer:
        if layer.type == "Data":
            records.check(layer.data_param.source, num_output)
            if not Path(layer.transform_param.mean_file).is_file():
                raise TrainConfigError(f"no mean file {layer.transform_param.mean_file}; run `make data`")


def gpu_flag(gpu=None):
    """Caffe's --gpu value for GPU=auto|cpu|N|list|all (default: caffe_env.requested(); caffe_env.device
    decides), or None for the CPU."""
    if caffe_env.caffe_has_cuda() and not caffe_env.gpu_visible():
        # Caffe's data prefetch thread calls cudaGetDevice even in CPU mode and aborts without a GPU.
        raise TrainConfigError(
            "this Caffe is a CUDA build and no GPU is visible (nvidia-smi); a CUDA "
            "build needs a GPU even to train on the CPU: `make setup GPU=cpu` for the CPU build"
        )
    return caffe_env.device(gpu if gpu is not None else caffe_env.requested())


def multi_gpu(flag, solver, net, n_records, keep_epochs=False):
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

    def write(self, line):
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


def run_caffe(run_dir, gpu, state, extra):
    """Run `caffe train` (from solver state `state` when resuming), teeing its log to
    run_dir/train.log; returns (Caffe's exit code, whether Ctrl-C stopped it)."""
    cmd = [str(caffe_env.tool("caffe")), "train", f"--solver={run_dir / 'solver.prototxt'}"]
    if gpu:
        cmd.append(f"--gpu={gpu}")
    if state:
        cmd.append(f"--snapshot={state}")
        print(f"Resuming from {Path(state).name}", flush=True)
    cmd += list(extra)
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
            for line in proc.stderr:
                log.write(line)
                if interesting.search(line):
                    print(line.split("] ", 1)[-1].rstrip(), flush=True)
            return proc.wait(), bool(stopped)
    finally:
        if proc is not None and proc.poll() is None:  # we are being stopped (SIGTERM, make killed)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        signal.signal(signal.SIGINT, previous)


def drop_damaged_snapshots(run):
    """Remove the newest snapshot pair while one of its files does not parse whole (Caffe was cut
    short writing it, e.g. by a full disk), so that no later stage takes it as the newest; returns
    one line per removal."""
    lines = []
    while True:
        newest = run.newest_files()
        problems = [(p, runs.check_file(p)[0]) for p in newest]
        damaged = [(p, problem) for p, problem in problems if problem]
        if not damaged:
            return lines
        path, problem = damaged[0]
        step = runs.iteration(path)
        for part in run.path.glob(f"{runs.SNAPSHOT_PREFIX}_iter_{step}.*"):
            part.unlink()
        free = shutil.disk_usage(run.path).free
        lines.append(
            f"the snapshot at iteration {step} was cut short ({path.name}: {problem}; {free / 1e9:.2f} GB "
            f"free on the disk of {run.path}): removed it"
        )


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


def _record(run, dataset, solver_file, overlays, settings, flag, history, command):
    files.write_json(
        run.path / "run.json",
        {
            "data": dataset.name,
            "data_identity": dataset.identity,
            "solver": str(solver_file),
            "overlays": [str(o) for o in overlays],
            "settings": list(settings),
            "gpu": flag,
            "command": command,
            "history": history,
        },
    )


def _solver(solver_file, overlays, settings):
    solver = read_solver(solver_file, overlays, settings)
    solver.net = str(paths.ROOT / solver.net)  # a relative net path is relative to the repo
    if not Path(solver.net).is_file():
        raise TrainConfigError(f"the solver's net {solver.net} does not exist")
    check_solver(solver)
    return solver


def _start(run, dataset, state, changes, history):
    """Clear a fresh run's old snapshots and log, or log a resumed run's solver changes."""
    if state is None:
        for old in list(run.path.glob(f"{runs.SNAPSHOT_PREFIX}_iter_*")) + [run.path / "train.log"]:
            old.unlink(missing_ok=True)
    elif changes:
        history.append({"resumed_from": state.path.name, "changes": changes})
        with open(run.path / "train.log", "a") as log:
            log.write(f"linfool: resuming with solver changes: {'; '.join(changes)}\n")
        print(f"Resuming with solver changes: {'; '.join(changes)}", flush=True)


def _finish(run, code, stopped, max_iter):
    """Exit code after Caffe: a snapshot cut short is removed (1), Ctrl-C says how to continue (130)."""
    if code < 0:  # killed by a signal (SIGABRT: a glog CHECK): as a shell says it
        print(f"ERROR: caffe train was stopped by signal {-code} ({signal.Signals(-code).name})", file=sys.stderr)
        code = 128 - code
    for line in drop_damaged_snapshots(run):
        print(f"ERROR: {line}", file=sys.stderr)
        code = code or 1
    if stopped:
        at = runs.iteration(run.snapshot().path) if run.has_snapshot() else 0
        print(
            f"ERROR: stopped at iteration {at} of {max_iter}; `make train RUN={run.name} RESUME=1` continues",
            file=sys.stderr,
        )
        return cli.EXIT_INTERRUPTED
    return code


def default_overlays(data, overlays, resume):
    """The overlays of a fresh run: the given ones; on the embedded demo set, when none are given,
    the demo overlay (shorter runs and test counts: prototxt/solver_demo.prototxt)."""
    if resume or overlays or (data or DEMO_DATA) != DEMO_DATA:
        return list(overlays)
    return [DEMO_OVERLAY]


def train(
    run,
    *,
    data=None,
    solver_file=None,
    overlays=(),
    settings=(),
    gpu=None,
    resume=False,
    extra=(),
    keep_epochs=False,
    command=None,
):
    """Prepare runs/<run>/ and train under the run's lock (the data set's shared); returns the exit
    code (Caffe's, 1 for a cut-short snapshot, 130 for Ctrl-C). Raises TrainConfigError and other
    cli.UserErrors. A fresh run defaults to the embedded data set, the blog's solver and, on that
    set, the demo overlay; a resumed one uses its run.json, with the given solver, overlays and
    settings laid over it as logged changes (_resume_config). gpu: GPU= (default: caffe_env's choice,
    from $LINFOOL_GPU). With several GPUs see multi_gpu (keep_epochs). `command`: the make command
    recorded in run.json (default cli.make_command)."""
    command = command or cli.make_command("train", RUN=run, DATA=data)
    overlays = default_overlays(data, overlays, resume)
    run = runs.Run.named(run)
    with run.lock():
        history, changes, state = [], [], None
        if resume:
            state = run.solverstate()  # checked whole; names the newest good one if not
            data, solver_file, overlays, settings, changes = _resume_config(run, data, solver_file, overlays, settings)
            history = run.info.get("history", [])
        dataset = run.dataset() if resume else datasets.DataSet.named(data or DEMO_DATA)
        with dataset.lock(shared=True):
            solver_file = solver_file or str(paths.PROTOTXT / "solver.prototxt")
            solver = _solver(solver_file, overlays, settings)
            flag = gpu_flag(gpu)
            template = text_format.Parse(Path(solver.net).read_text(), _caffe_pb2().NetParameter())
            note, epoch_settings = multi_gpu(
                flag, solver, template, records.count(dataset.lmdb("train")), keep_epochs and not resume
            )
            if epoch_settings:
                settings = [*settings, *epoch_settings]
                solver = _solver(solver_file, overlays, settings)
            if note:
                print(note, flush=True)
            run.path.mkdir(parents=True, exist_ok=True)
            preflight(write_run_files(run.path, dataset, solver, flag is not None))
            _start(run, dataset, state, changes, history)
            _record(run, dataset, solver_file, overlays, settings, flag, history, command)
            code, stopped = run_caffe(run.path, flag, state.path if state else None, extra)
            code = _finish(run, code, stopped, solver.max_iter)
            if code in (0, cli.EXIT_INTERRUPTED) and run.has_snapshot():
                curves.make_curves(run)  # train.log -> curves.png / curves.json, beside the snapshots
            return code


def _train_each(plan, what, *, data, overlays, settings, gpu, extra, keep_epochs, command):
    """Train each (run name, solver file, extra overlays) of `plan` afresh, in order, with the given
    overlays (default_overlays) and settings; returns the first non-zero exit code, or 0."""
    overlays = default_overlays(data, overlays, False)
    for name, solver_file, extra_overlays in plan:
        print(f"== {what}: run {name}", flush=True)
        code = train(
            name,
            data=data,
            solver_file=solver_file,
            overlays=[*overlays, *extra_overlays],
            settings=settings,
            gpu=gpu,
            extra=extra,
            keep_epochs=keep_epochs,
            command=command,
        )
        if code != 0:
            return code
    return 0


def sweep(run, *, data=None, solver_file=None, **options):
    """The regularization sweep: runs.sweep_names(run)[0] (weight decay 0.0005), `run` (the blog's
    100) and [1] (10,000), each a fresh `caffe train` (options: those of _train_each). Returns the
    first non-zero exit code, or 0."""
    low, high = runs.sweep_names(paths.check_name(run))
    plan = [(low, solver_file, [SWEEP_OVERLAYS[0]]), (run, solver_file, []), (high, solver_file, [SWEEP_OVERLAYS[1]])]
    return _train_each(plan, "sweep", data=data, command=cli.make_command("sweep", RUN=run, DATA=data), **options)


def deep_sweep(run, *, data=None, **options):
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


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", help="run name: runs/<run>/ (default: blog on the embedded set, else the data set's name)"
    )
    parser.add_argument("--data", help="data set name under data/ (default: synthetic; resume: the run's)")
    parser.add_argument("--solver", help="solver prototxt (default: prototxt/solver.prototxt; resume: the run's)")
    parser.add_argument(
        "--overlay",
        action="append",
        default=[],
        help="solver prototxt merged over --solver (default on the embedded set: prototxt/solver_demo.prototxt)",
    )
    parser.add_argument("--set", dest="settings", action="append", default=[], help="solver key=value")
    parser.add_argument("--gpu", help="auto, cpu, N, list, all (default: $LINFOOL_GPU, which make sets from GPU=)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest .solverstate; --solver, "
        "--overlay and --set are then logged changes to the recorded solver",
    )
    parser.add_argument("--sweep", action="store_true", help="train RUN's sweep: <low>, RUN, <high> (runs.sweep_names)")
    parser.add_argument(
        "--deep", action="store_true", help="train the deeper models beside RUN (runs.deep_names): make deep-sweep"
    )
    parser.add_argument("--keep-epochs", action="store_true", help="several GPUs: divide max_iter by their number")
    parser.add_argument("extra", nargs="*", help="more flags for `caffe train` (after --)")
    args = parser.parse_args(argv)

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
        )
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
