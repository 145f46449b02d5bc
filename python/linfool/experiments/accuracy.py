"""Top-1 / top-k of a run's newest snapshot over a data set's records, with pycaffe: the measurement
`make eval` writes to metrics.json and every background round repeats on its fine-tuned runs.

    measure(run, val_per_class=None, train_sample=10000) -> metrics dict, written to runs/<run>/metrics.json
    table(rows) -> the printed table
"""

import base64
import sys

import numpy as np
from tqdm import tqdm

from linfool.core import conventions, files, records, runs, stages, stats
from linfool.model.classifier import Classifier

TRAIN_SAMPLE = stages.default("eval", "train_sample")  # train records measured (a seeded uniform sample)


SEED = conventions.SEED


def accuracy(classifier, lmdb_path, *, positions=None, desc="", top_k=5) -> dict:
    """Top-1 / top-k of pycaffe's forward over the LMDB's records (or those at `positions`):
    {'top1', 'top5' (top-k), 'images', 'correct'}: correct is the (images,) bool top-1 hit of each
    record in reading order (what a paired test of two runs on the same records needs). Streams
    batches of records.BATCH."""
    total = records.count(lmdb_path) if positions is None else len(np.unique(positions))
    hits1, hits5 = [], 0
    bar = tqdm(total=total, unit="img", desc=desc, disable=not desc or not sys.stderr.isatty())
    for images, labels in records.batches(lmdb_path, positions=positions):
        top5 = np.argsort(-classifier.probs(images), axis=1)[:, :top_k]
        hits1.append(top5[:, 0] == labels)
        hits5 += int((top5 == labels[:, None]).any(axis=1).sum())
        bar.update(len(labels))
    bar.close()
    correct = np.concatenate(hits1) if hits1 else np.zeros(0, bool)
    seen = len(correct)
    return {"top1": int(correct.sum()) / max(seen, 1), "top5": hits5 / max(seen, 1), "images": seen, "correct": correct}


def pack(correct) -> str:
    """A (n,) bool array as base64 of its packed bits (metrics.json keeps each val record's top-1 hit
    in 1/8 byte: 50,000 ImageNet val images in 8.4 KB)."""
    return base64.b64encode(np.packbits(np.asarray(correct, bool)).tobytes()).decode()


def unpack(text, n) -> np.ndarray:
    """pack's inverse: the (n,) bool array."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[:n].astype(bool)


def measure(run, *, val_per_class=None, train_sample=TRAIN_SAMPLE, seed=SEED, command=None) -> dict:
    """Accuracy of the run's newest snapshot on all of val (or a class-balanced subset) and on a
    seeded train sample; writes and returns metrics.json's dict."""
    run = runs.as_run(run)
    dataset = run.dataset()
    classifier = Classifier(run)
    val, train = dataset.lmdb("val"), dataset.lmdb("train")
    top_k = min(5, dataset.num_classes)
    metrics = {
        "run": run.name,
        "data": dataset.name,
        "iteration": int(classifier.params["iteration"]),
        "val_records": records.count(val),
        "train_records": records.count(train),
        "seed": seed,
        "top_k": top_k,
        "sources": [run.source()],
        "command": command or f"make eval RUN={run.name}",
    }
    val_positions = None
    if val_per_class:
        val_positions = records.balanced_positions(records.labels(val), val_per_class, seed)
    metrics["val_subset"] = (
        f"class-balanced subset, {val_per_class} per class, seed {seed}" if val_per_class else "all val records"
    )
    result = accuracy(classifier, val, positions=val_positions, desc=f"eval {run.name} val", top_k=top_k)
    n = result["images"]
    metrics.update(
        val_top1=result["top1"],
        val_top5=result["top5"],
        val_images=n,
        # each with its n and Wilson 95 % interval (linfool.core.stats)
        val_top1_ci=stats.proportion(round(result["top1"] * n), n),
        val_top5_ci=stats.proportion(round(result["top5"] * n), n),
        val_correct=pack(result["correct"]),  # per record, in reading order: paired tests of two runs
    )
    train_positions = records.random_positions(metrics["train_records"], train_sample, seed)
    result = accuracy(classifier, train, positions=train_positions, desc=f"eval {run.name} train sample", top_k=top_k)
    metrics.update(
        train_top1=result["top1"],
        train_top5=result["top5"],
        train_images=result["images"],
        train_top1_ci=stats.proportion(round(result["top1"] * result["images"]), result["images"]),
        train_subset=f"seeded uniform sample of {result['images']} of {metrics['train_records']} records",
    )
    files.write_json(run.path / "metrics.json", metrics)
    return metrics


def table(rows) -> str:
    k = rows[0].get("top_k", 5)
    lines = [
        f"{'run':<22} {'data':<12} {'iter':>6} {'val top-1 (95 % interval)':>26} {f'val top-{k}':>9} "
        f"{'val images':>11} {'train top-1':>11} {'train sample':>12}"
    ]
    for m in rows:
        lines.append(
            f"{m['run']:<22} {m['data']:<12} {m['iteration']:>6} {interval_text(m['val_top1_ci']):>26} "
            f"{100 * m['val_top5']:>8.1f}% {m['val_images']:>11} {100 * m['train_top1']:>10.1f}% "
            f"{m['train_images']:>12}"
        )
    subsets = {m["val_subset"] for m in rows}
    lines.append(
        f"val: {'; '.join(sorted(subsets))}; intervals: Wilson 95 %; train: seeded uniform sample (seed {rows[0]['seed']})"
    )
    return "\n".join(lines)


def interval_text(found) -> str:
    """'44.4 % (41.2-47.7)' of a stats.proportion."""
    return f"{100 * found['value']:.1f} % ({100 * found['low']:.1f}-{100 * found['high']:.1f})"
