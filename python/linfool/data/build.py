"""`make data`: train/val LMDBs, mean and labels for the embedded synthetic set or ImageNet.

    python -m linfool data                          # embedded synthetic set -> data/synthetic
    python -m linfool data --imagenet /path/ILSVRC2012 [--name imagenet] [--val-txt val.txt]

Output (data/<name>, published whole by linfool.core.datasets): train_lmdb/ and val_lmdb/ (each with
manifest.json, list.txt, skipped.txt, mean.binaryproto), labels.txt ('wnid name' per label, label
order = sorted wnids) and dataset.json (its identity). A rerun on the same images reuses LMDBs that
are up to date and intact; an interrupted build leaves the published set as it was.
"""

import os
import sys
import time
from pathlib import Path

from linfool.core import cli, conventions, datasets, files, paths, remake, stages
from linfool.data import lmdb_builder, sources, synthetic

TRAIN_SHUFFLE_SEED = conventions.SEED  # create_imagenet.sh shuffles train; we do it with a fixed seed


def write_labels(path, wnids):
    """labels.txt: one 'wnid name' line per label, in label order (like Caffe's synset_words.txt)."""
    names = sources.imagenet_names()
    files.write_text(path, "".join(f"{w} {names.get(w, w)}\n" for w in wnids))


def _plans(splits, build, size):
    """One lmdb_builder.Plan per split, built into the new version, reusing the published one's
    LMDB when its inputs are unchanged and it is intact."""
    plans = {}
    for split in ("train", "val"):
        root, items = splits[split]
        previous = build.current.lmdb(split) if build.current else None
        plans[split] = lmdb_builder.plan(
            items,
            root,
            build.dir / f"{split}_lmdb",
            size=size,
            num_classes=len(splits["wnids"]),
            previous=previous,
            skipped=splits["skipped"][split],
            shuffle_seed=TRAIN_SHUFFLE_SEED if split == "train" else None,
        )
    return plans


def tree_source(root, val_txt=None) -> dict:
    """The source dataset.json records for an image tree (remake.recorded_source): absolute paths."""
    return {"imagenet": str(Path(root).resolve()), "val_txt": str(Path(val_txt).resolve()) if val_txt else None}


SYNTHETIC_SOURCE = {"imagenet": None, "val_txt": None}  # the embedded set (linfool.data.synthetic)


def check_replacing(out, source):
    """UserError (one line) when `out` holds a published set from another source than `source`: a
    rebuild from the same tree (another VAL_TXT too) goes ahead, another tree or the embedded set in
    place of a tree's (or the reverse) needs REPLACE=1 and is otherwise never done."""
    if not Path(out).exists():
        return
    current = remake.recorded_source(Path(out).resolve())
    if current is not None and current.get("imagenet") == source.get("imagenet") and not current.get("made_by"):
        return
    name = Path(out).name
    raise datasets.DataSetError(
        f"data set '{name}' was built from {remake.describe_source(current)}; this `make data` would replace it "
        f"with {remake.describe_source(source)} (and every run trained on it would be refused): "
        f"`{remake.remake_command(name, current)}` rebuilds it from its own source; add REPLACE=1 to replace it "
        "on purpose, or give another DATA="
    )


def build_dataset(source_root, out, *, val_txt=None, size=64, workers=None, progress=True, source=None):
    """Build the data set published at `out` (data/<name>) from an ILSVRC2012-style tree. Returns
    {split: BuildResult}. Before writing anything: one scan of the tree, the builds planned (inputs
    fingerprinted), the disk checked for the LMDBs' page-rounded size (DiskError, one line; space
    held by partials of killed builds is freed first), and an ETA printed. `source`: what dataset.json
    records as the set's source (default: the tree and val_txt, tree_source)."""
    start = time.perf_counter()
    with datasets.building(out, source or tree_source(source_root, val_txt)) as build:
        print(f"Scanning {source_root}...", flush=True)
        splits = sources.imagenet_splits(source_root, val_txt)
        if len(splits["wnids"]) < 2:
            raise sources.DatasetError(
                f"{source_root}/train has one class folder ({splits['wnids'][0]}); "
                "a classifier needs at least 2 classes"
            )
        workers = workers or os.cpu_count()
        plans = _plans(splits, build, size)
        print(
            f"{len(splits['wnids'])} classes; "
            + ", ".join(f"{s} {len(p.items):,} images" for s, p in plans.items())
            + f" (scanned in {time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        need = lmdb_builder.check_disk(plans.values(), build.dir)
        todo = [p for p in plans.values() if p.done is None]
        if todo:
            eta = sum(lmdb_builder.seconds_estimate(p, workers) for p in todo)
            print(
                f"Writing about {need / 1e9:.2f} GB of LMDB; ETA about {eta / 60:.1f} min on {workers} threads "
                "(decode speed sampled here; the bars show the live rate)",
                flush=True,
            )
        results = {}
        for split, plan in plans.items():
            print(f"Creating {split} lmdb from {plan.root} ({len(plan.items)} images)...", flush=True)
            results[split] = lmdb_builder.execute(
                plan, workers=workers, source=str(Path(plan.root).resolve()), progress=progress
            )
            results[split].path = Path(out) / f"{split}_lmdb"  # where it is published
            print(lmdb_builder.summary(results[split]), flush=True)
        if any(r.written == 0 for r in results.values()):
            empty = next(s for s, r in results.items() if r.written == 0)
            raise sources.DatasetError(
                f"the {empty} split has no usable image (see the reasons above); nothing was "
                f"published, {out} is as it was"
            )
        write_labels(build.dir / "labels.txt", splits["wnids"])
        unchanged = build.current is not None and datasets.identity_of(build.dir) == build.current.identity
        published = build.publish()
    print(f"Data set {out}: {'up to date' if unchanged else 'published'}, identity {published.identity}", flush=True)
    return results


def main(argv=None) -> int:
    args = stages.parse("data", argv)

    def body():
        name = paths.check_name(args.name or ("imagenet" if args.imagenet else conventions.DEMO_DATA), "DATA")
        for option in ("imagenet", "val_txt"):
            if getattr(args, option):
                setattr(args, option, str(cli.user_path(getattr(args, option), option.upper())))
        if args.val_txt and not Path(args.val_txt).is_file():
            raise sources.DatasetError(f"VAL_TXT={args.val_txt}: no such file")
        if args.imagenet:
            source = Path(args.imagenet)
            if not source.is_dir():
                raise sources.DatasetError(
                    f"IMAGENET={args.imagenet}: no such folder (give the ILSVRC2012 root that holds train/ and val/)"
                )
        out = paths.dataset_dir(name)
        recorded = tree_source(source, args.val_txt) if args.imagenet else SYNTHETIC_SOURCE
        with datasets.write_lock(out):  # held from the generator to the publish
            if not args.replace:
                check_replacing(out, recorded)
            if not args.imagenet:
                source = paths.DATA / f"{name}_jpeg"
                print(f"Generating the embedded synthetic set in {source}...", flush=True)
                synthetic.generate(source, train_per_class=args.train_per_class, val_per_class=args.val_per_class)
            build_dataset(source, out, val_txt=args.val_txt, source=recorded)
        print(f"Done: {paths.dataset_dir(name)}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
