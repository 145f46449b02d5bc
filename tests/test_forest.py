"""The random forest fooled with scores only (linfool.experiments.forest): the square attack reaches a
target on a forest that has no gradient, every query counted; and make forest on the tiny runs."""

import json

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from linfool.attacks.square import Oracle, square_attack
from linfool.experiments import forest

from running import stage


def test_the_square_attack_fools_a_forest_with_scores_only_and_counts_every_query():
    rng = np.random.default_rng(0)
    dark = rng.uniform(0, 60, (40, 3, 8, 8))
    bright = rng.uniform(190, 255, (40, 3, 8, 8))
    model = RandomForestClassifier(n_estimators=25, random_state=0).fit(
        np.concatenate([dark, bright]).reshape(80, -1), [0] * 40 + [1] * 40
    )
    calls = []
    probs = forest.forest_probs(model, 3)  # a third class the forest never saw: probability 0
    oracle = Oracle(lambda images: calls.append(len(images)) or probs(images))
    x = rng.uniform(0, 60, (3, 8, 8)).astype(np.float32)
    assert probs(x[None])[0].argmax() == 0 and probs(x[None])[0, 2] == 0
    result = square_attack(oracle, x, 1, eps=160.0, max_queries=500)
    assert result["reached"] and probs(result["image"][None])[0, 1] >= 0.99
    assert result["linf"] <= 160.0 and result["queries"] == oracle.queries == sum(calls) == len(calls)
    small = square_attack(Oracle(probs), x, 1, eps=4.0, max_queries=50)
    assert not small["reached"] and small["queries"] == 50


def test_make_forest_writes_both_models_rates_with_provenance(own_runs):
    runs_dir, env = own_runs
    stage("forest", env, "--run", "low", "--trees", "10", "--images", "2", "--queries", "50")
    result = json.loads((runs_dir / "low" / "forest" / "forest.json").read_text())
    assert result["forest"]["trees"] == 10 and result["forest"]["train_records"] == 18 * 8
    assert set(result["attacks"]) == {"forest", "linear"}
    for rows in result["attacks"].values():
        assert [r["linf"] for r in rows] == list(forest.BUDGETS)
        assert all(0 <= r["reached"] <= r["top1"] <= 1 for r in rows)  # P >= 0.99 implies top-1
    assert result["sources"][0]["run"] == "low" and "snapshot_sha256" in result["sources"][0]
    assert 0 < result["queries_sent"]["forest"] <= 2 * len(forest.BUDGETS) * (50 + 2)
    assert (runs_dir / "low" / "forest" / "forest.png").stat().st_size > 10_000


def test_the_forest_stays_within_its_memory_bound_at_many_classes(tiny_data, monkeypatch):
    assert forest.leaf_bound(100, 18, 5400) is None  # the embedded set: grown to purity, as measured
    assert forest.leaf_bound(100, 1000, 20_000) == 1250  # ImageNet: 2 GB / (100 trees x 1000 x 8 B x 2)
    from linfool.core import datasets, paths

    monkeypatch.setattr(paths, "DATA", tiny_data)
    monkeypatch.setattr(forest, "FOREST_BYTES", 10 * 18 * 8 * 2 * 20)  # 20 leaves a tree for 10 trees
    model, about = forest.train_forest(datasets.DataSet.named("tiny"), trees=10)
    assert about["max_leaf_nodes"] == 20 and about["train_records"] == 18 * 8
    assert all(tree.tree_.n_leaves <= 20 for tree in model.estimators_)
    assert sum(tree.tree_.value.nbytes for tree in model.estimators_) <= forest.FOREST_BYTES
