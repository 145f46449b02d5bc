"""linfool.attacks: each attack on a model whose answer is known. The blog's direction and its
bisection (blog), the Linf directions and the closed-form bound on a hand-made linear Caffe model
computable on paper (linf), and the square attack with scores only (square). The gradient attacks
through Caffe's backward pass: tests/test_gradients.py."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from linfool.attacks import blog, linf, square
from linfool.core import runs
from linfool.model.classifier import Classifier

SHAPE = (3, 4, 4)  # the square attack's hand-made models: 48 inputs

INPUTS = 3 * 64 * 64


C = 1e-4  # weight scale of the hand-made model


GAP = 5.0  # score of class 0 minus class 1 on the start image


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


def test_fooling_reaches_99_percent_for_every_target_in_caffe(tiny_runs):
    runs, _ = tiny_runs
    classifier = Classifier(runs / "low")
    x = blog.noise_image(seed=3)
    start = int(classifier.probs(x[None])[0].argmax())
    targets = [t for t in range(len(classifier.params["names"])) if t != start]
    results = blog.fool(classifier, x, targets)
    fooled = np.stack([r.image for r in results])
    probs = Classifier(runs / "low").probs(fooled)  # a fresh Caffe net re-classifies
    assert all(r.fooled for r in results)
    assert np.all(probs[np.arange(len(targets)), targets] >= 0.99 - 1e-6)
    assert all(0 < r.linf <= 255 and r.l2 > r.linf for r in results)
    # bisection found the smallest alpha: a little less no longer reaches 99 %
    less = np.clip(x + 0.97 * results[0].alpha * classifier.params["W"][targets[0]].reshape(3, 64, 64), 0, 255)
    assert classifier.probs(less[None])[0, targets[0]] < 0.99


def test_fool_each_fools_every_pair_as_fool_does_one_pair_in_batched_forwards():
    rng = np.random.default_rng(2)
    W = (0.01 * rng.standard_normal((6, 3 * 64 * 64))).astype(np.float32)
    sizes = []

    def probs(images):  # a numpy oracle that computes each image alone: batching cannot change an answer
        sizes.append(len(images))
        scores = np.stack([W @ image.reshape(-1) for image in images]).astype(np.float64)
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    model = SimpleNamespace(params={"W": W}, probs=probs)
    images = rng.uniform(0, 255, (5, 3, 64, 64)).astype(np.float32)
    targets = [1, 2, 3, 4, 5]
    alone = [blog.fool(model, x, [t])[0] for x, t in zip(images, targets)]
    sizes.clear()
    together = blog.fool_each(model, images, targets)
    assert sizes == [5] * blog.FORWARDS  # 28 forwards of 5 images, not 5 x 28 of one
    for one, both in zip(alone, together):
        assert (one.target, one.alpha, one.prob, one.fooled) == (both.target, both.alpha, both.prob, both.fooled)
        np.testing.assert_array_equal(one.image, both.image)
    assert all(r.fooled and r.prob >= 0.99 for r in together)


def test_square_attack_reaches_an_easy_target_within_its_budget(linear_net, tmp_path, linear_weights):
    W, b = linear_weights
    oracle = square.Oracle(linear_net(tmp_path, W, b))
    x = np.full(SHAPE, 128, np.float32)
    target = int(np.argsort(oracle(x[None])[0])[-2])  # the runner-up: reachable at eps 60, not at 0.5
    oracle.queries = 0
    result = square.square_attack(oracle, x, target, eps=60, max_queries=2000, seed=0)
    assert result["reached"] and result["prob"] >= 0.99 and result["linf"] <= 60 + 1e-4
    assert result["queries"] == oracle.queries <= 2000
    assert oracle(result["image"][None])[0, target] == pytest.approx(result["prob"])
    # the same budget too small to matter: no success, and every query of the budget used
    small = square.square_attack(oracle, x, target, eps=0.5, max_queries=50, seed=0)
    assert not small["reached"] and small["queries"] == 50


def row_by_row(W, b):
    """A numpy softmax oracle (test oracle only) that computes each image alone, so a batch of images
    gets exactly the probabilities each would get by itself; it records the batch sizes it saw."""
    sizes = []

    def probs(images):
        sizes.append(len(images))
        out = []
        for image in images:
            s = W.astype(np.float64) @ image.reshape(-1).astype(np.float64) + b
            e = np.exp(s - s.max())
            out.append(e / e.sum())
        return np.array(out)

    return probs, sizes


def test_the_lockstep_square_attack_gives_each_pair_its_own_result_in_fewer_calls(linear_weights):
    W, b = linear_weights
    rng = np.random.default_rng(5)
    xs = rng.uniform(0, 255, (4, *SHAPE)).astype(np.float32)
    targets, budgets, seeds = [1, 2, 3, 4], [60.0, 40.0, 0.5, 60.0], [7, 8, 9, 10]
    probs, sizes = row_by_row(W, b)
    alone = [
        square.square_attack(square.Oracle(probs), x, t, e, max_queries=300, seed=s)
        for x, t, e, s in zip(xs, targets, budgets, seeds)
    ]
    calls_alone = len(sizes)
    sizes.clear()
    oracle = square.Oracle(probs)
    together = square.square_attacks(oracle, xs, targets, budgets, max_queries=300, seeds=seeds)
    for one, both in zip(alone, together):
        assert one["queries"] == both["queries"] and one["reached"] == both["reached"]
        np.testing.assert_array_equal(one["image"], both["image"])
    assert oracle.queries == sum(r["queries"] for r in together) == sum(sizes)  # every image counted once
    assert len(sizes) == max(r["queries"] for r in together) < calls_alone
    assert not together[2]["reached"] and together[2]["queries"] == 300  # the tiny budget used it all
