"""Shared fixtures: pycaffe, and tiny data and runs made on the fly."""
import os
import subprocess
import sys

import pytest

from linfool import caffe_env


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
    from linfool import data, synthetic
    root = tmp_path_factory.mktemp("data")
    source = synthetic.generate(root / "tiny_jpeg", train_per_class=8, val_per_class=2, progress=False)
    data.build_dataset(source, root / "tiny", progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_runs(tiny_data, tmp_path_factory):
    """Two short real Caffe runs on the tiny set (weak and strong weight decay)."""
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "LINFOOL_DATA": str(tiny_data), "LINFOOL_RUNS": str(runs)}
    for name, wd in (("low", "0.0005"), ("high", "10000")):
        subprocess.run([sys.executable, "-m", "linfool.train", "--data", "tiny", "--run", name, "--set", "max_iter=60",
                        "--set", "snapshot=60", "--set", "test_iter=1", "--set", f"weight_decay={wd}"],
                       check=True, capture_output=True, env=env)
    return runs, env


@pytest.fixture(scope="session")
def tiny_report(tiny_runs):
    """`python -m linfool.figures` then `linfool.report` on the tiny runs (low, with high as its strong
    companion), both must succeed; returns the path of low's report.html."""
    runs, env = tiny_runs
    for module in ("figures", "report"):
        done = subprocess.run([sys.executable, "-m", f"linfool.{module}", "--run", "low", "--low", "low", "--high", "high"],
                              capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    return runs / "low" / "report.html"
