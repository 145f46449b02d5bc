"""linfool.experiments.blackbox: exact template recovery on a hand-made Caffe model whose answers are
known, and the stage on tiny Caffe runs (the square attack itself: tests/test_attacks.py)."""

import json

import numpy as np

from linfool.attacks import square
from linfool.experiments import blackbox

from running import stage

SHAPE = (3, 4, 4)


def test_scores_reveal_W_up_to_the_one_vector_all_classes_share(linear_net, tmp_path, linear_weights):
    W, b = linear_weights
    oracle = square.Oracle(linear_net(tmp_path, W, b))
    recovered = blackbox.recover_templates(oracle, SHAPE)
    assert oracle.queries == 1 + 48
    np.testing.assert_allclose(recovered, W - W.mean(axis=0), atol=2e-5 * np.abs(W).max())
    # The part no softmax output shows: a vector added to every class row changes nothing.
    shifted_dir = tmp_path / "shifted"
    shifted_dir.mkdir()
    shifted = W + np.random.default_rng(4).standard_normal(48).astype(np.float32) * 0.05
    again = blackbox.recover_templates(square.Oracle(linear_net(shifted_dir, shifted, b)), SHAPE)
    np.testing.assert_allclose(again, recovered, atol=2e-5 * np.abs(W).max())
    assert blackbox.template_agreement(recovered, shifted)["correlation_min"] > 0.9999


def test_blackbox_on_tiny_caffe_runs_and_its_report_rows(own_runs):
    runs, env = own_runs
    stage("blackbox", env, "--run", "low", "--low", "low", "--high", "high", "--images", "2", "--queries", "3000")
    for run in ("low", "high"):
        result = json.loads((runs / run / "blackbox" / "blackbox.json").read_text())
        assert result["recovery"]["queries"] == 12289 and result["recovery"]["correlation_min"] > 0.999
        assert len(result["rows"]) == 2 and all(r["recovered_prob"] >= 0.99 - 1e-6 for r in result["rows"])
        assert all(r["squares_linf"] <= r["squares_budget_linf"] + 1e-3 for r in result["rows"])
        assert (runs / run / "blackbox" / "blackbox.png").stat().st_size > 10_000
