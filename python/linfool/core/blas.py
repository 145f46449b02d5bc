"""Caffe's OpenBLAS on the CPU it runs on. Debian's OpenBLAS (DYNAMIC_ARCH) picks its kernels from the
CPU's identity; on CPUs it does not recognise (virtualized Xeons that report a generic name) it falls
back to `Prescott`, its SSE3 kernel: 3x slower on the blog's GEMM than the AVX-512 one. This module
finds the core OpenBLAS picks and the best core the CPU's flags support, and, when OpenBLAS fell back
to an older one, the OPENBLAS_CORETYPE every Caffe process gets (caffe_env sets it for `caffe` and
before `import caffe`) — after a one-time check, cached per CPU, that the better kernel runs here and
gives numpy's GEMM (within float rounding). The user's own OPENBLAS_CORETYPE always wins.

    choose(flags, picked) -> (core or None, reason)      the decision, from given facts (tested)
    coretype() -> core or None                          checked once per CPU, cached in ~/.cache/linfool
    describe() -> one line: what OpenBLAS picks, what Caffe uses, why

numpy bundles its own OpenBLAS, so a numpy-only check would never see the problem: the check loads
the library Caffe links (libopenblas.so.0) in a child process with the variable set.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from linfool.core import files, paths

# The OpenBLAS that linfool's Caffe loads: OpenBLAS's OpenMP build, through the rpath that
# tools/caffe_recipe.sh gives the tools, libcaffe and pycaffe (tests/test_blas.py checks that they load
# this one file and no other OpenBLAS); the system's libopenblas.so.0 where that build is not installed
# (a CAFFE_ROOT built elsewhere).
_OPENMP_BUILD = Path("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0")
LIBRARY = str(_OPENMP_BUILD) if _OPENMP_BUILD.is_file() else "libopenblas.so.0"
# OpenBLAS 0.3.21's x86-64 cores by the instruction sets their kernels need: a higher rank is faster on
# a CPU that has them. AMD's names rank with the Intel core of the same vector width.
RANK = {
    "Katmai": 0,
    "Coppermine": 0,
    "Northwood": 0,
    "Prescott": 1,
    "Banias": 0,
    "Atom": 1,
    "Core2": 2,
    "Penryn": 2,
    "Dunnington": 2,
    "Nehalem": 3,
    "Opteron": 1,
    "Opteron_SSE3": 1,
    "Barcelona": 2,
    "Bobcat": 2,
    "Sandybridge": 4,
    "Bulldozer": 4,
    "Piledriver": 4,
    "Steamroller": 4,
    "Excavator": 5,
    "Haswell": 5,
    "Zen": 5,
    "SkylakeX": 6,
    "Cooperlake": 7,
    "SapphireRapids": 8,
}
AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def best_core(flags: set[str]) -> str | None:
    """The best OpenBLAS core the CPU flags (a set of /proc/cpuinfo flag names) support, or None."""
    if AVX512 <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    if "avx" in flags:
        return "Sandybridge"
    if "sse4_2" in flags:
        return "Nehalem"
    return None


def choose(flags: set[str], picked: str, user: str | None = None) -> tuple[str | None, str]:
    """(core to set or None, one-line reason) for CPU `flags`, the core OpenBLAS `picked`, and the
    user's own OPENBLAS_CORETYPE (`user`, which always wins)."""
    if user:
        return None, f"OPENBLAS_CORETYPE={user} is yours: left as it is"
    best = best_core(flags)
    if best is None or RANK.get(picked, -1) >= RANK[best]:
        return None, f"OpenBLAS picks {picked}, the best this CPU supports"
    return best, f"OpenBLAS picks {picked} (a fallback) on a CPU with {best}'s instructions"


def cpu_flags() -> set:
    """The CPU's flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


_PROBE = """
import ctypes, sys
import numpy as np
lib = ctypes.CDLL(sys.argv[1])
lib.openblas_get_corename.restype = ctypes.c_char_p
rng = np.random.default_rng(0)
a = rng.standard_normal((256, 1536), dtype=np.float32)
b = rng.standard_normal((1536, 200), dtype=np.float32)
c = np.zeros((256, 200), np.float32)
f = ctypes.POINTER(ctypes.c_float)
# cblas_sgemm(RowMajor=101, NoTrans=111, NoTrans=111, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
lib.cblas_sgemm(101, 111, 111, 256, 200, 1536, ctypes.c_float(1.0), a.ctypes.data_as(f), 1536,
                b.ctypes.data_as(f), 200, ctypes.c_float(0.0), c.ctypes.data_as(f), 200)
error = float(np.abs(c - a.astype(np.float64) @ b.astype(np.float64)).max())
print(lib.openblas_get_corename().decode(), error)
"""


def probe(core: str | None = None) -> tuple[str, float] | None:
    """(core OpenBLAS runs, GEMM max abs error against numpy in float64) in a child process that loads
    Caffe's OpenBLAS with OPENBLAS_CORETYPE=core (None: its own pick); None when the child fails (a
    kernel this CPU lacks dies of SIGILL)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if core:
        env["OPENBLAS_CORETYPE"] = core
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, LIBRARY], capture_output=True, text=True, env=env, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or len(done.stdout.split()) != 2:
        return None
    name, error = done.stdout.split()
    return name, float(error)


GEMM_TOLERANCE = 1e-2  # sums of 1,536 float32 products of N(0, 1) numbers: rounding is ~1e-4


def _cache_file(flags: set[str]) -> Path:
    key = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]
    return paths.CACHE / f"blas-{key}.json"


def _check(flags):
    """Probe what OpenBLAS picks and, if it fell back, whether the better core runs correctly here."""
    native = probe()
    if native is None:
        return {"picked": None, "use": None, "reason": f"could not load {LIBRARY}: OpenBLAS left as it is"}
    core, reason = choose(flags, native[0])
    result = {"picked": native[0], "use": None, "reason": reason}
    if core is not None:
        better = probe(core)
        if better is not None and better[0] == core and better[1] < GEMM_TOLERANCE:
            result.update(
                use=core,
                reason=f"{reason}: Caffe runs with OPENBLAS_CORETYPE={core} (checked: GEMM "
                f"error {better[1]:.1e}, {native[1]:.1e} with {native[0]})",
            )
        else:
            result["reason"] = f"{reason}, but {core} failed its check here: left as it is"
    return result


@lru_cache(maxsize=None)
def decision() -> dict:
    """{'picked', 'use', 'reason'} for this CPU, checked once and cached per CPU (its flags)."""
    flags = cpu_flags()
    path = _cache_file(flags)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    result = _check(flags)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json(path, result)
    except OSError:  # an unwritable cache (HOME read-only): checked again next time, nothing lost
        pass
    return result


def coretype() -> str | None:
    """The OPENBLAS_CORETYPE Caffe's processes get, or None (the user's own variable always wins)."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        return None
    return decision()["use"]


def describe() -> str:
    """One line: what OpenBLAS picks here and what Caffe runs with."""
    user = os.environ.get("OPENBLAS_CORETYPE")
    if user:
        return f"OpenBLAS core: OPENBLAS_CORETYPE={user} (yours)"
    result = decision()
    return f"OpenBLAS core: {result['use'] or result['picked']} ({result['reason']})"
