"""Weights from a snapshot: load the run's deploy.prototxt + newest good .caffemodel with pycaffe and
keep what the figures need in runs/<name>/weights.npz.

    python -m linfool weights [--run NAME] [--data NAME]     (make weights [RUN=] [DATA=])

weights.npz: W (num_classes, 12288) float32 = (num_classes, 3, 64, 64) BGR channel-major as Caffe
stores InnerProduct weights; b (num_classes,); mean (3, 64, 64) float32 BGR 0..255 (subtracted from
images before the net); wnids, names (label order); iteration and snapshot_sha256 (which snapshot
it holds: a newer snapshot makes it out of date, and it is extracted again).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from linfool.core import caffe_env, cli, conventions, datum, files, prototxt, runs, stages


def check_linear(run: runs.Run) -> None:
    """RunError (one line) unless the run's net is the blog's linear classifier (one InnerProduct
    'fc'): the templates, the blog's alpha * w_t attack and the stages built on them need it."""
    learned = prototxt.learned_layers(run.path / "deploy.prototxt")
    if learned != [("fc", "InnerProduct")]:
        raise runs.RunError(
            f"run {run.name} is not a linear classifier (its learned layers: {', '.join(n for n, _ in learned)}); "
            "this stage reads one template per class: give it a linear run, and `make deep` for deeper models"
        )


def load_net(run: runs.Run | str | Path, batch: int = 1) -> Any:
    """pycaffe deploy Net of the run with its newest (checked) snapshot, input reshaped to
    (batch, 3, 64, 64), on the device caffe_env.use_device picks (GPU=, auto: the GPU when there is one).
    The run must be linear (check_linear)."""
    run = runs.as_run(run)
    check_linear(run)
    snapshot = run.snapshot()
    caffe = caffe_env.use_device()
    net = caffe.Net(str(run.path / "deploy.prototxt"), str(snapshot.path), caffe.TEST)
    net.blobs["data"].reshape(batch, *conventions.IMAGE_SHAPE)
    return net


def extract(run: runs.Run | str | Path) -> Path:
    """Write the run's weights.npz from its newest snapshot (atomically); returns its path."""
    run = runs.as_run(run)
    snapshot = run.snapshot()
    net = load_net(run)
    dataset = run.dataset()
    labels = dataset.labels()
    mean = datum.decode_mean(dataset.mean_file.read_bytes())
    buffer = io.BytesIO()
    np.savez(
        buffer,
        W=net.params["fc"][0].data.copy(),
        b=net.params["fc"][1].data.copy(),
        mean=mean,
        wnids=np.array([w for w, _ in labels]),
        names=np.array([n for _, n in labels]),
        iteration=snapshot.iteration,
        snapshot_sha256=snapshot.sha256,
    )
    out = run.path / "weights.npz"
    files.write_bytes(out, buffer.getvalue())
    return out


def load(run: runs.Run | str | Path) -> dict:
    """weights.npz of the run as a dict, extracted first when missing or not of its newest snapshot."""
    run = runs.as_run(run)
    path = run.path / "weights.npz"
    sha = run.snapshot().sha256
    if path.is_file():
        with np.load(path) as npz:
            if "snapshot_sha256" in npz.files and str(npz["snapshot_sha256"]) == sha:
                return {key: npz[key] for key in npz.files}
    extract(run)
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def main(argv: list[str] | None = None) -> int:
    args = stages.parse("weights", argv)

    def body():
        run = runs.Run.named(args.run)
        with runs.locked(write=[run]):
            print(extract(run))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
