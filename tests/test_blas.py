"""linfool.core.blas: the OpenBLAS core Caffe runs with, chosen from the CPU's flags and what OpenBLAS
picks, checked once per CPU, the user's OPENBLAS_CORETYPE first; and Caffe's processes (`caffe` and
pycaffe) really run with it."""

import json
import os
import re
import subprocess
import sys

import pytest

from linfool.core import blas, caffe_env, paths

SKYLAKE = {"sse3", "sse4_2", "avx", "avx2", "fma", *blas.AVX512}
ZEN = {"sse3", "sse4_2", "avx", "avx2", "fma"}


@pytest.mark.fast
@pytest.mark.parametrize(
    "flags, picked, expected",
    [
        (SKYLAKE, "Prescott", "SkylakeX"),  # a virtualized Xeon OpenBLAS does not recognise
        (SKYLAKE, "Haswell", "SkylakeX"),
        (ZEN, "Prescott", "Haswell"),
        (ZEN, "Zen", None),  # what it picks is already the best
        (SKYLAKE, "SkylakeX", None),
        (SKYLAKE, "Cooperlake", None),
        ({"sse3"}, "Prescott", None),  # nothing better to give
        ({"sse3", "sse4_2"}, "Core2", "Nehalem"),
    ],
)
def test_the_choice_from_given_cpu_flags_and_library_answers(flags, picked, expected):
    core, reason = blas.choose(flags, picked)
    assert core == expected and picked in reason
    assert blas.choose(flags, picked, user="Haswell") == (None, "OPENBLAS_CORETYPE=Haswell is yours: left as it is")


@pytest.mark.fast
def test_a_fallback_is_checked_once_per_cpu_and_a_failing_kernel_is_not_used(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "CACHE", tmp_path)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    calls = []

    def probe(core=None):
        calls.append(core)
        return {None: ("Prescott", 1e-5), "SkylakeX": ("SkylakeX", 2e-5)}.get(core)

    monkeypatch.setattr(blas, "probe", probe)
    monkeypatch.setattr(blas, "cpu_flags", lambda: SKYLAKE)
    blas.decision.cache_clear()
    assert blas.coretype() == "SkylakeX" and calls == [None, "SkylakeX"]
    assert "OPENBLAS_CORETYPE=SkylakeX" in blas.describe() and caffe_env.tool_env()["OPENBLAS_CORETYPE"] == "SkylakeX"
    blas.decision.cache_clear()
    assert blas.coretype() == "SkylakeX" and len(calls) == 2  # the cached check, keyed on the flags
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")  # the user's own always wins
    assert blas.coretype() is None and "(yours)" in blas.describe()
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(blas, "cpu_flags", lambda: ZEN | {"avx512f"})  # other flags: another cache entry
    monkeypatch.setattr(blas, "probe", lambda core=None: ("Prescott", 1e-5) if core is None else None)  # SIGILL
    blas.decision.cache_clear()
    assert blas.coretype() is None and "failed its check" in blas.describe()
    blas.decision.cache_clear()


def test_the_probe_runs_caffes_openblas_and_a_missing_instruction_set_is_refused():
    picked, error = blas.probe()
    assert picked in blas.RANK and error < blas.GEMM_TOLERANCE
    if {"avx2", "fma"} <= blas.cpu_flags():
        assert blas.probe("Haswell")[0] == "Haswell"
    if "avx512f" not in blas.cpu_flags():
        forced = blas.probe("SkylakeX")  # its kernels need AVX-512: SIGILL, or OpenBLAS refuses
        assert forced is None or forced[1] < blas.GEMM_TOLERANCE


CHILD = """
import ctypes
from linfool.core import caffe_env
caffe_env.import_caffe()
lib = ctypes.CDLL("libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
"""


@pytest.mark.skipif(not {"avx2", "fma"} <= blas.cpu_flags(), reason="needs a CPU with AVX2 and FMA")
def test_pycaffe_and_the_caffe_tool_run_with_the_chosen_core(tmp_path):
    """A decision of Haswell (as on a fallback): pycaffe's OpenBLAS, loaded by `import caffe`, runs it,
    and `caffe` gets it in its environment; OPENBLAS_CORETYPE set by the user stays."""
    cache = tmp_path / "cache"
    cache.mkdir()
    real = paths.CACHE
    key = blas._cache_file(blas.cpu_flags()).name
    (cache / key).write_text(json.dumps({"picked": "Prescott", "use": "Haswell", "reason": "test"}))
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["LINFOOL_CACHE"] = str(cache)
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.split()[-1] == "Haswell", done.stderr[-2000:]
    tool = subprocess.run(
        [
            sys.executable,
            "-c",
            "from linfool.core import caffe_env; print(caffe_env.tool_env().get('OPENBLAS_CORETYPE'))",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert tool.stdout.strip() == "Haswell"
    mine = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env={**env, "OPENBLAS_CORETYPE": "Sandybridge"}
    )
    assert mine.stdout.split()[-1] == "Sandybridge"
    assert paths.CACHE == real


MAPS = """
import os, re, sys
import cv2, numpy  # as linfool's processes do: their wheels' own, renamed OpenBLAS copies load first
from linfool.core import caffe_env
caffe_env.import_caffe()
mapped = {os.path.realpath(line.split()[-1]) for line in open("/proc/self/maps") if line.count("/")}
system = [path for path in mapped if not path.startswith(sys.prefix)]  # not the venv's wheels
print("\\n".join(sorted(path for path in system if re.search(r"/lib(openblas|blas|lapack)[^/]*$", path))))
"""


def test_pycaffe_and_the_caffe_tool_load_one_openblas_the_one_the_recipe_names():
    """Caffe's step runs BLAS and its fused update on one OpenMP thread pool (tools/caffe_recipe.sh):
    pycaffe and the `caffe` tool load exactly one system OpenBLAS, blas.LIBRARY, whatever the system's
    libopenblas.so.0 alternative points at; OpenCV's BLAS/LAPACK wrappers bind to that same copy (the
    private, renamed copies in numpy's and opencv-python's wheels are not Caffe's)."""
    done = subprocess.run([sys.executable, "-c", MAPS], capture_output=True, text=True, check=True)
    loaded = done.stdout.split()
    openblas = [path for path in loaded if "/libopenblas" in path]
    assert openblas == [os.path.realpath(blas.LIBRARY)], loaded
    assert "openblas-openmp" in openblas[0]  # linfool's own build (make setup), not a CAFFE_ROOT's
    ldd = subprocess.run(["ldd", str(caffe_env.tool("caffe"))], capture_output=True, text=True, check=True)
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd.stdout, re.MULTILINE))
    assert os.path.realpath(resolved["libopenblas.so.0"]) == openblas[0], ldd.stdout
