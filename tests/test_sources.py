"""linfool.data.sources and linfool.data.build at 1000 classes: sorted-wnid labels, official, devkit and
Caffe val.txt labels, the disk preflight."""

from collections import namedtuple

import pytest

from linfool.data import build, lmdb_builder, sources
from linfool_dev import rehearsal

pytestmark = pytest.mark.fast  # needs no Caffe (make test-fast)

Usage = namedtuple("Usage", "total used free")


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    """The rehearsal's ILSVRC2012-shaped trees, 1 train and 1 val image per class (2,000 JPEGs)."""
    return rehearsal.generate(tmp_path_factory.mktemp("ilsvrc") / "tree", train_per_class=1, val_per_class=1)


def test_1000_classes_in_sorted_wnid_order_with_official_val_labels(ilsvrc):
    splits = sources.imagenet_splits(ilsvrc / "flat")
    assert len(splits["wnids"]) == 1000 and splits["wnids"] == sorted(splits["wnids"])
    val = dict(splits["val"][1])
    assert len(val) == 1000 and val["ILSVRC2012_val_00000001.JPEG"] == 65  # sea snake, as Caffe's val.txt
    assert splits["wnids"][65] == "n01751748"
    folders = sources.imagenet_splits(ilsvrc / "folders")  # per-class val folders: the same labels
    assert sorted(label for _, label in folders["val"][1]) == sorted(val.values())
    assert {p.split("/")[1]: label for p, label in folders["val"][1]} == val


def test_devkit_ground_truth_is_converted_or_refused(ilsvrc, tmp_path):
    wnids = sources.imagenet_splits(ilsvrc / "flat")["wnids"]
    official = dict(sources.flat_val_items(ilsvrc / "flat" / "val", wnids))
    devkit = ilsvrc / "folders" / "ILSVRC2012_devkit_t12" / "data"
    assert (devkit / "ILSVRC2012_validation_ground_truth.txt").read_text().split()[0] == "490"
    converted = dict(
        sources.flat_val_items(ilsvrc / "flat" / "val", wnids, devkit / "ILSVRC2012_validation_ground_truth.txt")
    )
    assert converted == official
    lone = tmp_path / "ILSVRC2012_validation_ground_truth.txt"  # no meta.mat beside it
    lone.write_text((devkit / "ILSVRC2012_validation_ground_truth.txt").read_text())
    with pytest.raises(sources.DatasetError, match="devkit class ids"):
        sources.flat_val_items(ilsvrc / "flat" / "val", wnids, lone)
    shifted = tmp_path / "val.txt"  # a val.txt numbered by devkit id - 1
    ids = rehearsal.devkit_ids(wnids)
    shifted.write_text("".join(f"{name} {ids[wnids[label]] - 1}\n" for name, label in official.items()))
    with pytest.raises(sources.DatasetError, match="disagrees with the official ILSVRC2012 val labels"):
        sources.flat_val_items(ilsvrc / "flat" / "val", wnids, shifted)


def test_disk_preflight_refuses_in_one_line_before_writing(ilsvrc, tmp_path, monkeypatch):
    monkeypatch.setattr(lmdb_builder.shutil, "disk_usage", lambda _: Usage(100 << 30, 0, 10 << 20))
    with pytest.raises(lmdb_builder.DiskError, match=r"need about 0\.0\d GB .* has 0\.0\d GB free"):
        build.build_dataset(ilsvrc / "flat", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
