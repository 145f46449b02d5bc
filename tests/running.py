"""Running linfool's stages as a user does, for every test that runs one: a stage through
`python -m linfool` (py: its result; stage: it must succeed), a target through make, and the one-line
refusal every careless case expects."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from linfool.core import paths

PY = [sys.executable, "-m"]
# 144 train images, batch 256: 18 iterations, a snapshot at each epoch boundary (9).
SHORT = ["--set", "max_iter=18", "--set", "snapshot=9", "--set", "test_interval=1000", "--set", "test_iter=1"]


def env_for(data, runs_dir, **extra) -> dict:
    """The environment of a stage that reads data sets from `data` and writes runs into `runs_dir`."""
    return {**os.environ, "LINFOOL_DATA": str(data), "LINFOOL_RUNS": str(runs_dir), **extra}


def py(stage, env, *args, **kwargs):
    """`python -m linfool STAGE ARGS`, its output captured."""
    return subprocess.run([*PY, "linfool", stage, *map(str, args)], capture_output=True, text=True, env=env, **kwargs)


def stage(name, env, *args) -> str:
    """`python -m linfool NAME ARGS`, which must succeed (else its output's tail is the failure); its stdout."""
    done = py(name, env, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def make(env, *args, cwd=paths.ROOT):
    """`make ARGS` in `cwd` (the checkout), its output captured."""
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True, env=env)


def one_error(done, *expected) -> str:
    """The command failed with exactly one 'ERROR:' line (make adds its own '***' line) holding `expected`."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert done.returncode != 0 and len(errors) == 1, done.stdout[-1500:] + done.stderr[-1500:]
    assert all(text in errors[0] for text in expected), errors[0]
    return errors[0]


def image_tree(root, classes, per_class=4, val="folders", seed=0) -> Path:
    """An ILSVRC2012-shaped tree of random JPEGs: root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG."""
    rng = np.random.default_rng(seed)
    for label, wnid in enumerate(classes):
        for split, n in (("train", per_class), ("val", max(1, per_class // 2))):
            if split == "val" and val is None:
                continue
            folder = Path(root) / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(rng.normal(40 + 60 * label, 30, (48, 56, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{wnid}_{i}.JPEG"), pixels)
    return Path(root)
