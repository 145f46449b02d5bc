"""The second careless-use round, each case tried the way a careless user would: a second `make train`
on a finished run, a SIGINT to caffe alone, a hand-edited run file, `make data` without IMAGENET= on
a tree's set, a data set reached through a link, make fool's inputs and its folders, odd image trees,
an environment that points at files or read-only volumes, the Makefile used from another folder. Each
case asserts the exit code, the one line, and that nothing that existed before was lost."""

import json
import os
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from linfool.core import datasets, datum, paths
from linfool.model.gradients import Differentiable

import running
from running import SHORT, env_for, image_tree, make, one_error, py


def _snapshots(run_dir) -> dict:
    """{file name: bytes} of a run's snapshots: what a careless command must not lose."""
    return {p.name: p.read_bytes() for p in sorted(Path(run_dir).glob("snap_iter_*"))}


def _trained(env, run, *extra, data="tiny"):
    done = py("train", env, "--data", data, "--run", run, *SHORT, *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


# 1. make train: never deletes a run's snapshots unasked, never says Done for what it did not do -----


def test_a_second_make_train_leaves_a_finished_run_alone_and_only_fresh_deletes_it(own_set):
    env = env_for(*own_set)
    run = own_set[1] / "r"
    _trained(env, "r")
    kept = _snapshots(run)
    again = _trained(env, "r")  # the same command again: nothing to do, nothing deleted
    assert "trained already with these settings" in again.stdout and _snapshots(run) == kept
    other = py("train", env, "--data", "tiny", "--run", "r", *SHORT, "--set", "max_iter=27")
    one_error(other, "run r already has snapshots", "max_iter: 18 -> 27", 'RESUME=1 SET="max_iter=27"', "FRESH=1")
    assert _snapshots(run) == kept and (run / "train.log").is_file()
    fresh = _trained(env, "r", "--set", "max_iter=9", "--fresh")
    assert "FRESH=1: deleted run r's 4 snapshot files (iterations 9, 18)" in fresh.stdout
    assert sorted(_snapshots(run)) == ["snap_iter_9.caffemodel", "snap_iter_9.solverstate"]


def test_a_sweep_refuses_before_it_trains_any_run_when_one_would_lose_snapshots(own_set):
    env = env_for(*own_set)
    _trained(env, "s", "--set", "weight_decay=7")
    kept = _snapshots(own_set[1] / "s")
    done = py("train", env, "--sweep", "--data", "tiny", "--run", "s", *SHORT)
    one_error(done, "run s already has snapshots", "weight_decay: 7.0 -> 100.0")
    assert not (own_set[1] / "s_reg_low").exists() and _snapshots(own_set[1] / "s") == kept


def test_a_sigint_to_caffe_alone_is_a_stop_with_the_resume_command_not_done(own_set):
    env = env_for(*own_set)
    long = ["--set", "max_iter=100000", "--set", "snapshot=100000", "--set", "display=1"]
    proc = subprocess.Popen(
        [*running.PY, "linfool", "train", "--data", "tiny", "--run", "pre", *SHORT, *long],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        if line.startswith("Iteration 5,"):
            break
    solver = str(own_set[1] / "pre" / "solver.prototxt")
    caffe = [p for p in os.listdir("/proc") if p.isdigit() and solver in _cmdline(p)]
    assert len(caffe) == 1
    os.kill(int(caffe[0]), signal.SIGINT)  # a job manager or htop: the wrapper itself is not signalled
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Done: " not in out
    one_error(subprocess.CompletedProcess([], 130, out, err), "stopped at iteration", "of 100000", "RESUME=1")


def _cmdline(pid) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_hand_edited_run_file_is_refused_not_overwritten_and_a_resume_of_nothing_says_so(own_set):
    env = env_for(*own_set)
    run = own_set[1] / "e"
    _trained(env, "e")
    nothing = py("train", env, "--run", "e", "--resume")
    one_error(nothing, "is at iteration 18 and its max_iter is 18", "would run no iteration", "max_iter=36")
    solver = run / "solver.prototxt"
    edited = solver.read_text().replace("max_iter: 18", "max_iter: 27")
    solver.write_text(edited)
    done = py("train", env, "--run", "e", "--resume")
    one_error(done, "solver.prototxt was edited by hand (max_iter: 18 -> 27)", 'RESUME=1 SET="max_iter=27"')
    assert solver.read_text() == edited  # the user's edit is still there
    net = run / "train_val.prototxt"
    net.write_text(net.read_text().replace("batch_size: 256", "batch_size: 128"))
    one_error(py("train", env, "--run", "e", "--resume"), "train_val.prototxt were edited by hand")


def test_a_resume_past_a_damaged_snapshot_continues_from_the_good_one_and_keeps_the_damaged_aside(own_set):
    env = env_for(*own_set)
    run = own_set[1] / "d"
    _trained(env, "d")
    os.truncate(run / "snap_iter_18.caffemodel", 1000)
    told = one_error(py("eval", env, "--run", "d"), "snap_iter_18.caffemodel of run d is damaged")
    assert "RESUME=1" in told
    done = py("train", env, "--run", "d", "--resume")  # what the message says
    assert done.returncode == 0, done.stderr[-1500:]
    assert "Resuming from snap_iter_9.solverstate" in done.stdout and "set aside the damaged snapshot" in done.stdout
    assert (run / "snap_iter_18.caffemodel.damaged").stat().st_size == 1000
    assert py("eval", env, "--run", "d").returncode == 0


def test_a_data_changed_message_names_fresh_1_and_not_a_command_that_wipes_silently(own_set, tmp_path):
    data, runs_dir = own_set
    env = env_for(data, runs_dir)
    tree = image_tree(tmp_path / "tree", ["n01443537", "n02119789", "n04146614"])
    assert py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    _trained(env, "r", data="set")
    (tree / "train" / "n01443537" / "n01443537_0.JPEG").unlink()
    assert py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    one_error(py("eval", env, "--run", "r"), "rebuilt since", "make train RUN=r DATA=set FRESH=1", "deleting")


# 2. make data: never replaces a set with one of another source unasked --------------------------------


def test_make_data_without_imagenet_refuses_to_replace_a_trees_set_and_names_its_own_command(own_set, tmp_path):
    data, runs_dir = own_set
    env = env_for(data, runs_dir)
    tree = image_tree(tmp_path / "my tree", ["n01443537", "n02119789"])
    assert py("data", env, "--imagenet", str(tree), "--name", "imagenet").returncode == 0
    version = (data / "imagenet").resolve()
    done = py("data", env, "--name", "imagenet")  # what `make data DATA=imagenet` runs
    one_error(done, f"built from the image tree {tree.resolve()}", f"IMAGENET='{tree.resolve()}'", "REPLACE=1")
    assert (data / "imagenet").resolve() == version and version.is_dir() and not (data / "imagenet_jpeg").exists()
    other = image_tree(tmp_path / "other", ["n01443537", "n04146614"])
    one_error(py("data", env, "--imagenet", str(other), "--name", "imagenet"), "replace it with the image tree")
    replaced = py("data", env, "--imagenet", str(other), "--name", "imagenet", "--replace")
    assert replaced.returncode == 0 and datasets.DataSet.at(data / "imagenet").source["imagenet"] == str(other)


def test_a_corrected_val_txt_with_the_same_records_republishes_list_and_skipped(tmp_path):
    env = env_for(tmp_path / "data", tmp_path / "runs")
    tree = image_tree(tmp_path / "tree", ["n01443537", "n02119789"], val=None)
    (tree / "val").mkdir()
    for i, wnid in enumerate(["n01443537", "n02119789"]):
        shutil.copy(next((tree / "train" / wnid).iterdir()), tree / "val" / f"v{i}.JPEG")
    (tree / "val" / "zz_broken.JPEG").write_bytes(b"not a JPEG")
    (tree / "val.txt").write_text("v0.JPEG 0\nv1.JPEG 1\nzz_broken.JPEG 1\n")
    assert py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    val = tmp_path / "data" / "set" / "val_lmdb"
    assert "zz_broken.JPEG" in (val / "list.txt").read_text() and "zz_broken.JPEG" in (val / "skipped.txt").read_text()
    identity = datasets.DataSet.at(tmp_path / "data" / "set").identity
    (tree / "val" / "zz_broken.JPEG").unlink()
    (tree / "val.txt").write_text("v0.JPEG 0\nv1.JPEG 1\n")  # the fix: the same two records
    assert py("data", env, "--imagenet", str(tree), "--name", "set").returncode == 0
    assert datasets.DataSet.at(tmp_path / "data" / "set").identity == identity
    assert "zz_broken" not in (val / "list.txt").read_text() and "zz_broken" not in (val / "skipped.txt").read_text()
    again = py("data", env, "--imagenet", str(tree), "--name", "set")  # and the next rerun is a no-op
    assert "up to date" in again.stdout


def test_a_class_whose_files_have_no_image_suffix_is_said_and_listed_not_dropped_silently(tmp_path):
    env = env_for(tmp_path / "data", tmp_path / "runs")
    tree = image_tree(tmp_path / "tree", ["n01443537", "n02119789", "n04146614"])
    for jpeg in (tree / "train" / "n02119789").iterdir():
        jpeg.rename(jpeg.with_suffix(".txt"))
    done = py("data", env, "--imagenet", str(tree), "--name", "set")
    assert done.returncode == 0, done.stderr[-1500:]
    assert "Class folder n02119789" in done.stdout and "is left out" in done.stdout
    skipped = (tmp_path / "data" / "set" / "train_lmdb" / "skipped.txt").read_text()
    assert "n02119789/n02119789_0.txt\tno image suffix" in skipped


def test_an_image_opencv_refuses_is_skipped_naming_the_file(tmp_path):
    env = env_for(tmp_path / "data", tmp_path / "runs")
    tree = image_tree(tmp_path / "tree", ["n01443537", "n02119789"])
    _huge_png(tree / "train" / "n01443537" / "huge.png")
    done = py("data", env, "--imagenet", str(tree), "--name", "set")
    assert done.returncode == 0, done.stderr[-1500:]
    skipped = (tmp_path / "data" / "set" / "train_lmdb" / "skipped.txt").read_text()
    assert "n01443537/huge.png\tOpenCV refuses to decode it (more pixels than OpenCV decodes" in skipped


def _huge_png(path):
    """A valid PNG header of 40,000 x 40,000 pixels (more than OpenCV's 2^30), a few bytes on disk."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 120001 * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


# 3. Locks and identity by what is read ----------------------------------------------------------------


def test_a_data_set_reached_through_a_link_takes_the_lock_of_the_set_it_is(own_set):
    data, runs_dir = own_set
    (data / "alias").symlink_to("tiny")
    holder = subprocess.Popen(
        [
            *running.PY[:1],
            "-c",
            "import sys, time\nfrom linfool.core import datasets\n"
            "with datasets.DataSet.named('alias').lock(shared=True):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env_for(data, runs_dir),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        version = (data / "tiny").resolve()
        one_error(py("data", env_for(data, runs_dir), "--name", "tiny"), "data set 'tiny' is busy", "reading it")
        assert (data / "tiny").resolve() == version and version.is_dir()
    finally:
        holder.kill()
        holder.wait()


def test_a_run_json_edited_to_name_another_set_is_refused_before_scoring(own_runs, tmp_path):
    runs_dir, env = own_runs
    tree = image_tree(tmp_path / "tree", ["n01443537", "n02119789", "n04146614"])
    assert py("data", env, "--imagenet", str(tree), "--name", "three").returncode == 0
    info_file = runs_dir / "low" / "run.json"
    info = json.loads(info_file.read_text())
    three = datasets.DataSet.at(Path(env["LINFOOL_DATA"]) / "three")
    info_file.write_text(json.dumps({**info, "data": "three", "data_identity": three.identity}))
    one_error(py("eval", env, "--run", "low", "--low", "low", "--high", "low"), "net has 18 outputs", "3 classes")
    assert not (runs_dir / "low" / "metrics.json").exists()


# 4. Stage order: a stage refuses when what it needs was not made ---------------------------------------


def test_make_deep_without_the_deeper_models_names_make_deep_sweep(own_runs):
    runs_dir, env = own_runs
    one_error(
        py("deep", env, "--run", "low", "--high", "high"),
        "low_mlp, low_mlp_reg_high, low_conv, low_conv_reg_high",
        "deep-sweep",
    )
    assert not (runs_dir / "low" / "deep").exists()


def test_make_weights_takes_run_and_data_like_every_stage(own_runs):
    runs_dir, env = own_runs
    (runs_dir / "low" / "weights.npz").unlink()
    done = make({**env, "LINFOOL_SET_UP": "1"}, "weights", "RUN=low", "DATA=tiny")
    assert done.returncode == 0 and (runs_dir / "low" / "weights.npz").is_file(), done.stderr[-1500:]
    one_error(make({**env, "LINFOOL_SET_UP": "1"}, "weights"), "runs/blog/run.json", "make train RUN=blog")


# 5. make fool: honest about what it attacked, and its folders never shared ---------------------------


@pytest.fixture
def fool_inputs(own_runs, tiny_data):
    """(env, the low run's deploy, its snapshot, a val image, the data set's labels.txt)."""
    runs_dir, env = own_runs
    image = tiny_data / "tiny_jpeg" / "val" / "ILSVRC2012_val_00000001.JPEG"
    return env, runs_dir / "low" / "deploy.prototxt", runs_dir / "low" / "snap_iter_60.caffemodel", image


def _fool(env, model, weights, image, target, *extra):
    return py(
        "fool",
        env,
        "--model",
        str(model),
        "--weights",
        str(weights),
        "--image",
        str(image),
        "--target",
        str(target),
        *map(str, extra),
    )


def _wrote(done) -> Path:
    assert done.returncode == 0, done.stderr[-1500:]
    return Path(done.stdout.rsplit("wrote ", 1)[1].split()[0])


def test_make_fool_on_a_run_takes_its_mean_and_judges_the_saved_whole_pixel_image(fool_inputs, caffe):
    env, model, weights, image = fool_inputs
    done = _fool(env, model, weights, image, 3, "--eps", 24, "--steps", 40)
    out = _wrote(done)
    assert "MEAN: run low's data-set mean" in done.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["mean"].endswith("train_lmdb/mean.binaryproto")
    assert set(result["target_prob"]) == {"before", "after"}
    png = cv2.imread(str(out / "fooled.png")).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(png, np.load(out / "fooled.npy"))  # whole pixels: what was measured is saved
    mean = datum.decode_mean(Path(result["mean"]).read_bytes())
    prob = Differentiable(model, weights, mean=mean).probs(png[None])[0, 3]
    assert prob == pytest.approx(result["target_prob"]["after"], abs=1e-5)
    assert result["fooled"] == (prob >= 0.99)


def test_make_fool_folders_differ_by_image_folder_model_and_target_and_a_rerun_says_it_replaces(fool_inputs, tmp_path):
    env, model, weights, image = fool_inputs
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(image, tmp_path / "a" / "photo.jpg")
    shutil.copy(image, tmp_path / "b" / "photo.jpg")
    quick = ("--eps", 8, "--steps", 2)
    outs = [
        _wrote(_fool(env, model, weights, tmp_path / "a" / "photo.jpg", 3, *quick)),
        _wrote(_fool(env, model, weights, tmp_path / "b" / "photo.jpg", 3, *quick)),
        _wrote(_fool(env, model, weights, tmp_path / "a" / "photo.jpg", 4, *quick)),
    ]
    assert len(set(outs)) == 3 and all((o / "result.json").is_file() for o in outs)
    again = _fool(env, model, weights, tmp_path / "a" / "photo.jpg", 3, *quick)
    assert _wrote(again) == outs[0] and f"Replacing {outs[0]}" in again.stdout


def test_make_fool_checks_model_and_weights_before_caffe_sees_them(fool_inputs, tmp_path):
    env, model, weights, image = fool_inputs
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text(model.read_text().replace('name: "fc"', 'name: "fc8"'))
    one_error(
        _fool(env, paths.PROTOTXT / "deploy.prototxt", weights, image, 3),
        "layer 'fc'",
        "(1000, 12288)",
        "(18, 12288)",
        "MODEL=",
    )
    one_error(
        _fool(env, renamed, weights, image, 3), "layer 'fc8' of MODEL has learned weights but WEIGHTS=", "has none"
    )
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(weights.read_bytes()[:5000])
    one_error(_fool(env, model, cut, image, 3), "is not a whole .caffemodel")
    one_error(_fool(env, weights, model, image, 3), "does not parse as a Caffe net prototxt", "swapped?")
    one_error(_fool(env, model.parent / "train_val.prototxt", weights, image, 3), "0 inputs", "train_val")
    assert not (Path(env["LINFOOL_RUNS"]) / "fool").exists()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (("--eps", "nan"), "--eps: 'nan' is not a finite number > 0 and <= 255"),
        (("--eps", "0"), "'0' is not a finite number"),
        (("--eps", "300"), "'300' is not a finite number"),
        (("--scale", "-1"), "--scale: '-1' is not a finite number > 0"),
        (("--mean-values", "1,inf,2"), "give finite numbers"),
        (("--labels", "/nonexistent/labels.txt"), "LABELS=/nonexistent/labels.txt: No such file"),
        (("--labels", "BINARY"), "is not a text file"),
        (("--mean", "NOTMEAN"), "is not a mean .binaryproto"),
    ],
)
def test_make_fool_options_out_of_range_or_of_the_wrong_kind_are_one_line(fool_inputs, tmp_path, extra, expected):
    env, model, weights, image = fool_inputs
    (tmp_path / "labels.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "mean.bin").write_text("this is text, not a BlobProto\n")
    extra = [{"BINARY": str(tmp_path / "labels.bin"), "NOTMEAN": str(tmp_path / "mean.bin")}.get(e, e) for e in extra]
    one_error(_fool(env, model, weights, image, 3, *extra), expected)


def test_make_fool_on_an_image_too_large_for_opencv_is_one_line(fool_inputs, tmp_path):
    env, model, weights, _ = fool_inputs
    _huge_png(tmp_path / "huge.png")
    one_error(_fool(env, model, weights, tmp_path / "huge.png", 3), "IMAGE=", "OpenCV refuses to decode it")


# 6. The environment ------------------------------------------------------------------------------------


def test_linfool_data_or_runs_that_are_files_or_a_dangling_link_are_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    one_error(
        py("train", env_for(afile, tmp_path / "runs"), "--data", "tiny"), "LINFOOL_DATA=", "is a file, not a folder"
    )
    one_error(py("eval", env_for(tmp_path, afile), "--run", "x"), "LINFOOL_RUNS=", "is a file, not a folder")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    one_error(
        py("train", env_for(tmp_path / "gone", tmp_path / "runs"), "--data", "tiny"), "is a link to", "does not exist"
    )


def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def mounts(tmp_path):
    """mount(...) for this test, every mount undone after it; skipped where mounting is not allowed."""
    made = []

    def mount(*args, at):
        Path(at).mkdir(parents=True, exist_ok=True)
        if not _mount(*args, str(at)):
            pytest.skip("mounting needs root (CAP_SYS_ADMIN); make test runs these as root")
        made.append(at)
        return Path(at)

    yield mount
    for at in reversed(made):
        subprocess.run(["umount", "-l", str(at)], capture_output=True)


def test_a_read_only_data_volume_is_trained_on_and_a_read_only_runs_volume_is_one_line(
    own_set, own_runs, tmp_path, mounts
):
    data, _ = own_set
    (data / ".tiny.lock").unlink()  # a volume made elsewhere: no lock file on it
    shared = mounts("--bind", str(data), at=tmp_path / "shared")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(shared)], check=True)
    done = py("train", env_for(shared, tmp_path / "runs"), "--data", "tiny", "--run", "ro", *SHORT)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "is read-only" in done.stdout and "readers lock" in done.stdout
    runs_dir, env = own_runs
    frozen = mounts("--bind", str(runs_dir), at=tmp_path / "frozen")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(frozen)], check=True)
    one_error(
        py("eval", {**env, "LINFOOL_RUNS": str(frozen)}, "--run", "low", "--high", "high"),
        "Read-only file system",
        "LINFOOL_RUNS",
    )


def test_a_disk_that_fills_while_weights_are_written_is_one_line_and_leaves_no_temporary_file(
    own_runs, tmp_path, mounts
):
    runs_dir, env = own_runs
    small = mounts("-t", "tmpfs", "-o", "size=1200k", "tmpfs", at=tmp_path / "small")
    shutil.copytree(runs_dir / "low", small / "low", ignore=shutil.ignore_patterns("weights.npz", "*.solverstate"))
    one_error(py("weights", {**env, "LINFOOL_RUNS": str(small)}, "--run", "low"), "the disk is full")
    assert not [p for p in (small / "low").iterdir() if ".tmp" in p.name]


def test_the_makefile_works_from_another_folder_and_says_where_make_c_looks(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = make({**os.environ}, "-f", str(paths.ROOT / "Makefile"), "help", cwd=elsewhere)
    assert done.returncode == 0 and "make TARGET" in done.stdout
    env = {**os.environ, "LINFOOL_SET_UP": "1", "LINFOOL_DATA": str(tmp_path / "data"), "PWD": str(elsewhere)}
    (elsewhere / "my_tree").mkdir()
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(paths.ROOT), "data", "IMAGENET=my_tree", "DATA=mine"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
    )
    one_error(done, "IMAGENET=my_tree is not in", f"give IMAGENET={elsewhere / 'my_tree'}")
    assert not (tmp_path / "data").exists()


@pytest.mark.skipif(
    bool(os.environ.get("CAFFE_ROOT")), reason="with CAFFE_ROOT setup builds nothing and keeps no cache"
)
def test_setup_with_a_cache_it_cannot_write_is_one_line(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would go")
    done = subprocess.run(
        [str(paths.ROOT / "tools" / "setup.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "LINFOOL_CACHE": str(blocked / "cache")},
    )
    one_error(done, "the Caffe build cache", "cannot be written", "LINFOOL_CACHE")


def test_the_readmes_python_m_linfool_line_works_from_the_repository_root():
    readme = (paths.ROOT / "README.md").read_text()
    assert "`.venv/bin/python -m linfool --help`" in readme
    done = subprocess.run(
        [".venv/bin/python", "-m", "linfool", "--help"], cwd=paths.ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0 and "stages:" in done.stdout


def test_make_weights_works_with_and_without_run_and_data(own_runs):
    """make weights: RUN= names the run; without it, DATA= names the default run (the data set's name),
    and without both the default run is the demo's (blog)."""
    runs_dir, env = own_runs
    env = {**env, "LINFOOL_SET_UP": "1"}
    for name in ("tiny", "blog"):  # the default runs of DATA=tiny and of no DATA= at all
        shutil.copytree(runs_dir / "low", runs_dir / name, symlinks=True)
        (runs_dir / name / "weights.npz").unlink()
    for variables, run in ((["RUN=high"], "high"), (["DATA=tiny"], "tiny"), ([], "blog")):
        (runs_dir / run / "weights.npz").unlink(missing_ok=True)
        done = make(env, "weights", *variables)
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        assert (runs_dir / run / "weights.npz").is_file(), variables
    one_error(make(env, "weights", "RUN=nope"), "nope")
