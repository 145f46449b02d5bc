"""Checks on an existing Caffe LMDB, made before Caffe opens it (Caffe aborts with a glog
stack trace on an empty or missing LMDB, a wrong record shape or an out-of-range label)."""
import json
from pathlib import Path

import lmdb

from linfool import datum

LABEL_SCAN = 2000        # records scanned for labels when the LMDB has no manifest of ours


class LmdbError(ValueError):
    """The LMDB cannot feed the net; the message says what is wrong and how to fix it."""


def raw_records(path) -> list:
    """Every (key, value) byte pair of an LMDB, in key order."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return list(txn.cursor())
    finally:
        env.close()


def check_lmdb(path, num_output, *, channels=3, size=64):
    """Raise LmdbError unless `path` is a non-empty LMDB of (channels, size, size) records with
    labels in 0..num_output-1. Returns the number of records."""
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise LmdbError(f"no LMDB at {path}; run `make data` (or give DATA=<name> of a built set)")
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            entries = txn.stat()["entries"]
            if entries == 0:
                raise LmdbError(f"the LMDB {path} is empty; rebuild it with `make data`")
            labels = []
            for i, (_, value) in enumerate(txn.cursor()):
                image, label = datum.decode_datum(value)
                if i == 0 and image.shape != (channels, size, size):
                    raise LmdbError(f"{path} holds {image.shape} records, the net needs {(channels, size, size)}; "
                                    f"rebuild it with `make data`")
                labels.append(label)
                if i + 1 >= LABEL_SCAN:
                    break
    finally:
        env.close()
    manifest = path / "manifest.json"
    classes = json.loads(manifest.read_text())["options"].get("num_classes") if manifest.is_file() else None
    top = max(labels) if classes is None else classes - 1
    if top >= num_output or min(labels) < 0:
        raise LmdbError(f"{path} has labels up to {top} but the net has num_output {num_output}")
    return entries
