"""linfool.experiments.background: rounds of fooling images fine-tuned with real Caffe, and the report
that shows every stage's result."""

import json
from pathlib import Path

from linfool.core import records

from running import stage


def test_background_rounds_fine_tune_with_caffe_and_the_report_shows_everything(own_runs):
    runs, env = own_runs
    out = stage(
        "background", env, "--run", "low", "--rounds", "1", "--fool", "6", "--iters", "20", "--measure-images", "2"
    )
    assert "round 1:" in out
    rounds = json.loads((runs / "low" / "background" / "background.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["background_images"] > 0
    assert (runs / "low_bg1" / "snap_iter_20.caffemodel").is_file() and (
        runs / "low_ctl1" / "snap_iter_20.caffemodel"
    ).is_file()
    assert rounds[1]["control"]["run"] == "low_ctl1"
    for run in ("low_bg1", "low_ctl1"):  # caffe train --weights really fine-tuned
        assert "Finetuning from" in (runs / run / "train.log").read_text()
    assert "num_output: 19" in (runs / "low_bg1" / "deploy.prototxt").read_text()
    # the round's data set links the train and val LMDBs (never a copy) and adds a small background LMDB,
    # mixed into each TRAIN batch by a second Caffe Data layer and Concat layers
    round_data = Path(env["LINFOOL_DATA"]) / "tiny_bg1"
    assert (round_data / "train_lmdb").is_symlink() and (round_data / "val_lmdb").is_symlink()
    background = records.labels(round_data / "background_lmdb")
    assert len(background) == rounds[1]["background_images"] and set(background) == {18}
    net = (runs / "low_bg1" / "train_val.prototxt").read_text()
    assert net.count('type: "Data"') == 3 and net.count('type: "Concat"') == 2
    assert str(round_data.resolve() / "background_lmdb") in net and str(round_data.resolve() / "train_lmdb") in net
    assert "data_mix" in (runs / "low_bg1" / "train.log").read_text()
    stage("eval", env, "--run", "low", "--low", "low", "--high", "high")
    stage("figures", env, "--run", "low", "--low", "low", "--high", "high")
    stage("attack-curves", env, "--run", "low", "--high", "high", "--images", "2")
    stage("transfer", env, "--run", "low", "--high", "high", "--images", "2")
    stage("claims", env, "--run", "low", "--low", "low", "--high", "high")
    stage("report", env, "--run", "low", "--low", "low", "--high", "high")
    page = (runs / "low" / "report.html").read_text()
    for part in (
        "make claims RUN=low LOW=low HIGH=high",
        "<th>verdict</th>",
        "toy: w.x = -3",
        "attacks/attack_curves.png",
        "transfer/transfer.png",
        "background/background.png",
        "make background RUN=low ROUNDS=1",
    ):
        assert part in page, part
