"""The LMDB builder: byte-identical to Caffe's convert_imageset and compute_image_mean, robust to
broken files, atomic under SIGKILL, seeded shuffling, and the ILSVRC2012 / per-class layouts."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from linfool.core import caffe_env, datasets, datum, records
from linfool.data import build, lmdb_builder, sources, synthetic


def _photo(seed, w=500, h=375):
    """An ImageNet-like (h, w, 3) uint8 BGR picture from the synthetic renderer."""
    rng = np.random.default_rng(seed)
    return synthetic.render(rng, synthetic.CLASSES[seed % len(synthetic.CLASSES)], w, h)


@pytest.fixture
def odd_images(tmp_path):
    """Files that convert_imageset decodes, of every awkward kind, plus ordinary JPEGs."""
    root = tmp_path / "img"
    root.mkdir()
    names = []
    for i in range(12):
        size = [(500, 375), (375, 500), (333, 500), (640, 480)][i % 4]
        cv2.imwrite(str(root / f"photo_{i}.JPEG"), _photo(i, *size))
        names.append(f"photo_{i}.JPEG")
    pic = _photo(99, 320, 240)
    cv2.imwrite(str(root / "gray.JPEG"), cv2.cvtColor(pic, cv2.COLOR_BGR2GRAY))
    Image.fromarray(pic[:, :, ::-1]).convert("CMYK").save(root / "cmyk.JPEG")
    cv2.imencode(".png", pic)[1].tofile(str(root / "png_named.JPEG"))
    cv2.imwrite(str(root / "deep.png"), pic.astype(np.uint16) * 257)
    cv2.imwrite(str(root / "tiny.JPEG"), pic[:3, :5])
    cv2.imwrite(str(root / "huge.JPEG"), cv2.resize(pic, (4000, 3000)))
    cv2.imwrite(str(root / "with space.JPEG"), pic)
    names += ["gray.JPEG", "cmyk.JPEG", "png_named.JPEG", "deep.png", "tiny.JPEG", "huge.JPEG", "with space.JPEG"]
    return root, [(name, i % 5) for i, name in enumerate(names)]


def _write_list(path, items):
    path.write_text("".join(f"{p} {label}\n" for p, label in items))
    return path


def test_records_and_mean_match_convert_imageset_and_compute_image_mean(tmp_path, odd_images):
    root, items = odd_images
    list_file = _write_list(tmp_path / "list.txt", items)
    ours = lmdb_builder.build_lmdb(lmdb_builder.read_list(list_file), root, tmp_path / "ours", progress=False)
    assert ours.written == len(items) and not ours.skipped
    subprocess.run(
        [
            str(caffe_env.tool("convert_imageset")),
            "--resize_height=64",
            "--resize_width=64",
            f"{root}/",
            str(list_file),
            str(tmp_path / "caffe"),
        ],
        check=True,
        capture_output=True,
        env=caffe_env.tool_env(),
    )
    theirs = list(records.raw(tmp_path / "caffe"))
    assert [k for k, _ in list(records.raw(tmp_path / "ours"))] == [k for k, _ in theirs]
    for (key, mine), (_, caffes) in zip(list(records.raw(tmp_path / "ours")), theirs):
        assert mine == caffes, f"record {key!r} differs from convert_imageset's"
    subprocess.run(
        [str(caffe_env.tool("compute_image_mean")), str(tmp_path / "caffe"), str(tmp_path / "mean.binaryproto")],
        check=True,
        capture_output=True,
        env=caffe_env.tool_env(),
    )
    assert (tmp_path / "ours" / "mean.binaryproto").read_bytes() == (tmp_path / "mean.binaryproto").read_bytes()
    image, label = datum.decode_datum(theirs[0][1])
    assert image.shape == (3, 64, 64) and label == items[0][1]


@pytest.mark.fast
def test_bad_inputs_are_skipped_with_reasons_and_good_ones_kept(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    good = []
    for i in range(4):
        cv2.imwrite(str(root / f"ok_{i}.JPEG"), _photo(i, 200, 150))
        good.append((f"ok_{i}.JPEG", i))
    jpeg = cv2.imencode(".jpg", _photo(7, 200, 150))[1].tobytes()
    (root / "truncated.JPEG").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "empty.JPEG").write_bytes(b"")
    Image.fromarray(_photo(8, 64, 64)).save(root / "gif.JPEG", format="GIF")
    (root / "text.JPEG").write_text("this is not an image\n" * 10)
    (root / "folder.JPEG").mkdir()  # unreadable as a file
    bad = {
        "truncated.JPEG": "truncated JPEG",
        "empty.JPEG": "empty file",
        "gif.JPEG": "GIF",
        "text.JPEG": "not an image",
        "folder.JPEG": "unreadable",
        "missing.JPEG": "missing file",
    }
    list_file = tmp_path / "list.txt"
    lines = [f"{p} {label}" for p, label in good[:2]] + [f"{name} 1" for name in bad]
    lines += ["ok_2.JPEG 7", "ok_3.JPEG"] + [f"{p} {label}" for p, label in good[:1]]
    list_file.write_text("\n".join(lines) + "\n")
    result = lmdb_builder.build_lmdb(
        lmdb_builder.read_list(list_file), root, tmp_path / "out", num_classes=5, progress=False
    )
    reasons = dict(result.skipped)
    for name, why in bad.items():
        assert why in reasons[name]
    assert "outside 0..4" in reasons["ok_2.JPEG"] and "no integer label" in reasons["ok_3.JPEG"]
    written = list(records.raw(tmp_path / "out"))
    assert result.written == len(written) == 3
    assert [key.split(b"_", 1)[1].decode() for key, _ in written] == ["ok_0.JPEG", "ok_1.JPEG", "ok_0.JPEG"]
    for _, value in written:
        assert datum.decode_datum(value)[0].shape == (3, 64, 64)
    assert len((tmp_path / "out" / "skipped.txt").read_text().splitlines()) == len(bad) + 2
    assert "skipped 8" in lmdb_builder.summary(result)
    cli = subprocess.run(
        [sys.executable, "-m", "linfool", "lmdb", str(root), str(tmp_path / "bad_only.txt"), str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and "no list file" in cli.stderr
    (tmp_path / "bad_only.txt").write_text("empty.JPEG 0\n")
    cli = subprocess.run(
        [sys.executable, "-m", "linfool", "lmdb", str(root), str(tmp_path / "bad_only.txt"), str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "wrote 0 records" in cli.stdout


@pytest.mark.fast
def test_ctrl_c_and_sigkill_leave_nothing_finished_and_the_rerun_is_identical(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    for i in range(400):
        cv2.imwrite(str(root / f"{i}.JPEG"), _photo(i % 40, 640, 480))
    list_file = _write_list(tmp_path / "list.txt", [(f"{i}.JPEG", i % 3) for i in range(400)])
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "linfool",
        "lmdb",
        str(root),
        str(list_file),
        str(out),
        "--workers",
        "1",
        "--shuffle-seed",
        "5",
    ]
    partial_dir = tmp_path / ".out.partial"

    def started(stderr=subprocess.DEVNULL):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, text=True, start_new_session=True)
        deadline = time.time() + 60
        while not (partial_dir / "data.mdb").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        return proc

    # Ctrl-C: one line, exit 130, and not even the hidden partial stays
    proc = started(subprocess.PIPE)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130 and "Traceback" not in err  # stderr: the progress bar, then one line
    assert err.strip().splitlines()[-1] == (
        "ERROR: interrupted (Ctrl-C); nothing half-written was published: run the same command again"
    )
    assert not out.exists() and not partial_dir.exists()
    proc = started()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed build must not leave a finished-looking LMDB"
    subprocess.run(cmd, check=True, capture_output=True)
    reference = lmdb_builder.build_lmdb(
        lmdb_builder.read_list(list_file), root, tmp_path / "ref", shuffle_seed=5, progress=False
    )
    assert list(records.raw(out)) == list(records.raw(tmp_path / "ref")) and reference.written == 400
    again = lmdb_builder.build_lmdb(lmdb_builder.read_list(list_file), root, out, shuffle_seed=5, progress=False)
    assert again.up_to_date


@pytest.mark.fast
def test_shuffle_is_seeded(tmp_path, odd_images):
    root, items = odd_images
    keys = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        lmdb_builder.build_lmdb(items, root, tmp_path / name, shuffle_seed=seed, progress=False)
        keys.append([k for k, _ in list(records.raw(tmp_path / name))])
    assert keys[0] == keys[1] and keys[0] != keys[2]
    assert sorted(k.split(b"_", 1)[1] for k in keys[0]) == sorted(p.encode() for p, _ in items)


def _official_val_names(wnid_index, count):
    """`count` official ILSVRC2012 val file names whose label is `wnid_index` (1k numbering)."""
    official = sources.imagenet_table("val_image_to_1k_label.json")
    return sorted(name for name, label in official.items() if label == wnid_index)[:count]


@pytest.mark.fast
def test_ilsvrc2012_layout_with_official_val_labels(tmp_path):
    # goldfish (1k label 1) and kit fox (278): labels renumbered 0, 1 in sorted-wnid order.
    src = tmp_path / "ILSVRC2012"
    for wnid in ("n02119789", "n01443537"):
        (src / "train" / wnid).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(src / "train" / wnid / f"{wnid}_{i}.JPEG"), _photo(i))
    (src / "val").mkdir()
    for k, name in enumerate(_official_val_names(1, 2) + _official_val_names(278, 2)):
        cv2.imwrite(str(src / "val" / name), _photo(k))
    results = build.build_dataset(src, tmp_path / "built", progress=False)
    assert results["train"].written == 6 and results["val"].written == 4
    val_labels = sorted(datum.decode_datum(v)[1] for _, v in list(records.raw(tmp_path / "built" / "val_lmdb")))
    assert val_labels == [0, 0, 1, 1]
    assert datasets.read_labels(tmp_path / "built" / "labels.txt") == [
        ("n01443537", "goldfish"),
        ("n02119789", "kit fox"),
    ]


@pytest.mark.fast
def test_per_class_folders_at_any_depth(tmp_path):
    root = tmp_path / "tiny"  # Tiny ImageNet: train/<wnid>/images/*.JPEG
    for wnid in ("n02", "n01"):
        (root / wnid / "images").mkdir(parents=True)
        cv2.imwrite(str(root / wnid / "images" / "a.JPEG"), _photo(1))
    wnids = sorted(sources.scan(root))
    assert wnids == ["n01", "n02"]
    assert sources.folder_items(root, wnids) == [("n01/images/a.JPEG", 0), ("n02/images/a.JPEG", 1)]
    with pytest.raises(sources.DatasetError, match="ILSVRC2012 layout"):
        sources.imagenet_splits(tmp_path / "nowhere")
