"""The blog's figures: template orientation and channel order, fooling to >= 99 % with Caffe's
probabilities, the toy numbers, and every file of make figures / make report."""

from types import SimpleNamespace

import numpy as np
import pytest

from linfool.attacks import blog
from linfool.experiments import templates, toy
from linfool.model.classifier import Classifier
from linfool.report import page

from running import py


@pytest.mark.fast
def test_template_keeps_orientation_and_turns_bgr_into_rgb():
    w = np.zeros((3, 64, 64), np.float32)
    w[2, :8, :16] = 1.0  # BGR channel 2 = red, in the top-left corner, wider than tall
    w[0, -4:, :] = -1.0  # blue channel: most negative along the bottom edge
    rgb = templates.template_rgb(w.ravel())
    assert rgb.shape == (64, 64, 3)
    assert np.allclose(rgb[:8, :16], [1.0, 0.5, 0.5])  # red on top-left, scaled to max
    assert np.allclose(rgb[-4:, 20:], [0.5, 0.5, 0.0])  # blue at minimum along the bottom
    assert rgb[8:60, 16:].min() == pytest.approx(0.5)  # zero weights sit mid-range
    assert np.array_equal(
        templates.to_rgb(np.arange(3)[:, None, None] * np.ones((3, 2, 2))), np.full((2, 2, 3), [2, 1, 0])
    )


@pytest.mark.fast
def test_toy_numbers_match_the_blog():
    n = toy.toy_numbers()
    assert (n["score"], round(n["prob"], 4), n["score_adv"], round(n["prob_adv"], 2)) == (-3, 0.0474, 2, 0.88)
    assert "P(class 1) = 0.0474" in toy.describe() and "P(class 1) = 0.88" in toy.describe()


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


def test_make_figures_and_report_write_every_file(tiny_report):
    runs, _, _ = tiny_report
    out = runs / "low" / "figures"
    for name, _ in page.FIGURES:
        assert (out / name).stat().st_size > 5_000, name
    html = (runs / "low" / "report.html").read_text()
    assert all(f"figures/{name}" in html for name in ("blog_templates_all.png", "blog_regularization.png"))
    assert "P = 0.0474" in html and "data set &#x27;tiny&#x27;" in html


def test_a_start_class_the_run_does_not_have_is_refused_in_one_line(tiny_runs):
    runs, env = tiny_runs
    done = py("figures", env, "--run", "low", "--start", "n99999999")
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert "class 'n99999999' is not among this run's 18 classes" in errors[0] and "--start" in errors[0]
