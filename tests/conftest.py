"""Shared fixtures: pycaffe, and tiny data and runs made on the fly (through running.stage, as a user runs them)."""

import os
import shutil

import numpy as np
import pytest

from linfool.core import caffe_env, datasets

from running import stage

# make test runs one pytest-xdist worker per core; each worker's Caffe (pycaffe, read when `import caffe`
# loads libgomp, and every stage it starts) then computes on one thread, as two workers' OpenMP and BLAS
# threads on two cores spin against each other (2026-12-04, 2 workers on 2 cores: the suite in 209 s
# against 279 s). Set before any test imports caffe; a user's own OMP_NUM_THREADS stays.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


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
        settings = ["max_iter=60", "snapshot=60", "test_iter=1", f"weight_decay={wd}"]
        stage("train", env, "--data", "tiny", "--run", name, *(word for s in settings for word in ("--set", s)))
        stage("weights", env, "--run", name)
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
    for name in ("eval", "figures", "report"):
        stage(name, env, "--run", "low", "--low", "low", "--high", "high")
    return runs, env, runs / "low" / "report.html"


@pytest.fixture
def linear_net(caffe):
    """A function (folder, W (K, 48), b (K,)) -> probs(images (n, 3, 4, 4)) -> (n, K): a 48-input linear
    softmax in Caffe with those weights, its deploy prototxt written into `folder`."""

    def make(folder, W, b):
        deploy = folder / "deploy.prototxt"
        deploy.write_text(
            f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 dim: 4 dim: 4 }} }} }}\n'
            f'layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param {{ num_output: {len(W)} }} }}\n'
            'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n'
        )
        net = caffe.Net(str(deploy), caffe.TEST)
        net.params["fc"][0].data[...] = W
        net.params["fc"][1].data[...] = b

        def probs(images):
            net.blobs["data"].reshape(*images.shape)
            net.blobs["data"].data[...] = images
            return net.forward()["prob"].copy()

        return probs

    return make


@pytest.fixture
def linear_weights():
    """(W (5, 48) float32, b (5,) float32): a small random linear model for linear_net."""
    rng = np.random.default_rng(3)
    return (0.02 * rng.standard_normal((5, 48))).astype(np.float32), rng.standard_normal(5).astype(np.float32)
