"""linfool.experiments.attack_curves, difficulty and pairs: the measurement code on a hand-made linear
model whose answers are computable on paper, and the stage on tiny Caffe runs."""

import json
import math

import numpy as np
import pytest

from linfool.attacks import linf
from linfool.core import datum, records, runs
from linfool.experiments import pairs
from linfool.model.classifier import Classifier

from running import stage

INPUTS = 3 * 64 * 64


C = 1e-4  # weight scale of the hand-made model


GAP = 5.0  # score of class 0 minus class 1 on the start image


@pytest.fixture(scope="module")
def linearstage(caffe, tmp_path_factory):
    """A 2-class Caffe model made by hand: W[0] = 0, W[1] = C * s * m with signs s and magnitudes
    m in {1, 3} balanced so that W[1] . x = 0 on a grey image x = 128; b = (GAP, 0); mean 0.
    On paper, moving the gap s1 - s0 from -GAP to ln 99 (P(class 1) = 0.99) needs
      sign direction (d = s):        eps = (GAP + ln 99) / (C * sum m)           = 3.904
      blog direction (d = s m / 3):  eps = (GAP + ln 99) / (C * sum m^2 / 3)     = 4.685"""
    run = tmp_path_factory.mktemp("linear")
    (run / "deploy.prototxt").write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 64 dim: 64 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }\n'
        'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n'
    )
    signs = np.tile([1, -1], INPUTS // 2)
    magnitudes = np.repeat([1, 3], INPUTS // 2)
    W = np.stack([np.zeros(INPUTS), C * signs * magnitudes]).astype(np.float32)
    b = np.array([GAP, 0], np.float32)
    net = caffe.Net(str(run / "deploy.prototxt"), caffe.TEST)
    net.params["fc"][0].data[...] = W
    net.params["fc"][1].data[...] = b
    net.save(str(run / "snap_iter_1.caffemodel"))
    np.savez(
        run / "weights.npz",
        W=W,
        b=b,
        mean=np.zeros((3, 64, 64), np.float32),
        wnids=np.array(["a", "b"]),
        names=np.array(["a", "b"]),
        iteration=1,
        snapshot_sha256=runs.check_file(run / "snap_iter_1.caffemodel")[1],
    )
    return run


def test_needed_epsilon_matches_the_closed_form_on_a_hand_made_linear_model(linear_run):
    classifier = Classifier(linear_run)
    x = np.full((1, 3, 64, 64), 128, np.float32)
    true, target = np.array([0]), np.array([1])
    paper_sign = (GAP + math.log(99)) / (C * INPUTS * 2)  # sum m = 2 * INPUTS
    paper_blog = (GAP + math.log(99)) / (C * INPUTS * 5 / 3)  # sum m^2 = 5 * INPUTS
    assert linf.bound_epsilon(classifier, x, true, target)[0] == pytest.approx(paper_sign, rel=1e-3)
    W = classifier.params["W"]
    for kind, paper in (("sign", paper_sign), ("blog", paper_blog)):
        fooled = linf.fooled_at(classifier, x, target, linf.directions(W, true, target, kind))
        assert linf.first_epsilon(fooled)[0] == math.ceil(paper), kind
        assert not fooled[: math.ceil(paper), 0].any() and fooled[math.ceil(paper) :, 0].all(), kind


@pytest.mark.fast
def test_pair_sample_is_seeded_reads_only_its_images_and_never_targets_the_true_class(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 3, 64, 64), dtype=np.uint8)
    records.write(
        tmp_path / "val", ((f"{i:08d}".encode(), datum.encode_datum(pixels[i], i % 5)) for i in range(40)), 40
    )
    images, labels, which, targets, about = pairs.pair_sample(tmp_path / "val", 5, n_images=6, pairs=24)
    again = pairs.pair_sample(tmp_path / "val", 5, n_images=6, pairs=24)
    assert len(targets) == about["pairs"] == 6 * 4 and about["possible_pairs"] == 24 and about["val_records"] == 40
    assert np.array_equal(which, again[2]) and np.array_equal(targets, again[3]) and np.array_equal(images, again[0])
    assert not np.any(labels[which] == targets)
    originals = [int(np.flatnonzero((pixels == image.astype(np.uint8)).all(axis=(1, 2, 3)))[0]) for image in images]
    assert [i % 5 for i in originals] == list(labels)  # each image read with its own label
    few = pairs.pair_sample(tmp_path / "val", 5, n_images=6, pairs=12)
    assert few[4]["targets_per_image"] == 2 and len(few[3]) == 12 and not np.any(few[1][few[2]] == few[3])


def test_attack_curves_and_transfer_on_tiny_caffe_runs(own_runs):
    runs, env = own_runs
    stage("attack-curves", env, "--run", "low", "--high", "high", "--images", "3")
    result = json.loads((runs / "low" / "attacks" / "attack_curves.json").read_text())
    assert result["pairs"] == 3 * 17 and len(result["curves"]["sign"]) == 256
    for kind in ("blog", "sign", "bound"):
        curve = np.array(result["curves"][kind])
        assert curve[0] == 0 and np.all((curve >= 0) & (curve <= 1))
        low, high = (np.array(b) for b in result["bands"][kind])  # the 95 % band holds the point curve
        assert np.all(low <= curve + 1e-12) and np.all(curve <= high + 1e-12) and np.all(high - low > 0)
        needed = np.array(result["first_epsilon"][kind])
        assert len(needed) == result["pairs"] and np.median(needed) == result["median_epsilon"][kind]
        interval = result["median_epsilon_ci"][kind]
        assert interval["low"] <= interval["value"] <= interval["high"] and interval["n"] == result["pairs"]
    # the closed form bounds every Linf attack: neither measured curve may exceed it
    assert np.all(np.array(result["curves"]["sign"]) <= np.array(result["curves"]["bound"]) + 1e-9)
    assert np.all(np.array(result["curves"]["blog"]) <= np.array(result["curves"]["bound"]) + 1e-9)
    assert (runs / "low" / "attacks" / "attack_curves_runs.png").stat().st_size > 5_000
    stage("transfer", env, "--run", "low", "--high", "high", "--images", "2")
    transfer = json.loads((runs / "low" / "transfer" / "transfer.json").read_text())
    matrix = np.array(transfer["matrix"])
    assert matrix.shape == (2, 2) and np.all(np.diag(matrix) == 1.0)  # fooled on the source, by construction
    for row, intervals, n in zip(matrix, transfer["matrix_ci"], transfer["fooled_on_source"]):
        for rate, found in zip(row, intervals):  # each rate with its k of n and a 95 % interval holding it
            assert found["n"] == n and (n == 0 or found["k"] / n == rate and found["low"] <= rate <= found["high"])
