"""How a data set is rebuilt from its own source, for every "rebuild it" message: the source its
dataset.json records (the embedded synthetic set, an image tree and its VAL_TXT, or the stage that
made it) and the make command that rebuilds it from there.

    recorded_source(version folder) -> {'imagenet': tree or None, 'val_txt': ...} | {'made_by': cmd} | None
    remake_command(name, source)    -> 'make data DATA=imagenet IMAGENET=/data/ILSVRC2012'
    remake_for(lmdb folder)         -> the command that rebuilds the data set holding that LMDB
"""

from __future__ import annotations

import json
from pathlib import Path

from linfool.core import conventions

MAKE_DATA = "make data"


def remake_command(name: str, source: dict | None = None) -> str:
    """The make command that rebuilds data set `name` from `source` (DataSet.source): the embedded
    set `make data [DATA=name]`, an image tree with its IMAGENET= and VAL_TXT=, a stage's own command;
    unknown (None): the command for the embedded set, or IMAGENET=/path for another name."""
    data = "" if name == conventions.DEMO_DATA else f" DATA={name}"
    if source is None:
        return f"{MAKE_DATA}{data}" + ("" if name == conventions.DEMO_DATA else " IMAGENET=/path/to/its/images")
    if source.get("made_by"):
        return source["made_by"]
    if source.get("imagenet") is None:
        return f"{MAKE_DATA}{data}"
    val_txt = f" VAL_TXT={_quoted(source['val_txt'])}" if source.get("val_txt") else ""
    return f"{MAKE_DATA} DATA={name} IMAGENET={_quoted(source['imagenet'])}{val_txt}"


def _quoted(path: str | Path) -> str:
    return f"'{path}'" if any(c in str(path) for c in " '\"$") else str(path)


def describe_source(source: dict | None) -> str:
    """'the embedded synthetic set', 'the image tree /path' or 'make background RUN=blog'."""
    if source is None:
        return "an unknown source"
    if source.get("made_by"):
        return f"`{source['made_by']}`"
    return "the embedded synthetic set" if source.get("imagenet") is None else f"the image tree {source['imagenet']}"


def recorded_source(root: Path) -> dict | None:
    """The source a finished or unfinished version folder records: dataset.json's, else (older sets)
    its train LMDB's manifest ('<LINFOOL_DATA>/<x>_jpeg/train': the embedded set); None if unknown."""
    root = Path(root)
    try:
        meta = json.loads((root / "dataset.json").read_text())
        if meta.get("source"):
            return meta["source"]
    except (OSError, ValueError):
        pass
    try:
        tree = json.loads((root / "train_lmdb" / "manifest.json").read_text())["source"]
    except (OSError, ValueError, KeyError):
        return None
    tree = Path(tree)
    synthetic = tree.name == "train" and tree.parent.name.endswith("_jpeg")
    return {"imagenet": None if synthetic else str(tree.parent), "val_txt": None}


def remake_for(lmdb: str | Path) -> str:
    """The command that rebuilds the data set whose version folder holds the LMDB folder `lmdb`
    (data/.<name>.d/<identity>/train_lmdb, or an older layout's data/<name>/train_lmdb)."""
    root = Path(lmdb).parent
    store = root.parent.name
    name = store[1:-2] if store.startswith(".") and store.endswith(".d") else root.name
    return remake_command(name, recorded_source(root))
