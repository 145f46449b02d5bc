"""`make train`: run the real `caffe train` on the blog's prototxt into runs/<name>/.

    python -m linfool.train --run blog --data synthetic [--overlay prototxt/solver_demo.prototxt]
                            [--set max_iter=100] [--gpu auto|cpu|0|0,1|all] [--resume] [-- caffe flags]

runs/<name>/ receives the exact solver.prototxt, train_val.prototxt and deploy.prototxt used,
run.json (data, overlays, command), train.log (Caffe's full log) and snap_iter_N.caffemodel /
.solverstate snapshots. Ctrl-C makes Caffe snapshot and stop; --resume continues from the newest
.solverstate (Caffe does not store its position in the LMDB, so the resumed run re-reads the
data from the start: it equals an uninterrupted run when the stop falls on an epoch boundary).
"""
import argparse
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

from google.protobuf import text_format

from linfool import caffe_env, datasets, lmdb_checks, paths

SNAPSHOT_PREFIX = "snap"


class TrainConfigError(ValueError):
    """A configuration Caffe would abort on; the message says what to fix, in one line."""


def _caffe_pb2():
    return caffe_env.import_caffe().proto.caffe_pb2


def _overlay(target, text):
    """Merge prototxt `text` over `target`: a field it names replaces the old value entirely
    (protobuf's own Merge would append to repeated fields such as test_iter)."""
    update = text_format.Parse(text, type(target)())
    for fd, value in update.ListFields():
        if fd.is_repeated:
            target.ClearField(fd.name)
            getattr(target, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(target, fd.name).CopyFrom(value)
        else:
            setattr(target, fd.name, value)


def read_solver(solver_file, overlays=(), settings=()):
    """Parse the solver prototxt, lay each overlay file over it, then apply 'key=value' settings
    (unknown keys and bad values are refused). Returns a caffe_pb2.SolverParameter."""
    solver = _caffe_pb2().SolverParameter()
    for path in (solver_file, *overlays):
        if not Path(path).is_file():
            raise TrainConfigError(f"no solver file {path}")
        try:
            _overlay(solver, Path(path).read_text())
        except text_format.ParseError as err:
            raise TrainConfigError(f"{path}: {err}") from None
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or key not in solver.DESCRIPTOR.fields_by_name:
            raise TrainConfigError(f"--set {setting!r}: not a SolverParameter key=value")
        try:
            _overlay(solver, f"{key}: {value}")
        except text_format.ParseError as err:
            raise TrainConfigError(f"--set {setting!r}: {err}") from None
    return solver


def _fc_layer(net):
    return next(layer for layer in net.layer if layer.type == "InnerProduct")


def write_run_files(run_dir, data_dir, solver, gpu_mode):
    """Write the run's solver, train_val and deploy prototxt (paths and num_output for this data)."""
    pb2 = _caffe_pb2()
    net = text_format.Parse(Path(solver.net).read_text(), pb2.NetParameter())
    num_classes = len(datasets.read_labels(data_dir / "labels.txt"))
    for layer in net.layer:
        if layer.type == "Data":
            split = "train" if layer.include[0].phase == pb2.TRAIN else "val"
            layer.data_param.source = str(data_dir / f"{split}_lmdb")
            layer.transform_param.mean_file = str(data_dir / "train_lmdb" / "mean.binaryproto")
    _fc_layer(net).inner_product_param.num_output = num_classes
    deploy = text_format.Parse((paths.PROTOTXT / "deploy.prototxt").read_text(), pb2.NetParameter())
    _fc_layer(deploy).inner_product_param.num_output = num_classes
    solver.net = str(run_dir / "train_val.prototxt")
    solver.snapshot_prefix = str(run_dir / SNAPSHOT_PREFIX)
    solver.solver_mode = pb2.SolverParameter.GPU if gpu_mode else pb2.SolverParameter.CPU
    (run_dir / "train_val.prototxt").write_text(text_format.MessageToString(net))
    (run_dir / "deploy.prototxt").write_text(text_format.MessageToString(deploy))
    (run_dir / "solver.prototxt").write_text(text_format.MessageToString(solver))
    return net


def preflight(net, data_dir):
    """Check what Caffe would die on with a glog abort, and say it in one line instead."""
    num_output = _fc_layer(net).inner_product_param.num_output
    for layer in net.layer:
        if layer.type == "Data":
            lmdb_checks.check_lmdb(layer.data_param.source, num_output, channels=3, size=64)
            if not Path(layer.transform_param.mean_file).is_file():
                raise TrainConfigError(f"no mean file {layer.transform_param.mean_file}; run `make data`")


def newest_solverstate(run_dir):
    """The .solverstate with the highest iteration in run_dir, or None."""
    states = list(Path(run_dir).glob(f"{SNAPSHOT_PREFIX}_iter_*.solverstate"))
    return max(states, key=lambda p: int(re.search(r"_iter_(\d+)", p.name).group(1)), default=None)


def gpu_flag(gpu):
    """Caffe's --gpu value for GPU=auto|cpu|N|list|all, or None for CPU; says which device."""
    has_cuda = caffe_env.caffe_has_cuda()
    if has_cuda and not caffe_env.gpu_visible():
        # Caffe's data prefetch thread calls cudaGetDevice even in CPU mode and aborts without a GPU.
        raise TrainConfigError("this Caffe is a CUDA build and no GPU is visible (nvidia-smi); a CUDA "
                               "build needs a GPU even to train on the CPU: `make setup GPU=cpu` for the CPU build")
    if gpu == "cpu":
        return None
    if gpu == "auto":
        return "0" if has_cuda else None
    if not has_cuda:
        raise TrainConfigError(f"GPU={gpu} asked, but this Caffe was built CPU-only; use GPU=cpu "
                               "or rebuild with `make setup GPU=1`")
    return gpu


def run_caffe(run_dir, gpu, resume, extra):
    """Run `caffe train`, teeing its log to run_dir/train.log; returns Caffe's exit code."""
    cmd = [str(caffe_env.tool("caffe")), "train", f"--solver={run_dir / 'solver.prototxt'}"]
    if gpu:
        cmd.append(f"--gpu={gpu}")
    if resume:
        state = newest_solverstate(run_dir)
        if state is None:
            raise TrainConfigError(f"RESUME=1 but {run_dir} has no .solverstate; train without RESUME first")
        cmd.append(f"--snapshot={state}")
        print(f"Resuming from {state.name}", flush=True)
    cmd += list(extra)
    print(f"Training on {'GPU ' + gpu if gpu else 'CPU'}: {' '.join(cmd)}", flush=True)
    interesting = re.compile(r"Iteration \d+|Test net output|Snapshotting to|Optimization|Error|Check failed")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is Caffe's: it snapshots and stops
    try:
        with open(run_dir / "train.log", "a") as log:
            proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=caffe_env.tool_env(),
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            for line in proc.stderr:
                log.write(line)
                if interesting.search(line):
                    print(line.split("] ", 1)[-1].rstrip(), flush=True)
            return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def train(run, data, solver_file, overlays=(), settings=(), gpu="auto", resume=False, extra=()):
    """Prepare runs/<run>/ and train; returns Caffe's exit code. Raises TrainConfigError."""
    data_dir = paths.dataset_dir(data)
    if not (data_dir / "labels.txt").is_file():
        raise TrainConfigError(f"no data set '{data}' in {paths.DATA} (no labels.txt); run `make data`")
    solver = read_solver(solver_file, overlays, settings)
    solver.net = str(paths.ROOT / solver.net)          # a relative net path is relative to the repo
    if not Path(solver.net).is_file():
        raise TrainConfigError(f"the solver's net {solver.net} does not exist")
    flag = gpu_flag(gpu)
    run_dir = paths.run_dir(run)
    run_dir.mkdir(parents=True, exist_ok=True)
    net = write_run_files(run_dir, data_dir, solver, flag is not None)
    preflight(net, data_dir)
    (run_dir / "run.json").write_text(json.dumps({
        "data": data, "solver": str(solver_file), "overlays": [str(o) for o in overlays],
        "settings": list(settings), "gpu": flag, "command": "python -m linfool.train " + " ".join(sys.argv[1:])}, indent=1) + "\n")
    if not resume:
        for old in list(run_dir.glob(f"{SNAPSHOT_PREFIX}_iter_*")) + [run_dir / "train.log"]:
            old.unlink(missing_ok=True)
    return run_caffe(run_dir, flag, resume, extra)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default", help="run name: runs/<run>/")
    parser.add_argument("--data", default="synthetic", help="data set name under data/")
    parser.add_argument("--solver", default=str(paths.PROTOTXT / "solver.prototxt"))
    parser.add_argument("--overlay", action="append", default=[], help="solver prototxt merged over --solver")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="solver key=value")
    parser.add_argument("--gpu", default="auto", help="auto (GPU if built with CUDA and visible), cpu, N, list, all")
    parser.add_argument("--resume", action="store_true", help="continue from the newest .solverstate")
    parser.add_argument("extra", nargs="*", help="more flags for `caffe train` (after --)")
    args = parser.parse_args(argv)
    try:
        code = train(args.run, args.data, args.solver, args.overlay, args.settings, args.gpu,
                     args.resume, args.extra)
    except (TrainConfigError, lmdb_checks.LmdbError, caffe_env.CaffeNotFound) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    if code == 0:
        print(f"Done: {paths.run_dir(args.run)}")
    else:
        print(f"ERROR: caffe train exited with {code}; see {paths.run_dir(args.run) / 'train.log'}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
