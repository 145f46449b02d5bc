"""linfool.experiments.attack_curves, difficulty and pairs: the pair sample, and the stage on tiny
Caffe runs (the attacks it measures with: tests/test_attacks.py)."""

import json

import numpy as np
import pytest

from linfool.core import datum, records
from linfool.experiments import pairs

from running import stage


@pytest.mark.fast
def test_pair_sample_is_seeded_reads_only_its_images_and_never_targets_the_true_class(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 3, 64, 64), dtype=np.uint8)
    records.write(
        tmp_path / "val", ((f"{i:08d}".encode(), datum.encode_datum(pixels[i], i % 5)) for i in range(40)), 40
    )
    images, labels, which, targets, about = pairs.pair_sample(tmp_path / "val", 5, n_images=6, pairs=24)
    again = pairs.pair_sample(tmp_path / "val", 5, n_images=6, pairs=24)
    assert len(targets) == about["pairs"] == 6 * 4 and about["possible_pairs"] == 24 and about["val_records"] == 40
    assert np.array_equal(which, again[2]) and np.array_equal(targets, again[3]) and np.array_equal(images, again[0])
    assert not np.any(labels[which] == targets)
    originals = [int(np.flatnonzero((pixels == image.astype(np.uint8)).all(axis=(1, 2, 3)))[0]) for image in images]
    assert [i % 5 for i in originals] == list(labels)  # each image read with its own label
    few = pairs.pair_sample(tmp_path / "val", 5, n_images=6, pairs=12)
    assert few[4]["targets_per_image"] == 2 and len(few[3]) == 12 and not np.any(few[1][few[2]] == few[3])


def test_attack_curves_and_transfer_on_tiny_caffe_runs(own_runs):
    runs, env = own_runs
    stage("attack-curves", env, "--run", "low", "--high", "high", "--images", "3")
    result = json.loads((runs / "low" / "attacks" / "attack_curves.json").read_text())
    assert result["pairs"] == 3 * 17 and len(result["curves"]["sign"]) == 256
    for kind in ("blog", "sign", "bound"):
        curve = np.array(result["curves"][kind])
        assert curve[0] == 0 and np.all((curve >= 0) & (curve <= 1))
        low, high = (np.array(b) for b in result["bands"][kind])  # the 95 % band holds the point curve
        assert np.all(low <= curve + 1e-12) and np.all(curve <= high + 1e-12) and np.all(high - low > 0)
        needed = np.array(result["first_epsilon"][kind])
        assert len(needed) == result["pairs"] and np.median(needed) == result["median_epsilon"][kind]
        interval = result["median_epsilon_ci"][kind]
        assert interval["low"] <= interval["value"] <= interval["high"] and interval["n"] == result["pairs"]
    # the closed form bounds every Linf attack: neither measured curve may exceed it
    assert np.all(np.array(result["curves"]["sign"]) <= np.array(result["curves"]["bound"]) + 1e-9)
    assert np.all(np.array(result["curves"]["blog"]) <= np.array(result["curves"]["bound"]) + 1e-9)
    assert (runs / "low" / "attacks" / "attack_curves_runs.png").stat().st_size > 5_000
    stage("transfer", env, "--run", "low", "--high", "high", "--images", "2")
    transfer = json.loads((runs / "low" / "transfer" / "transfer.json").read_text())
    matrix = np.array(transfer["matrix"])
    assert matrix.shape == (2, 2) and np.all(np.diag(matrix) == 1.0)  # fooled on the source, by construction
    for row, intervals, n in zip(matrix, transfer["matrix_ci"], transfer["fooled_on_source"]):
        for rate, found in zip(row, intervals):  # each rate with its k of n and a 95 % interval holding it
            assert found["n"] == n and (n == 0 or found["k"] / n == rate and found["low"] <= rate <= found["high"])
