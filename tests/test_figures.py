"""The blog's figures: template orientation and channel order, the toy numbers, and every file of
make figures / make report (the blog's attack itself: tests/test_attacks.py)."""

import numpy as np
import pytest

from linfool.experiments import templates, toy
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
