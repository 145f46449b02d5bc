"""linfool.core.caffe_env: the one device decision for every Caffe call (GPU=), several GPUs, CUDA_ARCH."""

import pytest

from linfool.core import caffe_env, paths, prototxt


@pytest.fixture
def machine(monkeypatch):
    """Set (CUDA build?, GPU visible?) for caffe_env.device, with its cache cleared around the test."""

    def set_machine(cuda, visible):
        monkeypatch.setattr(caffe_env, "caffe_has_cuda", lambda: cuda)
        monkeypatch.setattr(caffe_env, "gpus", lambda: 2 if visible else 0)
        caffe_env.device.cache_clear()

    yield set_machine
    caffe_env.device.cache_clear()


@pytest.mark.fast
def test_device_decisions(machine):
    machine(cuda=True, visible=True)
    assert [caffe_env.device(g) for g in ("auto", "cpu", "1", "0,1", "all")] == ["0", None, "1", "0,1", "all"]
    for bad, says in (("0,0", "names a GPU twice"), ("2", "lists 2 GPU"), ("0,2", "lists 2 GPU"), ("gpu0", "not auto")):
        with pytest.raises(caffe_env.DeviceError, match=says):  # before Caffe aborts on it
            caffe_env.device(bad)
    machine(cuda=True, visible=False)  # pycaffe deploy nets still run on the CPU
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


def test_several_gpus_say_what_they_change_and_can_keep_the_blogs_epochs(caffe, monkeypatch):
    from google.protobuf import text_format

    from linfool.model import train

    solver = prototxt.read_solver(paths.PROTOTXT / "solver.prototxt")
    net = text_format.Parse((paths.PROTOTXT / "train_val.prototxt").read_text(), caffe.proto.caffe_pb2.NetParameter())
    assert train.multi_gpu("0", solver, net, 1_281_167) == (None, [])
    note, settings = train.multi_gpu("0,1", solver, net, 1_281_167)
    assert "2 GPUs" in note and "effective batch of 512 at the same learning rate" in note and settings == []
    assert "max_iter 50000 reads 20.0 epochs instead of 10.0" in note and "KEEP_EPOCHS=1" in note
    note, settings = train.multi_gpu("0,1,2,3", solver, net, 1_281_167, keep_epochs=True)
    assert settings == ["max_iter=12500", "snapshot=2500", "test_interval=500"] and "keeping 10.0 epochs" in note
    monkeypatch.setattr(caffe_env, "gpus", lambda: 8)
    assert train.multi_gpu("all", solver, net, 1_281_167)[0].startswith("8 GPUs")


@pytest.mark.fast
def test_one_device_decision_for_every_caffe_call(monkeypatch):
    """GPU= (make exports it as LINFOOL_GPU) decides for `caffe train` (train.gpu_flag, which the sweep,
    the background rounds and the claims' short runs use) and for pycaffe (use_device): on a (mocked)
    CUDA build with GPUs, GPU=cpu keeps everything on the CPU and GPU=1 puts everything on GPU 1."""
    from linfool.model import train

    calls = []
    fake = type(
        "caffe",
        (),
        {
            "set_mode_cpu": staticmethod(lambda: calls.append("cpu")),
            "set_mode_gpu": staticmethod(lambda: calls.append("gpu")),
            "set_device": staticmethod(lambda d: calls.append(f"device {d}")),
        },
    )
    monkeypatch.setattr(caffe_env, "caffe_has_cuda", lambda: True)
    monkeypatch.setattr(caffe_env, "gpus", lambda: 2)
    monkeypatch.setattr(caffe_env, "import_caffe", lambda quiet=True: fake)
    caffe_env.device.cache_clear()
    monkeypatch.setenv("LINFOOL_GPU", "cpu")
    assert train.gpu_flag() is None
    caffe_env.use_device()
    assert calls == ["cpu"]
    monkeypatch.setenv("LINFOOL_GPU", "1")
    assert train.gpu_flag() == "1"
    caffe_env.use_device()
    assert calls[1:] == ["device 1", "gpu"]
    monkeypatch.delenv("LINFOOL_GPU")
    assert caffe_env.requested() == "auto" and train.gpu_flag() == "0"  # auto: GPU 0 when there is one
    caffe_env.device.cache_clear()
