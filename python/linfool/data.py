"""`make data`: train/val LMDBs, mean and labels for the embedded synthetic set or ImageNet.

    python -m linfool.data                          # embedded synthetic set -> data/synthetic/
    python -m linfool.data --imagenet /path/ILSVRC2012 [--name imagenet] [--val-txt val.txt]

Output (data/<name>/): train_lmdb/ and val_lmdb/ (each with manifest.json, list.txt, skipped.txt,
mean.binaryproto), labels.txt ('wnid name' per label, label order = sorted wnids).
"""
import argparse
import os
import sys
import time
from pathlib import Path

from linfool import datasets, lmdb_builder, paths, synthetic

TRAIN_SHUFFLE_SEED = 1701     # create_imagenet.sh shuffles train; we do it with a fixed seed


def build_dataset(source_root, out_dir, *, val_txt=None, size=64, workers=None, progress=True):
    """Build data/<name>/ from an ILSVRC2012-style tree. Returns {split: BuildResult}.
    Before writing anything: one scan of the tree, the builds planned (inputs fingerprinted), the
    disk checked for the LMDBs' page-rounded size (DiskError, one line), and an ETA printed."""
    start = time.perf_counter()
    print(f"Scanning {source_root}...", flush=True)
    splits = datasets.imagenet_splits(source_root, val_txt)
    workers = workers or os.cpu_count()
    out_dir = Path(out_dir)
    plans = {split: lmdb_builder.plan(splits[split][1], splits[split][0], out_dir / f"{split}_lmdb", size=size,
                                      num_classes=len(splits["wnids"]),
                                      shuffle_seed=TRAIN_SHUFFLE_SEED if split == "train" else None)
             for split in ("train", "val") if split in splits}
    print(f"{len(splits['wnids'])} classes; " + ", ".join(f"{s} {len(p.items):,} images" for s, p in plans.items())
          + f" (scanned in {time.perf_counter() - start:.1f} s)", flush=True)
    need = lmdb_builder.check_disk(plans.values(), out_dir)
    todo = [p for p in plans.values() if p.done is None]
    if todo:
        eta = sum(lmdb_builder.seconds_estimate(p, workers) for p in todo)
        print(f"Writing about {need / 1e9:.2f} GB of LMDB; ETA about {eta / 60:.1f} min on {workers} processes "
              "(decode speed sampled here; the bars show the live rate)", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for split, build in plans.items():
        print(f"Creating {split} lmdb from {build.root} ({len(build.items)} images)...", flush=True)
        results[split] = lmdb_builder.execute(build, workers=workers, source=str(Path(build.root).resolve()),
                                              progress=progress)
        print(lmdb_builder.summary(results[split]), flush=True)
    datasets.write_labels(out_dir / "labels.txt", splits["wnids"])
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imagenet", help="ILSVRC2012-style root (train/<wnid>/, val/); default: embedded set")
    parser.add_argument("--name", help="data set name under data/ (default: synthetic or imagenet)")
    parser.add_argument("--val-txt", help="Caffe val.txt with val labels (default: ROOT/val.txt or the official map)")
    parser.add_argument("--train-per-class", type=int, default=300, help="embedded set: train images per class")
    parser.add_argument("--val-per-class", type=int, default=50, help="embedded set: val images per class")
    args = parser.parse_args(argv)
    name = args.name or ("imagenet" if args.imagenet else "synthetic")
    if args.imagenet:
        source = Path(args.imagenet)
    else:
        source = paths.DATA / f"{name}_jpeg"
        print(f"Generating the embedded synthetic set in {source}...", flush=True)
        synthetic.generate(source, train_per_class=args.train_per_class, val_per_class=args.val_per_class)
    try:
        results = build_dataset(source, paths.dataset_dir(name), val_txt=args.val_txt)
    except (datasets.DatasetError, lmdb_builder.DiskError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    if any(r.written == 0 for r in results.values()):
        print("ERROR: a split has no usable image; see its skipped.txt", file=sys.stderr)
        return 1
    print(f"Done: {paths.dataset_dir(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
