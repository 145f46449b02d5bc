"""The Docker build script says clearly what went wrong. What the images hold and do (built with
`make setup`, `make test` and a short demo inside, as uid 1000) is tested by building and running them:
`make test-docker` (tests/test_docker_image.py), minutes, so not part of `make test`."""

import os
import subprocess

import pytest

from linfool.core import paths

pytestmark = pytest.mark.fast  # needs no Caffe (make test-fast)

BUILD = paths.ROOT / "tools" / "docker_build.sh"


def _shim(folder, name, script):
    path = folder / name
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(0o755)


def test_no_container_engine_is_one_line_naming_both(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "mktemp"):  # what the script needs before it looks for an engine
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip(), bin_dir / tool)
    done = subprocess.run(
        ["/bin/bash", str(BUILD), "cpu"],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert "Docker Engine" in errors[0] and "Podman" in errors[0] and "apt-get install podman" in errors[0]


def test_a_failed_build_shows_the_failing_step_and_its_last_lines(tmp_path):
    """A stand-in engine whose build fails in the setup step, as podman prints it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _shim(
        bin_dir,
        "podman",
        'case "$1" in\n  image) exit 0;;\n  build) echo "[1/2] STEP 1/7: FROM debian:12 AS build"\n'
        '    echo "[1/2] STEP 7/7: RUN make setup && tools/docker_runtime.sh"\n'
        '    echo "ERROR: the venv\'s packages did not install"; exit 2;;\nesac\n',
    )
    done = subprocess.run(
        [str(BUILD), "cpu"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENGINE": "podman", "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 1
    assert "the venv's packages did not install" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("ERROR: building linfool:cpu failed at: [1/2] STEP 7/7: RUN make setup") and "full log" in last
    )
    assert len(list(tmp_path.glob("linfool-docker-cpu.*.log"))) == 1  # the log is kept


def test_the_gpu_images_toolkit_is_a_build_argument_and_a_wrong_one_is_one_line(tmp_path):
    """make docker-gpu CUDA=13 CUDA_ARCH=90 reaches the engine as --build-arg CUDA=13 and CUDA_ARCH=90
    (the Dockerfile's defaults when not given: CUDA=11, CUDA_ARCH=all); CUDA=12 stops before any engine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _shim(bin_dir, "podman", f'echo "$*" >> {calls}\n[ "$1" = image ] && echo 5000000000\nexit 0\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENGINE": "podman", "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [str(BUILD), "gpu"], capture_output=True, text=True, env={**env, "CUDA": "13", "CUDA_ARCH": "90"}
    )
    assert done.returncode == 0, done.stderr
    build = next(line for line in calls.read_text().splitlines() if line.startswith("build "))
    assert "--build-arg CUDA=13 --build-arg CUDA_ARCH=90" in build and "docker/gpu/Dockerfile" in build
    calls.unlink()
    done = subprocess.run([str(BUILD), "gpu"], capture_output=True, text=True, env=env)
    build = next(line for line in calls.read_text().splitlines() if line.startswith("build "))
    assert done.returncode == 0 and "--build-arg" not in build  # the Dockerfile's defaults
    calls.unlink()
    done = subprocess.run([str(BUILD), "gpu"], capture_output=True, text=True, env={**env, "CUDA": "12"})
    assert done.returncode == 1 and done.stderr.strip() == (
        "ERROR: CUDA=12: the GPU image takes CUDA=11 (the default) or CUDA=13"
    )
    assert not calls.exists()
