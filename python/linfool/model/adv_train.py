"""`make adv-train`: adversarial training (Goodfellow et al. 2014, sections 5-6), the objective the
post's last paragraph hopes for, trained by Caffe's own SGD solver.

    python -m linfool adv-train [--net linear|mlp|conv] [--eps 4] [--alpha 0.5] [--run adv] [--data synthetic]
                                [--set max_iter=2000] [--resume | --fresh] [--gpu auto|cpu|0]

Each iteration trains on 2B images: the next B records of the train LMDB in Caffe's own order (raw
0..255 BGR, minus the train mean exactly as Caffe's Data layer subtracts it) and their adversarial twins
made with the current weights, the fast gradient sign step of the same loss J:

    x_adv = clip(x + EPS * sign(dJ(x)/dx), 0, 255)        (0..255 pixel units, not rounded)
    J~    = ALPHA * J(x) + (1 - ALPHA) * J(x_adv)          (Goodfellow's objective; ALPHA 0.5 theirs)

How (the decision, and why): pycaffe drives Caffe's SGDSolver one `step(1)` at a time. The run's
train_val.prototxt is the chosen model's with its TRAIN Data layer replaced by an Input of 2B images
and labels, and its loss by a Slice of scores and labels into two SoftmaxWithLoss layers of
loss_weight ALPHA and 1 - ALPHA (adversarial_net); its TEST phase is untouched, so Caffe's own test
loop, log, snapshots and solverstates are those of `make train`. The data gradient comes from a second
net of B images sharing the solver net's weights (Net::ShareTrainedLayersWith), all lr_mult 0, with an
in-place Bias of 0 on its input that needs backward, so its backward computes dJ/dx only, never a
weight gradient (gradient_net). A Caffe
layer of our own would have needed a patch, Caffe's tests and a CUDA kernel for a result numpy can
check on the linear net: sign(dJ/dx) = sign(W^T (p - y)) per image (tests/test_adv_train.py).

Cost: a step is one forward + data-gradient backward of B images and one training step of 2B, about 3x
a `make train` step of B (2 of its GEMMs per B images: 6 against 2), i.e. 1.5x per image seen.

It is a run like `make train`'s, through linfool.model.train: runs/<run>/ with run.json (and the EPS,
ALPHA and net in it), train.log, snap_iter_N.caffemodel/.solverstate, curves, the lock, GPU= (one GPU),
RESUME=1 / FRESH=1, the demo overlay on the embedded set. A resume reads the train LMDB from the record
the stop left off at (iteration x B, modulo the records), so it equals an uninterrupted run at any
snapshot, not only at an epoch boundary. After training, linfool.experiments.adversarial compares the
run with the weight-decay sweep at the same clean accuracy (make claims and make report show it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from linfool.core import caffe_env, datum, paths, prototxt, records, runs
from linfool.core.prototxt import TrainConfigError, _caffe_pb2, data_batch

NETS = ("linear", "mlp", "conv")
# The layers adversarial_net adds (gradient_net removes them again), by name.
SLICES, LOSSES = ("adv_slice_scores", "adv_slice_label"), ("loss_clean", "loss_adv")
GRADIENT_BIAS = "adv_data_gradient"  # gradient_net's in-place Bias of 0 on the input


def solver_file(net: str) -> str:
    """The chosen model's solver prototxt (NET=linear: the blog's)."""
    return str(paths.PROTOTXT / ("solver.prototxt" if net == "linear" else f"solver_{net}.prototxt"))


def run_name(net: str, data: str | None) -> str:
    """The default run: 'adv' / 'mlp_adv' / 'conv_adv' on the embedded set, '<data>_adv' ... elsewhere."""
    base = runs.default_run(data)
    prefix = "" if base == runs.DEMO_RUN else f"{base}_"
    return f"{prefix}{'' if net == 'linear' else net + '_'}adv"


def _loss_layer(net: Any) -> Any:
    """The SoftmaxWithLoss layer the TRAIN phase uses (the classifier's loss)."""
    pb2 = _caffe_pb2()
    for layer in net.layer:
        if layer.type == "SoftmaxWithLoss" and all(rule.phase != pb2.TEST for rule in layer.include):
            return layer
    raise TrainConfigError("adv-train needs a SoftmaxWithLoss layer in the net's TRAIN phase (the classifier's loss)")


def adversarial_net(net: Any, alpha: float) -> tuple[Any, int]:
    """(the adversarial training net, B) of a train_val NetParameter: its TRAIN Data layer becomes an
    Input of 2B images (3, 64, 64) and 2B labels (the first B clean, the last B adversarial), its loss
    becomes Slice(scores), Slice(label) and two SoftmaxWithLoss of loss_weight alpha (clean) and
    1 - alpha (adversarial), each the mean over its B images; the original loss stays for TEST only.
    `net` is not changed."""
    pb2 = _caffe_pb2()
    out = type(net)()
    out.CopyFrom(net)
    batch = data_batch(out, "TRAIN")
    for layer in out.layer:
        if layer.type == "Data" and any(rule.phase == pb2.TRAIN for rule in layer.include):
            name, tops = layer.name, list(layer.top)
            layer.Clear()
            layer.name, layer.type = name, "Input"
            layer.top.extend(tops)
            layer.include.add().phase = pb2.TRAIN
            layer.input_param.shape.add().dim.extend([2 * batch, 3, 64, 64])
            layer.input_param.shape.add().dim.extend([2 * batch])
    loss = _loss_layer(out)
    scores, label = loss.bottom
    if not loss.include:
        loss.include.add().phase = pb2.TEST
    for name, bottom in zip(SLICES, (scores, label)):
        layer = out.layer.add(name=name, type="Slice", bottom=[bottom], top=[f"{bottom}_clean", f"{bottom}_adv"])
        layer.include.add().phase = pb2.TRAIN
        layer.slice_param.axis = 0
        layer.slice_param.slice_point.append(batch)
    for name, half, weight in zip(LOSSES, ("clean", "adv"), (alpha, 1 - alpha)):
        layer = out.layer.add(
            name=name, type="SoftmaxWithLoss", bottom=[f"{scores}_{half}", f"{label}_{half}"], top=[name]
        )
        layer.include.add().phase = pb2.TRAIN
        layer.loss_weight.append(weight)
    return out, batch


def gradient_net(train_net: Any, batch: int) -> Any:
    """The net that gives dJ(x)/dx of B clean images for an adversarial training net (adversarial_net):
    its TRAIN phase with an Input of B, the two halves' layers replaced by the original loss over all B,
    every param at lr_mult 0, and an in-place Bias of 0 on the input whose own lr_mult is 1: it makes the
    net propagate back to 'data' without force_backward, which in Caffe also turns every weight gradient
    on (Net::Init); so the backward computes the data gradient and no weight gradient."""
    pb2 = _caffe_pb2()
    out = type(train_net)()
    out.CopyFrom(train_net)
    keep = [layer for layer in out.layer if layer.name not in SLICES + LOSSES]
    del out.layer[:]
    for layer in keep:
        out.layer.add().CopyFrom(layer)
        if layer.type == "Input":
            for shape in out.layer[-1].input_param.shape:
                shape.dim[0] = batch
            bias = out.layer.add(name=GRADIENT_BIAS, type="Bias", bottom=["data"], top=["data"])
            bias.param.add(lr_mult=1, decay_mult=0)
            bias.bias_param.axis, bias.bias_param.num_axes = 1, 3
            bias.bias_param.filler.type = "constant"
    for layer in out.layer:
        if layer.type == "SoftmaxWithLoss" and any(rule.phase == pb2.TEST for rule in layer.include):
            del layer.include[:]
        if layer.name == GRADIENT_BIAS:
            continue
        for param in layer.param:
            param.lr_mult = 0
        if layer.type in ("InnerProduct", "Convolution") and not layer.param:
            layer.param.add(lr_mult=0)
            layer.param.add(lr_mult=0)
    return out


def fgsm(gradient: Any, clean: np.ndarray, labels: np.ndarray, mean: np.ndarray, eps: float) -> np.ndarray:
    """The adversarial half: clip(x + eps * sign(dJ/dx), 0, 255) - mean, (B, 3, 64, 64) float32, from
    `clean` (B, 3, 64, 64) raw 0..255 BGR and its (B,) labels, through `gradient` (a pycaffe gradient_net
    sharing the current weights; its input blob 'data' is mean-subtracted, as Caffe's Data layer gives it)."""
    gradient.blobs["data"].data[...] = clean - mean
    gradient.blobs["label"].data[...] = labels
    gradient.forward()
    grad = gradient.backward(diffs=["data"])["data"]
    return np.clip(clean + np.float32(eps) * np.sign(grad), 0, 255) - mean


def train_batches(lmdb: str | Path, batch: int, start: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The train LMDB's records as Caffe's Data layer reads them: in key order, B at a time, wrapping
    around at the end (a batch may span it), from record `start` modulo the records on; each batch
    ((B, 3, 64, 64) uint8 BGR, (B,) labels)."""
    n = records.count(lmdb)
    position = start % n
    images, labels = np.empty((batch, 3, 64, 64), np.uint8), np.empty(batch, np.int64)
    filled = 0
    while True:
        for chunk_images, chunk_labels in records.batches(lmdb, 1024, None if position == 0 else range(position, n)):
            used = 0
            while used < len(chunk_labels):
                take = min(batch - filled, len(chunk_labels) - used)
                images[filled : filled + take] = chunk_images[used : used + take]
                labels[filled : filled + take] = chunk_labels[used : used + take]
                filled, used = filled + take, used + take
                if filled == batch:
                    yield images.copy(), labels.copy()
                    filled = 0
        position = 0


# --- the trainer: a process of its own, run by linfool.model.train.run_caffe like `caffe train` ---------


def _log(line: str) -> None:
    """A line of train.log in glog's layout (what linfool.model.curves and run_caffe read)."""
    stamp = time.strftime("%m%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1e6) % 1_000_000:06d}"
    print(f"I{stamp} {0:>5} adv_train.py] {line}", file=sys.stderr, flush=True)


def _test(solver: Any, test_iter: int) -> None:
    """Caffe's Solver::Test for test net #0 (pycaffe does not expose it): the mean of each output over
    test_iter forwards, logged as Caffe logs it, for the test at max_iter that Solver::Solve adds."""
    net = solver.test_nets[0]
    _log(f"Iteration {solver.iter}, Testing net (#0)")
    sums = dict.fromkeys(net.outputs, 0.0)  # in the net's output order, as Caffe logs them
    for _ in range(test_iter):
        for name, value in net.forward().items():
            sums[name] += float(np.mean(value))
    for k, (name, total) in enumerate(sums.items()):
        weight = net._blob_loss_weights[list(net._blob_names).index(name)]
        extra = f" (* {weight:g} = {weight * total / test_iter:g} loss)" if weight else ""
        _log(f"    Test net output #{k}: {name} = {total / test_iter:g}{extra}")


def _device(gpu: str | None, caffe: Any) -> None:
    if gpu:
        caffe.set_mode_gpu()
        caffe.set_device(int(gpu))
    else:
        caffe.set_mode_cpu()


def work(solver_path: Path, lmdb: str, mean_file: str, eps: float, gpu: str | None, state: str | None) -> int:
    """Train the run of `solver_path` (its train_val: an adversarial_net) to max_iter; Ctrl-C (SIGINT)
    snapshots and stops as `caffe train` does. Returns the exit code (0 also when stopped early)."""
    caffe = caffe_env.import_caffe()
    _device(gpu, caffe)
    param = prototxt.read_solver(solver_path)
    solver = caffe.SGDSolver(str(solver_path))
    if state:
        solver.restore(state)
    train_net = prototxt.read_net(param.net)
    batch = next(layer for layer in train_net.layer if layer.type == "Input").input_param.shape[0].dim[0] // 2
    grad_path = solver_path.parent / "gradient.prototxt"
    grad_path.write_text(prototxt.text(gradient_net(train_net, batch)))
    gradient = caffe.Net(str(grad_path), caffe.TRAIN)
    gradient.share_with(solver.net)
    mean = datum.decode_mean(Path(mean_file).read_bytes())
    data = solver.net.blobs["data"].data
    label = solver.net.blobs["label"].data
    _log(
        f"adversarial training: EPS {eps:g}, {batch} clean + {batch} adversarial images a step, from iteration {solver.iter}"
    )
    batches = train_batches(lmdb, batch, solver.iter * batch)

    def next_batch():
        clean, labels = next(batches)
        data[batch:] = fgsm(gradient, clean.astype(np.float32), labels, mean, eps)
        data[:batch] = clean - mean
        label[:batch] = label[batch:] = labels

    try:
        while solver.iter < param.max_iter:
            next_batch()
            solver.step(1)
    except KeyboardInterrupt:
        solver.snapshot()
        _log("Optimization stopped early.")
        return 0
    _finish(solver, param, next_batch)
    return 0


def _finish(solver: Any, param: Any, next_batch: Any) -> None:
    """What Caffe's Solver::Solve does after its steps (pycaffe's step does not): the last snapshot, the
    loss at max_iter on the next batch (unsmoothed), the last test, 'Optimization Done.'"""
    if param.snapshot_after_train and (not param.snapshot or solver.iter % param.snapshot):
        solver.snapshot()
    if param.display and solver.iter % param.display == 0:
        next_batch()
        net = solver.net
        weights = dict(zip(net._blob_names, net._blob_loss_weights))
        loss = sum(weights[name] * float(value) for name, value in net.forward().items())
        _log(f"Iteration {solver.iter}, loss = {loss:g}")
    if param.test_interval and solver.iter % param.test_interval == 0 and param.test_iter:
        _test(solver, param.test_iter[0])
    _log("Optimization Done.")


def worker_main(argv: list[str]) -> int:
    """`python -m linfool.model.adv_train --eps E --lmdb L --mean M --solver=S [--gpu=G] [--snapshot=F]`:
    the trainer process, with `caffe train`'s flags (run_caffe appends them)."""
    parser = argparse.ArgumentParser(prog="adv_train worker")
    for flag in ("--eps", "--lmdb", "--mean", "--solver", "--gpu", "--snapshot"):
        parser.add_argument(flag)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return work(Path(args.solver), args.lmdb, args.mean, float(args.eps), args.gpu, args.snapshot)


# --- the stage ---------------------------------------------------------------------------------------


def trainer(eps: float, lmdb: str | Path, mean_file: str | Path) -> list[str]:
    """The command run_caffe runs instead of `caffe train` (its --solver/--gpu/--snapshot appended),
    reading the train LMDB `lmdb` and subtracting `mean_file` (a binaryproto)."""
    return [
        sys.executable,
        "-m",
        "linfool.model.adv_train",
        "--eps",
        repr(float(eps)),
        "--lmdb",
        str(lmdb),
        "--mean",
        str(mean_file),
    ]


def net_text(net: Any, adversarial: dict) -> str:
    """The run's train_val.prototxt for make adv-train: adversarial_net of `net` (the chosen model's,
    paths set), headed by a comment with EPS, which Caffe does not read (so that a change of EPS
    makes the file differ, as a change of ALPHA changes its loss weights)."""
    header = (
        f"# make adv-train: NET={adversarial['net']} EPS={adversarial['eps']:g} ALPHA={adversarial['alpha']:g}; "
        "linfool.model.adv_train fills the TRAIN Input with B clean and B adversarial images a step\n"
    )
    return header + prototxt.text(adversarial_net(net, adversarial["alpha"])[0])


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
