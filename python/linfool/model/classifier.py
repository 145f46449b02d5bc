"""The model wrapper every experiment goes through (Foolbox's habit): a run's deploy net with its
newest snapshot and the data set's mean, as a function of images.

    Classifier(run).probs((n, 3, 64, 64) float 0..255 BGR) -> (n, classes) softmax, from pycaffe
    Classifier(run).forward(images) -> (scores, probs)
"""

import numpy as np

from linfool.core import runs
from linfool.model import weights


class Classifier:
    """The run's deploy net with its newest snapshot + mean: probs((n, 3, 64, 64) float 0..255 BGR)
    -> (n, classes). `run` is a runs.Run or a run folder."""

    def __init__(self, run):
        self.run = runs.as_run(run)
        self.net = weights.load_net(self.run)
        self.params = weights.load(self.run)

    def forward(self, images):
        """(scores, probs), each (n, classes): the InnerProduct output and the softmax."""
        images = np.asarray(images, dtype=np.float32)
        self.net.blobs["data"].reshape(*images.shape)
        self.net.blobs["data"].data[...] = images - self.params["mean"]
        probs = self.net.forward()["prob"].copy()
        return self.net.blobs["fc"].data.copy(), probs

    def probs(self, images):
        return self.forward(images)[1]
