"""`make bench`: speed tables with ratios measured in the same run (never timed tests).

    python -m linfool.bench [--images 1000] [--iters 40]

1. LMDB builder vs the built convert_imageset on the same list of ImageNet-like JPEGs.
2. `caffe train` on the blog's full-size net (12288 -> 1000, batch 256) vs the GEMM-only roofline:
   numpy's OpenBLAS on the two matrix products of a training step (forward X.W^T, backward dY^T.X).
"""
import argparse
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
import lmdb
import numpy as np

from linfool import caffe_env, datum, lmdb_checks, paths, synthetic

IMAGENET_TRAIN = 1_281_167


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


def bench_builder(n_images, work):
    """Rows of (tool, seconds, images/s) and whether the outputs are byte-identical."""
    src = work / "jpeg"
    src.mkdir()
    _jpegs(src, n_images)
    convert = [str(caffe_env.tool("convert_imageset")), "--resize_height=64", "--resize_width=64",
               f"{src}/", str(src / "list.txt"), str(work / "caffe_lmdb")]
    ours = [sys.executable, "-m", "linfool.lmdb_builder", str(src), str(src / "list.txt"), str(work / "our_lmdb")]
    t_caffe = _timed(convert, caffe_env.tool_env())
    t_ours = _timed(ours)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    identical = lmdb_checks.raw_records(work / "caffe_lmdb") == lmdb_checks.raw_records(work / "our_lmdb")
    print(f"\nLMDB build, {n_images} JPEGs (~500x375) -> 64x64, {os.cpu_count()} cores")
    print(f"{'tool':<28} {'seconds':>8} {'images/s':>9}")
    print(f"{'convert_imageset (Caffe)':<28} {t_caffe:>8.2f} {n_images / t_caffe:>9.0f}")
    print(f"{'linfool.lmdb_builder':<28} {t_ours:>8.2f} {n_images / t_ours:>9.0f}")
    print(f"ratio (ours / convert_imageset): {t_caffe / t_ours:.2f}x   byte-identical: {identical}   "
          f"peak RSS of the largest process: {peak_mb:.0f} MB")


def _train_lmdb(path, n):
    rng = np.random.default_rng(0)
    env = lmdb.open(str(path), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i in range(n):
            image = rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)
            txn.put(f"{i:08d}".encode(), datum.encode_datum(image, int(rng.integers(1000))))
    env.close()
    (path / "mean.binaryproto").write_bytes(datum.encode_mean(np.full((3, 64, 64), 127.5, np.float32)))


def _ms_per_iter(log, first=10):
    """Mean ms per iteration between the `first`-th and last 'Iteration N' lines of a glog log."""
    stamps = [(int(m.group(2)), datetime.strptime(m.group(1), "%H:%M:%S.%f"))
              for m in re.finditer(r"^I\d{8} (\S+) .*Iteration (\d+), loss", log, re.M)]
    (i0, t0), (i1, t1) = stamps[first], stamps[-1]
    return (t1 - t0).total_seconds() * 1000 / (i1 - i0)


def bench_train(iters, work):
    batch = 256
    _train_lmdb(work / "lmdb", 4 * batch)
    net = (paths.PROTOTXT / "train_val.prototxt").read_text()
    net = net.replace("data/synthetic/train_lmdb/mean.binaryproto", str(work / "lmdb" / "mean.binaryproto"))
    net = net.replace("data/synthetic/train_lmdb", str(work / "lmdb")).replace("data/synthetic/val_lmdb", str(work / "lmdb"))
    (work / "net.prototxt").write_text(net)
    (work / "solver.prototxt").write_text(
        f'net: "{work / "net.prototxt"}"\nbase_lr: 1e-7 momentum: 0.9 weight_decay: 100 lr_policy: "fixed"\n'
        f'max_iter: {iters} display: 1 snapshot_after_train: false solver_mode: CPU random_seed: 1\n')
    run = subprocess.run([str(caffe_env.tool("caffe")), "train", f"--solver={work / 'solver.prototxt'}"],
                         capture_output=True, text=True, env=caffe_env.tool_env(), check=True)
    caffe_ms = _ms_per_iter(run.stderr)
    x = np.random.default_rng(1).normal(size=(batch, 12288)).astype(np.float32)
    w = np.random.default_rng(2).normal(size=(1000, 12288)).astype(np.float32)
    dy = np.random.default_rng(3).normal(size=(batch, 1000)).astype(np.float32)
    x @ w.T, dy.T @ x                                               # warm up
    start = time.perf_counter()
    for _ in range(iters):
        x @ w.T
        dy.T @ x
    gemm_ms = (time.perf_counter() - start) * 1000 / iters
    print(f"\ncaffe train, blog net 12288 -> 1000, batch {batch}, CPU ({os.cpu_count()} cores)")
    print(f"{'what':<34} {'ms/iter':>8} {'images/s':>9}")
    print(f"{'caffe train (whole step)':<34} {caffe_ms:>8.1f} {batch * 1000 / caffe_ms:>9.0f}")
    print(f"{'GEMM roofline (2 products, numpy)':<34} {gemm_ms:>8.1f} {batch * 1000 / gemm_ms:>9.0f}")
    print(f"caffe / roofline: {100 * gemm_ms / caffe_ms:.0f} %   projected ImageNet epoch on this machine: "
          f"{IMAGENET_TRAIN / (batch * 1000 / caffe_ms) / 60:.0f} min")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "builder").mkdir()
        (Path(tmp) / "train").mkdir()
        bench_builder(args.images, Path(tmp) / "builder")
        bench_train(args.iters, Path(tmp) / "train")
    return 0


if __name__ == "__main__":
    sys.exit(main())
