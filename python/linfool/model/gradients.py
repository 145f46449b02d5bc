"""Any pycaffe net as a function of its input pixels, with the gradient of a class's score or
log-probability with respect to those pixels, from Caffe's own backward pass: the post's "backprop
to the pixels" (nothing in the net changes but force_backward, set by protobuf surgery).

    Differentiable(deploy, weights, mean=None, scale=1.0)
    .probs((n, C, H, W) float pixels) -> (n, classes) softmax, from pycaffe
    .gradient(x, targets, objective="logprob" | "score") -> (probs, (n, C, H, W) float32 d objective / d pixels)

Pixels are what the net's transform_param would read (0..255 BGR channel-major for linfool's runs);
the net sees (x - mean) * scale, as Caffe's DataTransformer computes it, so the gradient with respect
to the pixels is scale times Caffe's data gradient. The score is the bottom of the net's last Softmax
layer (the InnerProduct output for linfool's runs); "logprob" is log softmax(score)[target].
"""

import os
import tempfile
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from linfool.core import caffe_env
from linfool.core.cli import UserError

OBJECTIVES = ("logprob", "score")
# Caffe layers whose Backward is NOT_IMPLEMENTED (glog would abort the process): refused before it.
NO_BACKWARD = ("ArgMax", "Threshold", "Accuracy", "DetectionEvaluate", "DetectionOutput", "PSROIPooling")


class NotDifferentiable(UserError):
    """The net cannot give a gradient with respect to its input; the message says why."""


def _with_force_backward(deploy):
    """The deploy prototxt's text with force_backward: true (Caffe skips the input's gradient otherwise)."""
    pb2 = caffe_env.import_caffe().proto.caffe_pb2
    net = text_format.Parse(Path(deploy).read_text(), pb2.NetParameter())
    net.force_backward = True
    return text_format.MessageToString(net)


def _load(deploy, weights):
    """A pycaffe TEST net of `deploy` (forced backward) with `weights` (None: the fillers' values)."""
    caffe = caffe_env.use_device()
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(_with_force_backward(deploy))
    try:
        if weights is None:
            return caffe.Net(handle.name, caffe.TEST)
        return caffe.Net(handle.name, str(weights), caffe.TEST)
    finally:
        os.unlink(handle.name)


class Differentiable:
    """A Caffe deploy net + weights as probs(x) and gradient(x, targets); see the module docstring.
    `mean`: None, a (C,) per-channel mean or a (C, H, W) mean image, in pixel units."""

    def __init__(self, deploy, weights=None, *, mean=None, scale=1.0):
        self.net = _load(deploy, weights)
        self.input = self.net.inputs[0]
        self.shape = tuple(self.net.blobs[self.input].data.shape[1:])
        softmax = [name for name, layer in zip(self.net._layer_names, self.net.layers) if layer.type == "Softmax"]
        if not softmax:
            raise NotDifferentiable(f"{deploy} has no Softmax layer: no class probabilities to attack")
        self.softmax = softmax[-1]
        self.score = self.net.bottom_names[self.softmax][0]
        self.prob = self.net.top_names[self.softmax][0]
        self.score_layer = next(name for name in self.net._layer_names if self.score in self.net.top_names[name])
        self.classes = self.net.blobs[self.prob].data.shape[1]
        self._check_differentiable(deploy)
        self.set_transform(mean, scale)

    def set_transform(self, mean=None, scale=1.0):
        """What the net sees of pixels x: (x - mean) * scale; mean None, (C,) or (C, H, W)."""
        mean = np.zeros(1, np.float32) if mean is None else np.asarray(mean, np.float32)
        self.mean = mean.reshape(-1, 1, 1) if mean.ndim == 1 else mean
        self.scale = float(scale)

    def _forward(self, x):
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.shape:
            raise UserError(f"the net's input takes (n, {', '.join(map(str, self.shape))}), not {x.shape}")
        self.net.blobs[self.input].reshape(*x.shape)
        self.net.blobs[self.input].data[...] = (x - self.mean) * self.scale
        self.net.forward()
        return self.net.blobs[self.prob].data.copy()

    def probs(self, x):
        """(n, classes) softmax of the (n, C, H, W) pixel batch x."""
        return self._forward(x)

    def gradient(self, x, targets, objective="logprob"):
        """(probs, gradient): gradient[i] = d objective(target_i) / d x[i], (n, C, H, W) float32, in pixel
        units. objective: "score" (the target's pre-softmax score) or "logprob" (its log-probability)."""
        if objective not in OBJECTIVES:
            raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
        probs = self._forward(x)
        targets = np.broadcast_to(np.asarray(targets), (len(probs),))
        if targets.min() < 0 or targets.max() >= self.classes:
            raise UserError(f"a target must be a class 0..{self.classes - 1}, not {targets.tolist()}")
        seed = np.zeros_like(probs)
        seed[np.arange(len(probs)), targets] = 1.0
        if objective == "logprob":
            seed -= probs  # d log softmax_t / d score = onehot_t - softmax
        self.net.blobs[self.score].diff[...] = seed.reshape(self.net.blobs[self.score].diff.shape)
        self.net.backward(start=self.score_layer)
        return probs, (self.net.blobs[self.input].diff * self.scale).astype(np.float32)

    def _check_differentiable(self, deploy):
        """NotDifferentiable unless Caffe's backward reaches the input: the gradient of the sum of all
        scores over 4 random inputs is not all zero (a single point may sit where every ReLU is off)."""
        names = list(self.net._layer_names)
        for name, layer in list(zip(names, self.net.layers))[: names.index(self.score_layer) + 1]:
            if layer.type in NO_BACKWARD:
                raise NotDifferentiable(
                    f"{deploy}: layer {name!r} ({layer.type}) has no backward in Caffe: no differentiable path "
                    "from the class scores to the pixels, so this net cannot be fooled by backprop"
                )
        x = np.random.default_rng(0).uniform(0, 255, (4, *self.shape)).astype(np.float32)
        self.net.blobs[self.input].reshape(*x.shape)
        self.net.blobs[self.input].data[...] = x
        self.net.forward()
        self.net.blobs[self.score].diff[...] = 1.0
        self.net.backward(start=self.score_layer)
        if not np.any(self.net.blobs[self.input].diff):
            raise NotDifferentiable(
                f"{deploy}: Caffe's backward does not reach the input {self.input!r} (no differentiable path "
                "from the class scores to the pixels): this net cannot be fooled by backprop"
            )
