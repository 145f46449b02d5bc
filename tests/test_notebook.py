"""docs/breaking_linear_classifiers.ipynb, executed on a Jupyter kernel (nbclient) against a tiny run:
it runs from top to bottom, and the numbers it prints are the package's."""

import re

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from linfool.attacks import blog
from linfool.core import paths, runs
from linfool.experiments import templates
from linfool.experiments.claims import initial_loss
from linfool.model.classifier import Classifier

NOTEBOOK = paths.ROOT / "docs" / "breaking_linear_classifiers.ipynb"


def test_the_notebook_runs_on_a_tiny_run_and_prints_the_packages_numbers(tiny_runs, monkeypatch, tmp_path):
    runs_dir, env = tiny_runs
    for name in ("LINFOOL_DATA", "LINFOOL_RUNS"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("LINFOOL_RUN", "low")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored without outputs
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream"
    )
    assert "run low: snap_iter_60.caffemodel, 18 classes" in printed
    monkeypatch.setattr(paths, "RUNS", runs_dir)
    monkeypatch.setattr(paths, "DATA", paths.Path(env["LINFOOL_DATA"]))
    run = runs.Run.named("low")
    loss = float(re.search(r"std 0.0001: initial loss ([\d.]+)", printed).group(1))
    assert loss == pytest.approx(initial_loss(run.path, 1e-4), abs=0.005)
    classifier = Classifier(run)
    start, targets = templates.choose_classes(classifier.params)
    x = templates.start_image(run, classifier.params, start)
    result = blog.fool(classifier, x, [templates.find_class(classifier.params, targets[0])])[0]
    shown = re.search(r"fooled: P\(target\) = ([\d.]+) at alpha ([\d.e+-]+), Linf ([\d.]+)/255", printed)
    assert float(shown.group(1)) == pytest.approx(result.prob, abs=5e-5) and float(shown.group(3)) == pytest.approx(
        result.linf, abs=0.05
    )
    assert np.isclose(float(shown.group(2)), result.alpha, rtol=1e-3)
    assert "w.x = -3, P(class 1) = 0.0474" in printed and "low_reg_low: not trained (make sweep)" in printed
