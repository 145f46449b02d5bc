"""make adv-train: the adversarial half is the closed form on the linear net, the two-half loss is
Goodfellow's objective, a resumed run equals an uninterrupted one, the comparison picks the run of the
closest accuracy, and misuse is refused in one line."""

import json
import os
import signal
import subprocess

import numpy as np
import pytest

from linfool.core import paths, prototxt
from linfool.experiments import adversarial, claims
from linfool.model import adv_train

from running import PY, one_error, py, stage

CLASSES, B = 5, 4
# Tiny set: 144 train images, batch 256 (each batch spans the end of the LMDB); iteration 2 is no epoch boundary.
SHORT = ["--set", "snapshot=2", "--set", "test_interval=1000", "--set", "test_iter=1", "--set", "display=1"]


def _nets(caffe, tmp_path, alpha=0.5):
    """(training net of 2B, gradient net of B) of the blog's linear net at CLASSES classes, sharing weights."""
    net = prototxt.read_net(paths.PROTOTXT / "train_val.prototxt")
    prototxt.fc_layer(net).inner_product_param.num_output = CLASSES
    for layer in net.layer:
        if layer.type == "Data":
            layer.data_param.batch_size = B
    train_net, batch = adv_train.adversarial_net(net, alpha)
    assert batch == B
    paths_ = tmp_path / "train.prototxt", tmp_path / "gradient.prototxt"
    paths_[0].write_text(prototxt.text(train_net))
    paths_[1].write_text(prototxt.text(adv_train.gradient_net(train_net, B)))
    training, gradient = (caffe.Net(str(p), caffe.TRAIN) for p in paths_)
    rng = np.random.default_rng(0)
    training.params["fc"][0].data[...] = rng.normal(0, 1e-3, (CLASSES, 12288))
    training.params["fc"][1].data[...] = rng.normal(0, 0.1, CLASSES)
    gradient.share_with(training)
    return training, gradient


def _softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_adversarial_half_is_the_closed_form_on_the_linear_net(caffe, tmp_path):
    training, gradient = _nets(caffe, tmp_path)
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (B, 3, 64, 64)).astype(np.float32)
    labels = np.array([0, 3, 1, 4])
    mean = rng.uniform(60, 200, (3, 64, 64)).astype(np.float32)
    eps = 8.0
    made = adv_train.fgsm(gradient, clean, labels, mean, eps)
    W, b = (p.data.astype(np.float64) for p in training.params["fc"])  # the shared weights
    x = (clean - mean).reshape(B, -1).astype(np.float64)
    p = _softmax(x @ W.T + b)
    closed = (p - np.eye(CLASSES)[labels]) @ W  # W^T (p - y) per image, (B, 12288)
    expected = np.clip(clean + eps * np.sign(closed).reshape(clean.shape), 0, 255) - mean
    clear = np.abs(closed) > 1e-6 * np.abs(closed).max()  # signs float32 cannot resolve are left out
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(made.reshape(B, -1)[clear], expected.reshape(B, -1)[clear].astype(np.float32))
    assert np.abs(made + mean - clean).max() == eps  # within EPS of the clean image, and moved by it
    assert made.min() >= -mean.max() and (made + mean).max() <= 255
    assert not gradient.params["fc"][0].diff.any()  # lr_mult 0: no weight gradient was computed


def test_the_two_halves_are_goodfellows_objective(caffe, tmp_path):
    alpha = 0.3
    training, _ = _nets(caffe, tmp_path, alpha)
    rng = np.random.default_rng(2)
    data = rng.normal(0, 50, (2 * B, 3, 64, 64)).astype(np.float32)
    labels = rng.integers(0, CLASSES, 2 * B)
    training.blobs["data"].data[...] = data
    training.blobs["label"].data[...] = labels
    out = training.forward()
    W, b = (p.data.astype(np.float64) for p in training.params["fc"])
    p = _softmax(data.reshape(2 * B, -1).astype(np.float64) @ W.T + b)
    nll = -np.log(p[np.arange(2 * B), labels])
    assert float(out["loss_clean"]) == pytest.approx(nll[:B].mean(), rel=1e-4)
    assert float(out["loss_adv"]) == pytest.approx(nll[B:].mean(), rel=1e-4)
    weights = dict(zip(training._blob_names, training._blob_loss_weights))
    assert (weights["loss_clean"], weights["loss_adv"]) == pytest.approx((alpha, 1 - alpha))


def test_closest_accuracy_picks_the_matched_run():
    top1 = {"adv": 0.45, "weak": 0.40, "blog": 0.47, "strong": 0.30}
    assert adversarial.closest(top1, "adv", ["weak", "blog", "strong"]) == "blog"
    assert adversarial.closest({"adv": 0.5, "a": 0.4, "b": 0.6}, "adv", ["a", "b"]) == "a"  # a tie: the first


@pytest.fixture
def compared(own_runs):
    """own_runs (low, high on the tiny set) with their attack curves on a small pair sample."""
    runs_dir, env = own_runs
    for name in ("eval", "attack-curves"):
        stage(
            name,
            env,
            "--run",
            "low",
            "--low",
            "low",
            "--high",
            "high",
            *(["--images", 2, "--pairs", 4] * (name != "eval")),
        )
    return runs_dir, env


def _adv(env, run, *args):
    return py("adv-train", env, "--data", "tiny", "--run", run, "--compare", "low", "--compare", "high", *SHORT, *args)


def test_a_resumed_adv_train_equals_an_uninterrupted_one_and_compares(caffe, compared):
    runs_dir, env = compared
    whole = _adv(env, "whole", "--set", "max_iter=4")
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
    first = _adv(env, "split", "--set", "max_iter=2")
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = py(
        "adv-train", env, "--run", "split", "--resume", "--set", "max_iter=4", "--compare", "low", "--compare", "high"
    )
    assert resumed.returncode == 0 and "Resuming from snap_iter_2.solverstate" in resumed.stdout, resumed.stderr[-2000:]
    nets = [
        caffe.Net(str(runs_dir / n / "deploy.prototxt"), str(runs_dir / n / "snap_iter_4.caffemodel"), caffe.TEST)
        for n in ("whole", "split")
    ]
    np.testing.assert_array_equal(nets[0].params["fc"][0].data, nets[1].params["fc"][0].data)
    assert np.abs(nets[0].params["fc"][0].data).max() > 0
    info = json.loads((runs_dir / "whole" / "run.json").read_text())
    assert info["adversarial"] == {"net": "linear", "eps": 8.0, "alpha": 0.5}
    assert "EPS=8" in (runs_dir / "whole" / "train_val.prototxt").read_text()
    log = (runs_dir / "whole" / "train.log").read_text()
    assert "Iteration 4, loss" in log and "Optimization Done." in log
    result = json.loads((runs_dir / "whole" / "adversarial" / "comparison.json").read_text())
    metrics = {n: json.loads((runs_dir / n / "metrics.json").read_text())["val_top1"] for n in ("whole", "low", "high")}
    assert result["matched"] == adversarial.closest(metrics, "whole", ["low", "high"])
    assert result["strong"] == "high"  # the largest weight decay
    assert result["pairs"] == json.loads((runs_dir / "low" / "attacks" / "attack_curves.json").read_text())["pairs"]
    assert (
        set(result["iterative"]) == {"whole", "low", "high"}
        and (runs_dir / "whole" / "adversarial" / "comparison.png").is_file()
    )


def test_adv_train_misuse_is_refused_in_one_line(compared):
    _, env = compared
    assert _adv(env, "adv", "--set", "max_iter=2").returncode == 0
    one_error(py("train", env, "--run", "adv", "--resume", "--set", "max_iter=4"), "make adv-train RUN=adv RESUME=1")
    one_error(py("adv-train", env, "--run", "adv", "--resume", "--eps", "2"), "keeps its NET, EPS and ALPHA")
    one_error(py("adv-train", env, "--run", "low", "--resume"), "not trained by `make adv-train`")
    one_error(_adv(env, "other", "--alpha", "1"), "ALPHA=1")
    again = _adv(env, "adv", "--set", "max_iter=2", "--eps", "4")  # other settings than the run's: nothing deleted
    one_error(again, "already has snapshots", "make adv-train RUN=adv RESUME=1")


def test_ctrl_c_snapshots_stops_and_says_how_to_continue(compared):
    """As make train: Ctrl-C reaches the trainer, which snapshots and stops; the command exits 130."""
    runs_dir, env = compared
    proc = subprocess.Popen(
        [*PY, "linfool", "adv-train", "--data", "tiny", "--run", "stopped", *SHORT]
        + ["--set", "max_iter=100000", "--set", "snapshot=100000", "--compare", "low"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Iteration 3,"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "make adv-train RUN=stopped RESUME=1` continues" in err, err[-2000:]
    snapshots = list((runs_dir / "stopped").glob("snap_iter_*.caffemodel"))
    assert len(snapshots) == 1 and 3 <= int(snapshots[0].stem.rsplit("_", 1)[1]) < 100000
    assert "Optimization stopped early" in (runs_dir / "stopped" / "train.log").read_text()
    assert not (runs_dir / "stopped" / "adversarial").exists()  # no comparison of a run cut short


def test_an_adversarial_mlp_is_compared_with_the_mlps_own_weight_decay(own_runs):
    """NET=mlp: the same trainer, compared with the MLP's weak and strong decay by what applies to any net
    (no blog direction or bound), its claims rows name the MLP and the report shows it."""
    runs_dir, env = own_runs
    solver = str(paths.PROTOTXT / "solver_mlp.prototxt")
    strong = ["--overlay", str(paths.PROTOTXT / "solver_mlp_reg_high.prototxt")]
    for name, extra in (("m_low", []), ("m_high", strong)):
        stage("train", env, "--run", name, "--data", "tiny", "--solver", solver, *extra, *SHORT, "--set", "max_iter=4")
    done = py(
        "adv-train",
        env,
        "--data",
        "tiny",
        "--net",
        "mlp",
        "--compare",
        "m_low",
        "--compare",
        "m_high",
        *SHORT,
        "--set",
        "max_iter=4",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((runs_dir / "tiny_mlp_adv" / "adversarial" / "comparison.json").read_text())
    assert result["adversarial"]["net"] == "mlp" and result["strong"] == "m_high"
    assert result["matched"] in ("m_low", "m_high") and "median_linf" not in result
    assert set(result["iterative"]) == set(result["sparsity"]) == {"tiny_mlp_adv", "m_low", "m_high"}
    assert (runs_dir / "tiny_mlp_adv" / "adversarial" / "comparison.png").is_file()
    row = claims.claim_adversarial(result, "matched", net="mlp")
    assert row["claim"].startswith("adversarial training makes the MLP harder to fool")
    assert row["verdict"] != claims.UNCHECKABLE and "sign direction" not in row["value"], row
    result["accuracy_tests"][result["matched"]]["p"] = 0.001  # the closest run is not at the same accuracy
    row = claims.claim_adversarial(result, "matched", net="mlp")
    assert row["verdict"] == claims.INCONCLUSIVE and "no sweep run at the same accuracy" in row["why"], row
    stage("report", env, "--run", "low")
    page = (runs_dir / "low" / "report.html").read_text()
    assert (
        "<h3>mlp: run tiny_mlp_adv</h3>" in page and "<code>make adv-train</code> measures it" in page
    )  # linear: not run
