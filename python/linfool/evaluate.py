"""`make eval`: top-1 / top-5 on the val LMDB for each run's newest snapshot, with pycaffe.

    python -m linfool.evaluate [--run NAME ...]     # writes runs/<name>/metrics.json, prints a table
"""
import argparse
import json
import sys
from pathlib import Path

import lmdb
import numpy as np

from linfool import datum, fooling, paths, weights

BATCH = 256


def read_lmdb(path, limit=None):
    """All (or the first `limit`) records: ((n, 3, 64, 64) uint8 BGR, (n,) labels)."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    images, labels = [], []
    with env.begin() as txn:
        for i, (_, value) in enumerate(txn.cursor()):
            if limit is not None and i >= limit:
                break
            image, label = datum.decode_datum(value)
            images.append(image)
            labels.append(label)
    env.close()
    return np.stack(images), np.array(labels)


def evaluate(run_dir) -> dict:
    """Top-1 and top-5 accuracy of the run's newest snapshot on its val (and train) LMDB."""
    classifier = fooling.Classifier(run_dir)
    data_dir = weights.run_data_dir(run_dir)
    metrics = {"run": run_dir.name, "iteration": int(classifier.params["iteration"])}
    for split in ("val", "train"):
        images, labels = read_lmdb(data_dir / f"{split}_lmdb", limit=5000)
        probs = np.concatenate([classifier.probs(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])
        top5 = np.argsort(-probs, axis=1)[:, :5]
        metrics[f"{split}_top1"] = float((top5[:, 0] == labels).mean())
        metrics[f"{split}_top5"] = float((top5 == labels[:, None]).any(axis=1).mean())
        metrics[f"{split}_images"] = len(labels)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def load_metrics(run_dir) -> dict:
    """The run's metrics.json, evaluating the run first when it has none."""
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else evaluate(Path(run_dir))


def table(rows) -> str:
    lines = [f"{'run':<16} {'iter':>6} {'val top-1':>9} {'val top-5':>9} {'train top-1':>11}"]
    for m in rows:
        lines.append(f"{m['run']:<16} {m['iteration']:>6} {100 * m['val_top1']:>8.1f}% "
                     f"{100 * m['val_top5']:>8.1f}% {100 * m['train_top1']:>10.1f}%")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", help="run name (default: every run with a snapshot)")
    args = parser.parse_args(argv)
    names = args.run or sorted(p.parent.name for p in paths.RUNS.glob("*/*_iter_*.caffemodel"))
    if not names:
        print("ERROR: no trained run in runs/; run `make train` first", file=sys.stderr)
        return 2
    try:
        rows = [evaluate(paths.run_dir(name)) for name in dict.fromkeys(names)]
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
