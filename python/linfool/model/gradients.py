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

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linfool.core import caffe_env, prototxt, runs
from linfool.core.cli import UserError

OBJECTIVES = ("logprob", "score")
# Caffe layers whose Backward is NOT_IMPLEMENTED (glog would abort the process): refused before it.
NO_BACKWARD = ("ArgMax", "Threshold", "Accuracy", "DetectionEvaluate", "DetectionOutput", "PSROIPooling")


class NotDifferentiable(UserError):
    """The net cannot give a gradient with respect to its input; the message says why."""


DATA_LAYERS = ("Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData", "Python")


def read_deploy(deploy: str | Path) -> Any:
    """The deploy prototxt as a NetParameter, checked before Caffe sees it (Caffe would abort): it
    parses as a text net and has exactly one input (an Input layer or the legacy `input:` field)."""
    try:
        net = prototxt.parse(Path(deploy).read_text())
    except (UnicodeDecodeError, prototxt.ParseError) as err:
        raise UserError(
            f"MODEL={deploy} does not parse as a Caffe net prototxt ({str(err).splitlines()[0][:120]}); MODEL= is "
            "the deploy .prototxt, WEIGHTS= the .caffemodel (swapped?)"
        ) from None
    inputs = [top for layer in net.layer if layer.type == "Input" for top in layer.top] + list(net.input)
    if len(inputs) != 1:
        readers = [layer.name for layer in net.layer if layer.type in DATA_LAYERS]
        why = f"it reads data through {', '.join(readers)} (a train_val prototxt?)" if readers else "none is declared"
        raise UserError(
            f"MODEL={deploy} has {len(inputs)} inputs ({', '.join(inputs) or why}); make fool attacks a net with "
            "one image input: give its deploy prototxt (an Input layer, a Softmax at the end)"
        )
    return net


def _trained_blobs(weights):
    """{layer name: [blob shapes]} of a .caffemodel, checked whole (UserError, one line, if not)."""
    pb2 = caffe_env.import_caffe().proto.caffe_pb2
    try:
        model = pb2.NetParameter.FromString(Path(weights).read_bytes())
        problem = runs.blobs_whole(model)
    except Exception as err:  # protobuf's DecodeError and friends: cut short, or not a caffemodel
        problem = f"it does not parse as a binary NetParameter ({err.__class__.__name__})"
    if problem:
        raise UserError(
            f"WEIGHTS={weights} is not a whole .caffemodel: {problem} (cut short by a full disk or a copy, or the "
            "deploy prototxt given as WEIGHTS=? MODEL= is the .prototxt, WEIGHTS= the .caffemodel)"
        )
    return {layer.name: [runs.blob_shape(b) for b in layer.blobs] for layer in [*model.layer, *model.layers]}


def _same_shape(net_shape: tuple[int, ...], stored: tuple[int, ...]) -> bool:
    """Caffe's Blob::ShapeEquals: equal, or a legacy 4-d (num, channels, height, width) blob whose
    dims, padded with leading 1s, are the net's."""
    return tuple(net_shape) == tuple(stored) or (
        len(stored) == 4 and len(net_shape) <= 4 and (1,) * (4 - len(net_shape)) + tuple(net_shape) == tuple(stored)
    )


def check_weights(net: Any, weights: str | Path, hint: str = "") -> None:
    """UserError (one line, naming the layer and both shapes) unless every learned layer of the
    pycaffe `net` is in the .caffemodel `weights` with the same blob shapes: Caffe would fill a
    missing one at random (and attack that), or abort on another shape."""
    stored = _trained_blobs(weights)
    for name, blobs in net.params.items():
        shapes = [tuple(blob.data.shape) for blob in blobs]
        if name not in stored or not stored[name]:
            raise UserError(
                f"layer {name!r} of MODEL has learned weights but WEIGHTS={weights} has none for it (its layers: "
                f"{', '.join(n for n, b in stored.items() if b)[:200]}): these weights are not for this net{hint}"
            )
        if len(stored[name]) != len(shapes) or not all(map(_same_shape, shapes, stored[name])):
            raise UserError(
                f"layer {name!r}: MODEL gives it blobs of {shapes}, WEIGHTS={weights} holds {stored[name]}: "
                f"these weights are not for this net{hint}"
            )


def _load(deploy, weights, hint=""):
    """A pycaffe TEST net of `deploy` (read_deploy; forced backward) with `weights` (checked first:
    check_weights; None: the fillers' values)."""
    net = read_deploy(deploy)
    net.force_backward = True
    caffe = caffe_env.use_device()
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(prototxt.text(net))
    try:
        loaded = caffe.Net(handle.name, caffe.TEST)
    finally:
        os.unlink(handle.name)
    if weights is not None:
        check_weights(loaded, weights, hint)
        loaded.copy_from(str(weights))
    return loaded


class Differentiable:
    """A Caffe deploy net + weights as probs(x) and gradient(x, targets); see the module docstring.
    `mean`: None, a (C,) per-channel mean or a (C, H, W) mean image, in pixel units. The net and
    weights are checked before Caffe reads them (read_deploy, check_weights: one line, naming `hint`
    as what to give instead)."""

    def __init__(self, deploy, weights=None, *, mean=None, scale=1.0, hint=""):
        self.net = _load(deploy, weights, hint)
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

    def set_transform(self, mean: np.ndarray | None = None, scale: float = 1.0) -> None:
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

    def probs(self, x: np.ndarray) -> np.ndarray:
        """(n, classes) softmax of the (n, C, H, W) pixel batch x."""
        return self._forward(x)

    def gradient(
        self, x: np.ndarray, targets: int | Sequence[int] | np.ndarray, objective: str = "logprob"
    ) -> tuple[np.ndarray, np.ndarray]:
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
