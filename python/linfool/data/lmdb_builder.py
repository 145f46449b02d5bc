"""Build one Caffe LMDB from a list of (relative path, label), byte-identical to
`convert_imageset --resize_height=64 --resize_width=64 ROOT/ LIST OUT` on the same list, but
decoding in parallel, never dying on a broken file, and appearing atomically when complete.

    python -m linfool lmdb ROOT/ LIST.txt OUT_LMDB [--size 64] [--shuffle-seed N]

Beside data.mdb, OUT_LMDB holds manifest.json (source, options, counts, builder version, the
inputs' fingerprint, the sha256 of the records written), list.txt (the list in the order written),
skipped.txt (file, reason) and mean.binaryproto (what compute_image_mean writes for this LMDB).
"""

import hashlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from linfool.core import cli, datum, records, stages
from linfool.core.cli import UserError
from linfool.data import images

BUILDER_VERSION = 1


class DiskError(UserError, OSError):
    """Not enough free disk for the LMDBs; the message gives the sizes and how to fix it."""


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
    """(path, label) -> (encoded Datum, its (3, size, size) uint8 pixels, None) or (None, None, skip reason).
    Runs on the decoding threads."""
    path, label = item
    if label is None:
        return None, None, "list line has no integer label"
    if num_classes is not None and not 0 <= label < num_classes:
        return None, None, f"label {label} outside 0..{num_classes - 1}"
    image, reason = images.load_chw(os.path.join(root, path), size)
    return (datum.encode_datum(image, label), image, None) if reason is None else (None, None, reason)


class _MeanWriter(records.Writer):
    """records.Writer that also accumulates the mean image in float32 in LMDB order, as
    compute_image_mean does (each pixel summed in record order: the same float32 roundings)."""

    def __init__(self, path, n_items, size):
        super().__init__(path, n_items, (3, size, size))
        self.sum = np.zeros((3, size, size), dtype=np.float32)

    def put_image(self, key, value, image):
        """Write one record whose pixels are `image` ((3, size, size) uint8)."""
        self.put(key, value)
        np.add(self.sum, image, out=self.sum, casting="unsafe")

    def mean(self, size):
        return (self.sum / np.float32(max(self.count, 1))).reshape(3, size, size)


@dataclass
class Plan:
    """One LMDB build decided but not done: the (shuffled) items, the options, the inputs' fingerprint,
    the records an identical finished, intact build `previous` already holds (None when it must be
    built), and files the scan skipped already (path, reason), listed in skipped.txt."""

    items: list
    root: str
    out: Path
    options: dict
    fingerprint: str
    done: int = None
    previous: Path = None
    skipped: list = field(default_factory=list)

    @property
    def disk_bytes(self) -> int:
        """LMDB bytes this build will write (page-rounded records); 0 when already done."""
        size = self.options["size"]
        return 0 if self.done is not None else len(self.items) * records.record_bytes((3, size, size))


def plan(items, root, out, *, size=64, shuffle_seed=None, num_classes=None, previous=None, skipped=()) -> Plan:
    """Decide a build of OUT from `items` [(path relative to root, label or None)]: shuffle_seed
    shuffles the list first with random.Random(seed) (create_imagenet.sh shuffles train), so two
    builds are identical; labels outside 0..num_classes-1 will be skipped. Stats each input file
    once (the fingerprint): a finished LMDB `previous` (default OUT itself) with the same inputs and
    options, and intact (records.check_intact: a cut-short data.mdb is rebuilt, never trusted), is
    reused instead of rebuilt."""
    out = Path(out)
    previous = Path(previous) if previous is not None else out
    items = list(items)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(items)
    options = {
        "size": size,
        "shuffle_seed": shuffle_seed,
        "num_classes": num_classes,
        "builder_version": BUILDER_VERSION,
    }
    fingerprint = _fingerprint(items, root, options)
    manifest_path = previous / "manifest.json"
    done = None
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = {}
    if manifest.get("fingerprint") == fingerprint and "records_sha256" in manifest:
        try:
            done = records.check_intact(previous, manifest["written"], (3, size, size) if manifest["written"] else None)
        except records.LmdbError as err:
            print(f"{err}: building it again", flush=True)
    return Plan(items, str(root), out, options, fingerprint, done, previous, list(skipped))


def check_disk(plans, where):
    """Raise DiskError (one line) unless the file system holding `where` has room for the plans'
    LMDBs (an older build being replaced stays until the new one is whole, so it does not count)."""
    need = sum(p.disk_bytes for p in plans)
    where = Path(where)
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > 0.95 * free:
        raise DiskError(
            f"the LMDBs need about {need / 1e9:.2f} GB ({sum(len(p.items) for p in plans if p.done is None)} "
            f"records of {records.record_bytes() / 1024:.0f} KiB in LMDB pages) but {where} has "
            f"{free / 1e9:.2f} GB free; free space or point LINFOOL_DATA at a larger disk"
        )
    return need


def seconds_estimate(build, workers, sample=32) -> float:
    """Projected decode time of the build: `sample` of its images decoded here, on one thread,
    scaled to all items over `workers` threads (the bar shows the live rate)."""
    chosen = build.items[:: max(1, len(build.items) // sample)][:sample]
    start = time.perf_counter()
    for path, _ in chosen:
        images.load_chw(os.path.join(build.root, path), build.options["size"])
    return (time.perf_counter() - start) / max(len(chosen), 1) * len(build.items) / max(workers, 1)


def execute(build, *, workers=None, source="", progress=True) -> BuildResult:
    """Do a planned build: decode on `workers` threads (default: one per core), write in list order,
    verify, rename into place."""
    out, size, num_classes = build.out, build.options["size"], build.options["num_classes"]
    if build.done is not None:
        if build.previous.resolve() != out.resolve():
            reuse_lmdb(build.previous, out)
        return BuildResult(out, written=build.done, up_to_date=True)
    partial_dir = out.with_name(f".{out.name}.partial")  # never mistaken for a finished LMDB
    shutil.rmtree(partial_dir, ignore_errors=True)
    partial_dir.mkdir(parents=True)
    result = BuildResult(out, skipped=list(build.skipped))
    writer = _MeanWriter(partial_dir, len(build.items), size)
    load = partial(_load, root=build.root, size=size, num_classes=num_classes)
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one decoding thread per core already; results do not depend on threads
    try:
        results = images.map_ordered(load, build.items, workers or os.cpu_count())
        bar = tqdm(
            results, total=len(build.items), unit="img", desc=f"LMDB {out.name}", disable=not progress, smoothing=0.1
        )
        # the bar first: zip then asks it for one more item, so that it counts the last one and closes
        for line_id, ((record, image, reason), (path, _)) in enumerate(zip(bar, build.items)):
            if record is None:
                result.skipped.append((path, reason))
                continue
            writer.put_image(f"{line_id:08d}_{path}".encode(), record, image)
    except (
        BaseException
    ):  # Ctrl-C, a full disk: no hidden partial left behind (a kill -9 leaves one: the rerun removes it)
        writer.env.close()
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise
    finally:
        cv2.setNumThreads(opencv_threads)
    result.written = writer.close()
    records.verify(partial_dir, result.written, (3, size, size), num_classes)
    (partial_dir / "mean.binaryproto").write_bytes(datum.encode_mean(writer.mean(size)))
    (partial_dir / "list.txt").write_text("".join(f"{p} {label}\n" for p, label in build.items))
    (partial_dir / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in result.skipped))
    channel_mean = writer.mean(size).mean(axis=(1, 2))
    manifest = {
        "source": source,
        "options": build.options,
        "fingerprint": build.fingerprint,
        "items": len(build.items),
        "written": result.written,
        "skipped": len(result.skipped),
        "records_sha256": writer.sha256,
        "mean_bgr": [round(float(v), 4) for v in channel_mean],
    }
    (partial_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    _swap_into_place(partial_dir, out)
    return result


def build_lmdb(
    items, root, out, *, size=64, shuffle_seed=None, num_classes=None, workers=None, source="", progress=True
) -> BuildResult:
    """Plan and execute one build of OUT (see plan and execute); result.up_to_date when a finished
    OUT with the same inputs and options was left alone."""
    build = plan(items, root, out, size=size, shuffle_seed=shuffle_seed, num_classes=num_classes)
    return execute(build, workers=workers, source=source, progress=progress)


def reuse_lmdb(previous, out):
    """Hard-link the files of a finished LMDB folder `previous` into a new folder `out` (a data set's
    next version): no copy, and `previous` stays whole until its version is replaced."""
    out = Path(out)
    out.mkdir(parents=True)
    for entry in Path(previous).iterdir():
        if entry.is_file():
            try:
                os.link(entry, out / entry.name)
            except OSError:  # another file system: copy instead
                shutil.copy2(entry, out / entry.name)


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
    args = stages.parse("lmdb", argv)

    def body():
        if not Path(args.list_file).is_file():
            raise UserError(f"no list file {args.list_file}")
        result = build_lmdb(
            read_list(args.list_file),
            args.root,
            args.out,
            size=args.size,
            shuffle_seed=args.shuffle_seed,
            num_classes=args.num_classes,
            workers=args.workers,
            source=os.path.abspath(args.list_file),
        )
        print(summary(result))
        return 1 if result.written == 0 else 0

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
