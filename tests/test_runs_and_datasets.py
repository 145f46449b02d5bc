"""linfool.core.runs and linfool.core.datasets, as careless users meet them: names that are paths, two writers at
once, builds and runs killed half-way, data sets rebuilt under their runs, results of older snapshots,
damaged files, odd image trees. Each case asserts the exit code, the one-line message and that nothing
outside the right folder changed or was left mixed. Races use two real processes, kills real signals."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from linfool.core import datasets, files, paths, runs
from linfool.data import sources
from linfool.model import train

import running

LONG = [
    "--set",
    "max_iter=1000000",
    "--set",
    "snapshot=1000000",
    "--set",
    "test_interval=1000000",
    "--set",
    "test_iter=1",
    "--set",
    "display=1",
]
_env, _py, _make, _one_error, _image_tree = (
    running.env_for,
    running.py,
    running.make,
    running.one_error,
    running.image_tree,
)


# 1. Names ---------------------------------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize("name", ["../prototxt", "/tmp/elsewhere", "a b", ".hidden"])
def test_run_names_that_are_paths_are_refused_through_make_before_anything_is_written(own_set, name):
    data, runs_dir = own_set
    before = {p: p.read_bytes() for p in paths.PROTOTXT.iterdir()}
    done = _make(_env(data, runs_dir), "train", f"RUN={name}", "DATA=tiny", "SET=max_iter=2")
    _one_error(done, "is not a plain name")
    assert {p: p.read_bytes() for p in paths.PROTOTXT.iterdir()} == before  # prototxt/ untouched
    assert not runs_dir.exists() and not Path("/tmp/elsewhere").exists()


def test_paths_with_spaces_and_non_ascii_letters_work_through_make(tmp_path):
    tree = _image_tree(tmp_path / "my ImageNet é", ["n01443537", "n02119789", "n04146614"])
    data, runs_dir = tmp_path / "data dir ü", tmp_path / "runs dir"
    env = _env(data, runs_dir)
    done = _make(env, "data", f"IMAGENET={tree}", "DATA=imagenet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert datasets.DataSet.at(data / "imagenet").num_classes == 3
    trained = _py("train", env, "--data", "imagenet", "--run", "spaces", *running.SHORT)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert str((data / "imagenet").resolve() / "train_lmdb") in (runs_dir / "spaces" / "train_val.prototxt").read_text()


@pytest.mark.fast
def test_make_setup_refuses_a_gpu_value_it_does_not_know_in_one_line():
    done = _make(dict(os.environ), "setup", "GPU=abc")
    _one_error(done, "GPU=abc is not auto, cpu")


# 2. One writer at a time ------------------------------------------------------------------------------


def _start_training(env, run, data="tiny"):
    """A long `caffe train` through linfool.model.train, returned once Caffe is iterating."""
    proc = subprocess.Popen(
        [*running.PY, "linfool", "train", "--data", data, "--run", run, *LONG],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    for line in proc.stdout:
        if line.startswith("Iteration"):
            return proc
    raise AssertionError(proc.stderr.read())


def _caffe_processes(run_dir):
    return [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and _cmdline(pid).find(str(run_dir)) >= 0 and "caffe" in _cmdline(pid)
    ]


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_second_trainer_and_a_rebuild_are_refused_while_a_run_trains_and_its_locks_die_with_it(own_set):
    data, runs_dir = own_set
    env = _env(data, runs_dir)
    first = _start_training(env, "busy")
    try:
        second = _py("train", env, "--data", "tiny", "--run", "busy", *running.SHORT, "--set", "weight_decay=10000")
        _one_error(second, "run 'busy' is busy", f"PID {first.pid}", "is writing it")
        rebuild = _py("data", env, "--name", "tiny")  # refused before generating a single image
        _one_error(rebuild, "data set 'tiny' is busy", f"PID {first.pid}", "is reading it")
        with pytest.raises(files.Busy, match="data set 'tiny' is busy: PID .* is reading it"):
            with datasets.building(data / "tiny"):
                pass
        info = json.loads((runs_dir / "busy" / "run.json").read_text())
        assert "weight_decay=10000" not in info["settings"]  # the refused trainer wrote nothing
    finally:
        os.kill(first.pid, signal.SIGKILL)  # the wrapper dies hard: Caffe must not go on unseen
        first.wait()
    deadline = time.time() + 60
    while _caffe_processes(runs_dir / "busy") and time.time() < deadline:
        time.sleep(0.2)
    assert not _caffe_processes(runs_dir / "busy"), "caffe train outlived its killed wrapper"
    again = _py("train", env, "--data", "tiny", "--run", "busy", *running.SHORT)  # no stale lock to remove by hand
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.fast
def test_two_data_builds_at_once_one_is_refused_in_one_line(tmp_path):
    env = _env(tmp_path / "data", tmp_path / "runs")
    first = subprocess.Popen(
        [*running.PY, "linfool", "data", "--train-per-class", "30", "--val-per-class", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in first.stdout:
            if line.startswith("Generating"):
                break
        second = _py("data", env, "--train-per-class", "30", "--val-per-class", "4")
        _one_error(second, "data set 'synthetic' is busy", f"PID {first.pid}")
    finally:
        first.communicate(timeout=300)
    assert first.returncode == 0 and datasets.DataSet.at(tmp_path / "data" / "synthetic").num_classes == 18


@pytest.mark.fast
def test_a_stage_that_reads_a_data_set_being_rebuilt_is_refused(own_set):
    data, runs_dir = own_set
    with datasets.write_lock(data / "tiny"):  # what make data holds while it builds
        done = _py("train", _env(data, runs_dir), "--data", "tiny", "--run", "reader", *running.SHORT)
    _one_error(done, "data set 'tiny' is busy", f"PID {os.getpid()}", "is writing it")
    assert not (runs_dir / "reader").exists()


# 3. A data set appears whole or not at all --------------------------------------------------------------


@pytest.mark.fast
def test_a_build_killed_while_writing_val_leaves_the_old_set_whole_and_its_rerun_frees_the_partial(tmp_path):
    classes = ["n01443537", "n02119789", "n04146614"]
    tree = _image_tree(tmp_path / "tree", classes, per_class=40)
    env = _env(tmp_path / "data", tmp_path / "runs")
    args = ["--imagenet", str(tree), "--name", "set"]
    assert _py("data", env, *args).returncode == 0
    old = datasets.DataSet.at(tmp_path / "data" / "set")
    _image_tree(tree, classes, per_class=80, seed=1)  # new images: a full rebuild
    proc = subprocess.Popen([*running.PY, "linfool", "data", *args], stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("Creating val lmdb"):
            proc.kill()
            break
    proc.wait()
    kept = datasets.DataSet.at(tmp_path / "data" / "set")
    assert kept.identity == old.identity and kept.root == old.root  # the old set, whole
    rerun = _py("data", env, *args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "left by an interrupted build" in rerun.stdout
    assert rerun.stdout.index("left by an interrupted build") < rerun.stdout.index("Creating train lmdb")
    new = datasets.DataSet.at(tmp_path / "data" / "set")
    assert new.identity != old.identity and [p.name for p in new.root.parent.iterdir()] == [new.identity]


# 4. Provenance and freshness ------------------------------------------------------------------------


def _train(env, run, *extra, data="tiny"):
    done = _py("train", env, "--data", data, "--run", run, *running.SHORT, *extra)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_run_whose_data_set_was_rebuilt_with_other_classes_is_refused_and_keeps_its_metrics(tmp_path):
    env = _env(tmp_path / "data", tmp_path / "runs")
    classes = ["n01443537", "n02119789", "n04146614", "n07753592", "n07742313", "n03792782"]
    tree = _image_tree(tmp_path / "tree", classes)
    assert _py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    _train(env, "r", data="set")
    assert _py("eval", env, "--run", "r").returncode == 0
    metrics = (tmp_path / "runs" / "r" / "metrics.json").read_text()
    shutil.rmtree(tree)
    _image_tree(tree, list(reversed(classes))[:5])
    assert _py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    for module in ("eval", "figures", "report"):
        _one_error(
            _py(module, env, "--run", "r"),
            "run r was trained on data set 'set'",
            "rebuilt since",
            "make train RUN=r DATA=set",
        )
    assert (tmp_path / "runs" / "r" / "metrics.json").read_text() == metrics
    _one_error(_py("train", env, "--run", "r", "--resume"), "rebuilt since")


def test_the_report_never_shows_an_older_snapshots_section_as_current(own_set):
    data, runs_dir = own_set
    env = _env(data, runs_dir)
    _train(env, "fresh")
    for module in ("eval", "figures"):
        assert _py(module, env, "--run", "fresh").returncode == 0
    page = _py("report", env, "--run", "fresh")
    assert page.returncode == 0 and "not shown: metrics" not in page.stdout
    html = (runs_dir / "fresh" / "report.html").read_text()
    assert "From snap_iter_18.caffemodel of run fresh" in html and "blog_fooling_image.png" in html
    resumed = _py("train", env, "--run", "fresh", "--resume", "--set", "max_iter=27")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    page = _py("report", env, "--run", "fresh")
    assert page.returncode == 0
    for stage in ("make eval RUN=fresh", "make figures RUN=fresh"):
        assert f"`{stage}` remakes it" in page.stdout
    html = (runs_dir / "fresh" / "report.html").read_text()
    assert "blog_fooling_image.png" not in html and "now at snap_iter_27.caffemodel" in html
    assert "From snap_iter_27.caffemodel of run fresh" in html  # the new training curves
    assert len(list((runs_dir / "fresh" / "report_assets").iterdir())) == 1  # the old page's files are gone
    assert (runs_dir / "fresh" / "figures" / "figures.json").is_file()  # marked, nothing deleted


def test_a_killed_figures_run_leaves_the_previous_figures_whole(own_set):
    data, runs_dir = own_set
    env = _env(data, runs_dir)
    _train(env, "figs")
    assert _py("figures", env, "--run", "figs").returncode == 0
    before = {p: p.read_bytes() for p in (runs_dir / "figs" / "figures").rglob("*") if p.is_file()}
    proc = subprocess.Popen(
        [*running.PY, "linfool", "figures", "--run", "figs", "--targets", "goldfish"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not list((runs_dir / "figs").glob(".figures.partial-*/*.png")) and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()  # half-way: some new pictures are written
    proc.wait()
    after = {p: p.read_bytes() for p in (runs_dir / "figs" / "figures").rglob("*") if p.is_file()}
    assert after == before
    assert _py("figures", env, "--run", "figs", "--targets", "goldfish").returncode == 0
    numbers = json.loads((runs_dir / "figs" / "figures" / "figures.json").read_text())
    assert numbers["target_names"] == ["goldfish"] and [p.name for p in (runs_dir / "figs").glob(".figures*")] == []


def test_runs_of_another_data_set_are_refused_in_one_line(own_runs, tmp_path):
    runs_dir, env = own_runs
    other = tmp_path / "data"
    other.mkdir()
    (other / "elsewhere").symlink_to(os.path.join(env["LINFOOL_DATA"], "tiny"))
    (other / "tiny").symlink_to(os.path.join(env["LINFOOL_DATA"], "tiny"))
    env2 = {**env, "LINFOOL_DATA": str(other)}
    trained = _py("train", env2, "--data", "elsewhere", "--run", "foreign", *running.SHORT)
    assert trained.returncode == 0, trained.stderr[-2000:]
    for module in ("figures", "report", "claims", "attack-curves", "transfer", "eval"):
        done = _py(module, env2, "--run", "low", "--low", "foreign", "--high", "high")
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(errors) == 1 and "different data sets" in errors[0], (module, done.stderr)
        assert "foreign on 'elsewhere'" in errors[0] and "low on 'tiny'" in errors[0]


# 5. Damaged files --------------------------------------------------------------------------------------


def test_a_cut_short_lmdb_is_refused_before_caffe_and_rebuilt_by_make_data(tmp_path):
    tree = _image_tree(tmp_path / "tree", ["n01443537", "n02119789", "n04146614"], per_class=20)
    env = _env(tmp_path / "data", tmp_path / "runs")
    assert _py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    mdb = tmp_path / "data" / "set" / "train_lmdb" / "data.mdb"
    os.truncate(mdb, mdb.stat().st_size // 2)
    _one_error(_py("train", env, "--data", "set", "--run", "r", *running.SHORT), "data.mdb is cut short", "make data")
    assert not (tmp_path / "runs" / "r" / "train.log").exists()
    rebuilt = _py("data", env, "--imagenet", str(tree), "--name", "set")
    assert rebuilt.returncode == 0 and "cut short" in rebuilt.stdout and "building it again" in rebuilt.stdout
    assert "set/train_lmdb: wrote 60 records" in rebuilt.stdout
    _train(env, "r", data="set")


def test_damaged_snapshots_and_json_are_refused_naming_the_good_one_and_the_remake(own_set):
    data, runs_dir = own_set
    env = _env(data, runs_dir)
    _train(env, "cut")
    run = runs_dir / "cut"
    assert _py("eval", env, "--run", "cut").returncode == 0
    metrics = run / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])
    page = _py("report", env, "--run", "cut")  # the report renders: the section is a notice
    assert (
        page.returncode == 0
        and "metrics.json is damaged" in page.stdout
        and "`make eval RUN=cut` remakes it" in page.stdout
    )
    info = (run / "run.json").read_text()
    (run / "run.json").write_text(info[:-20])
    _one_error(_py("eval", env, "--run", "cut"), "run.json is damaged", "`make train RUN=cut` remakes it")
    (run / "run.json").write_text(info)
    state = run / "snap_iter_18.solverstate"
    os.truncate(state, state.stat().st_size - 100)
    resumed = _py("train", env, "--run", "cut", "--resume")  # the damaged pair set aside, the good one resumed
    assert resumed.returncode == 0 and "Resuming from snap_iter_9.solverstate" in resumed.stdout, resumed.stderr
    assert (run / "snap_iter_18.solverstate.damaged").is_file() and (run / "snap_iter_18.solverstate").is_file()
    model = run / "snap_iter_18.caffemodel"
    os.truncate(model, model.stat().st_size // 3)
    for module in ("eval", "figures", "attack-curves", "blackbox"):
        _one_error(
            _py(module, env, "--run", "cut"),
            "snap_iter_18.caffemodel of run cut is damaged",
            "the newest good one is snap_iter_9.caffemodel",
        )
    assert train.drop_damaged_snapshots(runs.Run(run))[0].startswith("the snapshot at iteration 18 was cut short")
    assert runs.Run(run).snapshot().iteration == 9 and not model.exists() and not state.exists()


@pytest.mark.parametrize(
    "module, args, expected",
    [
        ("train", ["--data", "tiny", "--run", "x", "--set", "max_iter=0"], "max_iter=0 is out of range"),
        ("train", ["--data", "tiny", "--run", "x", "--set", "base_lr=-1"], "base_lr=-1"),
        ("attack-curves", ["--run", "x", "--pairs", "0"], "'0' is not a whole number >= 1"),
        ("blackbox", ["--run", "x", "--queries", "-5"], "'-5' is not a whole number >= 1"),
        ("background", ["--run", "x", "--rounds", "0"], "'0' is not a whole number >= 1"),
        ("eval", ["--run", "x", "--val-per-class", "0"], "'0' is not a whole number >= 1"),
    ],
)
def test_out_of_range_knobs_are_refused_in_one_line(own_set, module, args, expected):
    data, runs_dir = own_set
    _one_error(_py(module, _env(data, runs_dir), *args), expected)
    assert not (runs_dir / "x").exists()


def test_a_three_class_set_trains_evaluates_and_makes_figures_with_top_k_capped(tmp_path):
    env = _env(tmp_path / "data", tmp_path / "runs")
    tree = _image_tree(tmp_path / "tree", ["n01443537", "n07753592", "n03792782"], per_class=6)
    assert _py("data", env, "--imagenet", str(tree), "--name", "three").returncode == 0
    _train(env, "three", "--set", "test_interval=9", data="three")  # Caffe's TEST phase: top_k 3, no abort
    assert "accuracy_top5 = 1" in (tmp_path / "runs" / "three" / "train.log").read_text()
    evaluated = _py("eval", env, "--run", "three")
    assert evaluated.returncode == 0 and "val top-3" in evaluated.stdout
    assert json.loads((tmp_path / "runs" / "three" / "metrics.json").read_text())["top_k"] == 3
    made = _py("figures", env, "--run", "three")  # no kit fox here: the run's own classes, said so
    assert made.returncode == 0 and "START= and TARGETS= choose others" in made.stdout
    numbers = json.loads((tmp_path / "runs" / "three" / "figures" / "figures.json").read_text())
    assert numbers["start"] == "n01443537" and numbers["targets"] == ["n03792782", "n07753592"]
    chosen = _make(env, "figures", "RUN=three", "START=n03792782", "TARGETS=goldfish")
    assert chosen.returncode == 0, chosen.stderr[-2000:]
    numbers = json.loads((tmp_path / "runs" / "three" / "figures" / "figures.json").read_text())
    assert numbers["start"] == "n03792782" and numbers["target_names"] == ["goldfish"]


# 7. Data-set inputs ------------------------------------------------------------------------------------


@pytest.mark.fast
def test_a_tree_without_val_is_refused_in_one_line(tmp_path):
    tree = _image_tree(tmp_path / "tree", ["n01443537", "n02119789"], val=None)
    done = _py("data", _env(tmp_path / "data", tmp_path / "runs"), "--imagenet", str(tree))
    _one_error(done, "a data set needs val images too")
    assert not (tmp_path / "data" / "imagenet").exists()


@pytest.mark.fast
def test_odd_trees_are_built_with_every_left_out_file_and_its_reason_in_skipped_txt(tmp_path):
    official = sources.imagenet_table("val_image_to_1k_label.json")
    to_wnid = sources.imagenet_table("imagenet1k_to_21k.json")
    first, other = "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"
    classes = [to_wnid[str(official[first])], to_wnid[str(official[other])]]
    absent = next(name for name, label in official.items() if to_wnid[str(label)] not in classes)
    tree = _image_tree(tmp_path / "tree", classes, val=None)
    (tree / "val").mkdir()
    for name in (first, other, absent):
        shutil.copy(next((tree / "train" / classes[0]).iterdir()), tree / "val" / name)
    (tree / "val" / f"._{first}").write_bytes(b"\0\5\26\7 AppleDouble")  # macOS's resource fork
    loops = tree / "train" / classes[0]
    (loops / "up").symlink_to("..")  # back to train/: a loop
    (loops / "self").symlink_to("self")  # ELOOP when entered
    done = _py("data", _env(tmp_path / "data", tmp_path / "runs"), "--imagenet", str(tree), "--name", "odd")
    assert done.returncode == 0, done.stderr[-2000:]
    dataset = datasets.DataSet.at(tmp_path / "data" / "odd")
    skipped_val = (dataset.lmdb("val") / "skipped.txt").read_text()
    assert f"._{first}\tnot an ILSVRC2012 val image name" in skipped_val
    assert (
        f"{absent}\tits class {to_wnid[str(official[absent])]} (official label) is not among the train" in skipped_val
    )
    skipped_train = (dataset.lmdb("train") / "skipped.txt").read_text()
    assert f"{classes[0]}/up\tsymlink loop" in skipped_train and f"{classes[0]}/self\tcannot be read" in skipped_train
    assert json.loads((dataset.lmdb("val") / "manifest.json").read_text())["written"] == 2


@pytest.mark.fast
def test_val_folders_of_classes_absent_from_train_are_listed_and_bad_class_names_refused(tmp_path):
    tree = _image_tree(tmp_path / "tree", ["n01443537", "n02119789"])
    _image_tree(tmp_path / "extra", ["n09999999"])
    shutil.copytree(tmp_path / "extra" / "val" / "n09999999", tree / "val" / "n09999999")
    env = _env(tmp_path / "data", tmp_path / "runs")
    assert _py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    skipped = (datasets.DataSet.at(tmp_path / "data" / "set").lmdb("val") / "skipped.txt").read_text()
    assert "n09999999/n09999999_0.JPEG\tclass folder n09999999 is not among the train classes" in skipped
    shutil.copytree(tree / "train" / "n01443537", tree / "train" / "golden retriever")
    _one_error(
        _py("data", env, "--imagenet", str(tree), "--name", "set"),
        "'golden retriever'",
        "rename it, e.g. to 'golden_retriever'",
    )
