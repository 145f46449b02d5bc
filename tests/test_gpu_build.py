"""The CUDA build of Caffe (`make test-gpu-build`; no GPU needed): it links the CUDA libraries it
was built against, says cleanly that there is no GPU, and trains on the CPU exactly as the CPU build."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from linfool import caffe_env

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
    linked = subprocess.run(["ldd", str(cuda_tree / "build" / "tools" / "caffe")], capture_output=True, text=True).stdout
    for lib in ("libcudart.so", "libcublas.so", "libcurand.so", "libcaffe.so"):
        line = next((row for row in linked.splitlines() if lib in row), "")
        assert line and "not found" not in line, f"{lib}: {line or 'not linked'}"
    assert "sm80 sm90 ptx90" in (cuda_tree / "BUILD_INFO").read_text()


def test_device_query_without_a_gpu_fails_with_one_line(cuda_tree):
    done = subprocess.run([sys.executable, "-m", "linfool.caffe_env", "--device-query"], capture_output=True,
                          text=True, env=_env(cuda_tree))
    if caffe_env.gpu_visible():
        assert done.returncode == 0 and "Name:" in done.stdout
    else:
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("ERROR: no usable GPU:"), done.stderr


def _train_losses(tree, tmp_path, write_solver):
    solver = write_solver(tmp_path)
    env = {**caffe_env.tool_env(), "CAFFE_ROOT": str(tree)}
    done = subprocess.run([str(Path(tree) / "build" / "tools" / "caffe"), "train", f"--solver={solver}"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return re.findall(r"Iteration (\d+).*loss = (\S+)", done.stderr)


def test_cuda_build_trains_on_cpu_like_the_cpu_build(cuda_tree, tiny_data, tmp_path):
    def write_solver(folder):
        data = tiny_data / "tiny"
        net = folder / "net.prototxt"
        net.write_text(f'''
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ mean_file: "{data}/train_lmdb/mean.binaryproto" }}
  data_param {{ source: "{data}/train_lmdb" batch_size: 16 backend: LMDB }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param {{ num_output: 18 weight_filler {{ type: "gaussian" std: 0.0001 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}''')
        solver = folder / "solver.prototxt"
        solver.write_text(f'net: "{net}" base_lr: 1e-7 momentum: 0.9 weight_decay: 100 lr_policy: "fixed" '
                          'max_iter: 20 display: 1 random_seed: 1701 solver_mode: CPU snapshot_after_train: false\n')
        return solver
    cpu_tree = caffe_env.caffe_tree()
    gpu_losses = _train_losses(cuda_tree, tmp_path, write_solver)
    cpu_losses = _train_losses(cpu_tree, tmp_path, write_solver)
    assert len(gpu_losses) == 20 and gpu_losses == cpu_losses
