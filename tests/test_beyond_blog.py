"""Attack curves, transfer, claims and the background class: the measurement code on a hand-made
linear model whose answers are computable on paper, and every module end to end on tiny Caffe runs."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linfool import attacks, claims, datum, fooling, paths, records, runs

INPUTS = 3 * 64 * 64
C = 1e-4          # weight scale of the hand-made model
GAP = 5.0         # score of class 0 minus class 1 on the start image


@pytest.fixture(scope="module")
def linear_run(caffe, tmp_path_factory):
    """A 2-class Caffe model made by hand: W[0] = 0, W[1] = C * s * m with signs s and magnitudes
    m in {1, 3} balanced so that W[1] . x = 0 on a grey image x = 128; b = (GAP, 0); mean 0.
    On paper, moving the gap s1 - s0 from -GAP to ln 99 (P(class 1) = 0.99) needs
      sign direction (d = s):        eps = (GAP + ln 99) / (C * sum m)           = 3.904
      blog direction (d = s m / 3):  eps = (GAP + ln 99) / (C * sum m^2 / 3)     = 4.685"""
    run = tmp_path_factory.mktemp("linear")
    (run / "deploy.prototxt").write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 64 dim: 64 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }\n'
        'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n')
    signs = np.tile([1, -1], INPUTS // 2)
    magnitudes = np.repeat([1, 3], INPUTS // 2)
    W = np.stack([np.zeros(INPUTS), C * signs * magnitudes]).astype(np.float32)
    b = np.array([GAP, 0], np.float32)
    net = caffe.Net(str(run / "deploy.prototxt"), caffe.TEST)
    net.params["fc"][0].data[...] = W
    net.params["fc"][1].data[...] = b
    net.save(str(run / "snap_iter_1.caffemodel"))
    np.savez(run / "weights.npz", W=W, b=b, mean=np.zeros((3, 64, 64), np.float32), wnids=np.array(["a", "b"]),
             names=np.array(["a", "b"]), iteration=1, snapshot_sha256=runs.check_file(run / "snap_iter_1.caffemodel")[1])
    return run


def test_needed_epsilon_matches_the_closed_form_on_a_hand_made_linear_model(linear_run):
    classifier = fooling.Classifier(linear_run)
    x = np.full((1, 3, 64, 64), 128, np.float32)
    true, target = np.array([0]), np.array([1])
    paper_sign = (GAP + math.log(99)) / (C * INPUTS * 2)          # sum m = 2 * INPUTS
    paper_blog = (GAP + math.log(99)) / (C * INPUTS * 5 / 3)      # sum m^2 = 5 * INPUTS
    assert attacks.bound_epsilon(classifier, x, true, target)[0] == pytest.approx(paper_sign, rel=1e-3)
    W = classifier.params["W"]
    for kind, paper in (("sign", paper_sign), ("blog", paper_blog)):
        fooled = attacks.fooled_at(classifier, x, target, attacks.directions(W, true, target, kind))
        assert attacks.first_epsilon(fooled)[0] == math.ceil(paper), kind
        assert not fooled[:math.ceil(paper), 0].any() and fooled[math.ceil(paper):, 0].all(), kind


def test_pair_sample_is_seeded_reads_only_its_images_and_never_targets_the_true_class(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 3, 64, 64), dtype=np.uint8)
    records.write(tmp_path / "val", ((f"{i:08d}".encode(), datum.encode_datum(pixels[i], i % 5)) for i in range(40)), 40)
    images, labels, which, targets, about = attacks.pair_sample(tmp_path / "val", 5, n_images=6, pairs=24)
    again = attacks.pair_sample(tmp_path / "val", 5, n_images=6, pairs=24)
    assert len(targets) == about["pairs"] == 6 * 4 and about["possible_pairs"] == 24 and about["val_records"] == 40
    assert np.array_equal(which, again[2]) and np.array_equal(targets, again[3]) and np.array_equal(images, again[0])
    assert not np.any(labels[which] == targets)
    originals = [int(np.flatnonzero((pixels == image.astype(np.uint8)).all(axis=(1, 2, 3)))[0]) for image in images]
    assert [i % 5 for i in originals] == list(labels)          # each image read with its own label
    few = attacks.pair_sample(tmp_path / "val", 5, n_images=6, pairs=12)
    assert few[4]["targets_per_image"] == 2 and len(few[3]) == 12 and not np.any(few[1][few[2]] == few[3])


def _run(module, env, *args):
    done = subprocess.run([sys.executable, "-m", f"linfool.{module}", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_attack_curves_and_transfer_on_tiny_caffe_runs(tiny_runs):
    runs, env = tiny_runs
    _run("attacks", env, "--run", "low", "--high", "high", "--images", "3")
    result = json.loads((runs / "low" / "attacks" / "attack_curves.json").read_text())
    assert result["pairs"] == 3 * 17 and len(result["curves"]["sign"]) == 256
    for kind in ("blog", "sign", "bound"):
        curve = np.array(result["curves"][kind])
        assert curve[0] == 0 and np.all((curve >= 0) & (curve <= 1))
    # the closed form bounds every Linf attack: neither measured curve may exceed it
    assert np.all(np.array(result["curves"]["sign"]) <= np.array(result["curves"]["bound"]) + 1e-9)
    assert np.all(np.array(result["curves"]["blog"]) <= np.array(result["curves"]["bound"]) + 1e-9)
    assert (runs / "low" / "attacks" / "attack_curves_runs.png").stat().st_size > 5_000
    _run("transfer", env, "--run", "low", "--high", "high", "--images", "2")
    transfer = json.loads((runs / "low" / "transfer" / "transfer.json").read_text())
    matrix = np.array(transfer["matrix"])
    assert matrix.shape == (2, 2) and np.all(np.diag(matrix) == 1.0)   # fooled on the source, by construction


def test_every_claim_row_has_a_verdict(tiny_runs, monkeypatch):
    runs_dir, env = tiny_runs
    group = ["--run", "low", "--low", "low", "--high", "high"]
    (runs_dir / "low" / "metrics.json").unlink(missing_ok=True)
    refused = subprocess.run([sys.executable, "-m", "linfool.claims", *group], capture_output=True, text=True,
                             env=env)
    for module, extra in (("evaluate", []), ("figures", []), ("attacks", ["--images", "2"])):
        _run(module, env, *group, *extra)
    monkeypatch.setattr(paths, "RUNS", runs_dir)
    monkeypatch.setattr(paths, "DATA", Path(env["LINFOOL_DATA"]))
    rows = claims.check_claims("low", "low", "high")
    assert len(rows) >= 10
    assert all(r["verdict"] in (claims.HOLDS, claims.FAILS, claims.UNCHECKABLE) for r in rows)
    assert all(r["why"] for r in rows if r["verdict"] == claims.UNCHECKABLE)
    by_claim = {r["claim"].split(" ")[0]: r for r in rows}
    assert by_claim["init"]["verdict"] == claims.HOLDS          # Caffe's forward at iteration 0
    assert by_claim["toy:"]["verdict"] == claims.HOLDS
    assert by_claim["~3.0"]["verdict"] == claims.UNCHECKABLE    # 18 classes, not ImageNet
    # before its inputs existed (or when they are out of date), the claims were refused in one line
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "`make " in refused.stderr


def test_background_rounds_fine_tune_with_caffe_and_the_report_shows_everything(tiny_runs):
    runs, env = tiny_runs
    out = _run("background", env, "--run", "low", "--rounds", "1", "--fool", "6", "--iters", "20",
               "--measure-images", "2")
    assert "round 1:" in out
    rounds = json.loads((runs / "low" / "background" / "background.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["background_images"] > 0
    assert (runs / "low_bg1" / "snap_iter_20.caffemodel").is_file() and (runs / "low_ctl1" / "snap_iter_20.caffemodel").is_file()
    assert rounds[1]["control"]["run"] == "low_ctl1"
    for run in ("low_bg1", "low_ctl1"):              # caffe train --weights really fine-tuned
        assert "Finetuning from" in (runs / run / "train.log").read_text()
    assert "num_output: 19" in (runs / "low_bg1" / "deploy.prototxt").read_text()
    # the round's data set links the train and val LMDBs (never a copy) and adds a small background LMDB,
    # mixed into each TRAIN batch by a second Caffe Data layer and Concat layers
    round_data = Path(env["LINFOOL_DATA"]) / "tiny_bg1"
    assert (round_data / "train_lmdb").is_symlink() and (round_data / "val_lmdb").is_symlink()
    background = records.labels(round_data / "background_lmdb")
    assert len(background) == rounds[1]["background_images"] and set(background) == {18}
    net = (runs / "low_bg1" / "train_val.prototxt").read_text()
    assert net.count('type: "Data"') == 3 and net.count('type: "Concat"') == 2
    assert str(round_data.resolve() / "background_lmdb") in net and str(round_data.resolve() / "train_lmdb") in net
    assert "data_mix" in (runs / "low_bg1" / "train.log").read_text()
    _run("attacks", env, "--run", "low", "--high", "high", "--images", "2")
    _run("transfer", env, "--run", "low", "--high", "high", "--images", "2")
    _run("claims", env, "--run", "low", "--low", "low", "--high", "high")
    _run("figures", env, "--run", "low", "--low", "low", "--high", "high")
    _run("report", env, "--run", "low", "--low", "low", "--high", "high")
    page = (runs / "low" / "report.html").read_text()
    for part in ("python -m linfool.claims", "<th>verdict</th>", "toy: w.x = -3", "attacks/attack_curves.png",
                 "transfer/transfer.png", "background/background.png", "python -m linfool.background"):
        assert part in page, part
