"""Build one Caffe LMDB from a list of (relative path, label), byte-identical to
`convert_imageset --resize_height=64 --resize_width=64 ROOT/ LIST OUT` on the same list, but
decoding in parallel, never dying on a broken file, and appearing atomically when complete.

    python -m linfool.lmdb_builder ROOT/ LIST.txt OUT_LMDB [--size 64] [--shuffle-seed N]

Beside data.mdb, OUT_LMDB holds manifest.json (source, options, counts, builder version),
list.txt (the list in the order written), skipped.txt (file, reason) and mean.binaryproto
(what compute_image_mean writes for this LMDB).
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import lmdb
import numpy as np
from tqdm import tqdm

from linfool import datum, images

BUILDER_VERSION = 1
COMMIT_EVERY = 1000          # convert_imageset commits every 1000 records


@dataclass
class BuildResult:
    """What a build wrote: counts, the skipped (path, reason) pairs, and the mean image."""
    path: Path
    written: int = 0
    skipped: list = field(default_factory=list)
    up_to_date: bool = False


def read_list(list_file):
    """Parse a Caffe list file as convert_imageset does (path, a space, label: the last space
    splits). Lines without an integer label are returned as (path, None)."""
    items = []
    for line in Path(list_file).read_text().splitlines():
        if not line.strip():
            continue
        path, _, label = line.rpartition(" ")
        try:
            items.append((path, int(label)) if path else (line, None))
        except ValueError:
            items.append((line, None))
    return items


def _fingerprint(items, root, options):
    """Hash of the inputs (paths, labels, sizes, mtimes) and options: equal means a no-op rerun."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path, label in items:
        try:
            stat = os.stat(os.path.join(root, path))
            digest.update(f"{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0{label}\0missing\n".encode())
    return digest.hexdigest()


def _load(item, root, size, num_classes):
    """Worker: (path, label) -> (encoded Datum or None, skip reason or None)."""
    path, label = item
    if label is None:
        return None, "list line has no integer label"
    if num_classes is not None and not 0 <= label < num_classes:
        return None, f"label {label} outside 0..{num_classes - 1}"
    image, reason = images.load_chw(os.path.join(root, path), size)
    return (datum.encode_datum(image, label), None) if reason is None else (None, reason)


def _init_worker():
    cv2.setNumThreads(1)     # one process per core already; results do not depend on threads


class _Writer:
    """Writes records in order, commits every COMMIT_EVERY, grows the map when it is full, and
    accumulates the mean image in float32 in LMDB order (as compute_image_mean does)."""

    def __init__(self, path, n_items, size):
        self.env = lmdb.open(str(path), map_size=max(1 << 26, int(n_items * (3 * size * size + 256) * 1.2)),
                             subdir=True, meminit=False, map_async=True)
        self.pending = []
        self.sum = np.zeros(3 * size * size, dtype=np.float32)
        self.count = 0

    def put(self, key, value):
        self.pending.append((key, value))
        self.count += 1
        pixels = np.frombuffer(datum.Datum.FromString(value).data, dtype=np.uint8)
        self.sum += pixels.astype(np.float32)
        if len(self.pending) == COMMIT_EVERY:
            self.commit()

    def commit(self):
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
        self.pending = []

    def close(self):
        self.commit()
        self.env.sync(True)
        self.env.close()

    def mean(self, size):
        return (self.sum / np.float32(max(self.count, 1))).reshape(3, size, size)


def build_lmdb(items, root, out, *, size=64, shuffle_seed=None, num_classes=None,
               workers=None, source="", progress=True) -> BuildResult:
    """Build OUT (a directory) from `items` [(path relative to root, label or None)].

    shuffle_seed: shuffle the list first with random.Random(seed) (create_imagenet.sh shuffles
    train), so two builds are identical. num_classes: labels outside 0..num_classes-1 are skipped.
    A complete OUT with the same inputs and options is left alone (result.up_to_date).
    """
    out = Path(out)
    items = list(items)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(items)
    options = {"size": size, "shuffle_seed": shuffle_seed, "num_classes": num_classes,
               "builder_version": BUILDER_VERSION}
    fingerprint = _fingerprint(items, root, options)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()).get("fingerprint") == fingerprint:
        return BuildResult(out, written=json.loads(manifest_path.read_text())["written"], up_to_date=True)

    partial_dir = out.with_name(f".{out.name}.partial")      # never mistaken for a finished LMDB
    shutil.rmtree(partial_dir, ignore_errors=True)
    partial_dir.mkdir(parents=True)
    result = BuildResult(out)
    writer = _Writer(partial_dir, len(items), size)
    load = partial(_load, root=str(root), size=size, num_classes=num_classes)
    with images.worker_pool(workers or os.cpu_count(), _init_worker) as pool:
        results = pool.imap(load, items, chunksize=8)
        bar = tqdm(results, total=len(items), unit="img", desc=f"LMDB {out.name}",
                   disable=not progress, smoothing=0.1)
        for line_id, ((path, _), (record, reason)) in enumerate(zip(items, bar)):
            if record is None:
                result.skipped.append((path, reason))
                continue
            writer.put(f"{line_id:08d}_{path}".encode(), record)
    writer.close()
    result.written = writer.count
    (partial_dir / "mean.binaryproto").write_bytes(datum.encode_mean(writer.mean(size)))
    (partial_dir / "list.txt").write_text("".join(f"{p} {label}\n" for p, label in items))
    (partial_dir / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in result.skipped))
    channel_mean = writer.mean(size).mean(axis=(1, 2))
    manifest = {"source": source, "options": options, "fingerprint": fingerprint,
                "items": len(items), "written": result.written, "skipped": len(result.skipped),
                "mean_bgr": [round(float(v), 4) for v in channel_mean]}
    (partial_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    _swap_into_place(partial_dir, out)
    return result


def _swap_into_place(partial_dir, out):
    """Move the finished build to `out`, replacing an older build only once the new one is whole."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        partial_dir.rename(out)
        shutil.rmtree(old)
    else:
        partial_dir.rename(out)


def summary(result: BuildResult) -> str:
    """One line: what was written and what was skipped, and why (most common reasons first)."""
    if result.up_to_date:
        return f"{result.path}: up to date ({result.written} records); nothing to do"
    reasons = {}
    for _, reason in result.skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    detail = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    skipped = f", skipped {len(result.skipped)} ({detail}; see {result.path}/skipped.txt)" if reasons else ""
    return f"{result.path}: wrote {result.written} records{skipped}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build a 64x64 Caffe LMDB from a list file.")
    parser.add_argument("root", help="folder the list's paths are relative to")
    parser.add_argument("list_file", help="Caffe list file: 'relative/path label' per line")
    parser.add_argument("out", help="LMDB directory to create")
    parser.add_argument("--size", type=int, default=64, help="resize to SIZE x SIZE (default 64)")
    parser.add_argument("--shuffle-seed", type=int, help="shuffle the list with this seed first")
    parser.add_argument("--num-classes", type=int, help="skip labels outside 0..N-1")
    parser.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    args = parser.parse_args(argv)
    if not Path(args.list_file).is_file():
        print(f"ERROR: no list file {args.list_file}", file=sys.stderr)
        return 2
    result = build_lmdb(read_list(args.list_file), args.root, args.out, size=args.size,
                        shuffle_seed=args.shuffle_seed, num_classes=args.num_classes,
                        workers=args.workers, source=os.path.abspath(args.list_file))
    print(summary(result))
    return 1 if result.written == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
