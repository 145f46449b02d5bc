"""The fixed, seeded sample of (val image, target) pairs the attack experiments share, and the cost
line each prints before it starts.

    pair_sample(val_lmdb, num_classes, n_images, pairs, seed) -> images, labels, which, targets, about
    describe(about, forwards, seconds_per_forward) -> one line
"""

import math
import time

import numpy as np

from linfool.attacks import IMAGES_PER_FORWARD
from linfool.core import conventions, records, stages

SAMPLE_SEED = conventions.SEED


IMAGES = stages.default("attack-curves", "images")  # val images in the sample (declared in core.stages)


PAIRS = stages.default("attack-curves", "pairs")  # (image, target) pairs: 30 x 17 = every other class on the demo


def sample_pairs(image_labels, num_classes, targets_per_image=None, rng=None):
    """For each sampled image, all other classes (or `targets_per_image` of them at random):
    (which image, target) as two (n_pairs,) int arrays; never the image's own class."""
    rng = rng if rng is not None else np.random.default_rng(SAMPLE_SEED)
    which, targets = [], []
    for i, label in enumerate(image_labels):
        others = np.delete(np.arange(num_classes), label)
        if targets_per_image is not None and targets_per_image < len(others):
            others = np.sort(rng.choice(others, size=targets_per_image, replace=False))
        which += [i] * len(others)
        targets += list(others)
    return np.array(which, dtype=int), np.array(targets, dtype=int)


def pair_sample(val_lmdb, num_classes, *, n_images=IMAGES, pairs=PAIRS, seed=SAMPLE_SEED):
    """The fixed sample: n_images val records drawn uniformly from the whole LMDB (seeded), then
    targets per image. Returns (images (n, 3, 64, 64) float32 0..255 BGR, labels (n,), which, targets,
    description dict)."""
    rng = np.random.default_rng(seed)
    n_records = records.count(val_lmdb)
    positions = np.sort(rng.choice(n_records, size=min(n_images, n_records), replace=False))
    images, labels = records.read(val_lmdb, positions)
    per_image = min(num_classes - 1, math.ceil(pairs / max(len(positions), 1)))
    which, targets = sample_pairs(labels, num_classes, per_image, rng)
    about = {
        "images": len(positions),
        "targets_per_image": per_image,
        "pairs": len(targets),
        "possible_pairs": len(positions) * (num_classes - 1),
        "val_records": n_records,
        "seed": seed,
    }
    return images.astype(np.float32), labels, which, targets, about


def describe(about, forwards, seconds_per_forward):
    """One line: the sample and its cost before the work starts."""
    return (
        f"{about['images']} val images (of {about['val_records']}) x {about['targets_per_image']} targets = "
        f"{about['pairs']} pairs (of {about['possible_pairs']} possible; seed {about['seed']}): {forwards:,} pycaffe "
        f"forwards, about {forwards * seconds_per_forward / 60:.1f} min at {1 / seconds_per_forward:,.0f} images/s"
    )


def seconds_per_forward(classifier, batch=IMAGES_PER_FORWARD):
    """Measured seconds per image of a pycaffe forward at `batch` images (after one warm-up)."""
    x = np.full((batch, *conventions.IMAGE_SHAPE), 128, np.float32)
    classifier.probs(x)
    start = time.perf_counter()
    classifier.probs(x)
    return (time.perf_counter() - start) / batch
