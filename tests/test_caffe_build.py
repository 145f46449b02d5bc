"""Caffe is real and faithful: the `caffe` binary trains, pycaffe reads its snapshots, the SGD step
and the softmax loss are the equations Caffe documents (numpy is the oracle), and the blog's
initial-loss observation holds for a 12288 -> 1000 layer."""

import ctypes
import math
import subprocess

import lmdb
import numpy as np
import pytest

from linfool.core import caffe_env

TINY_NET = """
name: "tiny_linear"
layer {{ name: "data" type: "Data" top: "data" top: "label"
        data_param {{ source: "{lmdb}" batch_size: 8 backend: LMDB }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.0001 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
"""
TINY_SOLVER = """
net: "{net}"
base_lr: 0.0001 momentum: 0.9 weight_decay: 0.0005 lr_policy: "fixed"
max_iter: 60 display: 10 snapshot: 60 snapshot_prefix: "{prefix}"
solver_mode: CPU random_seed: 1
"""
TINY_DEPLOY = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
"""


def _separable_lmdb(path, caffe, n=64):
    """Two classes of 3x4x4 uint8 images: class 0 bright on the left half, class 1 on the right."""
    rng = np.random.default_rng(0)
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(n):
            label = i % 2
            img = rng.integers(0, 60, size=(3, 4, 4), dtype=np.uint8)
            img[:, :, 2 * label : 2 * label + 2] += 150
            datum = caffe.proto.caffe_pb2.Datum(channels=3, height=4, width=4, data=img.tobytes(), label=label)
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()


def test_caffe_binary_trains_and_pycaffe_reads_the_snapshot(caffe, tmp_path, write_net):
    _separable_lmdb(tmp_path / "lmdb", caffe)
    net = write_net("net.prototxt", TINY_NET.format(lmdb=tmp_path / "lmdb"))
    solver = write_net("solver.prototxt", TINY_SOLVER.format(net=net, prefix=tmp_path / "snap"))
    run = subprocess.run(
        [str(caffe_env.tool("caffe")), "train", f"--solver={solver}"],
        capture_output=True,
        text=True,
        check=True,
        env=caffe_env.tool_env(),
    )
    losses = [
        float(line.rsplit("=", 1)[1].split()[0])
        for line in run.stderr.splitlines()
        if "Iteration" in line and ", loss = " in line
    ]
    assert len(losses) >= 5, run.stderr[-2000:]
    assert losses[-1] < 0.5 * losses[0], losses

    model = tmp_path / "snap_iter_60.caffemodel"
    assert model.is_file()
    deploy = write_net("deploy.prototxt", TINY_DEPLOY)
    trained = caffe.Net(deploy, str(model), caffe.TEST)
    weights, bias = (p.data for p in trained.params["fc"])
    assert weights.shape == (2, 48) and bias.shape == (2,)
    # The learned template separates the halves: class 1's weights favour the right half.
    w_diff = (weights[1] - weights[0]).reshape(3, 4, 4)
    assert w_diff[:, :, 2:].sum() > w_diff[:, :, :2].sum()


ORACLE_NET = """
force_backward: true
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: 4 dim: {inputs} }} shape {{ dim: 4 }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param {{ num_output: {outputs} weight_filler {{ type: "gaussian" std: {std} }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
"""
LR, MOMENTUM, WD = 0.1, 0.9, 0.01


FLT_MIN = float(np.finfo(np.float32).tiny)


def _softmax_loss_and_grads(x, labels, w, b):
    """numpy oracle: mean softmax cross-entropy over the batch and its gradients (dW, db).
    Like Caffe's SoftmaxWithLoss, each sample's loss is -log(max(p, FLT_MIN)), at most 87.34."""
    scores = x @ w.T + b
    scores -= scores.max(axis=1, keepdims=True)
    log_probs = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    n = len(labels)
    loss = np.minimum(-log_probs[np.arange(n), labels], -np.log(FLT_MIN)).mean()
    dscores = probs.copy()
    dscores[np.arange(n), labels] -= 1
    dscores /= n
    return loss, dscores.T @ x, dscores.sum(axis=0)


@pytest.fixture
def two_threads(caffe):
    """Caffe's OpenMP regions started from this thread run on 2 threads (also where make test's workers
    run Caffe on one, tests/conftest.py), so the fused update's threaded path splits its work."""
    gomp = ctypes.CDLL("libgomp.so.1")  # the copy libcaffe loaded: the same soname
    before = gomp.omp_get_max_threads()
    gomp.omp_set_num_threads(2)
    assert gomp.omp_get_max_threads() == 2
    yield
    gomp.omp_set_num_threads(before)


# A tiny layer, and one of 12288 x 100 = 1.2M weights: 05-fused-sgd.patch runs the fused update on OpenMP's
# threads from 1M values on (here 2 of them), so both of its paths are checked.
@pytest.mark.parametrize("inputs, outputs, std", [(5, 3, 0.1), (12288, 100, 0.001)])
def test_sgd_steps_match_the_documented_update(caffe, two_threads, tmp_path, write_net, inputs, outputs, std):
    """v <- mu*v + lr*(g + wd*w), w <- w - v, over two steps so momentum matters."""
    net = write_net("net.prototxt", ORACLE_NET.format(inputs=inputs, outputs=outputs, std=std))
    solver_path = write_net(
        "solver.prototxt",
        f"""
        net: "{net}" base_lr: {LR} momentum: {MOMENTUM} weight_decay: {WD}
        lr_policy: "fixed" max_iter: 10 display: 0 snapshot_after_train: false solver_mode: CPU""",
    )
    solver = caffe.SGDSolver(solver_path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, inputs)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    solver.net.blobs["data"].data[...] = x
    solver.net.blobs["label"].data[...] = labels
    w = solver.net.params["fc"][0].data.astype(np.float64)
    b = solver.net.params["fc"][1].data.astype(np.float64)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(2):
        loss, gw, gb = _softmax_loss_and_grads(x.astype(np.float64), labels, w, b)
        solver.step(1)
        assert solver.net.blobs["loss"].data == pytest.approx(loss, rel=1e-5)
        vw = MOMENTUM * vw + LR * (gw + WD * w)
        vb = MOMENTUM * vb + LR * (gb + WD * b)
        w, b = w - vw, b - vb
        np.testing.assert_allclose(solver.net.params["fc"][0].data, w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(solver.net.params["fc"][1].data, b, rtol=1e-5, atol=1e-7)


def test_a_step_after_a_backward_takes_one_gradient(caffe, tmp_path, write_net):
    """A pycaffe caller may run forward and backward between solver.step(1) calls (an adversarial step
    reads the data gradient so): the next step still applies one gradient, not that one added to its
    own (Caffe's Backward adds to the param diffs; 05-fused-sgd.patch must clear them at each call)."""
    net = write_net("net.prototxt", ORACLE_NET.format(inputs=5, outputs=3, std=0.1))
    solver_path = write_net(
        "solver.prototxt",
        f"""
        net: "{net}" base_lr: {LR} momentum: 0 weight_decay: 0
        lr_policy: "fixed" max_iter: 10 display: 0 snapshot_after_train: false solver_mode: CPU""",
    )
    solver = caffe.SGDSolver(solver_path)
    x = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    solver.net.blobs["data"].data[...] = x
    solver.net.blobs["label"].data[...] = labels
    solver.step(1)
    w = solver.net.params["fc"][0].data.astype(np.float64)
    b = solver.net.params["fc"][1].data.astype(np.float64)
    solver.net.forward()
    solver.net.backward()
    solver.step(1)
    _, gw, _ = _softmax_loss_and_grads(x.astype(np.float64), labels, w, b)
    np.testing.assert_allclose(solver.net.params["fc"][0].data, w - LR * gw, rtol=1e-5, atol=1e-7)


BLOG_LAYER = """
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: 64 dim: 3 dim: 64 dim: 64 }} shape {{ dim: 64 }} }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param {{ num_output: 1000 weight_filler {{ type: "gaussian" std: {std} }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
"""


@pytest.mark.parametrize("std", [1e-4, 1e-2])
def test_initial_loss_of_the_blogs_layer(caffe, tmp_path, write_net, std):
    """Blog: std 1e-4 starts near -ln(1/1000) ~ 7.0; the AlexNet-style 0.01 starts an order of
    magnitude higher: ~80 in the blog, because Caffe clamps each sample's loss at -log(FLT_MIN)
    = 87.3. Inputs: 0..255 pixels minus their mean, as the training net feeds them."""
    caffe.set_random_seed(3)
    net = caffe.Net(write_net("net.prototxt", BLOG_LAYER.format(std=std)), caffe.TEST)
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(64, 3, 64, 64)).astype(np.float32)
    x = pixels - pixels.mean(axis=0)
    labels = rng.integers(0, 1000, size=64)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = labels
    loss = float(net.forward()["loss"])
    w, b = (p.data.astype(np.float64) for p in net.params["fc"])
    assert w.shape == (1000, 12288) and np.all(b == 0)
    assert w.std() == pytest.approx(std, rel=0.01)  # Caffe's Gaussian filler
    oracle, _, _ = _softmax_loss_and_grads(x.reshape(64, -1).astype(np.float64), labels, w, b)
    assert loss == pytest.approx(oracle, rel=1e-4)
    if std == 1e-4:
        assert loss == pytest.approx(math.log(1000), rel=0.10)
    else:
        assert loss > 10 * math.log(1000)


DATA_ONLY_NET = """
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
        transform_param {{ mean_file: "{mean}" }}
        data_param {{ source: "{lmdb}" batch_size: 16 backend: LMDB }} }}
"""


def test_data_layer_batches_are_exactly_pixels_minus_the_mean(caffe, tmp_path, write_net):
    """Caffe's Data layer (linfool's build transforms a batch's records on all cores) yields exactly
    the LMDB's uint8 pixels minus the mean image in float32, record by record in LMDB order, labels
    alongside, also for batches that wrap around the LMDB's end (numpy is the oracle). The top blob
    takes each prefetched batch's memory instead of a copy: its buffer rotates through the layer's
    prefetch buffers (3) and its own, and each batch stays exact through a whole rotation."""
    from linfool.core import datum, records

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (40, 3, 64, 64), dtype=np.uint8)
    labels = rng.integers(0, 1000, 40)
    records.write(
        tmp_path / "lmdb", ((f"{i:08d}".encode(), datum.encode_datum(pixels[i], labels[i])) for i in range(40)), 40
    )
    mean = rng.uniform(0, 255, (3, 64, 64)).astype(np.float32)
    (tmp_path / "mean.binaryproto").write_bytes(datum.encode_mean(mean))
    net = caffe.Net(
        write_net("data.prototxt", DATA_ONLY_NET.format(mean=tmp_path / "mean.binaryproto", lmdb=tmp_path / "lmdb")),
        caffe.TRAIN,
    )
    buffers = []
    for step in range(8):  # records 0-15, 16-31, 32-39 + 0-7, ...
        net.forward()
        order = (16 * step + np.arange(16)) % 40
        np.testing.assert_array_equal(net.blobs["data"].data, pixels[order].astype(np.float32) - mean)
        np.testing.assert_array_equal(net.blobs["label"].data, labels[order].astype(np.float32))
        buffers.append(net.blobs["data"].data.ctypes.data)
    assert len(set(buffers)) == 4 and buffers[4:] == buffers[:4]
