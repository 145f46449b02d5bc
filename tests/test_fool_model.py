"""`make fool` on nets made on the fly (no model can be downloaded here): a 3x32x32 colour net with
per-channel means and a 1x28x28 grey LeNet-style net with pixels scaled by 1/256, each fooled to its
target with the saved files exact; and the inputs it cannot take, each one line."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from linfool.model.gradients import Differentiable

from running import py

NET = """
name: "{name}"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 {dims} }} }} }}
layer {{ name: "{first}" type: "{first_type}" bottom: "data" top: "h1" {first_param} }}
layer {{ name: "relu" type: "ReLU" bottom: "h1" top: "h1" }}
layer {{ name: "out" type: "InnerProduct" bottom: "h1" top: "out"
        inner_product_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: {out_std} }} }} }}
layer {{ name: "prob" type: "Softmax" bottom: "out" top: "prob" }}
"""
COLOUR = {
    "name": "tiny_colour",
    "dims": "dim: 3 dim: 32 dim: 32",
    "first": "conv",
    "first_type": "Convolution",
    "first_param": 'convolution_param { num_output: 4 kernel_size: 5 stride: 2 weight_filler { type: "gaussian" std: 0.01 } }',
    "out_std": 0.3,
}
GREY = {
    "name": "lenet_like",
    "dims": "dim: 1 dim: 28 dim: 28",
    "first": "ip1",
    "first_type": "InnerProduct",
    "first_param": 'inner_product_param { num_output: 32 weight_filler { type: "gaussian" std: 0.2 } }',
    "out_std": 1.0,  # pixels scaled to 0..1 give small activations: larger output weights let P reach 0.99
}
LABELS = "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn01484850 great white shark\nn01491361 tiger shark\n"


def _net(caffe, folder, spec):
    deploy = folder / f"{spec['name']}.prototxt"
    deploy.write_text(NET.format(**spec))
    caffe.set_random_seed(3)
    weights = folder / f"{spec['name']}.caffemodel"
    caffe.Net(str(deploy), caffe.TEST).save(str(weights))
    return deploy, weights


def _fool(tmp_path, *args):
    env = {**os.environ, "LINFOOL_RUNS": str(tmp_path / "runs"), "LINFOOL_COMMAND": ""}
    return py("fool", env, *args)


@pytest.mark.parametrize(
    "spec, channels, extra",
    [(COLOUR, "bgr", ["--mean-values", "104,117,123"]), (GREY, "gray", ["--scale", "0.00390625"])],
    ids=["3x32x32-mean-values", "1x28x28-scaled-grey"],
)
def test_make_fool_fools_a_net_of_another_size_and_saves_it_exactly(caffe, tmp_path, spec, channels, extra):
    deploy, weights = _net(caffe, tmp_path, spec)
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    (tmp_path / "synsets.txt").write_text(LABELS)
    done = _fool(
        tmp_path,
        "--model",
        deploy,
        "--weights",
        weights,
        "--image",
        image,
        "--target",
        "goldfish",
        "--labels",
        tmp_path / "synsets.txt",
        "--channels",
        channels,
        "--eps",
        96,
        "--steps",
        300,
        *extra,
    )
    assert done.returncode == 0, done.stderr
    out = Path(done.stdout.rsplit("wrote ", 1)[1].strip())
    assert out.parent == tmp_path / "runs" / "fool" and "fooled" in done.stdout
    assert out.name.startswith(f"{tmp_path.name}.{spec['name']}-photo-to-goldfish-")  # folder.caffemodel-image
    result = json.loads((out / "result.json").read_text())
    assert result["fooled"] and result["target"] == {"class": 1, "label": "n01443537 goldfish, Carassius auratus"}
    assert result["after"][0]["class"] == 1 and result["after"][0]["prob"] >= 0.99
    assert 0 < result["linf"] <= 96 and result["l2"] > result["linf"]
    fooled = np.load(out / "fooled.npy")
    assert fooled.shape == tuple(int(d) for d in spec["dims"].split("dim: ")[1:])
    png = cv2.imread(str(out / "fooled.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png.reshape(fooled.shape[1], fooled.shape[2], -1).transpose(2, 0, 1), fooled)
    mean = np.array([104, 117, 123], np.float32) if channels == "bgr" else None
    fresh = Differentiable(deploy, weights, mean=mean, scale=0.00390625 if channels == "gray" else 1.0)
    assert fresh.probs(fooled[None])[0, 1] >= 0.99  # a fresh Caffe net re-classifies the saved input
    assert (out / "fool.png").stat().st_size > 5000 and (out / "original.png").is_file()


def test_inputs_make_fool_cannot_take_are_one_line(caffe, tmp_path):
    deploy, weights = _net(caffe, tmp_path, COLOUR)
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.zeros((10, 10, 3), np.uint8))
    flat = tmp_path / "flat.prototxt"
    flat.write_text(NET.format(**{**GREY, "name": "flat", "dims": "dim: 784"}))
    four = tmp_path / "four.prototxt"
    four.write_text(NET.format(**{**COLOUR, "name": "four", "dims": "dim: 4 dim: 32 dim: 32"}))
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    stepped = tmp_path / "stepped.prototxt"  # a Threshold (no backward in Caffe) before the scores
    stepped.write_text(NET.format(**{**COLOUR, "name": "stepped", "first_type": "Threshold", "first_param": ""}))
    cases = [
        ((deploy, weights, image, 9), "TARGET=9: the net has classes 0..3"),
        ((deploy, weights, image, "goldfish"), "TARGET='goldfish' is not one class"),
        ((deploy, weights, tmp_path / "nope.jpg", 1), "IMAGE="),
        ((deploy, weights, tmp_path / "junk.jpg", 1), "not a readable image file"),
        ((flat, None, image, 1), "not an image (C, H, W)"),
        ((four, None, image, 1), "this net cannot take one"),
        ((stepped, None, image, 1), "layer 'conv' (Threshold) has no backward in Caffe"),
    ]
    for (model, model_weights, picture, target), message in cases:
        if model_weights is None:
            caffe.Net(str(model), caffe.TEST).save(str(tmp_path / "w.caffemodel"))
            model_weights = tmp_path / "w.caffemodel"
        done = _fool(tmp_path, "--model", model, "--weights", model_weights, "--image", picture, "--target", target)
        assert done.returncode == 2, (message, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ERROR:") and message in lines[0], lines
    assert not (tmp_path / "runs" / "fool").exists() or not any((tmp_path / "runs" / "fool").iterdir())


def test_make_fool_on_a_folder_gives_the_fooled_fraction_at_each_budget(caffe, tmp_path):
    deploy, weights = _net(caffe, tmp_path, COLOUR)
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (folder / "notes.txt").write_text("not an image: not even tried")
    done = _fool(tmp_path, "--model", deploy, "--weights", weights, "--image", folder, "--target", 2, "--eps", 64)
    assert done.returncode == 0, done.stderr
    out = Path(done.stdout.rsplit("wrote ", 1)[1].strip())
    assert out.name.startswith(f"{tmp_path.name}.tiny_colour-photos-to-2-")
    curve = json.loads((out / "curve.json").read_text())
    assert curve["budgets"] == [1, 2, 4, 8, 16, 32, 64.0]
    assert [r["file"] for r in curve["images"]] == ["0.png", "1.png", "2.png"]
    assert [s["file"] for s in curve["skipped"]] == ["broken.jpg"]
    fractions = curve["fooled_fraction"]
    assert fractions == sorted(fractions) and fractions[-1] > 0  # more budget never fools fewer
    low, high = curve["band"]  # n = 3 images: a wide 95 % band that holds the curve
    assert curve["n"] == 3 and all(lo <= f <= hi for lo, f, hi in zip(low, fractions, high))
    needed = [r["needed_linf"] for r in curve["images"]]
    assert fractions[-1] == sum(n is not None for n in needed) / 3
    assert (out / "curve.png").stat().st_size > 5000
