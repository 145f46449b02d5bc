"""Fooling by backprop through Caffe (linfool.model.gradients, linfool.attacks.gradient):
Caffe's data gradient against the analytic one on a real linear run (numpy is the oracle), the
gradient step against the blog's alpha * w_t, and the iterative attack on a tiny MLP made on the fly."""

import numpy as np
import pytest

from linfool.attacks import blog, gradient
from linfool.core import runs as runs_module
from linfool.core.cli import UserError
from linfool.model import weights
from linfool.model.classifier import Classifier
from linfool.model.gradients import Differentiable, NotDifferentiable


def _linear(run_dir):
    """The tiny run's deploy net as a Differentiable, and its weights (W: (classes, 12288), mean)."""
    run = runs_module.as_run(run_dir)
    params = weights.load(run)
    model = Differentiable(run.path / "deploy.prototxt", run.snapshot().path, mean=params["mean"])
    return model, params


def test_caffes_data_gradient_is_the_analytic_one_on_the_linear_model(tiny_runs):
    runs, _ = tiny_runs
    model, params = _linear(runs / "low")
    W = params["W"].astype(np.float64)
    x = np.stack([blog.noise_image(seed=s) for s in (1, 2)])
    targets = [3, 11]
    probs, score_grad = model.gradient(x, targets, objective="score")
    for i, t in enumerate(targets):  # d score_t / dx = w_t
        np.testing.assert_allclose(score_grad[i].ravel(), W[t], rtol=1e-6, atol=1e-12)
    _, logprob_grad = model.gradient(x, targets, objective="logprob")
    for i, t in enumerate(targets):  # d log p_t / dx = w_t - sum_j p_j w_j
        expected = W[t] - probs[i].astype(np.float64) @ W
        np.testing.assert_allclose(logprob_grad[i].ravel(), expected, rtol=1e-4, atol=1e-5 * np.abs(W).max())
    np.testing.assert_allclose(probs, Classifier(runs / "low").probs(x), rtol=1e-5, atol=1e-7)


def test_the_gradient_step_is_the_blogs_alpha_times_w_target(tiny_runs):
    runs, _ = tiny_runs
    model, params = _linear(runs / "low")
    classifier = Classifier(runs / "low")
    x = blog.noise_image(seed=4)
    target = int(np.argsort(classifier.probs(x[None])[0])[0])  # the least likely class
    made = blog.fool(classifier, x, [target])[0]
    ours = gradient.gradient_step(model, x, target, made.alpha)
    np.testing.assert_allclose(ours.image, made.image, atol=1e-3)
    assert ours.fooled and made.fooled and ours.prob == pytest.approx(made.prob, abs=1e-4)
    weaker = gradient.gradient_step(model, x, target, 0.5 * made.alpha)
    assert not weaker.fooled  # the blog's alpha is the smallest that reaches 99 %


def test_the_batched_gradient_step_is_the_blogs_direction_at_its_linf(tiny_runs):
    runs, _ = tiny_runs
    model, params = _linear(runs / "low")
    x = np.stack([blog.noise_image(seed=s) for s in (5, 6)])
    targets = [2, 9]
    made = gradient.gradient_batch(model, x, targets, 8.0)
    W = params["W"].reshape(-1, 3, 64, 64)
    for i, t in enumerate(targets):  # eps * w_t / max|w_t|: attack_curves' "blog direction"
        expected = np.clip(x[i] + 8.0 * W[t] / np.abs(W[t]).max(), 0, 255)
        np.testing.assert_allclose(made[i], expected, atol=1e-3)
    assert np.abs(made - x).max() <= 8.0 + 1e-4


MLP = """
name: "tiny_mlp"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: {c} dim: 8 dim: 8 }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        inner_product_param {{ num_output: 32 weight_filler {{ type: "gaussian" std: 0.02 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param {{ num_output: 5 weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "prob" type: "{softmax}" bottom: "ip2" top: "prob" }}
"""


@pytest.fixture
def mlp(caffe, tmp_path):
    """A 3x8x8 -> 32 -> ReLU -> 5 MLP with Caffe's seeded filler weights, saved as a caffemodel."""
    deploy = tmp_path / "mlp.prototxt"
    deploy.write_text(MLP.format(c=3, softmax="Softmax"))
    caffe.set_random_seed(7)
    weights_path = tmp_path / "mlp.caffemodel"
    caffe.Net(str(deploy), caffe.TEST).save(str(weights_path))
    return Differentiable(deploy, weights_path, mean=[104.0, 117.0, 123.0])


def test_the_iterative_attack_reaches_a_target_on_an_mlp_within_its_budget_only(mlp):
    x = np.random.default_rng(0).uniform(0, 255, (3, 8, 8)).astype(np.float32)
    probs = mlp.probs(x[None])[0]
    target = int(probs.argmin())
    assert probs[target] < 0.5
    result = gradient.projected(mlp, x, target, eps=64.0, iterations=200)
    assert result.fooled and result.prob >= 0.99
    assert result.linf <= 64.0 + 1e-4 and result.image.min() >= 0 and result.image.max() <= 255
    assert 1 < result.passes <= 200
    assert mlp.probs(result.image[None])[0].argmax() == target  # re-classified by a fresh forward
    tiny = gradient.projected(mlp, x, target, eps=0.5, iterations=50)
    assert not tiny.fooled and tiny.linf <= 0.5 + 1e-4 and tiny.passes == 50
    assert tiny.prob > probs[target]  # it moved towards the target, as far as the budget lets it
    sign = gradient.sign_step(mlp, x, target, eps=8.0)
    assert sign.linf <= 8.0 + 1e-4 and sign.prob > probs[target]


def test_inputs_a_net_cannot_take_are_one_line(mlp, caffe, tmp_path):
    with pytest.raises(UserError, match=r"takes \(n, 3, 8, 8\)"):
        mlp.gradient(np.zeros((1, 3, 64, 64), np.float32), [0])
    with pytest.raises(UserError, match="a target must be a class 0..4"):
        mlp.gradient(np.zeros((1, 3, 8, 8), np.float32), [5])
    with pytest.raises(UserError, match="objective must be"):
        mlp.gradient(np.zeros((1, 3, 8, 8), np.float32), [0], objective="loss")
    no_softmax = tmp_path / "scores_only.prototxt"
    no_softmax.write_text(MLP.format(c=1, softmax="Sigmoid"))
    with pytest.raises(NotDifferentiable, match="no Softmax layer"):
        Differentiable(no_softmax)
