"""linfool.experiments.claims: every claim row has a verdict by the rule, with its test, n, effect
interval and p, measured on tiny Caffe runs; refused while its inputs are missing."""

import json
from pathlib import Path

from linfool.core import paths
from linfool.experiments import claims

from running import py, stage


def test_every_claim_row_has_a_verdict(own_runs, monkeypatch):
    runs_dir, env = own_runs
    group = ["--run", "low", "--low", "low", "--high", "high"]
    (runs_dir / "low" / "metrics.json").unlink(missing_ok=True)
    refused = py("claims", env, *group)
    for module, extra in (("eval", []), ("figures", []), ("attack-curves", ["--images", "2"])):
        stage(module, env, *group, *extra)
    monkeypatch.setattr(paths, "RUNS", runs_dir)
    monkeypatch.setattr(paths, "DATA", Path(env["LINFOOL_DATA"]))
    rows = claims.check_claims("low", "low", "high")
    assert len(rows) >= 10
    assert all(r["verdict"] in (claims.HOLDS, claims.FAILS, claims.INCONCLUSIVE, claims.UNCHECKABLE) for r in rows)
    assert all(r["why"] for r in rows if r["verdict"] in (claims.UNCHECKABLE, claims.INCONCLUSIVE) and r["needed"])
    measured = [r for r in rows if r["verdict"] != claims.UNCHECKABLE and not r["test"].startswith("none")]
    assert len(measured) >= 7  # every measured row: its test, n, effect interval and p-value
    for r in measured:
        assert r["n"] and r["p"] is not None, r
        effect = r["effect"]  # a paired test whose items all tie has no effect to estimate (n 0, inconclusive)
        assert effect["low"] <= effect["value"] <= effect["high"] if effect.get("n") != 0 else r["p"] == 1.0, r
    by_claim = {r["claim"].split(" ")[0]: r for r in rows}
    assert by_claim["init"]["verdict"] == claims.HOLDS  # Caffe's forward at iteration 0
    assert by_claim["toy:"]["verdict"] == claims.HOLDS
    assert by_claim["~3.0"]["verdict"] == claims.UNCHECKABLE  # 18 classes, not ImageNet
    # before its inputs existed (or when they are out of date), the claims were refused in one line
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "`make " in refused.stderr


def test_make_claims_seeds_repeats_the_training_rows_over_seeds_and_reuses_them(own_runs):
    runs_dir, env = own_runs
    group = ["--run", "low", "--low", "low", "--high", "high"]
    for module, extra in (("eval", []), ("figures", []), ("attack-curves", ["--images", "2"])):
        stage(module, env, *group, *extra)
    out = stage("claims", env, *group, "--seeds", "2")
    assert "seeds: 2 seeds of low, high: 2 `caffe train` runs" in out and "over 2 seeds (1701, 1702)" in out
    result = json.loads((runs_dir / "low" / "claims.json").read_text())["seeds"]
    assert [s["runs"] for s in result["per_seed"]] == [["low", "high"], ["low_seed1", "high_seed1"]]
    assert set(result["summary"]) == {r["claim"] for r in result["per_seed"][0]["rows"]} and len(result["summary"]) == 3
    train_seed = json.loads((runs_dir / "low_seed1" / "run.json").read_text())
    assert train_seed["settings"][-1] == "random_seed=1702"
    again = stage("claims", env, *group, "--seeds", "2")  # the seed runs are trained already: left alone
    assert "Run low_seed1: trained already with these settings" in again
