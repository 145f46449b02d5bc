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
    project = tmp_path / "linfool"
    shutil.copytree(
        paths.ROOT,
        project,
        ignore=shutil.ignore_patterns(".git", ".venv", "data", "runs", "__pycache__", "*.egg-info", ".pytest_cache"),
    )
    (project / ".venv").symlink_to(paths.ROOT / ".venv")  # the same venv: its .pth already names this Caffe
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
