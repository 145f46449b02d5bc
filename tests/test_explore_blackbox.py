"""Beyond the blog, second wave: fooling with scores only (linfool.blackbox) on a hand-made Caffe model
whose answers are known, and the report's explore section in a real headless Chromium."""
import base64
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from linfool import blackbox, fooling

SHAPE = (3, 4, 4)


def tiny_net(caffe, tmp_path, W, b):
    """A 48-input linear softmax in Caffe with the given weights; returns probs(images) -> (n, K)."""
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(
        f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 dim: 4 dim: 4 }} }} }}\n'
        f'layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param {{ num_output: {len(W)} }} }}\n'
        'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n')
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
    oracle = blackbox.Oracle(tiny_net(caffe, tmp_path, W, b))
    recovered = blackbox.recover_templates(oracle, SHAPE)
    assert oracle.queries == 1 + 48
    np.testing.assert_allclose(recovered, W - W.mean(axis=0), atol=2e-5 * np.abs(W).max())
    # The part no softmax output shows: a vector added to every class row changes nothing.
    shifted_dir = tmp_path / "shifted"
    shifted_dir.mkdir()
    shifted = W + np.random.default_rng(4).standard_normal(48).astype(np.float32) * 0.05
    again = blackbox.recover_templates(blackbox.Oracle(tiny_net(caffe, shifted_dir, shifted, b)), SHAPE)
    np.testing.assert_allclose(again, recovered, atol=2e-5 * np.abs(W).max())
    assert blackbox.template_agreement(recovered, shifted)["correlation_min"] > 0.9999


def test_square_attack_reaches_an_easy_target_within_its_budget(caffe, tmp_path, model):
    W, b = model
    oracle = blackbox.Oracle(tiny_net(caffe, tmp_path, W, b))
    x = np.full(SHAPE, 128, np.float32)
    target = int(np.argsort(oracle(x[None])[0])[-2])     # the runner-up: reachable at eps 60, not at 0.5
    oracle.queries = 0
    result = blackbox.square_attack(oracle, x, target, eps=60, max_queries=2000, seed=0)
    assert result["reached"] and result["prob"] >= 0.99 and result["linf"] <= 60 + 1e-4
    assert result["queries"] == oracle.queries <= 2000
    assert oracle(result["image"][None])[0, target] == pytest.approx(result["prob"])
    # the same budget too small to matter: no success, and every query of the budget used
    small = blackbox.square_attack(oracle, x, target, eps=0.5, max_queries=50, seed=0)
    assert not small["reached"] and small["queries"] == 50


def test_blackbox_on_tiny_caffe_runs_and_its_report_rows(tiny_runs):
    runs, env = tiny_runs
    done = subprocess.run([sys.executable, "-m", "linfool.blackbox", "--run", "low", "--low", "low", "--high", "high",
                           "--pairs", "2", "--queries", "3000"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    for run in ("low", "high"):
        result = json.loads((runs / run / "blackbox" / "blackbox.json").read_text())
        assert result["recovery"]["queries"] == 12289 and result["recovery"]["correlation_min"] > 0.999
        assert len(result["rows"]) == 2 and all(r["recovered_prob"] >= 0.99 - 1e-6 for r in result["rows"])
        assert all(r["squares_linf"] <= r["squares_budget_linf"] + 1e-3 for r in result["rows"])
        assert (runs / run / "blackbox" / "blackbox.png").stat().st_size > 10_000


def test_explore_data_is_offline_and_its_errors_are_measured(tiny_report):
    page = tiny_report.read_text()
    assert "id='explore'" in page and "explore/templates_0.js" in page
    assert not [src for src in page.split("src=")[1:] if src.lstrip("'\"").startswith(("http:", "https:", "//"))]
    data = json.loads(page.split("id='explore-data'>")[1].split("</script>")[0])
    assert len(data["names"]) == 18 and len(data["starts"]) == 5 and data["prob_error"] < 1e-3


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium (make test installs it with apt; the "
                    "Docker image leaves it out)")
def test_explore_in_a_real_browser_matches_caffe(tiny_report, tiny_runs):
    from browser import Browser   # tests/browser.py: Chromium over the DevTools pipe
    run_dir = tiny_report.parent
    row = json.loads((run_dir / "figures" / "figures.json").read_text())["fooling_image"][0]   # kit fox -> goldfish
    classifier = fooling.Classifier(run_dir)
    target = [str(n) for n in classifier.params["names"]].index(row["target"])
    w = classifier.params["W"][target]
    browser = Browser()
    try:
        browser.open(tiny_report.as_uri())
        browser.wait_for("document.getElementById('ex-live-prob')")
        data = json.loads(browser.eval("document.getElementById('explore-data').textContent"))
        # pick the figure's target by typing its name, then move the slider to the figure's alpha
        browser.eval(f"(() => {{ const t = document.getElementById('ex-target'); t.value = {json.dumps(row['target'])}; "
                     "t.dispatchEvent(new Event('change')); })()")
        slider = round(row["alpha"] * float(np.abs(w).max()), 2)
        browser.eval(f"(() => {{ const s = document.getElementById('ex-slider'); s.value = '{slider}'; "
                     "s.dispatchEvent(new Event('input')); })()")
        caffe_prob = browser.eval("({...document.getElementById('ex-caffe-prob').dataset})")
        live = float(browser.eval("document.getElementById('ex-live-prob').dataset.value"))
        shot = browser.screenshot("#explore-app")
        assert not browser.console_errors()
    finally:
        browser.close()
    # at the figure's alpha the page shows the probability Caffe computed for the figure
    assert caffe_prob["settled"] == "true" and float(caffe_prob["value"]) == pytest.approx(row["target_prob"], abs=1e-6)
    # the live (unclipped) value is a pycaffe forward of the unclipped image, within the stated error
    x = np.frombuffer(base64.b64decode(data["x"][0]), np.float32).reshape(3, 64, 64)
    unclipped = classifier.probs((x + (slider / np.abs(w).max()) * w.reshape(3, 64, 64))[None])[0, target]
    assert live == pytest.approx(unclipped, abs=data["prob_error"] + 1e-5)
    picture = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[0] > 300 and picture.std() > 30        # drawn, not blank
