"""The data layer: the one place that opens a Caffe LMDB, to read records or to write them.

Reading streams: memory is bounded by one batch, never by the LMDB's size (ImageNet's train LMDB
is 1.28M records, ~21 GB); the memory map is re-opened every REMAP_EVERY records, so that the file
pages a reader keeps mapped (which count in its RSS) stay bounded too. Every image is (3, 64, 64)
uint8, BGR, channel-major, 0..255, as convert_imageset stores it; labels are int64.

    count(path) -> N
    raw(path)                      -> iterator of (key, value) bytes in key (= Caffe's read) order
    batches(path, batch=256)       -> iterator of ((n, 3, 64, 64) uint8, (n,) labels), every record once
    batches(path, positions=[...]) -> the same, only the records at those positions (keys walked, not pixels)
    read(path, positions)          -> ((k, 3, 64, 64) uint8, (k,) labels): a sample that fits in memory
    labels(path)                   -> (N,) labels in record order (one streaming pass)
    random_positions(N, k, seed)   -> k sorted positions, a seeded uniform sample
    balanced_positions(labels, per_class, seed) -> a seeded class-balanced sample
    Writer(path, n_records) -> put(key, value) ...; close() -> records written; .sha256 of them all
    write(path, records, n)        -> an LMDB from (key, value) pairs, verified, appearing atomically
    check_intact(path, expected)   -> cheap proof that the file is whole (LmdbError, one line, if not)
    check(path, num_output)        -> what Caffe would abort on, said in one line (LmdbError)

    python -m linfool records LMDB    # stream it once: count, shape, labels, records/s
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from linfool.core import conventions, datum, stages
from linfool.core.cli import UserError
from linfool.core.remake import remake_for

BATCH = 256  # records per batch: Caffe's ImageNet batch; ~3 MB of pixels
COMMIT_EVERY = 1000  # convert_imageset commits every 1000 records
REMAP_EVERY = 8192  # records between re-opening the map: at most ~128 MB of file pages mapped
PAGE = 4096  # LMDB page size on x86-64 Linux
_PAGE_HEADER = 16  # an overflow run starts with one page header
_NODE = 16  # leaf-node header + overflow page number, per record


class LmdbError(UserError, ValueError):
    """The LMDB cannot be read as Caffe Datum records; the message says what is wrong and how to fix it."""


@contextmanager
def _reader(path):
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise LmdbError(f"no LMDB at {path}; run `make data` (or give DATA=<name> of a built set)")
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            yield txn
    finally:
        env.close()


def _walk(path):
    """Yield (position, cursor) on every record in key order (read cursor.key() / .value() at once:
    the cursor moves on). The map is closed and re-opened every REMAP_EVERY records, resuming after
    the last key seen."""
    position, last = 0, None
    while True:
        with _reader(path) as txn:
            cursor = txn.cursor()
            found = cursor.first() if last is None else cursor.set_range(last)
            if found and last is not None and cursor.key() == last:
                found = cursor.next()
            steps = 0
            while found:
                yield position, cursor
                position, steps = position + 1, steps + 1
                if steps == REMAP_EVERY:
                    last = cursor.key()
                    break
                found = cursor.next()
            else:
                return


def count(path: str | Path) -> int:
    """Number of records."""
    with _reader(path) as txn:
        return txn.stat()["entries"]


def raw(path: str | Path) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) byte pair in key order, streamed (one record in memory at a time)."""
    for _, cursor in _walk(path):
        yield cursor.key(), cursor.value()


class _Batcher:
    """Collects decoded records into one preallocated (batch, C, H, W) uint8 array."""

    def __init__(self, path: str | Path, size: int) -> None:
        self.path, self.size = path, size
        self.images: np.ndarray | None = None
        self.labels, self.n = np.zeros(size, np.int64), 0

    def add(self, value: bytes) -> bool:
        image, label = datum.decode_datum(value)
        if self.images is None:
            self.images = np.empty((self.size, *image.shape), np.uint8)
        elif image.shape != self.images.shape[1:]:
            raise LmdbError(
                f"{self.path} mixes record shapes {self.images.shape[1:]} and {image.shape}; "
                f"rebuild it: `{remake_for(self.path)}`"
            )
        self.images[self.n], self.labels[self.n] = image, label
        self.n += 1
        return self.n == self.size

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.images is not None, "take() follows add()"
        out = (self.images[: self.n].copy(), self.labels[: self.n].copy())
        self.n = 0
        return out


def batches(
    path: str | Path, batch: int = BATCH, positions: Sequence[int] | np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every record once (or only those at `positions`, 0-based in key order), in key order, as
    ((n, 3, 64, 64) uint8 BGR, (n,) labels) with n <= batch. Picking positions walks the keys
    only: the pixels of records not chosen are never read."""
    batcher = _Batcher(path, batch)
    wanted = None if positions is None else np.unique(np.asarray(positions, np.int64))
    if wanted is not None and len(wanted) and (wanted[0] < 0 or wanted[-1] >= count(path)):
        raise LmdbError(f"{path} has {count(path)} records; asked for position {wanted[-1]}")
    k = 0
    for position, cursor in _walk(path):
        if wanted is not None:
            if k == len(wanted):
                break
            if position != wanted[k]:
                continue
            k += 1
        if batcher.add(cursor.value()):
            yield batcher.take()
    if batcher.n:
        yield batcher.take()


def read(path: str | Path, positions: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records at `positions` (0-based, in key order; any order, repeats allowed), returned in
    that order: ((k, 3, 64, 64) uint8, (k,) labels). For samples that fit in memory."""
    positions = np.asarray(positions, dtype=np.int64)
    wanted = np.unique(positions)
    parts = list(batches(path, max(len(wanted), 1), wanted))
    if not parts:
        return np.zeros((0, *conventions.IMAGE_SHAPE), np.uint8), np.zeros(0, np.int64)
    images, labels_ = parts[0]
    order = np.searchsorted(wanted, positions)
    return images[order], labels_[order]


def labels(path: str | Path) -> np.ndarray:
    """(N,) int64 labels in record order, from one streaming pass."""
    return np.array([datum.Datum.FromString(cursor.value()).label for _, cursor in _walk(path)], np.int64)


def random_positions(n_records: int, k: int, seed: int) -> np.ndarray:
    """k (at most n_records) distinct positions, uniform, seeded, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_records, size=min(k, n_records), replace=False))


def balanced_positions(record_labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to `per_class` positions of each label present, seeded, sorted."""
    rng = np.random.default_rng(seed)
    record_labels = np.asarray(record_labels)
    chosen = [
        rng.choice(
            np.flatnonzero(record_labels == c), size=min(per_class, int((record_labels == c).sum())), replace=False
        )
        for c in np.unique(record_labels)
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def record_bytes(shape: tuple[int, ...] = conventions.IMAGE_SHAPE, path_len: int = 40) -> int:
    """Bytes one Datum record of `shape` takes in an LMDB: its value rounded up to whole overflow
    pages (a 64x64 record is 12,3xx bytes = 4 pages of 4,096) plus its key in a leaf node."""
    value = int(np.prod(shape)) + 64  # pixels + Datum fields
    pages = math.ceil((_PAGE_HEADER + value) / PAGE)
    return pages * PAGE + 2 * (path_len + 10 + _NODE)  # leaf pages are about half full


def map_size(n_records: int, shape: tuple[int, ...] = conventions.IMAGE_SHAPE) -> int:
    """An LMDB map size that holds n_records with room to spare (LMDB files are sparse on Linux,
    so room that is never used costs no disk)."""
    return int(1.25 * n_records * record_bytes(shape)) + (64 << 20)


class Writer:
    """Writes records in order, commits every COMMIT_EVERY; the map is sized up front from the
    page-rounded record size, and doubled (the fallback) if it fills anyway. `sha256` fingerprints
    every (key, value) written, in order: a data set's identity is made from it."""

    def __init__(self, path, n_records, shape=conventions.IMAGE_SHAPE, initial_map=None):
        self.path = Path(path)
        self.env = lmdb.open(
            str(path),
            map_size=initial_map or map_size(n_records, shape),
            subdir=True,
            meminit=False,
            map_async=True,
            # No fsync per commit: a build is written as a hidden .partial folder and only renamed into
            # place after close()'s one sync, so an interrupted build is redone, never trusted. Syncing
            # each 1,000-record commit (as convert_imageset does) cost ~40 us a record here.
            sync=False,
        )
        self.pending, self.count, self.grown = [], 0, 0
        self._digest = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def put(self, key: bytes, value: bytes) -> None:
        self._digest.update(len(key).to_bytes(4, "little") + key + len(value).to_bytes(4, "little"))
        self._digest.update(value)
        self.pending.append((key, value))
        self.count += 1
        if len(self.pending) == COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:  # the transaction was aborted: grow and redo it
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
                self.grown += 1
            except lmdb.Error as err:
                raise _disk_full(self.path, err) from None
        self.pending = []

    def close(self) -> int:
        """Commit, sync and close; returns the number of records written."""
        self.commit()
        try:
            self.env.sync(True)
        except lmdb.Error as err:
            raise _disk_full(self.path, err) from None
        self.env.close()
        return self.count


def _disk_full(path, err):
    """LMDB's error for a write that failed: an OSError(ENOSPC) naming the LMDB when its disk is (all
    but) full (LMDB says EIO or ENOSPC for it, depending on the file system), else the error itself."""
    free = shutil.disk_usage(path).free
    if "No space left" in str(err) or free < 2 * COMMIT_EVERY * record_bytes():
        return OSError(errno.ENOSPC, f"No space left on device ({free / 1e6:.1f} MB free)", str(path))
    return err


def verify(
    path: str | Path, expected: int, shape: tuple[int, ...] = conventions.IMAGE_SHAPE, num_classes: int | None = None
) -> None:
    """Raise LmdbError unless the LMDB at `path` holds `expected` records and its first and last
    records decode to `shape` with a label in range: checked before a build is renamed into place."""
    with _reader(path) as txn:
        entries = txn.stat()["entries"]
        if entries != expected:
            raise LmdbError(f"{path} holds {entries} records, {expected} were written")
        if not entries:
            return
        cursor = txn.cursor()
        ends = [cursor.first() and cursor.value(), cursor.last() and cursor.value()]
    for value in ends:
        image, label = datum.decode_datum(value)
        if image.shape != tuple(shape) or label < 0 or (num_classes is not None and label >= num_classes):
            raise LmdbError(f"{path}: a record decodes to {image.shape} label {label}; the build is broken")


def write(
    path: str | Path,
    records: Iterable[tuple[bytes, bytes]],
    n_records: int,
    num_classes: int | None = None,
    shape: tuple[int, ...] = conventions.IMAGE_SHAPE,
) -> Any:
    """Write (key, value) `records` (n_records of them) to a new LMDB at `path`, verified, with a
    manifest.json (count, sha256 of the records), appearing atomically (built as .<name>.partial,
    then renamed). Returns `path`."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    writer = Writer(partial, n_records)
    for key, value in records:
        writer.put(key, value)
    written = writer.close()
    verify(partial, written, shape, num_classes=num_classes)
    manifest = {"written": written, "records_sha256": writer.sha256, "options": {"num_classes": num_classes}}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    return path


def check_intact(
    path: str | Path, expected: int | None = None, shape: tuple[int, ...] | None = conventions.IMAGE_SHAPE
) -> int:
    """Raise LmdbError (one line) unless the LMDB at `path` is whole, cheaply: data.mdb is at least as
    long as its last page (a cut-short file kills any reader, Caffe included, with SIGBUS), it holds
    `expected` records (when given), and its first and last records decode to `shape`. Reads the
    two meta pages and two records, never the whole file. Returns the record count."""
    path = Path(path)
    mdb = path / "data.mdb"
    if not mdb.is_file():
        raise LmdbError(f"no LMDB at {path}; run `make data` (or give DATA=<name> of a built set)")
    size = mdb.stat().st_size
    fix = f"rebuild it: `{remake_for(path)}`"
    if size < 2 * PAGE:
        raise LmdbError(f"{mdb} is damaged ({size} bytes, not even LMDB's two meta pages); {fix}")
    try:
        env = lmdb.open(str(path), readonly=True, lock=False)
    except lmdb.Error as err:
        raise LmdbError(f"{mdb} is damaged ({err}); {fix}") from None
    try:
        need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        if size < need:
            raise LmdbError(f"{mdb} is cut short ({size:,} of {need:,} bytes: truncated or copied in part); {fix}")
        with env.begin() as txn:
            entries = txn.stat()["entries"]
            cursor = txn.cursor()
            ends = [cursor.value()] if cursor.first() else []
            ends += [cursor.value()] if cursor.last() else []
    except lmdb.Error as err:
        raise LmdbError(f"{mdb} is damaged ({err}); {fix}") from None
    finally:
        env.close()
    if expected is not None and entries != expected:
        raise LmdbError(f"{path} holds {entries} records but was built with {expected}; {fix}")
    for value in ends:
        try:
            image, _ = datum.decode_datum(value)
        except Exception:  # a record that is not a Datum: protobuf's DecodeError, a bad reshape
            raise LmdbError(f"{path}: a record is not a Caffe Datum; {fix}") from None
        if shape is not None and image.shape != tuple(shape):
            raise LmdbError(f"{path} holds {image.shape} records, the net needs {tuple(shape)}; {fix}")
    return entries


LABEL_SCAN = 2000  # records scanned for labels when the LMDB has no manifest of ours


def check(path: str | Path, num_output: int, shape: tuple[int, ...] = conventions.IMAGE_SHAPE) -> int:
    """Raise LmdbError unless `path` is a non-empty LMDB of `shape` records with labels in
    0..num_output-1 (what Caffe aborts on with a glog stack trace). Returns the number of records."""
    path = Path(path)
    manifest = path / "manifest.json"
    recorded = json.loads(manifest.read_text()) if manifest.is_file() else {}
    entries = check_intact(path, recorded.get("written"), shape=None)
    if entries == 0:
        raise LmdbError(f"the LMDB {path} is empty; rebuild it: `{remake_for(path)}`")
    images, first_labels = next(batches(path, batch=min(LABEL_SCAN, entries)))
    if images.shape[1:] != tuple(shape):
        raise LmdbError(
            f"{path} holds {images.shape[1:]} records, the net needs {tuple(shape)}; rebuild it: `{remake_for(path)}`"
        )
    classes = recorded.get("options", {}).get("num_classes")
    top = int(first_labels.max()) if classes is None else classes - 1
    if top >= num_output or first_labels.min() < 0:
        raise LmdbError(f"{path} has labels up to {top} but the net has num_output {num_output}")
    return entries


def main(argv: list[str] | None = None) -> int:
    """`python -m linfool records LMDB`: stream every record once; print count, shape, labels, speed."""
    args = stages.parse("records", argv)
    start, n, shape, low, high = time.perf_counter(), 0, None, None, None
    try:
        for images, batch_labels in batches(args.lmdb):
            n, shape = n + len(batch_labels), images.shape[1:]
            low = min(low, int(batch_labels.min())) if low is not None else int(batch_labels.min())
            high = max(high, int(batch_labels.max())) if high is not None else int(batch_labels.max())
    except LmdbError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"{args.lmdb}: {n} records of {shape} uint8, labels {low}..{high}; streamed at {n / seconds:,.0f} records/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
