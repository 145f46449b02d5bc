"""`make bench`, part 4: does every stage hold at ImageNet scale? Peak RSS and records/s per stage.

    python -m linfool_dev.bench_scale [--train 200000] [--val 50000]

Writes a 1000-class data set straight into LMDBs (random Datums: fast; --train records, ImageNet's
50,000 val), trains a 2-iteration run on it with `caffe train` (a real snapshot and run.json), then
runs each stage as its own process and reads that process's peak RSS (os.wait4): a full streaming
pass over the train LMDB, `make eval` (every val record + the 10,000-record train sample), one
attack-curve sample, one background round, the figures, one black-box pair, the deeper models (a
2-iteration deep-sweep, then make deep over every val record for each model), a small random forest
and the report with its explore data. Prints each stage's records/s and its projection
to ImageNet's 1,281,167 train / 50,000 val records. Goal: peak RSS < 2 GB, independent of size.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from linfool.core import datasets, datum, records
from linfool.data import sources
from linfool.data.build import write_labels

IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000


def write_dataset(folder, n_train, n_val, classes=1000):
    """The data set published at `folder` (linfool.core.datasets): train_lmdb, val_lmdb, labels.txt of
    random 64x64 Datums with uniform labels. Returns records written per second."""
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (64, 3, 64, 64), dtype=np.uint8)  # 64 pictures reused: writing, not RNG, is timed
    start = time.perf_counter()
    with datasets.building(folder) as build:
        for split, n in (("train", n_train), ("val", n_val)):
            labels = rng.integers(0, classes, n)
            records.write(
                build.dir / f"{split}_lmdb",
                ((f"{i:08d}_{split}".encode(), datum.encode_datum(pool[i % 64], labels[i])) for i in range(n)),
                n,
                num_classes=classes,
            )
        rate = (n_train + n_val) / (time.perf_counter() - start)
        mean = datum.encode_mean(pool.mean(axis=0, dtype=np.float32))
        (build.dir / "train_lmdb" / "mean.binaryproto").write_bytes(mean)
        write_labels(build.dir / "labels.txt", sorted(sources.imagenet_names())[:classes])
        build.publish()
    return rate


def stage(command, env):
    """Run one stage as a child process: (seconds, peak RSS in MB of it and its children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output.decode()[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


SHORT = ("--set", "max_iter=2", "--set", "snapshot=2", "--set", "test_initialization=false")  # 2 iterations


def train_short(env, data, run):
    """A 2-iteration `caffe train` of data set `data` into run `run` (a real snapshot and run.json,
    no test phase), in the LINFOOL_DATA / LINFOOL_RUNS that `env` names."""
    stage(
        [sys.executable, "-m", "linfool", "train", "--data", data, "--run", run, *SHORT, "--set", "test_interval=1000"],
        env,
    )


def bench_scale(work, n_train, n_val):
    data, runs_dir = work / "data", work / "runs"
    env = {**os.environ, "LINFOOL_DATA": str(data), "LINFOOL_RUNS": str(runs_dir)}
    write_rate = write_dataset(data / "scale", n_train, n_val)
    py = [sys.executable, "-m"]
    train_short(env, "scale", "scale")
    deep_sweep = [*py, "linfool", "train", "--deep", "--data", "scale", "--run", "scale", *SHORT]
    rows = [  # (stage, command, records it reads, projected records at ImageNet scale)
        (
            "stream the train LMDB",
            [*py, "linfool", "records", str(data / "scale" / "train_lmdb")],
            n_train,
            IMAGENET_TRAIN,
        ),
        (
            "make eval (all val + 10k train)",
            [*py, "linfool", "eval", "--run", "scale"],
            n_val + 10_000,
            IMAGENET_VAL + 10_000,
        ),
        (
            "attack curves, 60 pairs (30,780 forwards)",
            [*py, "linfool", "attack-curves", "--run", "scale", "--images", "6", "--pairs", "60"],
            6,
            6,
        ),
        (
            "background, 1 round (20 images, 10 iters)",
            [
                *py,
                "linfool",
                "background",
                "--run",
                "scale",
                "--rounds",
                "1",
                "--fool",
                "20",
                "--iters",
                "10",
                "--measure-images",
                "2",
            ],
            3 * (n_val + 10_000),
            3 * (IMAGENET_VAL + 10_000),
        ),
        ("figures (1000 templates, fooling, explore data)", [*py, "linfool", "figures", "--run", "scale"], 6, 6),
        (
            "black-box, 1 pair (12,289 + 1,000 queries)",
            [*py, "linfool", "blackbox", "--run", "scale", "--images", "1", "--queries", "1000"],
            1,
            1,
        ),
        (
            "deep-sweep: 4 deeper runs, 2 iterations each",
            [*deep_sweep, "--set", "test_interval=1000"],
            4 * 2 * 256,
            4 * 2 * 256,
        ),
        (
            "make deep (5 models: all val, 6 pairs, 5 steps)",
            [*py, "linfool", "deep", "--run", "scale", "--images", "3", "--pairs", "6", "--steps", "5"],
            5 * n_val,
            5 * IMAGENET_VAL,
        ),
        (
            "make forest (10 trees, <= 20,000 train, 1 pair)",
            [*py, "linfool", "forest", "--run", "scale", "--trees", "10", "--images", "1", "--queries", "100"],
            20_000 + 2_000,
            20_000 + 2_000,
        ),
        ("report (renders; explore data from figures)", [*py, "linfool", "report", "--run", "scale"], 5, 5),
    ]
    print(
        f"\nImageNet scale: {n_train:,} train + {n_val:,} val records of 1000 classes written directly at "
        f"{write_rate:,.0f} records/s ({(n_train + n_val) * records.record_bytes() / 1e9:.1f} GB of LMDB)"
    )
    print(f"{'stage':<44} {'seconds':>8} {'records/s':>10} {'peak RSS MB':>12} {'projected to ImageNet':>22}")
    for name, command, n, projected in rows:
        seconds, rss = stage(command, env)
        rate = f"{n / seconds:>10,.0f}" if n >= 1000 else f"{'-':>10}"  # a sample: its cost is forwards, not reads
        print(f"{name:<44} {seconds:>8.1f} {rate} {rss:>12.0f} {seconds * projected / n / 60:>18.1f} min", flush=True)
    print("records/s counts records read from LMDB; pycaffe forwards dominate eval and background on the CPU")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200_000, help="train records to write")
    parser.add_argument("--val", type=int, default=IMAGENET_VAL, help="val records to write")
    parser.add_argument("--dir", help="work folder (default: a temporary one; needs ~4 GB)")
    args = parser.parse_args(argv)
    if args.dir:
        bench_scale(Path(args.dir), args.train, args.val)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            bench_scale(Path(tmp), args.train, args.val)
    return 0


if __name__ == "__main__":
    sys.exit(main())
