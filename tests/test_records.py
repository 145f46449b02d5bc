"""linfool.core.records: the streaming reader, chosen positions, LMDB map sizing and growth."""

import numpy as np
import pytest

from linfool.core import datum, records

pytestmark = pytest.mark.fast  # needs no Caffe (make test-fast)


def _lmdb(path, n, label=lambda i: i % 7):
    pixels = np.random.default_rng(n).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)
    records.write(path, ((f"{i:08d}".encode(), datum.encode_datum(pixels[i], label(i))) for i in range(n)), n)
    return pixels


@pytest.mark.parametrize("remap", [records.REMAP_EVERY, 7])  # 7: the map is re-opened mid-batch, often
def test_records_stream_in_batches_and_read_chosen_positions(tmp_path, monkeypatch, remap):
    monkeypatch.setattr(records, "REMAP_EVERY", remap)
    pixels = _lmdb(tmp_path / "db", 600)
    assert [key for key, _ in records.raw(tmp_path / "db")] == [f"{i:08d}".encode() for i in range(600)]
    parts = list(records.batches(tmp_path / "db", batch=256))
    assert [len(labels) for _, labels in parts] == [256, 256, 88]
    assert np.array_equal(np.concatenate([images for images, _ in parts]), pixels)
    assert np.array_equal(records.labels(tmp_path / "db"), np.arange(600) % 7)
    images, labels = records.read(tmp_path / "db", [599, 3, 42, 3])
    assert np.array_equal(images, pixels[[599, 3, 42, 3]]) and list(labels) == [599 % 7, 3, 0, 3]
    picked = list(records.batches(tmp_path / "db", batch=2, positions=[5, 1, 9]))
    assert [list(lab) for _, lab in picked] == [[1, 5], [2]]
    balanced = records.balanced_positions(records.labels(tmp_path / "db"), 3, seed=1)
    assert len(balanced) == 21 and np.all(np.bincount(np.arange(600)[balanced] % 7) == 3)
    assert np.array_equal(balanced, records.balanced_positions(records.labels(tmp_path / "db"), 3, seed=1))
    with pytest.raises(records.LmdbError, match="has 600 records"):
        records.read(tmp_path / "db", [600])
    with pytest.raises(records.LmdbError, match="no LMDB at"):
        records.count(tmp_path / "nowhere")


def test_map_is_sized_from_whole_pages_and_grows_when_it_fills_anyway(tmp_path):
    # A 64x64 record (12,3xx bytes) takes 4 overflow pages of 4,096 bytes: the old n * 12,544 * 1.2
    # estimate was below that, so every large build relied on growth near its end.
    assert records.record_bytes() >= 4 * 4096 and records.map_size(1_281_167) > 1_281_167 * 4 * 4096
    writer = records.Writer(tmp_path / "db", 300, initial_map=1 << 20)  # 1 MiB: fills after ~60 records
    values = [datum.encode_datum(np.full((3, 64, 64), i % 256, np.uint8), i % 3) for i in range(300)]
    for i, value in enumerate(values):
        writer.put(f"{i:08d}".encode(), value)
    assert writer.close() == 300 and writer.grown >= 1
    records.verify(tmp_path / "db", 300, num_classes=3)
    assert [v for _, v in records.raw(tmp_path / "db")] == values
    with pytest.raises(records.LmdbError, match="holds 300 records, 301 were written"):
        records.verify(tmp_path / "db", 301)
    with pytest.raises(records.LmdbError, match="label 2"):
        records.verify(tmp_path / "db", 300, num_classes=2)
