"""The one place that finds Caffe (the pycaffe module and the `caffe` tool binaries) and that decides
where it computes (GPU or CPU, for `caffe train` and for every pycaffe forward).

`make setup` builds Caffe (or takes CAFFE_ROOT) and drops a .pth file into the venv so that pycaffe
is importable; this module imports it with a clear error when it is not, and locates the tools
of the same Caffe tree (BVLC layout: <tree>/build/tools/<name>, <tree>/python/caffe).

    python -m linfool caffe --check          # prints pycaffe's location, or says how to fix it
    python -m linfool caffe --tool caffe     # prints the path of the caffe binary
    python -m linfool caffe --device-query   # Caffe's GPU report, or one line saying why not
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from linfool.core import blas, stages
from linfool.core.cli import UserError

FIX = "run `make setup` (or set CAFFE_ROOT to a built Caffe tree and run it again)"


class CaffeNotFound(UserError, RuntimeError):
    """Raised when pycaffe or a Caffe tool cannot be found."""


class DeviceError(UserError, ValueError):
    """A GPU was asked for that this Caffe or this machine cannot give; the message says what to do."""


def import_caffe(quiet: bool = True) -> Any:
    """Import pycaffe and return the module; `quiet` keeps glog to warnings and errors."""
    if quiet:
        os.environ.setdefault("GLOG_minloglevel", "2")
    core = blas.coretype()
    if "caffe" not in sys.modules and core:  # read when libopenblas loads: before import caffe
        os.environ["OPENBLAS_CORETYPE"] = core
    try:
        import caffe  # noqa: PLC0415  (found through the .pth file that make setup writes)
    except ImportError as err:
        raise CaffeNotFound(f"pycaffe is not importable ({err}); {FIX}") from None
    if not hasattr(caffe, "Net"):
        raise CaffeNotFound(f"'caffe' at {caffe.__file__} is not pycaffe; {FIX}")
    return caffe


def caffe_tree() -> Path:
    """The Caffe tree in use: CAFFE_ROOT if set, else the tree that pycaffe was imported from."""
    if os.environ.get("CAFFE_ROOT"):
        return Path(os.environ["CAFFE_ROOT"]).resolve()
    return Path(import_caffe().__file__).resolve().parents[2]


def tool(name: str) -> Path:
    """Path of a Caffe tool binary ('caffe', 'convert_imageset', 'compute_image_mean')."""
    tree = caffe_tree()
    for path in (tree / "build" / "tools" / name, tree / "build" / "tools" / f"{name}.bin"):
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise CaffeNotFound(f"no Caffe tool '{name}' in {tree}/build/tools; {FIX}")


@lru_cache(maxsize=None)
def caffe_has_cuda() -> bool:
    """True when the Caffe tree's caffe binary links the CUDA runtime (a GPU build): its ELF file names
    libcudart among the libraries it needs (read from the file itself; no ldd, which slim images lack)."""
    return b"libcudart.so" in tool("caffe").resolve().read_bytes()


@lru_cache(maxsize=None)
def device(gpu: str | None = "auto") -> str | None:
    """Where Caffe computes for GPU=auto|cpu|N|N,M|all: Caffe's --gpu value ('0', '0,1', 'all'), or
    None for the CPU. auto = GPU 0 with a CUDA build and a visible GPU, else the CPU. The one place
    that decides, for `caffe train` (linfool.model.train) and for pycaffe (use_device)."""
    gpu = str(gpu).strip() or "auto"
    if gpu == "cpu":
        return None
    if not caffe_has_cuda():
        if gpu == "auto":
            return None
        raise DeviceError(
            f"GPU={gpu} asked, but this Caffe was built CPU-only; use GPU=cpu or rebuild with `make setup GPU=1`"
        )
    if not gpu_visible():
        if gpu == "auto":
            return None
        raise DeviceError(f"GPU={gpu} asked, but no GPU is visible (nvidia-smi); use GPU=cpu")
    if gpu in ("auto", "all"):
        return "0" if gpu == "auto" else gpu
    ids = gpu.split(",")
    if not all(i.isdigit() for i in ids):
        raise DeviceError(f"GPU={gpu}: not auto, cpu, all, a GPU number or a list such as 0,1")
    if len(set(ids)) < len(ids):
        raise DeviceError(f"GPU={gpu} names a GPU twice; Caffe's several-GPU trainer (P2PSync) takes each GPU once")
    if max(map(int, ids)) >= gpus():
        raise DeviceError(f"GPU={gpu}: nvidia-smi lists {gpus()} GPU(s), numbered from 0")
    return gpu


def requested() -> str:
    """The user's GPU= choice: $LINFOOL_GPU (make exports it from GPU=), else auto. Every Caffe call
    goes through device(requested()) unless a caller passes its own value (gpu_check, bench)."""
    return os.environ.get("LINFOOL_GPU", "").strip() or "auto"


def use_device(gpu: str | None = None) -> Any:
    """Put pycaffe on the device that device() picks for `gpu` (default: requested()); with several
    GPUs, pycaffe uses the first. Returns the pycaffe module."""
    caffe = import_caffe()
    chosen = device(gpu if gpu is not None else requested())
    if chosen is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(0 if chosen == "all" else int(chosen.split(",")[0]))
        caffe.set_mode_gpu()
    return caffe


@lru_cache(maxsize=None)
def gpus() -> int:
    """How many GPUs nvidia-smi lists (0 without a driver)."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines()) if listing.returncode == 0 else 0


def gpu_visible() -> bool:
    """True when nvidia-smi lists at least one GPU."""
    return gpus() > 0


def tool_env() -> dict:
    """Environment for running a Caffe tool: glog at INFO to stderr (Caffe's training log), and the
    OpenBLAS core linfool.core.blas chose for this CPU (when OpenBLAS falls back to an older one)."""
    env = {**os.environ, "GLOG_minloglevel": "0", "GLOG_logtostderr": "1"}
    core = blas.coretype()
    if core:
        env["OPENBLAS_CORETYPE"] = core
    return env


def device_query(gpu: str = "all") -> str:
    """Caffe's own `caffe device_query` report of the GPUs; CaffeNotFound with one line when the
    build is CPU-only or no GPU is usable (Caffe itself aborts with a glog stack trace then)."""
    if not caffe_has_cuda():
        raise CaffeNotFound("this Caffe is CPU-only; build the CUDA one with `make setup GPU=1`")
    done = subprocess.run(
        [str(tool("caffe")), "device_query", f"--gpu={gpu}"], capture_output=True, text=True, env=tool_env()
    )
    if done.returncode != 0:
        failed = [line.split("] ", 1)[-1] for line in done.stderr.splitlines() if "Check failed" in line]
        raise CaffeNotFound(
            f"no usable GPU: {failed[0] if failed else done.stderr.strip()[-300:]} "
            "(check `nvidia-smi`; CUDA 13 builds need a driver >= 580)"
        )
    return "\n".join(line.split("] ", 1)[-1] for line in done.stderr.splitlines() if "common.cpp" in line)


def main(argv: list[str] | None = None) -> int:
    args = stages.parse("caffe", argv)
    given = [f for f in ("check", "tool", "device_query", "blas") if getattr(args, f)]
    if len(given) != 1:
        print(
            "ERROR: python -m linfool caffe: give one of --check, --tool NAME, --device-query, --blas", file=sys.stderr
        )
        return 2
    try:
        if args.device_query:
            print(device_query())
        elif args.blas:
            print(blas.describe())
        else:
            print(Path(import_caffe().__file__).parent if args.check else tool(args.tool))
    except CaffeNotFound as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
