"""tools/cuda_choose.sh: the CUDA toolkit chosen from the box (driver and cards, read from nvidia-smi),
tried with a stub nvidia-smi on PATH: no GPU is needed."""

import os
import subprocess

import pytest

from linfool.core import paths

pytestmark = pytest.mark.fast
CHOOSE = paths.ROOT / "tools" / "cuda_choose.sh"


def choose(tmp_path, cards, **env):
    """Run the chooser on a box whose nvidia-smi lists `cards` [(driver, compute capability)] (None:
    no nvidia-smi at all); returns (exit code, stdout's last line, stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if cards is not None:
        rows = "\n".join(f"{driver}, {cc}" for driver, cc in cards)
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '%s\\n' '{rows}'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("CUDA", "CUDA_ARCH", "CUDA_HOME")}
    full = {**base, "PATH": f"{bin_dir}:/usr/bin:/bin", "LINFOOL_SYSTEM_CUDA": str(tmp_path / "none"), **env}
    done = subprocess.run(["bash", str(CHOOSE)], capture_output=True, text=True, env=full)
    return done.returncode, (done.stdout.strip().splitlines() or [""])[-1], done.stderr


def stub_tool(path, release):
    """A stand-in nvcc or ptxas that only answers --version for `release` (e.g. "11.8")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.0'\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    "cards, expected",
    [
        ([("550.54.15", "7.0")], "11 70"),  # a V100 on driver 550: CUDA 13 needs 580
        ([("580.82.07", "9.0")], "13 90"),  # an H100 on driver 580
        ([("580.82.07", "7.0"), ("580.82.07", "9.0")], "11 70 90"),  # one V100 keeps the box on 11.8
        ([("470.239.06", "3.5")], "11 35"),  # the blog's K40 on the last driver it has
        ([("535.183.01", "8.6"), ("535.183.01", "8.9")], "11 86 89"),  # Ampere and Ada on a cluster's 535
        ([("575.51.03", "12.0")], "11 ptx90"),  # a Blackwell card before 580: 11.8's newest PTX
    ],
)
def test_the_toolkit_and_the_architectures_follow_the_driver_and_the_cards(tmp_path, cards, expected):
    code, line, said = choose(tmp_path, cards)
    assert code == 0 and line == expected, said
    assert said.count("\n") == 1 and f"CUDA {expected.split()[0]}" in said.replace("CUDA 11.8", "CUDA 11")


def test_a_driver_before_450_is_one_line_naming_it_and_the_minimum(tmp_path):
    code, _, said = choose(tmp_path, [("418.226.00", "7.0")])
    assert code == 1 and said.count("\n") == 1
    assert said.startswith("ERROR: driver 418, cards sm_70:") and "450" in said


def test_without_nvidia_smi_the_cpu_build_is_chosen_and_said(tmp_path):
    code, line, said = choose(tmp_path, None)
    assert code == 0 and line == "cpu" and "no GPU visible" in said and "the CPU build" in said
    code, line, _ = choose(tmp_path, None, CUDA_ARCH="all")  # a Docker image for other boxes
    assert code == 0 and line == "13 75 80 86 89 90 100 120 ptx120"
    code, line, _ = choose(tmp_path, None, CUDA="11", CUDA_ARCH="all")
    assert code == 0 and line.startswith("11 35 37 50") and line.endswith(" 90 ptx90")


def test_cuda_overrides_and_a_card_the_toolkit_cannot_build_is_one_line_before_the_build(tmp_path):
    code, line, _ = choose(tmp_path, [("580.82.07", "9.0")], CUDA="11")
    assert code == 0 and line == "11 90"
    code, _, said = choose(tmp_path, [("550.54.15", "7.0")], CUDA="13")
    assert code == 1 and "CUDA=13 on this box (driver 550, cards sm_70): CUDA 13 needs a driver >= 580" in said
    code, _, said = choose(tmp_path, [("580.82.07", "3.5")], CUDA="13")
    assert code == 1 and "cannot" not in said and "CUDA 13 builds for sm_75" in said  # the K40 with CUDA 13
    code, _, said = choose(tmp_path, [("580.82.07", "9.0")], CUDA_ARCH="70")
    assert code == 1 and "CUDA 13 cannot build for sm_70" in said and "CUDA=11" in said


def test_a_system_toolkit_that_fits_is_found_and_one_that_does_not_is_passed_over(tmp_path):
    system = tmp_path / "cuda-12.4"
    stub_tool(system / "bin" / "nvcc", "12.4")
    code, line, said = choose(tmp_path, [("550.54.15", "8.0")], LINFOOL_SYSTEM_CUDA=str(system))
    assert code == 0 and line == f"{system} 80" and "system toolkit" in said
    code, line, said = choose(tmp_path, [("470.239.06", "8.0")], LINFOOL_SYSTEM_CUDA=str(system))  # 12.x needs 525
    assert code == 0 and line == "11 80" and "does not fit" in said
    code, _, said = choose(
        tmp_path, [("470.239.06", "8.0")], CUDA_HOME=str(system)
    )  # pointed at: said, not passed over
    assert code == 1 and "CUDA_HOME=" in said and "525" in said


@pytest.mark.parametrize("own_ptxas", [True, False])
@pytest.mark.skipif(
    not (paths.CACHE / "downloads").is_dir(), reason="no Caffe source downloaded here (a runtime image: CAFFE_ROOT)"
)
def test_the_chosen_toolkit_compiles_with_its_own_ptxas_not_one_on_path(tmp_path, own_ptxas):
    """nvcc runs the ptxas it finds on PATH: a CUDA 11.8 toolkit on a box with CUDA 13's ptxas first on
    PATH must use its own (11.8's has sm_70; 13's refuses it), or stop in one line before compiling."""
    toolkit = tmp_path / "cuda-11.8"
    stub_tool(toolkit / "bin" / "nvcc", "11.8")
    if own_ptxas:
        stub_tool(toolkit / "bin" / "ptxas", "11.8")
    for need in ("include/cuda_runtime.h", "include/cublas_v2.h", "include/curand.h"):
        (toolkit / need).parent.mkdir(parents=True, exist_ok=True)
        (toolkit / need).touch()
    (toolkit / "lib64").mkdir()
    for lib in ("cudart", "cublas", "curand"):
        (toolkit / "lib64" / f"lib{lib}.so").touch()
    stub_tool(tmp_path / "other" / "ptxas", "13.0")  # another toolkit's, earlier on PATH
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(paths.CACHE / "downloads", cache / "downloads")  # the pinned source `make setup` fetched
    script = 'set -euo pipefail; step() { :; }; die() { echo "ERROR: $*" >&2; exit 1; }; source tools/caffe_recipe.sh; caffe_key "$1"; echo "$OPTIONS"'
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'other'}:{os.environ['PATH']}",
        "LINFOOL_CACHE": str(cache),
        "LINFOOL_CUDA": "1",
        "LINFOOL_CUDA_CHOICE": f"{toolkit} 70",
    }
    done = subprocess.run(
        ["bash", "-c", script, "key", str(paths.ROOT / ".venv" / "bin" / "python")],
        capture_output=True,
        text=True,
        env=env,
        cwd=paths.ROOT,
    )
    if own_ptxas:
        assert done.returncode == 0 and done.stdout.startswith(f"cuda11.8 {toolkit} arch:70 "), done.stderr
    else:
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "without its ptxas (ptxas on PATH: 13.0)" in done.stderr
