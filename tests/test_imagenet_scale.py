"""What the ImageNet job needs, on tiny data made on the fly: the streaming data layer, LMDB map
sizing and verification, 1000-class labels (official, devkit, Caffe val.txt), the disk preflight,
resume with the recorded solver, evaluation over every val record, and runs of different data sets
never compared."""
import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from linfool import data, datum, lmdb_builder, records, rehearsal, sources

Usage = namedtuple("Usage", "total used free")


def _lmdb(path, n, label=lambda i: i % 7):
    pixels = np.random.default_rng(n).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)
    records.write(path, ((f"{i:08d}".encode(), datum.encode_datum(pixels[i], label(i))) for i in range(n)), n)
    return pixels


@pytest.mark.parametrize("remap", [records.REMAP_EVERY, 7])     # 7: the map is re-opened mid-batch, often
def test_records_stream_in_batches_and_read_chosen_positions(tmp_path, monkeypatch, remap):
    monkeypatch.setattr(records, "REMAP_EVERY", remap)
    pixels = _lmdb(tmp_path / "db", 600)
    assert [key for key, _ in records.raw(tmp_path / "db")] == [f"{i:08d}".encode() for i in range(600)]
    parts = list(records.batches(tmp_path / "db", batch=256))
    assert [len(labels) for _, labels in parts] == [256, 256, 88]
    assert np.array_equal(np.concatenate([images for images, _ in parts]), pixels)
    assert np.array_equal(records.labels(tmp_path / "db"), np.arange(600) % 7)
    images, labels = records.read(tmp_path / "db", [599, 3, 42, 3])
    assert np.array_equal(images, pixels[[599, 3, 42, 3]]) and list(labels) == [599 % 7, 3, 0, 3]
    picked = list(records.batches(tmp_path / "db", batch=2, positions=[5, 1, 9]))
    assert [list(lab) for _, lab in picked] == [[1, 5], [2]]
    balanced = records.balanced_positions(records.labels(tmp_path / "db"), 3, seed=1)
    assert len(balanced) == 21 and np.all(np.bincount(np.arange(600)[balanced] % 7) == 3)
    assert np.array_equal(balanced, records.balanced_positions(records.labels(tmp_path / "db"), 3, seed=1))
    with pytest.raises(records.LmdbError, match="has 600 records"):
        records.read(tmp_path / "db", [600])
    with pytest.raises(records.LmdbError, match="no LMDB at"):
        records.count(tmp_path / "nowhere")


def test_map_is_sized_from_whole_pages_and_grows_when_it_fills_anyway(tmp_path):
    # A 64x64 record (12,3xx bytes) takes 4 overflow pages of 4,096 bytes: the old n * 12,544 * 1.2
    # estimate was below that, so every large build relied on growth near its end.
    assert records.record_bytes() >= 4 * 4096 and records.map_size(1_281_167) > 1_281_167 * 4 * 4096
    writer = records.Writer(tmp_path / "db", 300, initial_map=1 << 20)       # 1 MiB: fills after ~60 records
    values = [datum.encode_datum(np.full((3, 64, 64), i % 256, np.uint8), i % 3) for i in range(300)]
    for i, value in enumerate(values):
        writer.put(f"{i:08d}".encode(), value)
    assert writer.close() == 300 and writer.grown >= 1
    records.verify(tmp_path / "db", 300, num_classes=3)
    assert [v for _, v in records.raw(tmp_path / "db")] == values
    with pytest.raises(records.LmdbError, match="holds 300 records, 301 were written"):
        records.verify(tmp_path / "db", 301)
    with pytest.raises(records.LmdbError, match="label 2"):
        records.verify(tmp_path / "db", 300, num_classes=2)


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    """The rehearsal's ILSVRC2012-shaped trees, 1 train and 1 val image per class (2,000 JPEGs)."""
    return rehearsal.generate(tmp_path_factory.mktemp("ilsvrc") / "tree", train_per_class=1, val_per_class=1)


def test_1000_classes_in_sorted_wnid_order_with_official_val_labels(ilsvrc):
    splits = sources.imagenet_splits(ilsvrc / "flat")
    assert len(splits["wnids"]) == 1000 and splits["wnids"] == sorted(splits["wnids"])
    val = dict(splits["val"][1])
    assert len(val) == 1000 and val["ILSVRC2012_val_00000001.JPEG"] == 65      # sea snake, as Caffe's val.txt
    assert splits["wnids"][65] == "n01751748"
    folders = sources.imagenet_splits(ilsvrc / "folders")       # per-class val folders: the same labels
    assert sorted(label for _, label in folders["val"][1]) == sorted(val.values())
    assert {p.split("/")[1]: label for p, label in folders["val"][1]} == val


def test_devkit_ground_truth_is_converted_or_refused(ilsvrc, tmp_path):
    wnids = sources.imagenet_splits(ilsvrc / "flat")["wnids"]
    official = dict(sources.flat_val_items(ilsvrc / "flat" / "val", wnids))
    devkit = ilsvrc / "folders" / "ILSVRC2012_devkit_t12" / "data"
    assert (devkit / "ILSVRC2012_validation_ground_truth.txt").read_text().split()[0] == "490"
    converted = dict(sources.flat_val_items(ilsvrc / "flat" / "val", wnids, devkit / "ILSVRC2012_validation_ground_truth.txt"))
    assert converted == official
    lone = tmp_path / "ILSVRC2012_validation_ground_truth.txt"              # no meta.mat beside it
    lone.write_text((devkit / "ILSVRC2012_validation_ground_truth.txt").read_text())
    with pytest.raises(sources.DatasetError, match="devkit class ids"):
        sources.flat_val_items(ilsvrc / "flat" / "val", wnids, lone)
    shifted = tmp_path / "val.txt"                          # a val.txt numbered by devkit id - 1
    ids = rehearsal.devkit_ids(wnids)
    shifted.write_text("".join(f"{name} {ids[wnids[label]] - 1}\n" for name, label in official.items()))
    with pytest.raises(sources.DatasetError, match="disagrees with the official ILSVRC2012 val labels"):
        sources.flat_val_items(ilsvrc / "flat" / "val", wnids, shifted)


def test_disk_preflight_refuses_in_one_line_before_writing(ilsvrc, tmp_path, monkeypatch):
    monkeypatch.setattr(lmdb_builder.shutil, "disk_usage", lambda _: Usage(100 << 30, 0, 10 << 20))
    with pytest.raises(lmdb_builder.DiskError, match=r"need about 0\.0\d GB .* has 0\.0\d GB free"):
        data.build_dataset(ilsvrc / "flat", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _train(env, *args):
    return subprocess.run([sys.executable, "-m", "linfool.train", *args], capture_output=True, text=True, env=env)


SHORT = ["--set", "max_iter=9", "--set", "snapshot=9", "--set", "test_interval=1000", "--set", "test_iter=1"]


def test_resume_keeps_the_recorded_solver_and_logs_changes(tiny_data, tmp_path):
    env = {**os.environ, "LINFOOL_DATA": str(tiny_data), "LINFOOL_RUNS": str(tmp_path)}
    first = _train(env, "--data", "tiny", "--run", "weak", "--overlay", "prototxt/solver_reg_low.prototxt", *SHORT)
    assert first.returncode == 0, first.stderr[-2000:]
    plain = _train(env, "--run", "weak", "--resume")                  # what `make train RUN=weak RESUME=1` runs
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "weight_decay: 0.0005" in (tmp_path / "weak" / "solver.prototxt").read_text()
    refused = _train(env, "--run", "weak", "--resume", "--set", "max_iter=18")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--change-solver" in refused.stderr
    changed = _train(env, "--run", "weak", "--resume", "--change-solver", "--set", "max_iter=18")
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert (tmp_path / "weak" / "snap_iter_18.caffemodel").is_file()
    info = json.loads((tmp_path / "weak" / "run.json").read_text())
    assert info["overlays"] == ["prototxt/solver_reg_low.prototxt"] and info["history"][-1]["changes"] == ["set max_iter=18"]
    assert "weight_decay: 0.0005" in (tmp_path / "weak" / "solver.prototxt").read_text()
    assert "resuming with solver changes: set max_iter=18" in (tmp_path / "weak" / "train.log").read_text()
    other = _train(env, "--run", "weak", "--resume", "--data", "elsewhere")
    assert other.returncode == 2 and "keeps its data set" in other.stderr


def _module(module, env, *args):
    return subprocess.run([sys.executable, "-m", f"linfool.{module}", *args], capture_output=True, text=True, env=env)


def test_eval_counts_every_val_record_and_says_when_it_samples(tiny_runs):
    runs_dir, env = tiny_runs
    done = _module("evaluate", env, "--run", "low", "--high", "high")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((runs_dir / "low" / "metrics.json").read_text())
    val = records.count(Path(env["LINFOOL_DATA"]) / "tiny" / "val_lmdb")
    assert metrics["val_images"] == metrics["val_records"] == val == 36 and metrics["val_subset"] == "all val records"
    assert metrics["train_images"] == metrics["train_records"] == 144 and "seeded uniform sample" in metrics["train_subset"]
    assert "all val records" in done.stdout
    subset = _module("evaluate", env, "--run", "low", "--val-per-class", "1")
    metrics = json.loads((runs_dir / "low" / "metrics.json").read_text())
    assert metrics["val_images"] == 18 and "class-balanced subset, 1 per class" in metrics["val_subset"]
    assert "class-balanced" in subset.stdout
    _module("evaluate", env, "--run", "low")                       # leave the full-val numbers for other tests


def test_runs_of_another_data_set_are_refused_in_one_line(tiny_runs, tmp_path):
    runs_dir, env = tiny_runs
    other = tmp_path / "data"
    other.mkdir()
    (other / "elsewhere").symlink_to(os.path.join(env["LINFOOL_DATA"], "tiny"))
    (other / "tiny").symlink_to(os.path.join(env["LINFOOL_DATA"], "tiny"))
    env2 = {**env, "LINFOOL_DATA": str(other)}
    trained = _train(env2, "--data", "elsewhere", "--run", "foreign", *SHORT)
    assert trained.returncode == 0, trained.stderr[-2000:]
    for module in ("figures", "report", "claims", "attacks", "transfer", "evaluate"):
        done = _module(module, env2, "--run", "low", "--low", "foreign", "--high", "high")
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(errors) == 1 and "different data sets" in errors[0], (module, done.stderr)
        assert "foreign on 'elsewhere'" in errors[0] and "low on 'tiny'" in errors[0]
    shutil.rmtree(runs_dir / "foreign")
