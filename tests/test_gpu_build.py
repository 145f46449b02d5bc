"""The CUDA build of Caffe (`make test-gpu-build`; no GPU needed): it links the CUDA libraries it
was built against, says cleanly that there is no GPU, and computes on the CPU exactly as the CPU build."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linfool.core import caffe_env

pytestmark = pytest.mark.gpu_build


@pytest.fixture(scope="module")
def cuda_tree():
    tree = os.environ.get("LINFOOL_CUDA_TREE")
    if not tree:
        pytest.fail("LINFOOL_CUDA_TREE is not set; run these tests with `make test-gpu-build`")
    return Path(tree)


def _env(tree):
    return {**os.environ, "CAFFE_ROOT": str(tree), "PYTHONPATH": str(tree / "python")}


def test_cuda_build_links_cudart_cublas_curand(cuda_tree):
    linked = subprocess.run(
        ["ldd", str(cuda_tree / "build" / "tools" / "caffe")], capture_output=True, text=True
    ).stdout
    for lib in ("libcudart.so", "libcublas.so", "libcurand.so", "libcaffe.so"):
        line = next((row for row in linked.splitlines() if lib in row), "")
        assert line and "not found" not in line, f"{lib}: {line or 'not linked'}"
    info = (cuda_tree / "BUILD_INFO").read_text()
    assert re.search(r"arch:[0-9]+(,[0-9]+|,ptx[0-9]+)*", info)  # CUDA_ARCH, in the key
    release = re.search(r"options cuda(\d+)\.\d+ ", info).group(1)  # the toolkit, in the key too
    for lib in ("libcudart.so", "libcublas.so"):  # of that release (cuRAND keeps soname 10 in 11.8 and 13)
        assert re.search(rf"{lib}\.(\d+)", linked).group(1) == release, (lib, release)


def test_device_query_without_a_gpu_fails_with_one_line(cuda_tree):
    done = subprocess.run(
        [sys.executable, "-m", "linfool", "caffe", "--device-query"],
        capture_output=True,
        text=True,
        env=_env(cuda_tree),
    )
    if caffe_env.gpu_visible():
        assert done.returncode == 0 and "Name:" in done.stdout
    else:
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("ERROR: no usable GPU:"), done.stderr


FORWARD = """
import sys
import numpy as np
import caffe
caffe.set_mode_cpu()
caffe.set_random_seed(1701)
net = caffe.Net(sys.argv[1], caffe.TEST)
net.blobs["data"].data[...] = np.random.default_rng(0).uniform(0, 255, (4, 3, 64, 64))
np.savez(sys.argv[2], W=net.params["fc"][0].data, prob=net.forward()["prob"], module=caffe.__file__)
"""


def test_cuda_build_computes_on_the_cpu_exactly_as_the_cpu_build(cuda_tree, tmp_path):
    """Without a driver, the CUDA build's pycaffe still runs CPU mode: same seeded gaussian filler,
    same forward, bit for bit. (Its Data layer cannot: Caffe's prefetch thread calls cudaGetDevice
    even in CPU mode, so training with a CUDA build needs a GPU; linfool.model.train says so.)"""
    net = tmp_path / "net.prototxt"
    net.write_text("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 64 dim: 64 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 18 weight_filler { type: "gaussian" std: 0.001 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }""")
    results = {}
    for name, tree in (("cuda", cuda_tree), ("cpu", caffe_env.caffe_tree())):
        done = subprocess.run(
            [sys.executable, "-c", FORWARD, str(net), str(tmp_path / f"{name}.npz")],
            capture_output=True,
            text=True,
            env=_env(tree),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        results[name] = np.load(tmp_path / f"{name}.npz")
    assert str(results["cuda"]["module"]).startswith(str(cuda_tree))
    assert not str(results["cpu"]["module"]).startswith(str(cuda_tree))
    assert np.array_equal(results["cuda"]["W"], results["cpu"]["W"])
    assert np.array_equal(results["cuda"]["prob"], results["cpu"]["prob"])


def test_training_with_a_cuda_build_and_no_gpu_says_so_in_one_line(cuda_tree, tiny_data, tmp_path):
    if caffe_env.gpu_visible():
        pytest.skip("a GPU is visible here")
    env = {**_env(cuda_tree), "LINFOOL_DATA": str(tiny_data), "LINFOOL_RUNS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "linfool", "train", "--data", "tiny", "--run", "x", "--gpu", "cpu"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "CUDA build and no GPU is visible" in done.stderr
