"""The deeper models (prototxt/mlp_*.prototxt, conv_*.prototxt) trained by the real `caffe train`
beside the tiny linear runs, measured by `make deep` (backprop through Caffe), their weight-decay
search, the linear-only stages refusing them, and the open questions' claim rows."""

import json
import shutil

import numpy as np
import pytest

from linfool.core import paths, stats
from linfool.core.prototxt import TrainConfigError, deploy_file
from linfool.experiments import claims, deep
from linfool.model import decay_search

from running import py, stage

SHORT = ["--set", "max_iter=20", "--set", "snapshot=20", "--set", "test_iter=1", "--set", "test_interval=20"]


@pytest.fixture(scope="module")
def deep_runs(tiny_runs, tmp_path_factory):
    """A copy of the tiny runs with the four deeper runs beside 'low' (make deep-sweep, 20 iterations
    each) and make deep's result on them (with 'high' as the strong linear run)."""
    runs, env = tiny_runs
    folder = tmp_path_factory.mktemp("deep") / "runs"
    shutil.copytree(runs, folder, symlinks=True)
    env = {**env, "LINFOOL_RUNS": str(folder)}
    stage("train", env, "--deep", "--run", "low", "--data", "tiny", *SHORT)
    out = stage("deep", env, "--run", "low", "--high", "high", "--images", "3", "--pairs", "6", "--steps", "5")
    return folder, env, out


def test_make_deep_sweep_trains_an_mlp_and_a_convnet_at_two_decays_with_caffe(deep_runs):
    folder, _, _ = deep_runs
    for net in ("mlp", "conv"):
        decays = []
        for name in (f"low_{net}", f"low_{net}_reg_high"):
            run = folder / name
            assert (run / "snap_iter_20.caffemodel").is_file()
            assert "Optimization Done" in (run / "train.log").read_text()
            deploy = (run / "deploy.prototxt").read_text()
            assert "num_output: 18" in deploy and ("conv1" in deploy) == (net == "conv")
            solver = (run / "solver.prototxt").read_text()
            decays.append(float(solver.split("weight_decay:")[1].split()[0]))
        assert decays[1] > decays[0]  # the strong overlay raised it


def test_make_deep_measures_every_model_by_backprop_with_provenance(deep_runs):
    folder, _, stdout = deep_runs
    result = json.loads((folder / "low" / "deep" / "deep.json").read_text())
    names = [m["run"] for m in result["models"]]
    assert names == ["low", "high", "low_mlp", "low_mlp_reg_high", "low_conv", "low_conv_reg_high"]
    assert [s["run"] for s in result["sources"]] == names and all(s["data"] == "tiny" for s in result["sources"])
    assert result["pairs"] == 6 and result["ladder"] == list(deep.LADDER)
    for m in result["models"]:
        for kind in ("gradient", "sign", "iterative", "iterative_top1"):
            curve = m["curves"][kind]
            assert len(curve) == len(deep.LADDER) and all(0 <= f <= 1 for f in curve)
        assert 0 <= m["val_top1"] <= 1
    linear = result["models"][0]["curves"]["iterative"]
    assert linear[-1] == 1.0 and linear[0] < 1.0  # fooled at Linf 128, not at 1 pixel
    matrix = np.array(result["transfer"], float)
    assert matrix.shape == (6, 6)
    for i, m in enumerate(result["models"]):  # P >= 0.99 on its own model: top-1 there, always
        assert np.isnan(matrix[i, i]) if m["fooled_at_transfer_eps"] == 0 else matrix[i, i] == 1.0
    for picture in ("attack_curves.png", "filters.png", "transfer.png"):
        assert (folder / "low" / "deep" / picture).stat().st_size > 5000
    assert "low_conv_reg_high" in stdout and "6 models;" in stdout and "gradients at most, about" in stdout


def test_the_linear_stages_refuse_a_deeper_run_in_one_line(deep_runs):
    _, env, _ = deep_runs
    done = py("weights", env, "--run", "low_mlp")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "not a linear classifier" in done.stderr and "make deep" in done.stderr


def test_a_net_without_a_deploy_net_is_refused_in_one_line(tmp_path, caffe):
    net = tmp_path / "my_train_val.prototxt"
    net.write_text(
        'layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
        'layer { name: "odd" type: "InnerProduct" bottom: "data" top: "s" inner_product_param { num_output: 2 } }\n'
    )
    with pytest.raises(TrainConfigError, match="no deploy net for my_train_val.prototxt: put my_deploy.prototxt"):
        deploy_file(net)
    assert deploy_file(paths.PROTOTXT / "conv_train_val.prototxt").name == "conv_deploy.prototxt"
    assert deploy_file(paths.PROTOTXT / "train_val.prototxt").name == "deploy.prototxt"


def test_the_decay_search_rule_keeps_half_the_best_accuracy():
    found = [(0.0005, 0.50), (0.005, 0.49), (0.05, 0.30), (0.5, 0.10)]
    assert decay_search.choose(found) == (0.0005, 0.05)
    assert decay_search.choose([(0.1, 0.2)]) == (0.1, 0.1)


def test_the_decay_search_bisects_between_the_kept_and_the_dropped_decay(monkeypatch):
    accuracy = {0.0005: 0.5, 0.05: 0.45, 5: 0.1, 0.5: 0.3}  # keep >= 0.25: 0.5 kept, 1.6 dropped

    def candidate(net, data, decay, iters, step):
        accuracy.setdefault(decay, 0.1)
        return decay, accuracy[decay], {"run": f"{net}_wd{decay:g}"}

    monkeypatch.setattr(decay_search, "_candidate", candidate)
    result = decay_search.search("mlp", "synthetic", (0.0005, 0.05, 5), iters=10, bisect=2)
    # grid: 0.05 kept, 5 dropped -> sqrt(0.05 x 5) = 0.5 kept -> sqrt(0.5 x 5) = 1.6 dropped
    assert [c["weight_decay"] for c in result["candidates"]] == [0.0005, 0.05, 0.5, 1.6, 5]
    assert (result["weak"], result["strong"]) == (0.0005, 0.5)


def test_the_decay_search_trains_with_caffe_and_reuses_what_is_trained(deep_runs, tmp_path):
    _, env, _ = deep_runs
    env = {**env, "LINFOOL_RUNS": str(tmp_path / "runs")}
    args = ["decay-search", "--net", "mlp", "--data", "tiny", "--decays", "0.0005", "--iters", "10"]
    stage(*args[:1], env, *args[1:])
    result = json.loads((tmp_path / "runs" / "tiny_mlp_decay_search" / "decay_search.json").read_text())
    assert [s["run"] for s in result["sources"]] == ["tiny_mlp_wd0.0005"] and result["strong"] == 0.0005
    found = result["candidates"][0]["val_top1_ci"]  # over Caffe's test phase: test_iter x its batch
    assert found["n"] > 0 and found["low"] <= result["candidates"][0]["val_top1"] <= found["high"]
    assert (tmp_path / "runs" / "tiny_mlp_wd0.0005" / "snap_iter_10.caffemodel").is_file()
    again = stage(*args[:1], env, *args[1:])  # an interrupted or repeated search reuses what is trained
    assert "already trained with these settings" in again
    bad = py("decay-search", env, "--net", "resnet")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "choose from 'mlp', 'conv'" in bad.stderr


def test_the_open_questions_rows_have_verdicts(deep_runs, monkeypatch):
    folder, _, _ = deep_runs
    result = json.loads((folder / "low" / "deep" / "deep.json").read_text())
    row = claims.claim_deep_regularization(result)
    assert row["verdict"] != claims.UNCHECKABLE and "mlp" in row["value"] and "conv" in row["value"]
    assert row["n"] == result["pairs"] and row["test"].startswith("paired sign test")
    row = claims.claim_transfer(result, 18)  # on the tiny runs a deep model may fool nothing at Linf 16
    assert row["verdict"] != claims.UNCHECKABLE or row["why"]
    made = {"models": [{"kind": k, "fooled_at_transfer_eps": 40} for k in ("linear", "mlp", "conv")]}
    made["transfer"] = [[1, 0.3, 0.2], [0.4, 1, float("nan")], [0.2, 0.5, 1]]  # rows: made on; columns: classified by
    row = claims.claim_transfer(made, 18)  # 20 of 80 and 24 of 80 against chance 1/18: far above
    assert row["verdict"] == claims.HOLDS and row["value"].startswith("linear -> deep 20/80 (25 %")
    made["transfer"][0][1:] = [0.05, 0.05]  # linear -> deep 4 of 80: chance gives 4.4
    assert claims.claim_transfer(made, 18)["verdict"] == claims.INCONCLUSIVE
    made["transfer"][0][1:] = [0.0, 0.0]  # never: 0 of 80, below chance at p = 0.01
    assert claims.claim_transfer(made, 18)["verdict"] == claims.FAILS

    def forest(k, n=6):
        top1 = stats.proportion(k, n, "exact")
        rows = {"forest": [{"linf": 32.0, "top1": k / n, "top1_ci": top1, "reached": 0.0}]}
        return {"max_queries": 100, "attacks": {**rows, "linear": [{"linf": 32.0, "top1": 1.0, "reached": 1.0}]}}

    assert claims.claim_forest(forest(3), 18)["verdict"] == claims.HOLDS  # 3 of 6 against chance 1/18
    assert claims.claim_forest(forest(0), 18)["verdict"] == claims.INCONCLUSIVE  # 6 pairs cannot show "never"
    assert claims.claim_forest(forest(0, 100), 18)["verdict"] == claims.FAILS
    missing = claims.claim_forest(None, 18, "make forest: not made yet; `make forest RUN=low` makes it")
    assert missing["verdict"] == claims.UNCHECKABLE and "make forest" in missing["why"]


def test_the_report_shows_make_deeps_models_and_the_forest_only_when_run(deep_runs):
    folder, env, _ = deep_runs
    stage("report", env, "--run", "low", "--low", "low", "--high", "high")
    page = (folder / "low" / "report.html").read_text()
    deep_part = page.split("Open question: deeper models")[1].split("<h2>")[0]
    assert "low_conv_reg_high" in deep_part and "iterative / sign" in deep_part
    assert deep_part.count("<img src='report_assets/") == 3  # curves, filters, transfer
    forest_part = page.split("Open question: a random forest")[1].split("<h2>")[0]
    assert "Not run on these runs" in forest_part and "make open-questions" in forest_part
