"""linfool.experiments.explore and the report's explore section: offline data with measured errors, and
the page in a real headless Chromium against Caffe's probabilities."""

import base64
import json
import shutil

import cv2
import numpy as np
import pytest

from linfool.model.classifier import Classifier


def test_explore_data_is_offline_and_its_errors_are_measured(tiny_report):
    _, _, report = tiny_report
    page = report.read_text()
    assert "id='explore'" in page and "explore/templates_0.js" in page
    assert not [src for src in page.split("src=")[1:] if src.lstrip("'\"").startswith(("http:", "https:", "//"))]
    data = json.loads(page.split("id='explore-data'>")[1].split("</script>")[0])
    assert len(data["names"]) == 18 and len(data["starts"]) == 5 and data["prob_error"] < 1e-3


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="no chromium (make test installs it with apt; the Docker image leaves it out)",
)
def test_explore_in_a_real_browser_matches_caffe(tiny_report):
    from browser import Browser  # tests/browser.py: Chromium over the DevTools pipe

    _, _, report = tiny_report
    run_dir = report.parent
    row = json.loads((run_dir / "figures" / "figures.json").read_text())["fooling_image"][0]  # kit fox -> goldfish
    classifier = Classifier(run_dir)
    target = [str(n) for n in classifier.params["names"]].index(row["target"])
    w = classifier.params["W"][target]
    browser = Browser()
    try:
        browser.open(report.as_uri())
        browser.wait_for("document.getElementById('ex-live-prob')")
        data = json.loads(browser.eval("document.getElementById('explore-data').textContent"))
        # pick the figure's target by typing its name, then move the slider to the figure's alpha
        browser.eval(
            f"(() => {{ const t = document.getElementById('ex-target'); t.value = {json.dumps(row['target'])}; "
            "t.dispatchEvent(new Event('change')); })()"
        )
        slider = round(row["alpha"] * float(np.abs(w).max()), 2)
        browser.eval(
            f"(() => {{ const s = document.getElementById('ex-slider'); s.value = '{slider}'; "
            "s.dispatchEvent(new Event('input')); })()"
        )
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
    assert picture.shape[0] > 300 and picture.std() > 30  # drawn, not blank
