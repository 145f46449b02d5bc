"""make train: the shipped prototxt carry the blog's values; a short real `caffe train` makes a
log, snapshots and curves; resume equals an uninterrupted run; bad configs fail in one line."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

from linfool.core import datasets, datum, paths, records

TRAIN = [sys.executable, "-m", "linfool", "train"]
# Tiny set: 144 train images, batch 256: every 9 iterations end on an epoch boundary.
SHORT = [
    "--set",
    "max_iter=18",
    "--set",
    "snapshot=9",
    "--set",
    "test_interval=1000",
    "--set",
    "test_iter=1",
    "--set",
    "display=1",
]


def _env(data_root, runs):
    return {**os.environ, "LINFOOL_DATA": str(data_root), "LINFOOL_RUNS": str(runs)}


def _train(data_root, runs, *args, data="tiny"):
    return subprocess.run(TRAIN + ["--data", data, *args], capture_output=True, text=True, env=_env(data_root, runs))


def test_prototxt_files_carry_the_blogs_values(caffe):
    pb2 = caffe.proto.caffe_pb2
    solver = text_format.Parse((paths.PROTOTXT / "solver.prototxt").read_text(), pb2.SolverParameter())
    assert solver.base_lr == pytest.approx(1e-7) and solver.weight_decay == 100
    net = text_format.Parse((paths.PROTOTXT / "train_val.prototxt").read_text(), pb2.NetParameter())
    fc = next(layer for layer in net.layer if layer.type == "InnerProduct")
    assert fc.inner_product_param.num_output == 1000
    assert fc.inner_product_param.weight_filler.type == "gaussian"
    assert fc.inner_product_param.weight_filler.std == pytest.approx(1e-4)
    deploy = caffe.Net(str(paths.PROTOTXT / "deploy.prototxt"), caffe.TEST)
    assert deploy.params["fc"][0].data.shape == (1000, 12288)
    for overlay, wd in (("solver_reg_low.prototxt", 0.0005), ("solver_reg_high.prototxt", 10000)):
        parsed = text_format.Parse((paths.PROTOTXT / overlay).read_text(), pb2.SolverParameter())
        assert parsed.weight_decay == pytest.approx(wd)


def test_short_run_makes_log_snapshots_and_curves(tiny_data, tmp_path):
    run = _train(tiny_data, tmp_path, "--run", "short", *SHORT)
    assert run.returncode == 0, run.stderr[-2000:]
    run_dir = tmp_path / "short"
    for name in (
        "solver.prototxt",
        "train_val.prototxt",
        "deploy.prototxt",
        "train.log",
        "run.json",
        "snap_iter_9.caffemodel",
        "snap_iter_18.caffemodel",
        "snap_iter_18.solverstate",
    ):
        assert (run_dir / name).is_file(), name
    log = (run_dir / "train.log").read_text()
    first = float(log.split("Iteration 0, loss = ")[1].split()[0])
    assert first == pytest.approx(math.log(18), rel=0.10)  # -ln(1/K): 18 classes here
    curves = subprocess.run(
        [sys.executable, "-m", "linfool", "curves", "--run", "short"],
        capture_output=True,
        text=True,
        env=_env(tiny_data, tmp_path),
    )
    assert curves.returncode == 0 and (run_dir / "curves.png").stat().st_size > 10_000


def test_resume_from_an_epoch_boundary_equals_the_uninterrupted_run(caffe, tiny_data, tmp_path):
    assert _train(tiny_data, tmp_path, "--run", "whole", *SHORT).returncode == 0
    first = _train(tiny_data, tmp_path, "--run", "split", *SHORT, "--set", "max_iter=9")
    assert first.returncode == 0
    resumed = _train(tiny_data, tmp_path, "--run", "split", *SHORT, "--resume")
    assert resumed.returncode == 0 and "Resuming from snap_iter_9.solverstate" in resumed.stdout
    nets = [
        caffe.Net(
            str(tmp_path / name / "deploy.prototxt"), str(tmp_path / name / "snap_iter_18.caffemodel"), caffe.TEST
        )
        for name in ("whole", "split")
    ]
    np.testing.assert_array_equal(nets[0].params["fc"][0].data, nets[1].params["fc"][0].data)
    assert np.abs(nets[0].params["fc"][0].data).max() > 0


def _broken_set(root, name, train_records):
    """A data set published like make data's (linfool.core.datasets), the tiny set's val LMDB and labels,
    whose train LMDB holds `train_records` [(image, label)]; None: a folder made by hand instead."""
    src = root / "tiny"
    if train_records is None:
        (root / name / "train_lmdb").mkdir(parents=True)
        (root / name / "labels.txt").write_text((src / "labels.txt").read_text())
        return
    with datasets.building(root / name) as build:
        shutil.copytree(src / "val_lmdb", build.dir / "val_lmdb")
        shutil.copy(src / "labels.txt", build.dir / "labels.txt")
        records.write(
            build.dir / "train_lmdb",
            ((f"{i:08d}".encode(), datum.encode_datum(image, label)) for i, (image, label) in enumerate(train_records)),
            len(train_records),
            shape=train_records[0][0].shape if train_records else (3, 64, 64),
        )
        shutil.copy(src / "train_lmdb" / "mean.binaryproto", build.dir / "train_lmdb" / "mean.binaryproto")
        build.publish()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "no data set 'nowhere'"),
        ("empty", "is empty"),
        ("shape", "(3, 32, 32) records"),
        ("label", "labels up to 40"),
        ("no_lmdb", "is not a whole data set"),
        ("gpu", "built CPU-only"),
        ("bad_key", "not a SolverParameter key"),
    ],
)
def test_bad_configs_fail_in_one_line_before_caffe(tiny_data, tmp_path, case, expected):
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "tiny").symlink_to(tiny_data / "tiny")  # a link to a published set: the same set
    image = np.zeros((3, 64, 64), np.uint8)
    builders = {"empty": [], "shape": [(np.zeros((3, 32, 32), np.uint8), 0)], "label": [(image, 40)], "no_lmdb": None}
    args = {"missing": ["--data", "nowhere"], "gpu": ["--gpu", "0"], "bad_key": ["--set", "learning_rate=1"]}
    if case in builders:
        _broken_set(data_root, case, builders[case])
        extra = ["--data", case]
    else:
        extra = args[case]
    run = subprocess.run(
        TRAIN + ["--data", "tiny", "--run", "bad", *SHORT, *extra],
        capture_output=True,
        text=True,
        env=_env(data_root, tmp_path / "runs"),
    )
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR:") and expected in errors[0], run.stderr
    assert not (tmp_path / "runs" / "bad" / "train.log").exists()


def test_ctrl_c_makes_caffe_snapshot_and_stop(tiny_data, tmp_path):
    """Ctrl-C reaches the whole process group; the wrapper lets Caffe handle it (sigint_effect=stop: a
    snapshot), then exits 130 saying how to continue."""
    # snapshot only at the end (or the stop): on a loaded machine Caffe runs many iterations past the
    # "Iteration 5" line before the signal lands, and periodic snapshots would blur what is checked
    proc = subprocess.Popen(
        TRAIN
        + ["--data", "tiny", "--run", "interrupted", *SHORT, "--set", "max_iter=100000", "--set", "snapshot=100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tiny_data, tmp_path),
        start_new_session=True,
    )
    for line in proc.stdout:
        if line.startswith("Iteration 5,"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130  # non-zero: `make train && make eval` stops here
    assert "stopped at iteration" in err and "RESUME=1` continues" in err
    snapshots = list((tmp_path / "interrupted").glob("snap_iter_*.caffemodel"))
    assert len(snapshots) == 1 and int(snapshots[0].stem.rsplit("_", 1)[1]) < 100000
    assert "Optimization stopped early" in (tmp_path / "interrupted" / "train.log").read_text()


SHORT9 = ["--set", "max_iter=9", "--set", "snapshot=9", "--set", "test_interval=1000", "--set", "test_iter=1"]


def _train_in(env, *args):
    return subprocess.run([sys.executable, "-m", "linfool", "train", *args], capture_output=True, text=True, env=env)


def test_resume_keeps_the_recorded_solver_and_logs_changes(tiny_data, tmp_path):
    env = {**os.environ, "LINFOOL_DATA": str(tiny_data), "LINFOOL_RUNS": str(tmp_path)}
    first = _train_in(env, "--data", "tiny", "--run", "weak", "--overlay", "prototxt/solver_reg_low.prototxt", *SHORT9)
    assert first.returncode == 0, first.stderr[-2000:]
    plain = _train_in(env, "--run", "weak", "--resume")  # what `make train RUN=weak RESUME=1` runs
    assert plain.returncode == 2 and "a resume would run no iteration" in plain.stderr, plain.stderr[-2000:]
    assert "weight_decay: 0.0005" in (tmp_path / "weak" / "solver.prototxt").read_text()
    changed = _train_in(env, "--run", "weak", "--resume", "--set", "max_iter=18")  # RESUME=1 SET=max_iter=18
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert (tmp_path / "weak" / "snap_iter_18.caffemodel").is_file()
    info = json.loads((tmp_path / "weak" / "run.json").read_text())
    assert info["overlays"] == ["prototxt/solver_reg_low.prototxt"] and info["history"][-1]["changes"] == [
        "set max_iter=18"
    ]
    assert "weight_decay: 0.0005" in (tmp_path / "weak" / "solver.prototxt").read_text()
    assert "resuming with solver changes: set max_iter=18" in (tmp_path / "weak" / "train.log").read_text()
    other = _train_in(env, "--run", "weak", "--resume", "--data", "elsewhere")
    assert other.returncode == 2 and "keeps its data set" in other.stderr
