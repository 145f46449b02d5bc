"""Every path linfool uses, built in this one place from the repository root.

Environment overrides: LINFOOL_CACHE (Caffe build cache, default ~/.cache/linfool),
LINFOOL_DATA (LMDBs, default <root>/data), LINFOOL_RUNS (training runs, default <root>/runs).
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOTXT = ROOT / "prototxt"
CACHE = Path(os.environ.get("LINFOOL_CACHE", Path.home() / ".cache" / "linfool"))
DATA = Path(os.environ.get("LINFOOL_DATA", ROOT / "data"))
RUNS = Path(os.environ.get("LINFOOL_RUNS", ROOT / "runs"))


def dataset_dir(name: str) -> Path:
    """Folder of one built data set: train_lmdb/, val_lmdb/, mean.binaryproto, labels.txt."""
    return DATA / name


def run_dir(name: str) -> Path:
    """Folder of one training run: the prototxt used, train.log, snapshots, metrics, figures."""
    return RUNS / name
