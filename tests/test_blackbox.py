"""linfool.experiments.blackbox: exact template recovery and the square attack on hand-made Caffe models
whose answers are known, and the stage on tiny Caffe runs."""

import json

import numpy as np
import pytest

from linfool.attacks import square
from linfool.experiments import blackbox

from running import stage

SHAPE = (3, 4, 4)


def tiny_net(caffe, tmp_path, W, b):
    """A 48-input linear softmax in Caffe with the given weights; returns probs(images) -> (n, K)."""
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(
        f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 dim: 4 dim: 4 }} }} }}\n'
        f'layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param {{ num_output: {len(W)} }} }}\n'
        'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n'
    )
    net = caffe.Net(str(deploy), caffe.TEST)
    net.params["fc"][0].data[...] = W
    net.params["fc"][1].data[...] = b

    def probs(images):
        net.blobs["data"].reshape(*images.shape)
        net.blobs["data"].data[...] = images
        return net.forward()["prob"].copy()

    return probs


@pytest.fixture
def model():
    rng = np.random.default_rng(3)
    return (0.02 * rng.standard_normal((5, 48))).astype(np.float32), rng.standard_normal(5).astype(np.float32)


def test_scores_reveal_W_up_to_the_one_vector_all_classes_share(caffe, tmp_path, model):
    W, b = model
    oracle = square.Oracle(tiny_net(caffe, tmp_path, W, b))
    recovered = blackbox.recover_templates(oracle, SHAPE)
    assert oracle.queries == 1 + 48
    np.testing.assert_allclose(recovered, W - W.mean(axis=0), atol=2e-5 * np.abs(W).max())
    # The part no softmax output shows: a vector added to every class row changes nothing.
    shifted_dir = tmp_path / "shifted"
    shifted_dir.mkdir()
    shifted = W + np.random.default_rng(4).standard_normal(48).astype(np.float32) * 0.05
    again = blackbox.recover_templates(square.Oracle(tiny_net(caffe, shifted_dir, shifted, b)), SHAPE)
    np.testing.assert_allclose(again, recovered, atol=2e-5 * np.abs(W).max())
    assert blackbox.template_agreement(recovered, shifted)["correlation_min"] > 0.9999


def test_square_attack_reaches_an_easy_target_within_its_budget(caffe, tmp_path, model):
    W, b = model
    oracle = square.Oracle(tiny_net(caffe, tmp_path, W, b))
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


def test_the_lockstep_square_attack_gives_each_pair_its_own_result_in_fewer_calls(model):
    W, b = model
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


def test_blackbox_on_tiny_caffe_runs_and_its_report_rows(own_runs):
    runs, env = own_runs
    stage("blackbox", env, "--run", "low", "--low", "low", "--high", "high", "--images", "2", "--queries", "3000")
    for run in ("low", "high"):
        result = json.loads((runs / run / "blackbox" / "blackbox.json").read_text())
        assert result["recovery"]["queries"] == 12289 and result["recovery"]["correlation_min"] > 0.999
        assert len(result["rows"]) == 2 and all(r["recovered_prob"] >= 0.99 - 1e-6 for r in result["rows"])
        assert all(r["squares_linf"] <= r["squares_budget_linf"] + 1e-3 for r in result["rows"])
        assert (runs / run / "blackbox" / "blackbox.png").stat().st_size > 10_000
