"""`make gpu-check`: a short check of Caffe on a GPU box, whose output goes into a bug report.

    python -m linfool_dev.gpu_check [--gpu 0] [--iters 500]      # also written to runs/gpu_check.txt

1. the GPU (nvidia-smi), the Caffe build (its patches' key and CUDA archs) and Caffe's own `caffe device_query`;
2. `caffe time` per layer for the blog's net (12288 -> 1000, batch 256) on the GPU and on the CPU;
3. `caffe train` of the blog's solver for --iters iterations on the GPU and on the CPU, same data and
   seed: the train losses at every logged iteration within a relative LOSS_TOLERANCE (Caffe prints 6
   digits; cuBLAS and OpenBLAS sum the 12,288 products in different orders, which can move the 6th);
4. pycaffe: the blog-shaped deploy net (the blog's std 1e-4 weights, mean-subtracted 0..255 images)
   on the GPU and on the CPU: softmax max abs diff < 1e-5; and the Data layer in GPU mode (where
   linfool's build transforms a batch on all cores) gives exactly the records' pixels minus the mean;
5. images/s of `caffe train` and of pycaffe forwards, GPU and CPU, measured in the same run;
6. several GPUs: `caffe train --gpu=0,1` (Caffe's P2PSync: N solvers of batch 256, gradients averaged)
   against one GPU at batch 256 x N, same seed and records: the weights' changes after SYNC_ITERS
   iterations within SYNC_TOLERANCE. With one GPU it says it did not check (P2PSync refuses `--gpu=0,0`);
7. on every visible card, one line each saying what ran there: Caffe's own tests, GPU and CPU cases
   (data layers, inner product, softmax loss, the gradient-based solvers, ...), from the test binaries
   `make test-gpu-build` built for this CUDA build and kept beside it (caffe-<key>.tests/, carried to
   a GPU box without compilers; said when absent), and the SGD oracle: pycaffe solver steps on that
   card (the fused update's CUDA kernel, 05-fused-sgd.patch) against numpy's documented update.
Data: a temporary LMDB of random 64x64 records with 1000 classes. Exit 1 when a check fails.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from linfool.core import blas, caffe_env, datum, paths, prototxt, records
from linfool.model import curves
from linfool_dev import bench_job

CLASSES, TRAIN_RECORDS = 1000, 4096
TOLERANCE = 1e-5  # pycaffe softmax, GPU vs CPU (issue 12)
LOSS_TOLERANCE = 1e-5  # relative, train losses GPU vs CPU
SYNC_ITERS = 40
SYNC_TOLERANCE = 1e-4  # change_diff of N solvers vs one at N x the batch (float sums reordered)
ORACLE_LR, ORACLE_MOMENTUM, ORACLE_DECAY = 0.1, 0.9, 0.01
ORACLE_TOLERANCE = 1e-4  # relative to the weights' change: float32 steps against numpy's float64
# 12288 x 100 = 1.2M weights: the fused update's OpenMP loop on the CPU (>= 1M values), its kernel on a card
ORACLE_NET = """force_backward: true
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 12288 } shape { dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 100 weight_filler { type: "gaussian" std: 0.001 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def write_data(work):
    """work/{train_lmdb, val_lmdb, mean} of random records; returns the net prototxt (the blog's, 1000
    outputs). Val is its own LMDB: Caffe's Data layers that share a source share one reader, which
    stalls training when the TEST net never reads its share."""
    rng = np.random.default_rng(1701)
    pool = rng.integers(0, 256, (256, 3, 64, 64), dtype=np.uint8)
    for split, n in (("train", TRAIN_RECORDS), ("val", 200)):
        labels = rng.integers(0, CLASSES, n)
        records.write(
            work / f"{split}_lmdb",
            ((f"{i:08d}".encode(), datum.encode_datum(pool[i % 256], labels[i])) for i in range(n)),
            n,
        )
    (work / "mean.binaryproto").write_bytes(datum.encode_mean(pool.mean(axis=0, dtype=np.float32)))
    pb2 = caffe_env.import_caffe().proto.caffe_pb2
    net = text_format.Parse((paths.PROTOTXT / "train_val.prototxt").read_text(), pb2.NetParameter())
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = str(work / Path(layer.data_param.source).name)
            layer.transform_param.mean_file = str(work / "mean.binaryproto")
    prototxt.fc_layer(net).inner_product_param.num_output = CLASSES
    (work / "net.prototxt").write_text(text_format.MessageToString(net))
    return work / "net.prototxt"


def caffe(args, gpu=None, timeout=600):
    """Run the caffe tool; returns its log (stderr) and raises with the log's end when it fails."""
    cmd = [str(caffe_env.tool("caffe")), *args] + ([f"--gpu={gpu}"] if gpu is not None else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=caffe_env.tool_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(cmd)} did not finish in {timeout} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-1500:]}")
    return done.stderr


def layer_times(log):
    """{'data forward': ms, 'fc backward': ms, ...} and the averages from a `caffe time` log."""
    rows = {
        f"{m.group(1)} {m.group(2)}": float(m.group(3))
        for m in re.finditer(r"\]\s+(\S+)\s+(forward|backward): ([\d.]+) ms", log)
    }
    rows.update({m.group(1): float(m.group(2)) for m in re.finditer(r"(Average Forward-Backward): ([\d.]+) ms", log)})
    return rows


def train_log(work, net, iters, gpu, name=None, settings=()):
    """The log of `caffe train` with the blog's solver on `net` for `iters` iterations (`gpu`: Caffe's
    --gpu value, None for the CPU); `settings` ('key=value') go over the defaults here."""
    name = name or ("cpu" if gpu is None else "gpu")
    solver = prototxt.read_solver(
        paths.PROTOTXT / "solver.prototxt",
        settings=[
            f'net="{net}"',
            f"max_iter={iters}",
            "display=50",
            "snapshot=0",
            "snapshot_after_train=false",
            "test_iter=1",
            "test_interval=100000000",
            "test_initialization=false",
            f"solver_mode={'CPU' if gpu is None else 'GPU'}",
            *settings,
        ],
    )
    path = work / f"solver_{name}.prototxt"
    path.write_text(text_format.MessageToString(solver))
    return caffe(["train", f"--solver={path}"], gpu, timeout=300)


def trained_fc(work, net, iters, gpu, name, batch=256):
    """fc weights (num_classes, 12288) float32 after `iters` iterations at TRAIN batch `batch`, read
    from the snapshot `caffe train` writes (work/<name>_iter_<iters>.caffemodel)."""
    pb2 = caffe_env.import_caffe().proto.caffe_pb2
    param = text_format.Parse(Path(net).read_text(), pb2.NetParameter())
    for layer in param.layer:
        if layer.type == "Data" and layer.include[0].phase == pb2.TRAIN:
            layer.data_param.batch_size = batch
    (work / f"net_{name}.prototxt").write_text(text_format.MessageToString(param))
    train_log(
        work,
        work / f"net_{name}.prototxt",
        iters,
        gpu,
        name,
        ["snapshot_after_train=true", f'snapshot_prefix="{work / name}"'],
    )
    model = pb2.NetParameter()
    model.ParseFromString((work / f"{name}_iter_{iters}.caffemodel").read_bytes())
    fc = prototxt.fc_layer(model)
    return np.array(fc.blobs[0].data, dtype=np.float32).reshape(fc.blobs[0].shape.dim)


def sync_devices(gpu, count):
    """Caffe's --gpu list for the several-GPU check: `gpu` and the next card; None with one card
    (Caffe's P2PSync refuses a card named twice)."""
    return f"{gpu},{(int(gpu) + 1) % count}" if count > 1 else None


def change_diff(weights, reference, init):
    """max |(weights - init) - (reference - init)| / max |reference - init|: how far apart two runs'
    updates are, relative to the updates themselves (at lr 1e-7 they are small next to the init)."""
    return float(np.abs(weights - reference).max() / np.abs(reference - init).max())


def several_gpus(work, net, gpu, iters=SYNC_ITERS):
    """(--gpu list, change_diff): P2PSync over two solvers of batch 256 against one GPU at batch 512,
    `iters` iterations from the same seed; Caffe's reader deals the records to the solvers in turn,
    so both runs' iterations see the same 512 records."""
    devices = sync_devices(gpu, caffe_env.gpus())
    if devices is None:
        return None, None
    synced = trained_fc(work, net, iters, devices, "sync")
    one = trained_fc(work, net, iters, gpu, "one", batch=512)
    return devices, change_diff(synced, one, trained_fc(work, net, 0, gpu, "init"))


def images_per_second(log, batch=256):
    """Training throughput between the second and the last logged iteration (glog time stamps)."""
    stamps = [
        (int(m.group(2)), datetime.strptime(m.group(1), "%H:%M:%S.%f"))
        for m in re.finditer(r"^I\d{4,8} (\S+) .*Iteration (\d+), loss", log, re.M)
    ]
    (i0, t0), (i1, t1) = stamps[1], stamps[-1]
    return (i1 - i0) * batch / (t1 - t0).total_seconds()


def pycaffe_compare(gpu, batch=1024, reps=5):
    """(max |P_gpu - P_cpu|, GPU images/s, CPU images/s) of the blog-shaped deploy net's softmax with
    the blog's initial weights (Gaussian std 1e-4, the scale of its trained templates) on random
    0..255 images minus 128 (mean-subtracted, as every linfool forward is)."""
    caffe = caffe_env.import_caffe()
    rng = np.random.default_rng(0)
    net = caffe.Net(str(paths.PROTOTXT / "deploy.prototxt"), caffe.TEST)
    net.params["fc"][0].data[...] = rng.normal(0, 1e-4, net.params["fc"][0].data.shape)
    net.blobs["data"].reshape(batch, 3, 64, 64)
    net.blobs["data"].data[...] = rng.integers(0, 256, (batch, 3, 64, 64)) - 128.0
    results, rates = {}, {}
    for mode in ("cpu", "gpu"):
        caffe_env.use_device("cpu" if mode == "cpu" else gpu)
        results[mode] = net.forward()["prob"].copy()
        start = time.perf_counter()
        for _ in range(reps):
            net.forward()
        rates[mode] = reps * batch / (time.perf_counter() - start)
    return float(np.abs(results["gpu"] - results["cpu"]).max()), rates["gpu"], rates["cpu"]


def data_layer_exact(work, gpu, batch=256, batches=8):
    """True when the TRAIN Data layer, in GPU mode, yields exactly the LMDB's pixels minus the mean
    image (float32) and its labels, record by record, for `batches` batches (numpy is the oracle).
    pycaffe reads the host side of the data blob; what the GPU side holds is what the GPU training run
    learns from, so the GPU vs CPU train losses check it."""
    caffe = caffe_env.use_device(gpu)
    pb2 = caffe.proto.caffe_pb2
    net_param = text_format.Parse((work / "net.prototxt").read_text(), pb2.NetParameter())
    train_data = [layer for layer in net_param.layer if layer.type == "Data" and layer.include[0].phase == pb2.TRAIN]
    del net_param.layer[:]
    net_param.layer.extend(train_data)
    (work / "data_only.prototxt").write_text(text_format.MessageToString(net_param))
    net = caffe.Net(str(work / "data_only.prototxt"), caffe.TRAIN)
    mean = datum.decode_mean((work / "mean.binaryproto").read_bytes())
    expected = records.batches(work / "train_lmdb", batch)
    for _ in range(batches):
        net.forward()
        pixels, labels = next(expected)
        if not (
            np.array_equal(net.blobs["data"].data, pixels.astype(np.float32) - mean)
            and np.array_equal(net.blobs["label"].data, labels.astype(np.float32))
        ):
            return False
    return True


def caffe_build():
    """The build's options line from the tree's BUILD_INFO (tools/build_caffe.sh writes it: CPU or CUDA
    version and archs, Python, numpy, the BLAS build, the patches' key), e.g. 'options cpu py3.11
    numpy2.2.6 blas:openblas-openmp patches:1a2b3c4d5e6f', and the last line of its Caffe-test record
    beside it (tools/test_caffe.sh), e.g. 'patches 1a2b3c4d5e6f: 435 passed, ...'."""
    tree = caffe_env.caffe_tree()
    info = tree / "BUILD_INFO"
    options = info.read_text().splitlines()[1] if info.is_file() else "no BUILD_INFO (not built by linfool)"
    tests = tree.with_name(tree.name + ".caffe-tests")
    record = tests.read_text().splitlines()[-1] if tests.is_file() else "Caffe's own tests not run for this build"
    return f"{options}; {record}"


def caffe_gpu_tests(gpu):
    """(one line, passed) for Caffe's own tests on this GPU box: every case of the test binaries kept for
    this CUDA build (tools/test_caffe.sh: on a machine without a CUDA device most of them cannot even run
    their CPU cases), LevelDB cases left out, run in their folder (they read examples/ and
    src/caffe/test/test_data there) against this tree's libcaffe (LD_LIBRARY_PATH); passed is None when
    none are kept."""
    tree = caffe_env.caffe_tree()
    kept = tree.with_name(tree.name + ".tests")
    if not (kept / "test").is_dir():
        return (
            f"Caffe's own tests: not run (no {kept}; `make test-gpu-build` builds them for this CUDA "
            "build, carry the folder with the build)"
        ), None
    env = {**caffe_env.tool_env(), "LD_LIBRARY_PATH": str(tree / "build" / "lib"), "GLOG_minloglevel": "2"}
    counts, ok, total = [], True, 0
    for binary in sorted((kept / "test").glob("test_*.testbin")):
        done = subprocess.run(
            [str(binary), gpu, "--gtest_filter=-*LevelDB*"], cwd=kept, capture_output=True, text=True, env=env
        )
        passed = re.search(r"\[  PASSED  \] (\d+) test", done.stdout)
        total += int(passed.group(1)) if passed else 0
        ok &= done.returncode == 0
        if done.returncode != 0:
            counts.append(f"{binary.stem} FAILED")
    gpu_cases = "GPU and CPU cases, LevelDB left out"
    return (
        f"Caffe's own tests ({gpu_cases}): {total} passed in {len(list((kept / 'test').glob('*.testbin')))} binaries"
        + (f"; {', '.join(counts)}" if counts else "")
    ), ok


def sgd_oracle(work, gpu=None, steps=3):
    """max |w_caffe - w_numpy| / max |w_numpy - w_start| over the weights and biases after `steps`
    pycaffe solver steps of plain SGD with momentum and L2 decay (05-fused-sgd.patch's update: its CUDA
    kernel on card `gpu`, its CPU loop when gpu is None). numpy applies the documented update
    v = momentum * v + lr * (g + decay * w), w -= v, in float64, to the gradient Caffe computed for
    that step (read after a forward and a backward; each solver.step clears the diffs first)."""
    caffe = caffe_env.use_device("cpu" if gpu is None else gpu)
    (work / "oracle_net.prototxt").write_text(ORACLE_NET)
    solver_path = work / "oracle_solver.prototxt"
    solver_path.write_text(
        f'net: "{work / "oracle_net.prototxt"}" base_lr: {ORACLE_LR} momentum: {ORACLE_MOMENTUM} '
        f'weight_decay: {ORACLE_DECAY} lr_policy: "fixed" max_iter: 100 display: 0 snapshot_after_train: false'
    )
    solver = caffe.SGDSolver(str(solver_path))
    rng = np.random.default_rng(3)
    solver.net.blobs["data"].data[...] = rng.normal(size=solver.net.blobs["data"].data.shape)
    solver.net.blobs["label"].data[...] = rng.integers(0, 100, 4)
    params = solver.net.params["fc"]
    start = [param.data.astype(np.float64) for param in params]
    expected = [values.copy() for values in start]
    history = [np.zeros_like(values) for values in start]
    for _ in range(steps):
        solver.net.forward()
        solver.net.backward()
        grads = [param.diff.astype(np.float64) for param in params]
        solver.step(1)
        for i, grad in enumerate(grads):
            history[i] = ORACLE_MOMENTUM * history[i] + ORACLE_LR * (grad + ORACLE_DECAY * expected[i])
            expected[i] = expected[i] - history[i]
    return max(
        float(np.abs(param.data - want).max() / np.abs(want - first).max())
        for param, want, first in zip(params, expected, start)
    )


def cards():
    """[(index, 'name, sm_XX')] of every card nvidia-smi lists."""
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,name,compute_cap", "--format=csv,noheader"], capture_output=True, text=True
    ).stdout
    rows = [[field.strip() for field in line.split(",")] for line in listing.splitlines() if line.strip()]
    return [(row[0], f"{row[1]}, sm_{row[2].replace('.', '')}") for row in rows if len(row) == 3]


def per_card():
    """(lines, all passed): on each card, Caffe's own tests and the SGD oracle, and which of them ran.
    The oracle runs in a process of its own per card (pycaffe's Caffe context is made for one device)."""
    lines, ok = [], True
    for index, name in cards():
        tests, passed = caffe_gpu_tests(index)
        done = subprocess.run(
            [sys.executable, "-m", "linfool_dev.gpu_check", "--sgd-oracle", "--gpu", index],
            capture_output=True,
            text=True,
        )
        try:
            diff = float(done.stdout.strip().splitlines()[-1])
            oracle = (
                f"SGD oracle (the fused update's kernel): max relative diff {diff:.1e} "
                f"({'<' if diff < ORACLE_TOLERANCE else 'NOT <'} {ORACLE_TOLERANCE:g})"
            )
            ok &= diff < ORACLE_TOLERANCE
        except (IndexError, ValueError):
            oracle, ok = f"SGD oracle FAILED to run: {(done.stderr.strip().splitlines() or ['no output'])[-1]}", False
        ok &= passed is not False
        lines.append(f"card {index} ({name}): {tests}; {oracle}")
    return lines, ok


def check(gpu="0", iters=500):
    """Run every check; returns (report lines, all passed)."""
    lines, ok = [], True
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    lines += [
        blas.describe(),
        f"GPU: {smi}",
        f"Caffe: {caffe_env.caffe_tree()}: {caffe_build()}",
        "caffe device_query:",
        *(f"  {line}" for line in caffe_env.device_query(gpu).splitlines()),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        net = write_data(work)
        for name, device, n in (("GPU", gpu, 200), ("CPU", None, 10)):
            times = layer_times(caffe(["time", f"--model={net}", f"--iterations={n}"], device))
            lines.append(
                f"caffe time, blog shape, {name} ({n} iterations), ms: "
                + ", ".join(f"{k} {v:.2f}" for k, v in times.items())
            )
        logs = {name: train_log(work, net, iters, device) for name, device in (("GPU", gpu), ("CPU", None))}
        exact = data_layer_exact(work, gpu)
        devices, sync_diff = several_gpus(work, net, gpu)
    losses = {name: dict(curves.parse_log(log)["train"]) for name, log in logs.items()}
    worst = max(
        (abs(losses["GPU"][i] - loss) / abs(loss) for i, loss in losses["CPU"].items() if i in losses["GPU"]),
        default=float("inf"),
    )
    same = losses["GPU"].keys() == losses["CPU"].keys() and len(losses["CPU"]) > 1 and worst < LOSS_TOLERANCE
    ok &= same
    digits = sum(losses["GPU"][i] == loss for i, loss in losses["CPU"].items())
    lines.append(
        f"caffe train, {iters} iterations: train loss GPU vs CPU {'agree' if same else 'DIFFER'} at "
        f"{len(losses['CPU'])} logged iterations (max relative diff {worst:.1e}, tolerance {LOSS_TOLERANCE:g}; "
        f"{digits} identical to all printed digits; first {losses['GPU'].get(0)} / {losses['CPU'].get(0)}, "
        f"last {losses['GPU'].get(iters)} / {losses['CPU'].get(iters)})"
    )
    rate_gpu, rate_cpu = images_per_second(logs["GPU"]), images_per_second(logs["CPU"])
    lines.append(f"caffe train images/s: GPU {rate_gpu:,.0f}, CPU {rate_cpu:,.0f} ({rate_gpu / rate_cpu:.1f}x)")
    ok &= exact
    lines.append(
        f"Data layer in GPU mode, 8 batches of 256 (two rotations of its buffers): "
        f"{'exactly' if exact else 'NOT'} the records' pixels minus the mean image (numpy)"
    )
    if devices is None:
        lines.append("several GPUs: not checked (one GPU visible)")
    else:
        ok &= sync_diff < SYNC_TOLERANCE
        lines.append(
            f"several GPUs, caffe train --gpu={devices} (P2PSync, 2 x 256) vs --gpu={gpu} at batch 512, "
            f"{SYNC_ITERS} iterations: weight updates {'agree' if sync_diff < SYNC_TOLERANCE else 'DIFFER'} "
            f"(max abs diff {sync_diff:.1e} of the largest update, tolerance {SYNC_TOLERANCE:g})"
        )
    diff, py_gpu, py_cpu = pycaffe_compare(gpu)
    forward = bench_job.forward_costs(gpu)
    bench_job.write_card(smi.split(",")[0], rate_gpu, forward)
    lines.append(
        f"pycaffe on the GPU for make bench's ImageNet table: {1 / forward['forward_s']:,.0f} images/s at batch 1024, "
        f"{forward['call_s'] * 1e3:.2f} ms a call beyond its images (written to {bench_job.CARD})"
    )
    ok &= diff < TOLERANCE
    lines.append(
        f"pycaffe softmax GPU vs CPU: max abs diff {diff:.2e} ({'< ' if diff < TOLERANCE else 'NOT < '}"
        f"{TOLERANCE:g}); forwards images/s: GPU {py_gpu:,.0f}, CPU {py_cpu:,.0f} ({py_gpu / py_cpu:.1f}x)"
    )
    card_lines, cards_ok = per_card()
    return lines + card_lines, ok and cards_ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", help="GPU number (default: GPU=, i.e. $LINFOOL_GPU; auto -> 0)")
    parser.add_argument("--iters", type=int, default=500, help="training iterations compared")
    parser.add_argument("--sgd-oracle", action="store_true", help="only the SGD oracle on --gpu (cpu: the CPU)")
    args = parser.parse_args(argv)
    args.gpu = args.gpu or (caffe_env.requested() if caffe_env.requested() not in ("auto", "all") else "0")
    try:
        if args.sgd_oracle:
            with tempfile.TemporaryDirectory() as tmp:
                print(sgd_oracle(Path(tmp), None if args.gpu == "cpu" else args.gpu))
            return 0
        if caffe_env.device(args.gpu) is None:
            raise caffe_env.DeviceError("no GPU to check")
        lines, ok = check(args.gpu, args.iters)
    except (caffe_env.DeviceError, caffe_env.CaffeNotFound, RuntimeError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    paths.RUNS.mkdir(parents=True, exist_ok=True)
    (paths.RUNS / "gpu_check.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{'All checks passed' if ok else 'A CHECK FAILED'}; written to {paths.RUNS / 'gpu_check.txt'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
