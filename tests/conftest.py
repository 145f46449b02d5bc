"""Shared fixtures: pycaffe, and tiny data made on the fly."""
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
