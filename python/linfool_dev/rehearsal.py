"""An ILSVRC2012-shaped tree with all 1000 classes, small enough to rehearse the README's ImageNet
recipe end to end on 2 cores (`make rehearse`).

    python -m linfool_dev.rehearsal OUT [--train-per-class 4] [--val-per-class 2]

OUT/flat/     train/<wnid>/<wnid>_<i>.JPEG for the 1000 ILSVRC2012 wnids; val/ILSVRC2012_val_<n>.JPEG
              with official file names, whose class is their official one, and no val.txt
OUT/folders/  the same images with val/<wnid>/ILSVRC2012_val_<n>.JPEG (per-class val folders), and
              ILSVRC2012_devkit_t12/data/{ILSVRC2012_validation_ground_truth.txt, meta.mat}: devkit
              class ids for the same val files (NOT Caffe's sorted-wnid numbering)
The devkit ids here are a seeded permutation of 1..1000 with the two we know from the real devkit
pinned (1 = n02119789 kit fox; 490 = n01751748 sea snake, the class of ILSVRC2012_val_00000001).
Pictures: each class is a fixed 4x4 colour pattern (seeded by its wnid) under noise, so a linear
classifier learns readable templates within a few dozen iterations.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.io import savemat

from linfool.data import sources

KNOWN_DEVKIT_IDS = {"n02119789": 1, "n01751748": 490}
SIZE = 96  # source pictures are 96 x 96 (resized to 64 x 64 by make data)


def wnids() -> list:
    """The 1000 ILSVRC2012 wnids, sorted (Caffe's label order)."""
    return sorted(sources.imagenet_names())


def picture(wnid, seed) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 BGR: the class's 4x4 colour pattern, upsampled, with noise."""
    pattern = np.random.default_rng(int(wnid[1:])).uniform(0, 255, (4, 4, 3)).astype(np.float32)
    image = cv2.resize(pattern, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    image += np.random.default_rng(seed).normal(0, 40, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def devkit_ids(classes) -> dict:
    """{wnid: devkit id}: a seeded permutation of 1..len(classes) with KNOWN_DEVKIT_IDS pinned."""
    ids = list(np.random.default_rng(2012).permutation(len(classes)) + 1)
    table = dict(zip(classes, ids))
    for wnid, known in KNOWN_DEVKIT_IDS.items():
        holder = next(w for w, i in table.items() if i == known)
        table[holder], table[wnid] = table[wnid], known
    return table


def val_names(classes, per_class) -> dict:
    """{official val file name: wnid}: the first `per_class` official val images of each class."""
    official = sources.imagenet_table("val_image_to_1k_label.json")
    to_wnid = sources.imagenet_table("imagenet1k_to_21k.json")
    chosen, counts = {}, {}
    for name in sorted(official):
        wnid = to_wnid[str(official[name])]
        if counts.get(wnid, 0) < per_class and wnid in classes:
            chosen[name], counts[wnid] = wnid, counts.get(wnid, 0) + 1
    return chosen


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def write_devkit(folder, classes):
    """The devkit's ground truth (50,000 lines: the devkit id of ILSVRC2012_val_<n>'s official class,
    n = 1, 2, ...) and a meta.mat with the devkit's synsets fields (ILSVRC2012_ID, WNID, words)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = devkit_ids(classes)
    official = sources.imagenet_table("val_image_to_1k_label.json")
    to_wnid = sources.imagenet_table("imagenet1k_to_21k.json")
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{ids[to_wnid[str(official[name])]]}\n" for name in sorted(official))
    )
    names = sources.imagenet_names()
    synsets = np.array(
        [(ids[w], w, names[w]) for w in sorted(classes, key=ids.get)],
        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")],
    )
    savemat(str(folder / "meta.mat"), {"synsets": synsets})


def generate(out, train_per_class=4, val_per_class=2) -> Path:
    """Write OUT/flat and OUT/folders (see the module docstring); skipped when already complete."""
    out = Path(out)
    stamp = f"train={train_per_class} val={val_per_class}\n"
    if (out / "DONE").is_file() and (out / "DONE").read_text() == stamp:
        return out
    shutil.rmtree(out, ignore_errors=True)
    classes = wnids()
    for wnid in classes:
        for i in range(train_per_class):
            _write(out / "flat" / "train" / wnid / f"{wnid}_{i}.JPEG", picture(wnid, (int(wnid[1:]), i)))
    val = val_names(classes, val_per_class)
    for name, wnid in val.items():
        _write(out / "flat" / "val" / name, picture(wnid, (int(wnid[1:]), 10_000 + int(name[15:23]))))
    (out / "folders" / "val").mkdir(parents=True)
    os.symlink((out / "flat" / "train").resolve(), out / "folders" / "train")
    for name, wnid in val.items():
        (out / "folders" / "val" / wnid).mkdir(exist_ok=True)
        os.link(out / "flat" / "val" / name, out / "folders" / "val" / wnid / name)
    write_devkit(out / "folders" / "ILSVRC2012_devkit_t12" / "data", classes)
    (out / "DONE").write_text(stamp)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train-per-class", type=int, default=4)
    parser.add_argument("--val-per-class", type=int, default=2)
    args = parser.parse_args(argv)
    generate(args.out, args.train_per_class, args.val_per_class)
    print(f"ILSVRC2012-shaped trees in {args.out}/flat and {args.out}/folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
