"""Shared fixtures: pycaffe, and tiny data and runs made on the fly."""

import os
import shutil
import subprocess
import sys

import pytest

from linfool.core import caffe_env, datasets


@pytest.fixture(scope="session")
def caffe():
    """The pycaffe module from the Caffe that `make setup` built (CPU mode)."""
    module = caffe_env.import_caffe()
    module.set_mode_cpu()
    return module


@pytest.fixture
def write_net(tmp_path):
    """A function (name, text) -> str path: writes a prototxt into the test's temp dir."""

    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny embedded-style data set (18 classes x 8 train, x 2 val) built through the real
    pipeline; returns the LINFOOL_DATA folder that holds it as 'tiny'."""
    from linfool.data import build, synthetic

    root = tmp_path_factory.mktemp("data")
    source = synthetic.generate(root / "tiny_jpeg", train_per_class=8, val_per_class=2, progress=False)
    build.build_dataset(source, root / "tiny", progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_runs(tiny_data, tmp_path_factory):
    """Two short real Caffe runs on the tiny set (weak and strong weight decay), with their
    weights.npz: shared by the whole session, so read them only (own_runs gives a copy to write in)."""
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "LINFOOL_DATA": str(tiny_data), "LINFOOL_RUNS": str(runs)}
    for name, wd in (("low", "0.0005"), ("high", "10000")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "linfool",
                "train",
                "--data",
                "tiny",
                "--run",
                name,
                "--set",
                "max_iter=60",
                "--set",
                "snapshot=60",
                "--set",
                "test_iter=1",
                "--set",
                f"weight_decay={wd}",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        subprocess.run(
            [sys.executable, "-m", "linfool", "weights", "--run", name], check=True, capture_output=True, env=env
        )
    return runs, env


def _copy_runs(tiny_runs, folder):
    runs, env = tiny_runs
    shutil.copytree(runs, folder, symlinks=True)
    return folder, {**env, "LINFOOL_RUNS": str(folder)}


@pytest.fixture
def own_runs(tiny_runs, tmp_path):
    """A private copy of the tiny runs (the same data set), for a test that writes results into them."""
    return _copy_runs(tiny_runs, tmp_path / "runs")


@pytest.fixture
def own_set(tiny_data, tmp_path):
    """A private copy of the tiny data set (published the same way) and an empty runs folder."""
    data = tmp_path / "data"
    with datasets.building(data / "tiny") as build:
        for entry in (tiny_data / "tiny").resolve().iterdir():
            if entry.name != "dataset.json":
                (shutil.copytree if entry.is_dir() else shutil.copy)(entry, build.dir / entry.name)
        build.publish()
    return data, tmp_path / "runs"


@pytest.fixture(scope="session")
def tiny_report(tiny_runs, tmp_path_factory):
    """`python -m linfool eval`, `figures` and `report` on a copy of the tiny runs (low, with high as
    its strong companion), each must succeed; returns (runs folder, env, low's report.html)."""
    runs, env = _copy_runs(tiny_runs, tmp_path_factory.mktemp("report") / "runs")
    for module in ("eval", "figures", "report"):
        done = subprocess.run(
            [sys.executable, "-m", "linfool", module, "--run", "low", "--low", "low", "--high", "high"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return runs, env, runs / "low" / "report.html"
