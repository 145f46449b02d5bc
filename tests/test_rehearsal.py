"""`make rehearse`: the README's ImageNet recipe, exactly as written (plus only size knobs), on a
generated ILSVRC2012-shaped tree with all 1000 classes (linfool_dev.rehearsal), in a runs/ folder that
also holds the embedded demo's runs (blog, reg_low, reg_high), which no ImageNet output may use."""

import json
import os
import re
import shlex
import subprocess
import time

import pytest

from linfool.core import datasets, records
from linfool_dev import rehearsal

pytestmark = pytest.mark.rehearsal
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The README's ImageNet section, command for command; the rehearsal only adds the size knobs.
RECIPE = [
    "make data IMAGENET={tree}",
    "make sweep DATA=imagenet OVERLAY=prototxt/solver_rehearse.prototxt",
    "make eval RUN=imagenet",
    "make figures RUN=imagenet",
    "make attack-curves RUN=imagenet PAIRS=60",
    "make transfer RUN=imagenet PAIRS=60",
    "make background RUN=imagenet ROUNDS=1 FOOL=20 ITERS=20 MEASURE=4",
    "make blackbox RUN=imagenet PAIRS=2 QUERIES=2000",
    "make deep-sweep DATA=imagenet OVERLAY=prototxt/solver_rehearse.prototxt",
    "make deep RUN=imagenet IMAGES=4 PAIRS=8 STEPS=5",
    "make forest RUN=imagenet TREES=10 IMAGES=2 QUERIES=200",
    "make claims RUN=imagenet",
    "make report RUN=imagenet",
]
FOREIGN = ("blog", "reg_low", "reg_high")


def _make(command, env):
    """`command` (make TARGET VAR=value ..., split on spaces; VAR='a b' as one word) run in the checkout."""
    start = time.time()
    done = subprocess.run(shlex.split(command), cwd=ROOT, env=env, capture_output=True, text=True)
    print(f"[{time.time() - start:6.1f} s] {command}", flush=True)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    """Run the demo's sweep (tiny) and then the ImageNet recipe into one data/ and one runs/."""
    root = tmp_path_factory.mktemp("rehearsal")
    tree = rehearsal.generate(root / "ILSVRC2012")
    env = {**os.environ, "LINFOOL_DATA": str(root / "data"), "LINFOOL_RUNS": str(root / "runs")}
    subprocess.run(
        [
            os.path.join(ROOT, ".venv/bin/python"),
            "-m",
            "linfool",
            "data",
            "--train-per-class",
            "8",
            "--val-per-class",
            "2",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    _make("make sweep DATA=synthetic SET='max_iter=30 snapshot=30 test_iter=1'", env)  # as make variables
    logs = {command: _make(command.format(tree=tree / "flat"), env) for command in RECIPE}
    return root, tree, env, logs


def test_labels_are_the_1000_sorted_wnids_with_official_val_labels(rehearsed):
    root, tree, _, _ = rehearsed
    labels = datasets.read_labels(root / "data" / "imagenet" / "labels.txt")
    assert [w for w, _ in labels] == rehearsal.wnids() and len(labels) == 1000
    val_list = dict(
        line.rsplit(" ", 1) for line in (root / "data" / "imagenet" / "val_lmdb" / "list.txt").read_text().splitlines()
    )
    assert val_list["ILSVRC2012_val_00000001.JPEG"] == "65" and labels[65][0] == "n01751748"
    keys = [key.decode() for key, _ in records.raw(root / "data" / "imagenet" / "val_lmdb")]
    first = next(i for i, key in enumerate(keys) if key.endswith("ILSVRC2012_val_00000001.JPEG"))
    assert records.read(root / "data" / "imagenet" / "val_lmdb", [first])[1][0] == 65


def test_every_val_image_is_evaluated(rehearsed):
    root, _, _, logs = rehearsed
    for run in ("imagenet", "imagenet_reg_low", "imagenet_reg_high"):
        metrics = json.loads((root / "runs" / run / "metrics.json").read_text())
        assert metrics["val_images"] == metrics["val_records"] == 2000 and metrics["data"] == "imagenet"
    assert "all val records" in logs["make eval RUN=imagenet"]


def test_no_foreign_run_in_any_imagenet_output(rehearsed):
    root, _, _, logs = rehearsed
    out = root / "runs" / "imagenet"
    named = set(json.loads((out / "transfer" / "transfer.json").read_text())["runs"])
    named |= {
        json.loads((root / "runs" / r / "attacks" / "attack_curves.json").read_text())["run"]
        for r in ("imagenet", "imagenet_reg_low", "imagenet_reg_high")
    }
    named |= {row["run"] for row in json.loads((out / "figures" / "figures.json").read_text())["regularization"]}
    page = (out / "report.html").read_text()
    named |= set(re.findall(r"\.\./([\w-]+)/curves\.png", page))
    assert named == {"imagenet", "imagenet_reg_low", "imagenet_reg_high"}
    claims = json.dumps(json.loads((out / "claims.json").read_text()))
    for text in (page, claims, json.dumps(json.loads((out / "figures" / "figures.json").read_text()))):
        assert not re.search(r"(?<!imagenet_)\breg_(low|high)\b", text)
        assert "synthetic" not in text
    assert all((root / "runs" / r / "snap_iter_30.caffemodel").is_file() for r in FOREIGN)  # they were there
    assert "no regularization figure" not in logs["make figures RUN=imagenet"]


def test_the_1000_class_figures(rehearsed):
    root, _, _, _ = rehearsed
    figures = json.loads((root / "runs" / "imagenet" / "figures" / "figures.json").read_text())
    assert figures["fooling_image"][0]["target"] == "goldfish" and figures["fooling_image"][1]["target"] == "school bus"
    assert figures["templates_grid"]["cols"] == 40 and len(figures["templates_grid"]["names"]) == 1000
    import cv2

    mosaic = cv2.imread(str(root / "runs" / "imagenet" / "figures" / "blog_templates_all.png"))
    assert mosaic.shape == (25 * 65 + 1, 40 * 65 + 1, 3)
    assert "kit fox" in (root / "runs" / "imagenet" / "report.html").read_text()


def test_attack_curves_and_transfer_are_sampled_and_costed(rehearsed):
    root, _, _, logs = rehearsed
    curves = json.loads((root / "runs" / "imagenet" / "attacks" / "attack_curves.json").read_text())
    assert curves["pairs"] == 60 and curves["possible_pairs"] == 30 * 999 and curves["targets_per_image"] == 2
    assert "pycaffe forwards, about" in logs["make attack-curves RUN=imagenet PAIRS=60"]
    assert "pycaffe forwards, about" in logs["make transfer RUN=imagenet PAIRS=60"]


def test_background_round_at_1000_classes(rehearsed):
    root, _, _, _ = rehearsed
    rounds = json.loads((root / "runs" / "imagenet" / "background" / "background.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["val_images"] == 2000
    assert (root / "data" / "imagenet_bg1" / "train_lmdb").is_symlink()
    assert records.count(root / "data" / "imagenet_bg1" / "background_lmdb") == rounds[1]["background_images"]


def test_claims_check_the_imagenet_accuracy_row(rehearsed):
    root, _, _, _ = rehearsed
    rows = json.loads((root / "runs" / "imagenet" / "claims.json").read_text())["rows"]
    accuracy = next(r for r in rows if r["claim"].startswith("~3.0 %"))
    assert accuracy["verdict"] != "cannot be checked" and "2000 val images" in accuracy["value"]


def test_resume_keeps_the_sweep_overlay(rehearsed):
    root, _, env, _ = rehearsed
    finished = subprocess.run(
        ["make", "train", "RUN=imagenet_reg_low", "RESUME=1"], cwd=ROOT, env=env, capture_output=True, text=True
    )  # at max_iter already: a resume of nothing is refused, naming SET=max_iter
    assert finished.returncode == 2 and "a resume would run no iteration" in finished.stderr
    solver = (root / "runs" / "imagenet_reg_low" / "solver.prototxt").read_text()
    assert "weight_decay: 0.0005" in solver and "max_iter: 60" in solver
    info = json.loads((root / "runs" / "imagenet_reg_low" / "run.json").read_text())
    assert info["overlays"] == ["prototxt/solver_rehearse.prototxt", "prototxt/solver_reg_low.prototxt"]
    _make("make train RUN=imagenet_reg_low RESUME=1 SET=max_iter=90", env)
    assert (root / "runs" / "imagenet_reg_low" / "snap_iter_90.caffemodel").is_file()
    assert "weight_decay: 0.0005" in (root / "runs" / "imagenet_reg_low" / "solver.prototxt").read_text()


def test_per_class_val_folders_give_the_same_val_set(rehearsed):
    root, tree, env, _ = rehearsed
    subprocess.run(
        [
            os.path.join(ROOT, ".venv/bin/python"),
            "-m",
            "linfool",
            "data",
            "--imagenet",
            str(tree / "folders"),
            "--name",
            "imagenet_folders",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    flat = _file_labels(root / "data" / "imagenet" / "val_lmdb")
    assert _file_labels(root / "data" / "imagenet_folders" / "val_lmdb") == flat and len(flat) == 2000


def _file_labels(path):
    """{image file name: label} of an LMDB whose keys are '%08d_<relative path>'."""
    names = [key.decode().split("_", 1)[1].rsplit("/", 1)[-1] for key, _ in records.raw(path)]
    return dict(zip(names, records.labels(path).tolist()))


def test_blackbox_and_explore_at_1000_classes(rehearsed):
    root, _, _, _ = rehearsed
    out = root / "runs" / "imagenet"
    result = json.loads((out / "blackbox" / "blackbox.json").read_text())
    assert result["recovery"]["queries"] == 12289 and result["recovery"]["correlation_min"] > 0.999
    assert all(r["squares_queries"] <= 2000 for r in result["rows"])
    page = (out / "report.html").read_text()
    assert (out / "report.html").stat().st_size < 5e6 and "Fooling without the weights" in page
    data = json.loads(page.split("id='explore-data'>")[1].split("</script>")[0])
    assert len(data["names"]) == 1000 and len(data["files"]) == 10
    assert all((out / f).stat().st_size < 2.5e6 for f in data["files"])


def test_the_open_questions_at_1000_classes(rehearsed):
    root, _, _, logs = rehearsed
    out = root / "runs" / "imagenet"
    deep = json.loads((out / "deep" / "deep.json").read_text())
    names = ["imagenet", "imagenet_reg_high"] + [f"imagenet_{n}{s}" for n in ("mlp", "conv") for s in ("", "_reg_high")]
    assert [m["run"] for m in deep["models"]] == names
    assert {s["data"] for s in deep["sources"]} == {"imagenet"} and deep["pairs"] == 8
    assert "gradients at most, about" in logs["make deep RUN=imagenet IMAGES=4 PAIRS=8 STEPS=5"]
    for name in names[2:]:
        assert "num_output: 1000" in (root / "runs" / name / "deploy.prototxt").read_text()
    forest = json.loads((out / "forest" / "forest.json").read_text())
    assert forest["forest"]["trees"] == 10 and forest["forest"]["train_records"] <= 20_000
    rows = {r["claim"]: r for r in json.loads((out / "claims.json").read_text())["rows"]}
    for claim in ("more regularization makes deeper models harder to fool too", "even random forests are not safe"):
        row = next(r for c, r in rows.items() if c.startswith(claim))
        assert row["verdict"] in ("holds", "does not hold") or row["why"], row
        assert row["verdict"] == "cannot be checked" or (row["n"] and row["p"] is not None and row["test"])
