"""The Docker images use the one install path, and their build script says clearly what went wrong.
The images themselves are built and run by `make test-docker` (tests/test_docker_image.py): minutes,
so not part of `make test`."""

import json
import os
import re
import subprocess

import pytest

from linfool.core import paths

pytestmark = pytest.mark.fast  # needs no Caffe (make test-fast)

DOCKERFILES = {kind: paths.ROOT / "docker" / kind / "Dockerfile" for kind in ("cpu", "gpu")}
BUILD = paths.ROOT / "tools" / "docker_build.sh"


def instructions(dockerfile):
    """[(INSTRUCTION, argument)] with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def make_targets():
    listing = subprocess.run(["make", "-C", str(paths.ROOT), "-qp"], capture_output=True, text=True).stdout
    return set(re.findall(r"^([a-z][\w-]*):", listing, re.M))


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_builds_with_make_setup_and_keeps_only_the_runtime(kind):
    steps = instructions(DOCKERFILES[kind])
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert [steps[i][1] for i in stages] == ["debian:12 AS build", "debian:12"]
    build, runtime = steps[: stages[1]], steps[stages[1] :]
    targets = make_targets()
    commands = [arg for op, arg in build if op == "RUN"]
    called = [m for c in commands for m in re.findall(r"(?:^|&&|;)\s*(?:--mount=\S+\s+)*make ([a-z][\w-]*)", c)]
    assert called == ["setup"] and set(called) <= targets
    assert any(
        f"make setup{' GPU=1' if kind == 'gpu' else ''} " in c + " " and "tools/docker_runtime.sh" in c
        for c in commands
    )
    for command in [arg for op, arg in steps if op == "RUN"]:  # no second recipe for Caffe in a Dockerfile
        assert not re.search(r"git clone|cmake|nvcc|pip install|build_caffe|wget|curl", command), command
    assert ("COPY", ". /opt/linfool") in build
    # Caffe's cache outlasts image builds: `make setup` runs with it mounted
    assert any("--mount=type=cache,target=/opt/linfool-cache" in c and "make setup" in c for c in commands)
    # the runtime stage builds nothing: it copies the build stage's Caffe, venv and project
    assert not any("make setup" in arg for op, arg in runtime if op == "RUN")
    assert {("COPY", "--from=build /opt/caffe /opt/caffe"), ("COPY", "--from=build /opt/linfool /opt/linfool")} <= set(
        runtime
    )
    env = " ".join(arg for op, arg in runtime if op == "ENV")
    assert "CAFFE_ROOT=/opt/caffe" in env and "HOME=/tmp" in env
    assert json.loads(dict(runtime)["CMD"])[0] == "make"


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
