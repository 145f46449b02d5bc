"""linfool_dev.gpu_check on a machine without a GPU, whichever Caffe is built here (CPU-only, or the
CUDA build of `make setup GPU=1` on a box whose GPU is not visible): its one-line refusal, its
measurements, and the several-GPU comparison that would see a wrong record split."""

import re

import pytest


@pytest.fixture(scope="module")
def cuda_build():
    """Whether this Caffe is a CUDA build (its BUILD_INFO), read once."""
    from linfool_dev import gpu_check

    return gpu_check.caffe_build().startswith("options cuda")


def test_gpu_check_says_in_one_line_that_there_is_no_gpu(cuda_build):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "linfool_dev.gpu_check"], capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    # a CUDA build on a box without a visible GPU: the device line (caffe_env.device) names the GPU asked for
    assert errors[0].startswith("ERROR: ") and ("GPU" in errors[0] if cuda_build else "built CPU-only" in errors[0])


def test_gpu_check_measurements_on_the_cpu_side(tmp_path, cuda_build):
    """The parts of make gpu-check that run on any machine: data, caffe time's per-layer rows, the
    training log's losses and images/s (on a GPU box the same code runs with --gpu)."""
    from linfool.model import curves
    from linfool_dev import gpu_check

    net = gpu_check.write_data(tmp_path)
    times = gpu_check.layer_times(gpu_check.caffe(["time", f"--model={net}", "--iterations=2"]))
    assert {"data forward", "fc forward", "fc backward", "loss forward"} <= set(times)
    assert times["Average Forward-Backward"] > 0
    log = gpu_check.train_log(tmp_path, net, 100, None)
    losses = dict(curves.parse_log(log)["train"])
    assert sorted(losses) == [0, 50, 100] and abs(losses[0] - 6.9) < 0.7  # ~ln(1000) at the blog's init
    assert gpu_check.images_per_second(log) > 0
    assert re.match(
        r"options (cpu|cuda[\d.]+ \S+ arch:\S+) py[\d.]+ numpy[\d.]+ blas:\S+ patches:[0-9a-f]{12}",
        gpu_check.caffe_build(),
    )
    line, passed = gpu_check.caffe_gpu_tests("0")
    if not cuda_build:  # a CPU build keeps no GPU test binaries: said so
        assert passed is None and line.startswith("Caffe's own tests: not run") and "make test-gpu-build" in line
    else:  # a CUDA build's kept binaries cannot reach a device here: the line says what ran
        assert line.startswith("Caffe's own tests")


def test_several_gpu_check_would_see_a_wrong_record_split(tmp_path):
    """make gpu-check's several-GPU comparison, on the CPU: the weights read back from a snapshot are
    reproducible, and a run that saw half the records (what P2PSync would average if both solvers got
    the same records) lands far outside SYNC_TOLERANCE of the batch-512 run."""
    import numpy as np

    from linfool_dev import gpu_check

    net = gpu_check.write_data(tmp_path)
    init = gpu_check.trained_fc(tmp_path, net, 0, None, "init")
    full = gpu_check.trained_fc(tmp_path, net, 3, None, "full", batch=512)
    again = gpu_check.trained_fc(tmp_path, net, 3, None, "again", batch=512)
    half = gpu_check.trained_fc(tmp_path, net, 3, None, "half")
    assert full.shape == (1000, 12288) and np.array_equal(full, again) and not np.array_equal(full, init)
    assert gpu_check.change_diff(again, full, init) == 0
    assert gpu_check.change_diff(half, full, init) > 100 * gpu_check.SYNC_TOLERANCE
    assert gpu_check.sync_devices("0", 1) is None and gpu_check.sync_devices("1", 2) == "1,0"


def test_the_sgd_oracle_runs_on_the_cpu_and_each_card_gets_its_line(tmp_path, monkeypatch, cuda_build):
    """make gpu-check's SGD oracle (numpy's documented update against pycaffe's solver steps) holds on
    the CPU loop of the fused update; with two cards listed by a stub nvidia-smi each gets a line with
    its name and compute capability saying what ran there (here: nothing could, no device)."""
    from linfool_dev import gpu_check

    assert gpu_check.sgd_oracle(tmp_path, None) < gpu_check.ORACLE_TOLERANCE
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(
        "#!/bin/sh\nprintf '%s\\n' '0, Tesla V100-SXM2-16GB, 7.0' '1, NVIDIA H100 80GB HBM3, 9.0'\n"
    )
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    lines, ok = gpu_check.per_card()
    assert [line.split(":")[0] for line in lines] == [
        "card 0 (Tesla V100-SXM2-16GB, sm_70)",
        "card 1 (NVIDIA H100 80GB HBM3, sm_90)",
    ]
    assert not ok and all("SGD oracle FAILED to run: ERROR: " in line for line in lines)
    if not cuda_build:
        assert all("Caffe's own tests: not run" in line for line in lines)
