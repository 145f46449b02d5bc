"""One place decides where Caffe computes (caffe_env.device): the decisions for every kind of build
and machine, and the CPU path that pycaffe takes on this CPU-only build. GPU runs: `make gpu-check`."""
import subprocess

import pytest

from linfool import caffe_env, paths


@pytest.fixture
def machine(monkeypatch):
    """Set (CUDA build?, GPU visible?) for caffe_env.device, with its cache cleared around the test."""
    def set_machine(cuda, visible):
        monkeypatch.setattr(caffe_env, "caffe_has_cuda", lambda: cuda)
        monkeypatch.setattr(caffe_env, "gpus", lambda: 2 if visible else 0)
        caffe_env.device.cache_clear()
    yield set_machine
    caffe_env.device.cache_clear()


def test_device_decisions(machine):
    machine(cuda=True, visible=True)
    assert [caffe_env.device(g) for g in ("auto", "cpu", "1", "0,1", "all")] == ["0", None, "1", "0,1", "all"]
    for bad, says in (("0,0", "names a GPU twice"), ("2", "lists 2 GPU"), ("0,2", "lists 2 GPU"), ("gpu0", "not auto")):
        with pytest.raises(caffe_env.DeviceError, match=says):      # before Caffe aborts on it
            caffe_env.device(bad)
    machine(cuda=True, visible=False)                 # pycaffe deploy nets still run on the CPU
    assert caffe_env.device("auto") is None
    with pytest.raises(caffe_env.DeviceError, match="no GPU is visible"):
        caffe_env.device("0")
    machine(cuda=False, visible=True)
    assert caffe_env.device("auto") is None and caffe_env.device("cpu") is None
    with pytest.raises(caffe_env.DeviceError, match="built CPU-only"):
        caffe_env.device("0")


def test_this_cpu_build_puts_pycaffe_on_the_cpu(monkeypatch):
    caffe_env.device.cache_clear()
    assert not caffe_env.caffe_has_cuda() and caffe_env.device("auto") is None
    monkeypatch.setenv("LINFOOL_GPU", "0")
    with pytest.raises(caffe_env.DeviceError, match="built CPU-only"):
        caffe_env.use_device()
    monkeypatch.setenv("LINFOOL_GPU", "auto")
    assert caffe_env.use_device() is caffe_env.import_caffe()


def test_gpu_check_says_in_one_line_that_there_is_no_gpu():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "linfool.gpu_check"], capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(errors) == 1 and "built CPU-only" in errors[0], done.stderr


def test_gpu_check_measurements_on_the_cpu_side(tmp_path):
    """The parts of make gpu-check that run on any machine: data, caffe time's per-layer rows, the
    training log's losses and images/s (on a GPU box the same code runs with --gpu)."""
    from linfool import curves, gpu_check
    net = gpu_check.write_data(tmp_path)
    times = gpu_check.layer_times(gpu_check.caffe(["time", f"--model={net}", "--iterations=2"]))
    assert {"data forward", "fc forward", "fc backward", "loss forward"} <= set(times)
    assert times["Average Forward-Backward"] > 0
    log = gpu_check.train_log(tmp_path, net, 100, None)
    losses = dict(curves.parse_log(log)["train"])
    assert sorted(losses) == [0, 50, 100] and abs(losses[0] - 6.9) < 0.7      # ~ln(1000) at the blog's init
    assert gpu_check.images_per_second(log) > 0
    assert gpu_check.caffe_build().startswith("options cpu ") and " recipe" in gpu_check.caffe_build()
    line, passed = gpu_check.caffe_gpu_tests("0")       # the CPU build keeps no GPU test binaries: said so
    assert passed is None and line.startswith("Caffe's own GPU tests: not run") and "make test-gpu-build" in line


def test_several_gpu_check_would_see_a_wrong_record_split(tmp_path):
    """make gpu-check's several-GPU comparison, on the CPU: the weights read back from a snapshot are
    reproducible, and a run that saw half the records (what P2PSync would average if both solvers got
    the same records) lands far outside SYNC_TOLERANCE of the batch-512 run."""
    import numpy as np

    from linfool import gpu_check
    net = gpu_check.write_data(tmp_path)
    init = gpu_check.trained_fc(tmp_path, net, 0, None, "init")
    full = gpu_check.trained_fc(tmp_path, net, 3, None, "full", batch=512)
    again = gpu_check.trained_fc(tmp_path, net, 3, None, "again", batch=512)
    half = gpu_check.trained_fc(tmp_path, net, 3, None, "half")
    assert full.shape == (1000, 12288) and np.array_equal(full, again) and not np.array_equal(full, init)
    assert gpu_check.change_diff(again, full, init) == 0
    assert gpu_check.change_diff(half, full, init) > 100 * gpu_check.SYNC_TOLERANCE
    assert gpu_check.sync_devices("0", 1) is None and gpu_check.sync_devices("1", 2) == "1,0"


def test_several_gpus_say_what_they_change_and_can_keep_the_blogs_epochs(caffe, monkeypatch):
    from google.protobuf import text_format

    from linfool import paths, train
    solver = train.read_solver(paths.PROTOTXT / "solver.prototxt")
    net = text_format.Parse((paths.PROTOTXT / "train_val.prototxt").read_text(), caffe.proto.caffe_pb2.NetParameter())
    assert train.multi_gpu("0", solver, net, 1_281_167) == (None, [])
    note, settings = train.multi_gpu("0,1", solver, net, 1_281_167)
    assert "2 GPUs" in note and "effective batch of 512 at the same learning rate" in note and settings == []
    assert "max_iter 50000 reads 20.0 epochs instead of 10.0" in note and "KEEP_EPOCHS=1" in note
    note, settings = train.multi_gpu("0,1,2,3", solver, net, 1_281_167, keep_epochs=True)
    assert settings == ["max_iter=12500", "snapshot=2500", "test_interval=500"] and "keeping 10.0 epochs" in note
    monkeypatch.setattr(caffe_env, "gpus", lambda: 8)
    assert train.multi_gpu("all", solver, net, 1_281_167)[0].startswith("8 GPUs")


def test_cuda_arch_auto_reads_the_gpus_and_means_all_without_them(tmp_path):
    """CUDA_ARCH=auto: the visible cards' compute capabilities; every card CUDA 13 supports (+ PTX)
    when nvidia-smi is missing (a Docker build) or sees no GPU; a bad list is one line."""
    script = str(paths.ROOT / "tools" / "cuda_arch.sh")
    bare = {"PATH": "/usr/bin:/bin"}                    # no nvidia-smi here
    assert subprocess.run([script], capture_output=True, text=True, env=bare).stdout.split() == \
        ["75", "80", "86", "89", "90", "100", "120", "ptx120"]
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '9.0\\n8.6\\n9.0\\n'\n")
    smi.chmod(0o755)
    seen = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    assert subprocess.run([script, "auto"], capture_output=True, text=True, env=seen).stdout.split() == ["86", "90"]
    assert subprocess.run([script, "80,90"], capture_output=True, text=True, env=bare).stdout.split() == ["80", "90"]
    bad = subprocess.run([script, "9x"], capture_output=True, text=True, env=bare)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "CUDA_ARCH=9x" in bad.stderr
