"""linfool.experiments.evaluate: every val record counted, a subset only when asked and said so."""

import json
from pathlib import Path

from linfool.core import records

from running import py


def test_eval_counts_every_val_record_and_says_when_it_samples(own_runs):
    runs_dir, env = own_runs
    done = py("eval", env, "--run", "low", "--high", "high")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((runs_dir / "low" / "metrics.json").read_text())
    val = records.count(Path(env["LINFOOL_DATA"]) / "tiny" / "val_lmdb")
    assert metrics["val_images"] == metrics["val_records"] == val == 36 and metrics["val_subset"] == "all val records"
    assert (
        metrics["train_images"] == metrics["train_records"] == 144
        and "seeded uniform sample" in metrics["train_subset"]
    )
    assert "all val records" in done.stdout
    subset = py("eval", env, "--run", "low", "--val-per-class", "1")
    metrics = json.loads((runs_dir / "low" / "metrics.json").read_text())
    assert metrics["val_images"] == 18 and "class-balanced subset, 1 per class" in metrics["val_subset"]
    assert "class-balanced" in subset.stdout
    py("eval", env, "--run", "low")  # leave the full-val numbers for other tests
