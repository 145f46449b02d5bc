"""The Docker images use the one install path: the Dockerfiles call only project entry points that
exist, and the CPU Dockerfile's steps succeed when run as a script on this Debian 12 machine (no
Docker engine here or in CI)."""
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

from linfool import paths

DOCKERFILES = {kind: paths.ROOT / "docker" / kind / "Dockerfile" for kind in ("cpu", "gpu")}


def instructions(dockerfile):
    """[(INSTRUCTION, argument)] with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def make_targets():
    listing = subprocess.run(["make", "-C", str(paths.ROOT), "-qp"], capture_output=True, text=True).stdout
    return set(re.findall(r"^([a-z][\w-]*):", listing, re.M))


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_calls_only_project_entry_points(kind):
    steps = instructions(DOCKERFILES[kind])
    assert steps[0] == ("FROM", "debian:12")
    targets = make_targets()
    commands = [arg for op, arg in steps if op == "RUN"] + [" ".join(json.loads(arg)) for op, arg in steps if op == "CMD"]
    called = [m for c in commands for m in re.findall(r"(?:^|&&|;)\s*make ([a-z][\w-]*)", c)]
    assert called and set(called) <= targets, set(called) - targets
    assert ("setup" in called) and any(f"make setup{' GPU=1' if kind == 'gpu' else ''} " in c + " " for c in commands)
    for command in commands:                     # no second recipe for Caffe inside the Dockerfile
        assert not re.search(r"git clone|cmake|nvcc|pip install|build_caffe|wget|curl", command), command
    assert ("COPY", ". /opt/linfool") in steps


def test_cpu_dockerfile_steps_succeed_as_a_script(tmp_path):
    """Run every RUN of docker/cpu/Dockerfile with its ENV in a copy of the project standing in for
    /opt/linfool; the image's Caffe cache is this machine's (no rebuild) and pip's cache a temporary
    folder (the step deletes it); then the CMD works and the copy's venv imports pycaffe."""
    if os.geteuid() != 0:
        pytest.skip("the Dockerfile's apt-get step needs root, as in a docker build")
    project = tmp_path / "linfool"
    shutil.copytree(paths.ROOT, project, ignore=shutil.ignore_patterns(".git", ".venv", "data", "runs",
                                                                       "__pycache__", "*.egg-info", ".pytest_cache"))
    remap = {"/opt/linfool-cache": str(paths.CACHE), "/opt/linfool": str(project),
             "/root/.cache/pip": str(tmp_path / "pip-cache")}

    def local(text):
        for image_path, here in remap.items():
            text = text.replace(image_path, here)
        return text
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "LINFOOL_", "CAFFE_ROOT"))}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)
    cwd = project
    for op, arg in instructions(DOCKERFILES["cpu"]):
        if op == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(local(arg))))
        elif op == "WORKDIR":
            cwd = local(arg)
        elif op == "RUN":
            done = subprocess.run(["bash", "-c", local(arg)], cwd=cwd, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"RUN {arg}\n{done.stdout[-1500:]}{done.stderr[-1500:]}"
    done = subprocess.run(json.loads(dict(instructions(DOCKERFILES["cpu"]))["CMD"]), cwd=cwd, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "make TARGET" in done.stdout, done.stderr[-1500:]
    check = subprocess.run([str(project / ".venv" / "bin" / "python"), "-m", "linfool.caffe_env", "--check"],
                           cwd=cwd, env=env, capture_output=True, text=True)
    assert check.returncode == 0 and "caffe" in check.stdout, check.stderr
