"""`make setup` on a cluster: with CAFFE_ROOT (a user's own Caffe), or with every Debian package
already present, it needs neither root nor apt. apt-get, apt, sudo and (for CAFFE_ROOT) dpkg-query
are replaced by shims that record any call and fail."""

import os
import shutil
import subprocess

import pytest

from linfool.core import caffe_env, paths

pytestmark = pytest.mark.fast  # needs no Caffe (make test-fast)


def _shims(folder, tools, uid=None):
    """A PATH folder whose `tools` record their call in folder/called and fail; `id -u` says uid."""
    folder.mkdir()
    for tool in tools:
        (folder / tool).write_text(f'#!/bin/sh\necho {tool} "$@" >> {folder}/called\nexit 1\n')
        (folder / tool).chmod(0o755)
    if uid is not None:
        (folder / "id").write_text(f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} && exit 0\nexec /usr/bin/id "$@"\n')
        (folder / "id").chmod(0o755)
    return folder


def test_setup_with_caffe_root_needs_no_apt_and_no_root(tmp_path):
    project = _project(tmp_path)  # the same venv: its .pth already names this Caffe
    shims = _shims(tmp_path / "shims", ["apt-get", "apt", "sudo", "dpkg-query"], uid=1000)
    tree = caffe_env.caffe_tree()
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "CAFFE_ROOT": str(tree)}
    done = subprocess.run(["bash", "tools/setup.sh"], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert f"ready: Caffe at {tree}" in done.stdout and "none needed with CAFFE_ROOT" in done.stdout
    assert not (shims / "called").exists(), (shims / "called").read_text()


def test_every_package_present_needs_no_apt_and_no_root(tmp_path):
    present = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "build-essential"], capture_output=True, text=True)
    if "install ok installed" not in present.stdout:
        pytest.skip("no build packages here: a runtime image (Docker), where Caffe comes built (CAFFE_ROOT)")
    shims = _shims(tmp_path / "shims", ["apt-get", "apt", "sudo"], uid=1000)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(paths.ROOT / "tools" / "install_system_deps.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "present" in done.stdout, done.stderr
    assert not (shims / "called").exists()


def _project(tmp_path):
    """A copy of the checkout that shares this venv. Only when the venv is set up for these
    requirements: else setup in the copy would reinstall linfool into the shared venv from the copy."""
    hashed = subprocess.run(
        "cat requirements.txt pyproject.toml | sha256sum | cut -c1-16",
        shell=True,
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if (paths.ROOT / ".venv" / ".linfool-requirements").read_text().strip() != hashed:
        pytest.skip("the venv is not set up for this checkout's requirements: run `make setup` first")
    project = tmp_path / "linfool"
    shutil.copytree(
        paths.ROOT,
        project,
        ignore=shutil.ignore_patterns(".git", ".venv", "data", "runs", "__pycache__", "*.egg-info", ".pytest_cache"),
    )
    (project / ".venv").symlink_to(paths.ROOT / ".venv")
    return project


@pytest.mark.skipif(bool(os.environ.get("CAFFE_ROOT")), reason="with CAFFE_ROOT setup builds nothing")
def test_make_setup_gpu_1_without_a_gpu_is_the_cpu_build_said(tmp_path):
    """GPU=1 on a box without nvidia-smi: the CPU build, said (which toolkit a box with GPUs gets:
    tests/test_cuda_choice.py)."""
    if caffe_env.caffe_has_cuda():
        pytest.skip("this checkout's Caffe is a CUDA build; the CPU build is not cached here")
    project = _project(tmp_path)
    plain = {k: v for k, v in os.environ.items() if k not in ("CUDA", "CUDA_ARCH", "CUDA_HOME", "GPU")}
    done = subprocess.run(
        ["bash", "tools/setup.sh", "--choose"],
        cwd=project,
        env={**plain, "GPU": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert "no GPU visible (nvidia-smi): the CPU build" in done.stderr and "CPU-only build" in done.stdout


@pytest.mark.skipif(bool(os.environ.get("CAFFE_ROOT")), reason="with CAFFE_ROOT setup builds nothing")
def test_cuda_and_cuda_arch_given_to_another_target_do_not_become_the_remembered_choice(tmp_path):
    """`make test-gpu-build CUDA=13 CUDA_ARCH=90` runs setup with those in its environment (make exports
    its command line): only `make setup` (--choose) may remember them, else the next `make setup GPU=1`
    is forced to CUDA 13 and arch 90 on any box."""
    if caffe_env.caffe_has_cuda():
        pytest.skip("this checkout's Caffe is a CUDA build")
    project = _project(tmp_path)
    venv = paths.ROOT / ".venv"
    memory = {
        name: (venv / name).read_bytes() if (venv / name).exists() else None
        for name in (".linfool-caffe-cuda", ".linfool-cuda-arch", ".linfool-cuda-toolkit")
    }
    try:
        env = {**os.environ, "CUDA": "13", "CUDA_ARCH": "90"}
        done = subprocess.run(["bash", "tools/setup.sh"], cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        assert "CPU-only build" in done.stdout
        after = {name: (venv / name).read_bytes() if (venv / name).exists() else None for name in memory}
        assert after == memory or all(after[n] in (memory[n], b"\n", b"auto\n", b"0\n") for n in memory)
        assert b"13" not in (after[".linfool-cuda-toolkit"] or b"") and b"90" not in (
            after[".linfool-cuda-arch"] or b""
        )
    finally:
        for name, content in memory.items():
            if content is not None:
                (venv / name).write_bytes(content)
