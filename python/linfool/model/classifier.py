"""The model wrapper every experiment on a run goes through (Foolbox's habit): the run's deploy net
with its newest snapshot and the data set's mean, as a function of images. It is the one deploy-net
wrapper (linfool.model.gradients.Differentiable, which `make fool` uses for any Caffe model) seen as
the blog's linear model: its weights beside it.

    Classifier(run).probs((n, 3, 64, 64) float 0..255 BGR) -> (n, classes) softmax, from pycaffe
    Classifier(run).forward(images) -> (scores, probs)
    Classifier(run).params -> weights.npz's W (classes, 12288), b, mean (3, 64, 64), labels
"""

from __future__ import annotations

import numpy as np

from linfool.core import runs
from linfool.model import weights
from linfool.model.gradients import Differentiable


class Classifier(Differentiable):
    """The run's deploy net with its newest snapshot + mean: probs((n, 3, 64, 64) float 0..255 BGR)
    -> (n, classes). `run` is a runs.Run or a run folder; the run must be linear (weights.check_linear)."""

    def __init__(self, run):
        self.run = runs.as_run(run)
        weights.check_linear(self.run)
        self.params = weights.load(self.run)
        super().__init__(self.run.path / "deploy.prototxt", self.run.snapshot().path, mean=self.params["mean"])

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probs), each (n, classes): the InnerProduct output and the softmax."""
        probs = self.probs(np.asarray(images, dtype=np.float32))
        return self.net.blobs[self.score].data.copy(), probs
