"""Every path linfool uses, built in this one place from the repository root, and the one rule for
the names of runs and data sets.

Environment overrides: LINFOOL_CACHE (Caffe build cache, default ~/.cache/linfool),
LINFOOL_DATA (data sets, default <root>/data), LINFOOL_RUNS (training runs, default <root>/runs).
Those folders may have spaces or non-ASCII letters in their paths; the names inside them may not.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from linfool.core.cli import UserError

ROOT = Path(__file__).resolve().parents[3]
PROTOTXT = ROOT / "prototxt"
CACHE = Path(os.environ.get("LINFOOL_CACHE", Path.home() / ".cache" / "linfool"))
DATA = Path(os.environ.get("LINFOOL_DATA", ROOT / "data"))
RUNS = Path(os.environ.get("LINFOOL_RUNS", ROOT / "runs"))

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
NAME_RULE = "letters, digits, '.', '_' and '-', not starting with '.'"


class BadName(UserError):
    """A run or data-set name that is not a plain name (a path, a space, a leading dot)."""


def check_name(name: str, what: str = "RUN") -> str:
    """`name` when it is a plain name (NAME_RULE, at most 100 characters), else BadName in one line
    before anything is written (RUN=../prototxt, RUN=/abs/path and RUN='a b' are all refused)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 100:
        raise BadName(f"{what}={name!r} is not a plain name ({NAME_RULE}; no '/', no spaces); use e.g. {what}=my_run")
    return name


def _folder(folder: Path, variable: str) -> Path:
    """`folder` (DATA or RUNS) when it is a folder or not there yet; one line when it is a file or a
    link to nothing (a dangling data/ link), naming the variable that moves it."""
    if folder.is_symlink() and not folder.exists():
        raise UserError(
            f"{folder} is a link to {os.readlink(folder)}, which does not exist; mount or fix that folder, "
            f"remove the link, or set {variable} to another folder"
        )
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{variable}={folder} is a file, not a folder; point {variable} at a folder (or unset it)")
    return folder


def dataset_dir(name: str) -> Path:
    """Where data set `name` is published: data/<name> (see linfool.core.datasets)."""
    return _folder(DATA, "LINFOOL_DATA") / check_name(name, "DATA")


def run_dir(name: str) -> Path:
    """Folder of one training run: the prototxt used, train.log, snapshots, metrics, figures."""
    return _folder(RUNS, "LINFOOL_RUNS") / check_name(name, "RUN")


def decay_search_dir(weak_run: str) -> Path:
    """Where `make decay-search` writes a deeper model's search: runs/<its weak run>_decay_search."""
    return RUNS / check_name(f"{weak_run}_decay_search")


def _plain(text: str) -> str:
    """`text` made a plain name (NAME_RULE): other characters become '_'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "_"
    return name[:60]


def fool_dir(model: str | Path, weights: str | Path, image: str | Path, target: object) -> Path:
    """Where `make fool` writes one model's fooling of one image (or folder) towards one target:
    runs/fool/<weights>-<image stem>-to-<target>-<key>, the model named by its .caffemodel
    (deploy.prototxt names few models) and, unless that name holds it already, its folder
    (runs/blog/snap_iter_1000.caffemodel -> blog.snap_iter_1000); <key>: 8 hex digits of the resolved
    MODEL, WEIGHTS and IMAGE paths, so two images of one stem (img/a.jpg, img/b/a.png), two models of
    one .caffemodel name or two targets never share a folder."""
    weights = Path(weights).resolve()
    name = weights.stem if weights.parent.name in weights.stem else f"{weights.parent.name}.{weights.stem}"
    key = hashlib.sha256("\0".join(str(Path(p).resolve()) for p in (model, weights, image)).encode()).hexdigest()
    label = re.sub(r"^n\d{8}\s*", "", str(target)).split(",")[0]
    return RUNS / "fool" / f"{_plain(name)}-{_plain(Path(image).stem)}-to-{_plain(label)[:24]}-{key[:8]}"
