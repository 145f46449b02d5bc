"""`make eval`: top-1 / top-5 of each run's newest snapshot with pycaffe, over EVERY val record.

    python -m linfool.evaluate --run NAME [--low RUN --high RUN] [--val-per-class N] [--train-sample 10000]
    python -m linfool.evaluate --all               # every trained run under runs/

Val: every record of the val LMDB (ImageNet: all 50,000, as the blog's 3.0 % / 10 % are), or, only
when --val-per-class is given, a seeded class-balanced subset, said so in metrics.json and the
table. Train: a seeded uniform random sample of --train-sample records (the whole set when smaller),
its size stated. Records stream in batches (linfool.records): memory does not grow with the LMDB.
Top-5 is top-k with k = min(5, classes) (a 3-class set reports top-3). Writes runs/<name>/metrics.json
(with the snapshot and data set it measured) and prints a table. Other stages read it through
read_metrics, which refuses a metrics.json of another snapshot or data set (never re-evaluates).
"""
import sys

import numpy as np
from tqdm import tqdm

from linfool import cli, files, fooling, paths, records, runs

TRAIN_SAMPLE = 10_000        # train records whose accuracy is measured (seeded uniform sample)
SEED = 1701


def accuracy(classifier, lmdb_path, positions=None, desc="", top_k=5) -> dict:
    """Top-1 / top-k of pycaffe's forward over the LMDB's records (or those at `positions`):
    {'top1', 'top5' (top-k), 'images'}. Streams batches of records.BATCH."""
    total = records.count(lmdb_path) if positions is None else len(np.unique(positions))
    hits1 = hits5 = seen = 0
    bar = tqdm(total=total, unit="img", desc=desc, disable=not desc or not sys.stderr.isatty())
    for images, labels in records.batches(lmdb_path, positions=positions):
        top5 = np.argsort(-classifier.probs(images), axis=1)[:, :top_k]
        hits1 += int((top5[:, 0] == labels).sum())
        hits5 += int((top5 == labels[:, None]).any(axis=1).sum())
        seen += len(labels)
        bar.update(len(labels))
    bar.close()
    return {"top1": hits1 / max(seen, 1), "top5": hits5 / max(seen, 1), "images": seen}


def evaluate(run, val_per_class=None, train_sample=TRAIN_SAMPLE, seed=SEED) -> dict:
    """Accuracy of the run's newest snapshot on all of val (or a class-balanced subset) and on a
    seeded train sample; writes and returns metrics.json's dict."""
    run = runs.as_run(run)
    dataset = run.dataset()
    classifier = fooling.Classifier(run)
    val, train = dataset.lmdb("val"), dataset.lmdb("train")
    top_k = min(5, dataset.num_classes)
    metrics = {"run": run.name, "data": dataset.name, "iteration": int(classifier.params["iteration"]),
               "val_records": records.count(val), "train_records": records.count(train), "seed": seed,
               "top_k": top_k, "sources": [run.source()]}
    val_positions = None
    if val_per_class:
        val_positions = records.balanced_positions(records.labels(val), val_per_class, seed)
    metrics["val_subset"] = (f"class-balanced subset, {val_per_class} per class, seed {seed}" if val_per_class
                             else "all val records")
    result = accuracy(classifier, val, val_positions, desc=f"eval {run.name} val", top_k=top_k)
    metrics.update(val_top1=result["top1"], val_top5=result["top5"], val_images=result["images"])
    train_positions = records.random_positions(metrics["train_records"], train_sample, seed)
    result = accuracy(classifier, train, train_positions, desc=f"eval {run.name} train sample", top_k=top_k)
    metrics.update(train_top1=result["top1"], train_top5=result["top5"], train_images=result["images"],
                   train_subset=f"seeded uniform sample of {result['images']} of {metrics['train_records']} records")
    files.write_json(run.path / "metrics.json", metrics)
    return metrics


def read_metrics(run) -> dict:
    """The run's metrics.json, refused in one line (runs.RunError / runs.Stale) when missing or made
    from another snapshot or data set than the run's current ones: `make eval` remakes it."""
    run = runs.as_run(run)
    return runs.read_result(run.path / "metrics.json", f"make eval RUN={run.name}", f"metrics.json of run {run.name}")


def table(rows) -> str:
    k = rows[0].get("top_k", 5)
    lines = [f"{'run':<22} {'data':<12} {'iter':>6} {'val top-1':>9} {f'val top-{k}':>9} {'val images':>11} "
             f"{'train top-1':>11} {'train sample':>12}"]
    for m in rows:
        lines.append(f"{m['run']:<22} {m['data']:<12} {m['iteration']:>6} {100 * m['val_top1']:>8.1f}% "
                     f"{100 * m['val_top5']:>8.1f}% {m['val_images']:>11} {100 * m['train_top1']:>10.1f}% "
                     f"{m['train_images']:>12}")
    subsets = {m["val_subset"] for m in rows}
    lines.append(f"val: {'; '.join(sorted(subsets))}; train: seeded uniform sample (seed {rows[0]['seed']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run name; evaluated with its sweep companions (linfool.runs.group)")
    parser.add_argument("--low", help="weakly regularized run (default: runs.sweep_names)")
    parser.add_argument("--high", help="strongly regularized run (default: runs.sweep_names)")
    parser.add_argument("--all", action="store_true", help="every trained run under runs/")
    parser.add_argument("--val-per-class", type=cli.positive_int,
                        help="evaluate a seeded class-balanced val subset instead of all")
    parser.add_argument("--train-sample", type=cli.positive_int, default=TRAIN_SAMPLE, help="train records measured")
    args = parser.parse_args(argv)
    if not args.run and not args.all:
        parser.error("give --run NAME or --all")

    def body():
        if args.all:
            group = [runs.Run(p.parent) for p in sorted({p.parent for p in paths.RUNS.glob("*/*_iter_*.caffemodel")})
                     if (p.parent / "run.json").is_file()]
            if not group:
                raise runs.RunError("no trained run in runs/; run `make train` first")
        else:
            group = runs.group(args.run, args.low, args.high)
        with runs.locked(write=group):
            rows = [evaluate(run, args.val_per_class, args.train_sample) for run in group]
        print(table(rows))
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
