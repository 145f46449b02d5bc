"""make bench's ImageNet table (linfool_dev.bench_job): the work it counts from a solver is what
`caffe train` does (its log is the oracle), and its GPU column takes a box's measured card over the
recorded one, saying which. No timing is asserted."""

import json
import os
import re
import subprocess
import sys

import pytest

from linfool_dev import bench_job


@pytest.mark.parametrize("max_iter, initialization", [(12, "true"), (10, "true"), (12, "false")])
def test_the_counted_test_phases_are_the_ones_caffe_runs(tiny_data, tmp_path, max_iter, initialization):
    env = {**os.environ, "LINFOOL_DATA": str(tiny_data), "LINFOOL_RUNS": str(tmp_path)}
    settings = [f"max_iter={max_iter}", "test_interval=4", "test_iter=3", f"test_initialization={initialization}"]
    settings += ["snapshot=0", "snapshot_after_train=false"]
    done = subprocess.run(
        [sys.executable, "-m", "linfool", "train", "--data", "tiny", "--run", "t", *(f"--set={s}" for s in settings)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = (tmp_path / "t" / "train.log").read_text()
    tested = len(re.findall(r"Iteration \d+, Testing net \(#0\)", log))
    train_images, test_images = bench_job._solver_work(tmp_path / "t" / "solver.prototxt")
    net = (tmp_path / "t" / "train_val.prototxt").read_text()
    train_batch, test_batch = (int(b) for b in re.findall(r"batch_size: (\d+)", net))
    assert tested == {"true": max_iter // 4 + 1, "false": max_iter // 4}[initialization]
    assert test_images == tested * 3 * test_batch
    assert train_images == max_iter * train_batch


def test_the_gpu_column_takes_the_boxes_measured_card_and_names_what_stays_recorded(tmp_path):
    card = tmp_path / "gpu_card.json"
    assert bench_job.read_card(card) == bench_job.RECORDED_CARD  # no box measured yet
    card.write_text(
        json.dumps({"device": "Some GPU", "when": "2026-12-01 10:00", "train_images_per_s": 100_000.0, "call_s": 2e-4})
    )
    read = bench_job.read_card(card)
    assert read["device"] == "Some GPU"
    assert read["train_images_per_s"] == (100_000.0, "measured by make gpu-check on Some GPU (2026-12-01 10:00)")
    assert read["call_s"][0] == 2e-4 and read["call_s"][1].startswith("measured")
    assert read["jpegs_per_s"] == bench_job.RECORDED_CARD["jpegs_per_s"]  # not on the card: still the recorded one
    here = bench_job.Costs(1e-3, 1e-4, 1.0, 1e-5, 2e-5, 1e-3, {})
    box = bench_job.box_costs(read, here)
    assert box.host_s == here.host_s and "this machine" in box.sources["host_s"]
    work = bench_job.Work(jpegs=10, train=1_000_000, test=500_000, starts=2, forwards=1000, calls=10, other_s=3.0)
    assert box.seconds(work) == pytest.approx(
        10 / 4_423 + 1_500_000 / 100_000 + 2 * 1.2 + 1000 * (1 / 542_209 + 2e-5) + 10 * 2e-4 + 3.0
    )


def test_the_recipe_is_counted_at_imagenet_size_from_the_stages_defaults():
    here = bench_job.Costs(1e-3, 1e-4, 1.0, 1e-5, 2e-5, 1e-3, {})
    rows = dict(bench_job.recipe_work({"figures": 100.0, "report": 2.0}, here))
    assert rows["make data"].jpegs == 1_281_167 + 50_000
    sweep = rows["make sweep (3 x 50,000 iterations)"]
    assert (sweep.train, sweep.starts) == (3 * 50_000 * 256, 3)
    assert sweep.test == 3 * 26 * 50_000  # iteration 0 and every 2,000 up to 50,000, each all 50,000 val images
    blackbox = next(work for name, work in rows.items() if name.startswith("make blackbox"))
    assert blackbox.upper_bound and blackbox.calls < 3 * 6 * 10_000  # the pairs' queries go in lockstep
    figures = rows["make figures"]
    assert figures.other_s == pytest.approx(
        100.0 - here.seconds(bench_job.Work(forwards=figures.forwards, calls=figures.calls))
    )
    assert sum(work.starts for work in rows.values()) == 3 + 6 + 2  # sweep, background's 6 fine-tunes, claims


def test_the_card_make_gpu_check_writes_is_the_one_the_table_reads(tmp_path):
    card = tmp_path / "runs" / "gpu_card.json"
    bench_job.write_card("NVIDIA X", 150_000.0, {"forward_s": 2e-6, "call_s": 3e-4, "host_s": 5e-5}, card)
    read = bench_job.read_card(card)
    assert read["device"] == "NVIDIA X"
    assert read["train_images_per_s"][0] == 150_000.0 and read["forward_images_per_s"][0] == pytest.approx(500_000)
    assert read["call_s"][0] == 3e-4 and "make gpu-check on NVIDIA X" in read["call_s"][1]
    assert read["start_s"] == bench_job.RECORDED_CARD["start_s"]  # gpu-check does not measure it


def test_a_damaged_card_is_said_in_one_line_and_the_recorded_one_used(tmp_path, capsys):
    card = tmp_path / "gpu_card.json"
    card.write_text('{"device": "NVIDIA X", "train_ima')  # cut short
    assert bench_job.read_card(card) == bench_job.RECORDED_CARD
    said = capsys.readouterr().out.strip()
    assert said.count("\n") == 0 and "damaged" in said and "make gpu-check" in said
    card.write_text('{"train_images_per_s": 1.0}')  # no device or time: not a card gpu-check wrote
    assert bench_job.read_card(card) == bench_job.RECORDED_CARD
