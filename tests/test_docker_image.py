"""`make test-docker`: the CPU image built for real (tools/docker_build.sh, Docker or Podman), then run as
a user would: a non-root uid, data/ and runs/ from the host, `make test` and a short `make demo` inside.
The host must see the outputs, owned by that uid, and nothing may be written into the image.

Docker runs the image with --read-only (any write outside the mounts fails). Podman where `podman run`
works does the same; where it cannot start containers (these machines: the OCI runtime cannot set
rlimits), buildah runs the command in a working container and `podman diff` lists what it changed."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from linfool.core import paths

pytestmark = pytest.mark.docker
IMAGE = "linfool:cpu"
UID = GID = 1000
# A short demo: the real pipeline with fewer iterations, background rounds and pairs.
DEMO = (
    'make demo SET="max_iter=200 snapshot=200 test_iter=2 test_interval=200" ROUNDS=1 FOOL=20 ITERS=20 '
    "MEASURE=2 PAIRS=17 QUERIES=500"
)


def engine():
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        return "podman"
    pytest.fail("no container engine: install Docker Engine or Podman (apt-get install podman buildah)")


def can_run(name):
    return subprocess.run([name, "run", "--rm", IMAGE, "true"], capture_output=True).returncode == 0


def run_in_image(command, mounts):
    """Run `command` (bash) in the image as UID:GID with {host: container} mounts. Returns (completed
    process, paths written in the image outside the mounts: None where --read-only enforced it)."""
    volumes = [f"{host}:{inside}" for host, inside in mounts.items()]
    name, started = engine(), time.time()
    try:
        return _run(name, command, volumes, mounts)
    finally:
        print(f"[{time.time() - started:6.0f} s] {command}", flush=True)


def _run(name, command, volumes, mounts):
    if name == "docker" or can_run(name):
        args = [name, "run", "--rm", "--read-only", "--user", f"{UID}:{GID}"]
        args += [a for v in volumes if not v.endswith(":/tmp") for a in ("-v", v)] + ["--tmpfs", "/tmp:exec"]
        return subprocess.run(args + [IMAGE, "bash", "-c", command], capture_output=True, text=True), None
    container = subprocess.run(["buildah", "from", IMAGE], capture_output=True, text=True, check=True).stdout.strip()
    try:
        done = subprocess.run(
            [
                "buildah",
                "run",
                "--isolation",
                "chroot",
                "--user",
                f"{UID}:{GID}",
                *[a for v in volumes for a in ("-v", v)],
                container,
                "--",
                "bash",
                "-c",
                command,
            ],
            capture_output=True,
            text=True,
        )
        diff = subprocess.run(["podman", "diff", container], capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    written = [line.split(None, 1)[1] for line in diff.splitlines() if line.strip()]
    # the runtime's own traces: the mount points it creates and the folders above them (marked
    # changed), /etc for hosts and resolv.conf; a file written anywhere is listed under its own path
    allowed = {"/etc"} | {str(parent) for inside in mounts.values() for parent in [Path(inside), *Path(inside).parents]}
    return done, [p for p in written if p not in allowed]


@pytest.fixture(scope="module")
def image():
    done = subprocess.run([str(paths.ROOT / "tools" / "docker_build.sh"), "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    print(done.stdout)
    return IMAGE


@pytest.fixture
def host_dirs(tmp_path):
    dirs = {
        tmp_path / name: inside
        for name, inside in (("data", "/opt/linfool/data"), ("runs", "/opt/linfool/runs"), ("tmp", "/tmp"))
    }
    for host in dirs:
        host.mkdir()
        os.chown(host, UID, GID)
    os.chmod(tmp_path / "tmp", 0o1777)
    return dirs


def _owned_by_uid(folder):
    return all(
        os.lstat(os.path.join(root, name)).st_uid == UID
        for root, dirs, files in os.walk(folder)
        for name in dirs + files
    )


def test_image_size_and_what_it_holds(image):
    size = subprocess.run(
        [engine(), "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"{image}: {int(size) / 1e9:.2f} GB")
    assert int(size) < 1.5e9
    done, _ = run_in_image("command -v gcc cmake nvcc || echo no-compilers; ls /opt/linfool-cache 2>&1 | head -1", {})
    assert "no-compilers" in done.stdout and "No such file" in done.stdout, done.stdout
    # What docker/dpkg-slim.cfg leaves out is loaded by nothing here: every library of Caffe's tools,
    # libcaffe and pycaffe resolves (OpenCV's highgui and videoio included), and the left-out files are absent.
    objects = "find /opt/caffe/build/tools /opt/caffe/build/lib /opt/caffe/python -name '*.so*' -o -name '*.bin'"
    left_out = "/usr/lib/x86_64-linux-gnu/dri /usr/share/proj /usr/share/iso-codes"
    done, _ = run_in_image(
        f"{objects} | xargs ldd 2>/dev/null | grep 'not found' | sort -u; echo files: $(find {left_out} -type f | wc -l); "
        "ls /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1 2>&1",
        {},
    )
    assert "not found" not in done.stdout and "files: 0" in done.stdout, done.stdout
    assert "No such file" in done.stdout, done.stdout


def test_make_test_inside_the_image_as_a_user(image, host_dirs):
    done, written = run_in_image("make test", host_dirs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
    assert not written, written


def test_demo_inside_the_image_writes_to_the_host_as_that_user(image, host_dirs):
    done, written = run_in_image(DEMO, host_dirs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = next(h for h, inside in host_dirs.items() if inside.endswith("/runs"))
    data = next(h for h, inside in host_dirs.items() if inside.endswith("/data"))
    assert (runs / "blog" / "report.html").is_file() and (runs / "blog" / "blackbox" / "blackbox.json").is_file()
    assert list((runs / "blog").glob("*_iter_200.caffemodel"))
    assert (data / "synthetic" / "train_lmdb" / "data.mdb").is_file()
    assert _owned_by_uid(runs) and _owned_by_uid(data)
    # links between data sets (background rounds) resolve on the host as well as inside
    assert (data / "synthetic_bg1" / "train_lmdb" / "data.mdb").is_file()
    assert not written, written
