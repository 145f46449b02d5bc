"""`make bench`: speed tables with ratios measured in the same run (never timed tests).

    python -m linfool_dev.bench [--images 1000] [--iters 40] [--scale-train 200000] [--parts builder,train,scale,gpu,job]

1. LMDB builder vs the built convert_imageset on the same list of ImageNet-like JPEGs.
2. Where one training step of the blog's full-size net (12288 -> 1000) goes: forward, backward and the
   solver update (pycaffe), against the GEMM roofline (the two matrix products of a step, forward
   X.W^T and backward dTop^T.X, on the same OpenBLAS that Caffe links) and the update's memory floor.
3. The real `caffe train` binary vs the roofline at batch 256 (shipped), one thread, 512, 1024,
   each row with its CPU and BLAS core, and what the shipped batch's gap is made of.
4. ImageNet scale (linfool_dev.bench_scale): peak RSS and records/s of each stage on a 200,000-record
   train / 50,000-record val LMDB of 1000 classes, projected to ImageNet.
5. With a CUDA build and a visible GPU: `caffe train` and pycaffe images/s on the GPU against the
   CPU in the same run (linfool_dev.gpu_check).
6. The README's ImageNet recipe as one per-stage table, here and on a GPU box (linfool_dev.bench_job),
   from the unit costs measured above.
"""

import argparse
import ctypes
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from google.protobuf import text_format

from linfool.core import blas, caffe_env, datum, paths, prototxt, records
from linfool.data import images, lmdb_builder, synthetic
from linfool.model import adv_train
from linfool_dev import bench_job, bench_scale, gpu_check

IMAGENET_TRAIN = 1_281_167
INPUTS, CLASSES = 3 * 64 * 64, 1000  # the blog's InnerProduct layer


def _jpegs(folder, n):
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        w, h = synthetic.SOURCE_SIZES[i % len(synthetic.SOURCE_SIZES)]
        cv2.imwrite(str(folder / f"{i}.JPEG"), synthetic.render(rng, synthetic.CLASSES[i % 18], w, h))
        names.append(f"{i}.JPEG {i % 18}\n")
    (folder / "list.txt").write_text("".join(names))


def _timed(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def builder_thread_bound(src, work):
    """What bounds the threaded builder on many cores, measured on one thread: per image, OpenCV's
    decode + resize (which releases the GIL and so runs on every core at once), and the rest, which
    holds the GIL at most that long: the decoding thread's Python (sniffing the file, channel-major
    copy, the Datum) and the single writer's record (LMDB put, sha256, the mean; py-lmdb and hashlib
    release the GIL for part of it). Returns (decode us, rest us)."""
    items = lmdb_builder.read_list(src / "list.txt")
    paths_ = [os.path.join(src, path) for path, _ in items]
    cv2.setNumThreads(1)
    start = time.perf_counter()
    decoded = [cv2.resize(cv2.imread(path, cv2.IMREAD_COLOR), (64, 64)) for path in paths_]
    decode = time.perf_counter() - start
    start = time.perf_counter()
    records_ = []
    for path, image, (_, label) in zip(paths_, decoded, items):
        images.sniff(path)
        chw = np.ascontiguousarray(image.transpose(2, 0, 1))
        records_.append((datum.encode_datum(chw, label), chw))
    python = time.perf_counter() - start
    writer = lmdb_builder._MeanWriter(work / "bound_lmdb", len(items), 64)
    start = time.perf_counter()
    for k, (record, chw) in enumerate(records_):
        writer.put_image(f"{k:08d}".encode(), record, chw)
    write = time.perf_counter() - start
    writer.close()
    n = len(items)
    return 1e6 * decode / n, 1e6 * (python + write) / n


def bench_builder(n_images, work):
    """Print rows of (tool, seconds, images/s) and whether the outputs are byte-identical; returns the
    builder's images/s with every core."""
    src = work / "jpeg"
    src.mkdir()
    _jpegs(src, n_images)
    convert = [
        str(caffe_env.tool("convert_imageset")),
        "--resize_height=64",
        "--resize_width=64",
        f"{src}/",
        str(src / "list.txt"),
        str(work / "caffe_lmdb"),
    ]
    ours = [sys.executable, "-m", "linfool.data.lmdb_builder", str(src), str(src / "list.txt")]
    t_caffe = _timed(convert, caffe_env.tool_env())
    t_ours = _timed([*ours, str(work / "our_lmdb")])
    t_one = _timed([*ours, str(work / "one_thread_lmdb"), "--workers", "1"])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    identical = list(records.raw(work / "caffe_lmdb")) == list(records.raw(work / "our_lmdb"))
    cores = os.cpu_count()
    print(f"\nLMDB build, {n_images} JPEGs (~500x375) -> 64x64, {cores} cores")
    print(f"{'tool':<38} {'seconds':>8} {'images/s':>9}")
    print(f"{'convert_imageset (Caffe)':<38} {t_caffe:>8.2f} {n_images / t_caffe:>9.0f}")
    print(f"{f'linfool.data.lmdb_builder, {cores} threads':<38} {t_ours:>8.2f} {n_images / t_ours:>9.0f}")
    print(f"{'linfool.data.lmdb_builder, 1 thread':<38} {t_one:>8.2f} {n_images / t_one:>9.0f}")
    print(
        f"ratio (ours / convert_imageset): {t_caffe / t_ours:.2f}x   {cores} threads / 1: {t_one / t_ours:.2f}x   "
        f"byte-identical: {identical}   peak RSS of the largest process: {peak_mb:.0f} MB"
    )
    decode_us, held_us = builder_thread_bound(src, work)
    print(
        f"one thread, per image: decode + resize {decode_us:.0f} us (GIL released), the rest {held_us:.0f} us "
        f"(the decoding thread's Python + the one writer: it holds the GIL at most this long): the GIL lets "
        f"threads reach at least {1e6 / held_us:,.0f} images/s, {(decode_us + held_us) / held_us:.0f}x one thread"
    )
    return n_images / t_ours


def _train_lmdb(path, n):
    rng = np.random.default_rng(0)
    records.write(
        path,
        (
            (
                f"{i:08d}".encode(),
                datum.encode_datum(rng.integers(0, 256, (3, 64, 64), dtype=np.uint8), int(rng.integers(1000))),
            )
            for i in range(n)
        ),
        n,
    )
    (path / "mean.binaryproto").write_bytes(datum.encode_mean(np.full((3, 64, 64), 127.5, np.float32)))


def _ms_per_iter(log, skip=5):
    """Median ms between consecutive 'Iteration N, loss' lines of a glog log (display: 1), after
    `skip` warm-up iterations; the median ignores the shared machine's occasional stalls."""
    stamps = [
        datetime.strptime(m.group(1), "%H:%M:%S.%f")
        for m in re.finditer(r"^I\d{8} (\S+) .*Iteration \d+, loss", log, re.M)
    ][skip:]
    return 1000 * float(np.median([(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]))


def _times_ms(fn, reps):
    """ms of each of `reps` calls of fn, after one warm-up call."""
    return [1000 * seconds for seconds in bench_job.times_s(fn, reps)]


def _best_ms(fn, reps):
    """Fastest call in ms (a roofline is the best the hardware does)."""
    return min(_times_ms(fn, reps))


def _cblas_sgemm():
    """cblas_sgemm of the OpenBLAS that Caffe loads (blas.LIBRARY), not numpy's own."""
    sgemm = ctypes.CDLL(blas.LIBRARY).cblas_sgemm
    ints, ptr, real = [ctypes.c_int] * 6, ctypes.c_void_p, ctypes.c_float
    sgemm.argtypes = [*ints, real, ptr, ctypes.c_int, ptr, ctypes.c_int, real, ptr, ctypes.c_int]
    return sgemm


def gemm_roofline_ms(batch, reps=15):
    """Best ms for the two products of one training step of the 12288 -> 1000 InnerProduct layer,
    called exactly as Caffe calls them: forward top = X.W^T, backward dW += dTop^T.X."""
    return _best_ms(gemm_step(batch), reps)


def gemm_step(batch):
    """A function that runs the two products of one training step on arrays of its own (gemm_roofline_ms)."""
    sgemm, (row_major, no_t, t) = _cblas_sgemm(), (101, 111, 112)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, INPUTS)).astype(np.float32)
    w = rng.normal(size=(CLASSES, INPUTS)).astype(np.float32)
    top = np.zeros((batch, CLASSES), np.float32)
    dw = np.zeros_like(w)

    def step():
        sgemm(
            row_major,
            no_t,
            t,
            batch,
            CLASSES,
            INPUTS,
            1.0,
            x.ctypes.data,
            INPUTS,
            w.ctypes.data,
            INPUTS,
            0.0,
            top.ctypes.data,
            CLASSES,
        )
        sgemm(
            row_major,
            t,
            no_t,
            CLASSES,
            INPUTS,
            batch,
            1.0,
            top.ctypes.data,
            CLASSES,
            x.ctypes.data,
            INPUTS,
            1.0,
            dw.ctypes.data,
            INPUTS,
        )

    return step


UPDATE_PASSES = 12  # Caffe's CPU SGD step streams the 12.3M-float weight/diff/history arrays 12 times:
# clear diff 1, L2 decay axpy 3, momentum axpby 3, copy history->diff 2, update axpy 3


def copy_bandwidth_gbs(reps=15):
    """Best memory bandwidth of one large copy on this machine (read + write bytes per second)."""
    a = np.ones(CLASSES * INPUTS, np.float32)
    b = np.empty_like(a)
    return 2 * a.nbytes / _best_ms(lambda: np.copyto(b, a), reps) / 1e6


def _write_net(work, batch, iters=1_000_000):
    """The blog's net reading work/lmdb at TRAIN batch `batch` (protobuf surgery), and its solver."""
    pb2 = caffe_env.import_caffe().proto.caffe_pb2
    net = text_format.Parse((paths.PROTOTXT / "train_val.prototxt").read_text(), pb2.NetParameter())
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.source = str(work / "lmdb")
            layer.transform_param.mean_file = str(work / "lmdb" / "mean.binaryproto")
            if layer.include[0].phase == pb2.TRAIN:
                layer.data_param.batch_size = batch
    solver = work / f"solver_{batch}.prototxt"
    (work / f"net_{batch}.prototxt").write_text(text_format.MessageToString(net))
    solver.write_text(
        f'net: "{work / f"net_{batch}.prototxt"}"\nbase_lr: 1e-7 momentum: 0.9 weight_decay: 100 '
        f'lr_policy: "fixed"\nmax_iter: {iters} display: 1 snapshot_after_train: false solver_mode: CPU '
        f"random_seed: 1\n"
    )
    return solver


def caffe_train_ms(work, batch, iters, threads=None):
    """Median ms per iteration of the real `caffe train` binary on the blog's net."""
    return caffe_train_timed(work, batch, iters, threads)[0]


def caffe_train_timed(work, batch, iters, threads=None):
    """(median ms per iteration, seconds of the process beyond its iterations: start-up, net and LMDB
    set-up, exit) of the real `caffe train` binary on the blog's net."""
    env = caffe_env.tool_env()
    if threads:  # OpenBLAS's OpenMP build (blas.LIBRARY) and Caffe's update follow OMP_NUM_THREADS
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    start = time.perf_counter()
    run = subprocess.run(
        [str(caffe_env.tool("caffe")), "train", f"--solver={_write_net(work, batch, iters)}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    ms = _ms_per_iter(run.stderr)
    return ms, max(time.perf_counter() - start - iters * ms / 1000, 0.0)


def adv_train_ms(work, iters):
    """Median ms per iteration of make adv-train's trainer (linfool.model.adv_train: a data-gradient pass
    of 256 images, then a solver step of 256 clean + 256 adversarial) on the blog's net, EPS 8."""
    solver = _write_net(work, 256, iters)
    net = prototxt.read_net(work / "net_256.prototxt")
    (work / "adv_net.prototxt").write_text(adv_train.net_text(net, {"net": "linear", "eps": 8.0, "alpha": 0.5}))
    adv_solver = work / "adv_solver.prototxt"
    adv_solver.write_text(solver.read_text().replace(str(work / "net_256.prototxt"), str(work / "adv_net.prototxt")))
    run = subprocess.run(
        [*adv_train.trainer(8.0, work / "lmdb", work / "lmdb" / "mean.binaryproto"), f"--solver={adv_solver}"],
        capture_output=True,
        text=True,
        env=caffe_env.tool_env(),
        check=True,
    )
    return _ms_per_iter(run.stderr)


def update_passes():
    """(passes of the weights' size the SGD update streams, what they are) for this build: Caffe's
    stock update streams 12 (decay axpy 3, momentum axpby 3, copy 2, Net::Update 3, clearing 1); linfool's
    tools/caffe_patches/05-fused-sgd.patch fuses them into one pass on all cores that reads w, g, h and
    writes w, h, g (6). A build of another Caffe (CAFFE_ROOT, no BUILD_INFO naming the patches) is stock."""
    if "patches:" in gpu_check.caffe_build():
        return 6, "05-fused-sgd: fused, all cores"
    return UPDATE_PASSES, "decay, momentum, copy, axpy"


def step_parts_ms(work, batch, reps):
    """Median ms of each part of one training step through pycaffe on the same net: {"data": the
    Data layer's forward (the prefetched batch swapped in), "fc": the InnerProduct forward (its GEMM
    and bias), "loss": SoftmaxWithLoss forward, "backward": the whole backward (loss, bias, weight
    GEMM), "update": the solver's update (a whole solver.step(1) minus its own forward and backward)}.
    The parts are timed in turn within each repetition, so that each sees the same state of the data
    layer's prefetch thread (a loop of forwards alone keeps it transforming beside every GEMM), and so
    is "roofline", the two GEMMs alone (gemm_step): the machine's drift in a run moves them together."""
    caffe = caffe_env.import_caffe()
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(str(_write_net(work, batch)))
    net = solver.net
    names = list(net._layer_names)
    data, fc = names.index("data"), names.index("fc")
    solver.step(1)
    gemms = gemm_step(batch)
    times = []
    for _ in range(reps):
        stamps = [time.perf_counter()]
        gemms()
        stamps.append(time.perf_counter())
        for start, end in ((data, data), (fc, fc), (fc + 1, len(names) - 1)):
            net._forward(start, end)
            stamps.append(time.perf_counter())
        net.backward()
        stamps.append(time.perf_counter())
        solver.step(1)
        stamps.append(time.perf_counter())
        times.append(np.diff(stamps))
    roof_ms, data_ms, fc_ms, loss_ms, backward_ms, step_ms = (1000 * float(np.median(column)) for column in zip(*times))
    update_ms = step_ms - data_ms - fc_ms - loss_ms - backward_ms
    return {
        "roofline": roof_ms,
        "data": data_ms,
        "fc": fc_ms,
        "loss": loss_ms,
        "backward": backward_ms,
        "update": update_ms,
    }


def cpu_name():
    """This CPU in a few words, for each table row: /proc/cpuinfo's model name, with AMD's family and
    model (the model name of a cloud EPYC does not say which Zen it is)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    info = dict(line.split(":", 1) for line in text.splitlines()[:30] if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    name = re.sub(r"\s+", " ", info.get("model name", "unknown CPU"))
    name = re.sub(r"\(R\)|\(TM\)| CPU| Processor|\s*@.*", "", name).strip()
    if "AMD" in name:
        name += f" fam {info.get('cpu family')} model {info.get('model')}"
    return name


def bench_train(iters, work):
    """Print where one training step's time goes and how close `caffe train` gets to the GEMM
    roofline, for the shipped batch of 256 and for larger batches, with the CPU and BLAS core of every
    row and what the shipped row's gap to the roofline is made of, and make adv-train's step beside it.
    Returns (ms a step at the shipped batch, seconds `caffe train` spends beyond its steps, make
    adv-train's step over the shipped one)."""
    _train_lmdb(work / "lmdb", 2048)
    parts = step_parts_ms(work, 256, reps=iters // 2)
    print(
        f"\nOne training step of the blog's net (12288 -> 1000, batch 256), CPU, {os.cpu_count()} cores,"
        f" pycaffe, median ms"
    )
    print(f"{'part':<44} {'ms':>7}")
    print(f"{'data layer forward (prefetched batch swapped in)':<44} {parts['data']:>7.1f}")
    print(f"{'fc forward (GEMM X.W^T + bias)':<44} {parts['fc']:>7.1f}")
    print(f"{'softmax loss forward':<44} {parts['loss']:>7.1f}")
    print(f"{'backward (loss, bias, GEMM dTop^T.X)':<44} {parts['backward']:>7.1f}")
    passes, what = update_passes()
    print(f"{f'solver update ({what})':<44} {parts['update']:>7.1f}")
    streamed_gb = passes * CLASSES * INPUTS * 4 / 1e9
    copy_gbs = copy_bandwidth_gbs()
    print(
        f"{f'  = GB/s over its {passes} passes of 49 MB':<44} {streamed_gb / parts['update'] * 1000:>7.1f}"
        f"   (best copy on this machine: {copy_gbs:.1f} GB/s)"
    )
    floor = streamed_gb / copy_gbs * 1000
    print(f"{'the 2 GEMMs alone (same BLAS, same loop)':<44} {parts['roofline']:>7.1f}")
    print(f"{'update floor (its bytes at the best copy rate)':<44} {floor:>7.1f}")

    where = f"{cpu_name()}, OpenBLAS {blas_core()} ({Path(blas.LIBRARY).parent.name or 'system default'})"
    print(f"\ncaffe train vs the GEMM roofline (Caffe's own OpenBLAS via cblas_sgemm), median of {iters} iterations")
    print(f"{'run':<34} {'ms/iter':>8} {'images/s':>9} {'roofline ms':>12} {'of roofline':>12}  CPU, BLAS core")
    rows = [
        ("batch 256 (shipped)", 256, None),
        ("batch 256, OMP_NUM_THREADS=1", 256, 1),
        ("batch 512", 512, None),
        ("batch 1024", 1024, None),
    ]
    for name, batch, threads in rows:
        (ms, overhead), row_roof = caffe_train_timed(work, batch, iters, threads), gemm_roofline_ms(batch)
        print(
            f"{name:<34} {ms:>8.1f} {batch * 1000 / ms:>9.0f} {row_roof:>12.1f} {100 * row_roof / ms:>11.0f} %  {where}"
        )
        if name.endswith("(shipped)"):
            shipped = ms, overhead
    adv_ms = adv_train_ms(work, iters)
    print(
        f"{'make adv-train step (256 + 256 adversarial)':<34} {adv_ms:>8.1f} {256 * 1000 / adv_ms:>9.0f} clean images/s: "
        f"{adv_ms / shipped[0]:.1f}x the shipped step  {where}"
    )
    print_gap(shipped[0], parts, floor)
    print(
        f"projected ImageNet epoch (1,281,167 images) at the shipped batch on this machine: "
        f"{IMAGENET_TRAIN / (256 * 1000 / shipped[0]) / 60:.0f} min"
    )
    return (*shipped, adv_ms / shipped[0])


def blas_core():
    """The OpenBLAS core Caffe's processes run with here (linfool.core.blas; a user's OPENBLAS_CORETYPE wins)."""
    return os.environ.get("OPENBLAS_CORETYPE") or blas.decision()["picked"]


def print_gap(train_ms, parts, floor):
    """What a step's gap to the two GEMMs is made of at the shipped batch, from the pycaffe parts and
    the GEMMs timed in one loop (step_parts_ms): the solver update, the loss and data layers, fc and
    backward beyond their GEMMs (bias, the loss's backward); then `caffe train`'s own step against
    pycaffe's (its threads and prefetch; the runs' spread), and the step's best possible share of the
    GEMMs: the GEMMs plus the update at its memory floor."""
    roof = parts["roofline"]
    pycaffe_ms = sum(ms for what, ms in parts.items() if what != "roofline")
    made_of = [
        ("solver update", parts["update"]),
        ("softmax loss forward", parts["loss"]),
        ("data layer forward", parts["data"]),
        ("fc + backward beyond the 2 GEMMs", parts["fc"] + parts["backward"] - roof),
    ]
    print(
        f"pycaffe step {pycaffe_ms:.1f} ms against its 2 GEMMs {roof:.1f} ms ({100 * roof / pycaffe_ms:.0f} %): the gap of {pycaffe_ms - roof:.1f} ms is"
    )
    for what, ms in made_of:
        print(f"  {what:<42} {ms:>6.1f} ms  {100 * ms / (pycaffe_ms - roof):>4.0f} %")
    print(f"caffe train's step {train_ms:.1f} ms is {train_ms - pycaffe_ms:+.1f} ms from pycaffe's")
    print(
        f"best possible with this update (the GEMMs + its {floor:.1f} ms memory floor): "
        f"{100 * roof / (roof + floor):.0f} % of the GEMMs"
    )


def bench_gpu(work, iters):
    """GPU against CPU in the same run: `caffe train` of the blog's net and pycaffe forwards."""
    net = gpu_check.write_data(work)
    rates = {
        name: gpu_check.images_per_second(gpu_check.train_log(work, net, iters, device))
        for name, device in (("GPU", "0"), ("CPU", None))
    }
    _, py_gpu, py_cpu = gpu_check.pycaffe_compare("0")
    print(f"\nGPU vs CPU, blog's net (12288 -> 1000, batch 256), images/s, {iters} training iterations")
    print(f"{'what':<28} {'GPU':>10} {'CPU':>10} {'ratio':>7}")
    print(f"{'caffe train':<28} {rates['GPU']:>10,.0f} {rates['CPU']:>10,.0f} {rates['GPU'] / rates['CPU']:>6.1f}x")
    print(f"{'pycaffe forward (1024)':<28} {py_gpu:>10,.0f} {py_cpu:>10,.0f} {py_gpu / py_cpu:>6.1f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--scale-train", type=int, default=200_000, help="train records of the scale part")
    parser.add_argument(
        "--parts",
        default="builder,train,scale,gpu,job",
        help="comma-separated: builder, train, scale, gpu (only with a CUDA build and a GPU), job",
    )
    args = parser.parse_args(argv)
    # Caffe's OpenBLAS core for this CPU (linfool.core.blas), in place before any part loads the library:
    # the roofline is measured with the kernel Caffe runs, and said.
    if blas.coretype():
        os.environ["OPENBLAS_CORETYPE"] = blas.coretype()
    print(blas.describe())
    parts = args.parts.split(",")
    if "gpu" in parts and caffe_env.device("auto") is None:
        parts.remove("gpu")
        print("(no GPU rows: this Caffe is CPU-only or no GPU is visible)")
    measured = {}  # the unit costs the job table takes from the parts before it
    with tempfile.TemporaryDirectory() as tmp:
        for name in parts:
            (Path(tmp) / name).mkdir()
        if "builder" in parts:
            measured["jpegs_per_s"] = bench_builder(args.images, Path(tmp) / "builder")
        if "train" in parts:
            measured["train_ms"], measured["start_s"], measured["adv_ratio"] = bench_train(
                args.iters, Path(tmp) / "train"
            )
        if "scale" in parts:
            bench_scale.bench_scale(Path(tmp) / "scale", args.scale_train, bench_scale.IMAGENET_VAL)
        if "gpu" in parts:
            bench_gpu(Path(tmp) / "gpu", args.iters * 10)
        if "job" in parts:
            bench_job.bench_job(Path(tmp) / "job", _job_costs(measured, Path(tmp) / "job", args.images, args.iters))
    return 0


def _job_costs(measured, work, n_images, iters):
    """The builder's and `caffe train`'s measured costs for the job table, measured now (the builder
    part, the shipped batch alone) when their parts did not run."""
    if "jpegs_per_s" not in measured:
        (work / "builder").mkdir()
        measured["jpegs_per_s"] = bench_builder(n_images, work / "builder")
    if "train_ms" not in measured:
        (work / "train").mkdir()
        _train_lmdb(work / "train" / "lmdb", 2048)
        measured["train_ms"], measured["start_s"] = caffe_train_timed(work / "train", 256, iters)
        measured["adv_ratio"] = adv_train_ms(work / "train", iters) / measured["train_ms"]
    return measured


if __name__ == "__main__":
    sys.exit(main())
