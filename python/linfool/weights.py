"""Weights from a snapshot: load the run's deploy.prototxt + newest .caffemodel with pycaffe and
keep what the figures need in runs/<name>/weights.npz.

    python -m linfool.weights --run NAME

weights.npz: W (num_classes, 12288) float32 = (num_classes, 3, 64, 64) BGR channel-major as Caffe
stores InnerProduct weights; b (num_classes,); mean (3, 64, 64) float32 BGR 0..255 (subtracted from
images before the net); wnids, names (label order); iteration.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from linfool import caffe_env, datasets, datum, paths, runs


def newest_caffemodel(run_dir) -> Path:
    """The run's .caffemodel with the highest iteration; FileNotFoundError saying how to make one."""
    model = runs.newest(run_dir, ".caffemodel")
    if model is None:
        raise FileNotFoundError(f"no .caffemodel in {run_dir}; run `make train RUN={Path(run_dir).name}` first")
    return model


def load_net(run_dir, batch=1):
    """pycaffe deploy Net of the run with its newest snapshot, input reshaped to (batch, 3, 64, 64),
    on the device caffe_env.use_device picks (GPU=, auto: the GPU when there is one)."""
    caffe = caffe_env.use_device()
    net = caffe.Net(str(Path(run_dir) / "deploy.prototxt"), str(newest_caffemodel(run_dir)), caffe.TEST)
    net.blobs["data"].reshape(batch, 3, 64, 64)
    return net


def extract(run_dir) -> Path:
    """Write run_dir/weights.npz from the newest snapshot; returns its path."""
    run_dir = Path(run_dir)
    model = newest_caffemodel(run_dir)
    net = load_net(run_dir)
    data_dir = runs.data_dir(run_dir)
    labels = datasets.read_labels(data_dir / "labels.txt")
    mean = datum.decode_mean((data_dir / "train_lmdb" / "mean.binaryproto").read_bytes())
    out = run_dir / "weights.npz"
    np.savez(out, W=net.params["fc"][0].data.copy(), b=net.params["fc"][1].data.copy(), mean=mean,
             wnids=np.array([w for w, _ in labels]), names=np.array([n for _, n in labels]),
             iteration=runs.iteration(model))
    return out


def load(run_dir) -> dict:
    """weights.npz of the run as a dict (extracted first when missing or older than the snapshot)."""
    path = Path(run_dir) / "weights.npz"
    if not path.is_file() or path.stat().st_mtime < newest_caffemodel(run_dir).stat().st_mtime:
        extract(run_dir)
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default")
    args = parser.parse_args(argv)
    try:
        print(extract(paths.run_dir(args.run)))
    except (FileNotFoundError, caffe_env.DeviceError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
