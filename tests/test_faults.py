"""`make test-faults`: SIGKILL at random moments of `make data`, `make train`, `make figures` and
`make report`, then the rerun a user would type. After each kill the published outputs must be the
old ones or absent (never half-written), and the rerun must give what an uninterrupted run gives
(training: equal weights when it resumes from an epoch boundary, as `RESUME=1` documents), or refuse in
one line saying what to do. Also: a disk that fills while Caffe writes a snapshot.

LINFOOL_FAULT_TRIALS (default 5 per stage) and LINFOOL_FAULT_SEED (default: the clock, printed) set
the injection points. Each kill hits the whole process group (make, python, caffe) or, for half of the
training trials, make alone (then the stage and Caffe must stop by themselves).
"""

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from linfool.core import caffe_env, datasets, paths, prototxt, records, runs
from linfool.data import synthetic

pytestmark = pytest.mark.faults
TRIALS = int(os.environ.get("LINFOOL_FAULT_TRIALS", "5"))
SEED = int(os.environ.get("LINFOOL_FAULT_SEED", str(int(time.time()))))
TRAIN_SET = "SET=max_iter=900 snapshot=90 test_interval=100000 test_iter=1"  # snapshots on epoch boundaries
TRIED = []


def _env(root):
    return {**os.environ, "LINFOOL_DATA": str(root / "data"), "LINFOOL_RUNS": str(root / "runs")}


def _make(env, *args, check=True):
    done = subprocess.run(
        ["make", "--no-print-directory", *args], cwd=paths.ROOT, env=env, capture_output=True, text=True
    )
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def _timed(env, *args):
    start = time.time()
    _make(env, *args)
    return time.time() - start


def _kill_at(env, seconds, args, whole_group=True):
    """Start `make ARGS`, SIGKILL it (its process group, or make alone) after `seconds`; wait for every
    process of the group to end. Returns whether it had finished by itself."""
    proc = subprocess.Popen(
        ["make", "--no-print-directory", *args],
        cwd=paths.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        pass
    if whole_group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait()
    deadline = time.time() + 120
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _group_alive(proc.pid), "a stage went on writing after make was killed"
    return False


def _group_alive(pgid):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == pgid and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                return True
        except (OSError, IndexError):
            continue
    return False


@pytest.fixture(scope="module")
def rng():
    print(f"\nfault injection: seed {SEED} (LINFOOL_FAULT_SEED={SEED} repeats it), {TRIALS} trials per stage")
    yield random.Random(SEED)
    print(
        f"\nfault injection: {len(TRIED)} kills tried: "
        + ", ".join(f"{stage} {sum(1 for s, _ in TRIED if s == stage)}" for stage in dict.fromkeys(s for s, _ in TRIED))
    )
    for stage, outcome in TRIED:
        print(f"  {stage}: {outcome}")


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("trees")
    return [
        synthetic.generate(root / name, train_per_class=n, val_per_class=4, seed=s, progress=False)
        for name, n, s in (("a", 10, 1), ("b", 14, 2))
    ]


def _published(root):
    return datasets.DataSet.at(root / "data" / "imagenet").identity


def test_killed_data_builds_leave_the_old_set_or_none_and_the_rerun_publishes_the_same_set(trees, rng, tmp_path):
    reference = _env(tmp_path / "reference")
    _make(reference, "data", f"IMAGENET={trees[0]}")
    old = _published(tmp_path / "reference")
    # a rebuild from another tree: tree a's set -> tree b's (REPLACE=1: on purpose, as make data asks)
    seconds = _timed(reference, "data", f"IMAGENET={trees[1]}", "REPLACE=1")
    expected = _published(tmp_path / "reference")
    for trial in range(TRIALS):
        root = tmp_path / f"t{trial}"
        env = _env(root)
        _make(env, "data", f"IMAGENET={trees[0]}")
        at = rng.uniform(0, seconds)
        finished = _kill_at(env, at, ["data", f"IMAGENET={trees[1]}", "REPLACE=1"])
        published = _published(root)
        assert published in (old, expected)  # the old set or the new one, whole
        _make(env, "data", f"IMAGENET={trees[1]}", "REPLACE=1")
        assert _published(root) == expected
        assert [p.name for p in (root / "data" / ".imagenet.d").iterdir()] == [expected]  # no partial left
        TRIED.append(
            (
                "make data",
                f"killed at {at:.1f} of {seconds:.1f} s: "
                f"{'finished first' if finished else 'old set kept' if published == old else 'new set'}",
            )
        )


@pytest.fixture(scope="module")
def tiny(trees, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    env = _env(root)
    _make(env, "data", f"IMAGENET={trees[0]}", "DATA=imagenet")
    return root, env


def _weights(run_dir, iteration):
    caffe = caffe_env.import_caffe()
    net = caffe.Net(str(run_dir / "deploy.prototxt"), str(run_dir / f"snap_iter_{iteration}.caffemodel"), caffe.TEST)
    return net.params["fc"][0].data.copy()


def _on_epoch_boundary(run_dir, iteration):
    """Whether a run resumed after `iteration` reads what the uninterrupted run reads next: Caffe's
    resumed Data layer starts at the first record, the uninterrupted one after iteration x batch
    records (wrapping around), so the two agree when that count is a whole number of passes. The
    tiny set's 180 records and batch 256 meet every 45 iterations (a snapshot the kill made at 792, a
    multiple of 9, is off one)."""
    train = caffe_env.import_caffe().proto.caffe_pb2.TRAIN
    net = prototxt.read_net(run_dir / "train_val.prototxt")
    data = next(layer for layer in net.layer if layer.type == "Data" and layer.include[0].phase == train)
    return iteration * data.data_param.batch_size % records.count(data.data_param.source) == 0


def _rerun_training(env, run_dir, name):
    """What a user does after a kill: RESUME=1 when a solver state is there (following a one-line
    refusal about a damaged one), else train again. Returns how it went."""
    if not list(run_dir.glob("*.solverstate")):
        _make(env, "train", f"RUN={name}", "DATA=imagenet", TRAIN_SET)
        return "trained again"
    done = _make(env, "train", f"RUN={name}", "RESUME=1", check=False)
    if done.returncode == 0:
        resumed = re.search(r"Resuming from (\S+)", done.stdout).group(1)
        return f"resumed from {resumed}"
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    if len(errors) == 1 and "a resume would run no iteration" in errors[0]:
        return "Caffe had written its last snapshot before the kill, RESUME=1 said so in one line"
    assert len(errors) == 1 and "is damaged" in errors[0], done.stderr[-2000:]
    damaged = re.search(r"rm '([^']+)'", errors[0])
    if damaged is None:  # no good state left: train again
        _make(env, "train", f"RUN={name}", "DATA=imagenet", TRAIN_SET)
        return "refused (no good snapshot), trained again"
    for part in Path(damaged.group(1)).parent.glob(Path(damaged.group(1)).stem + ".*"):
        part.unlink()
    return "refused in one line (damaged snapshot), removed it, " + _rerun_training(env, run_dir, name)


def test_killed_training_resumes_to_the_uninterrupted_weights_from_an_epoch_boundary(tiny, rng):
    root, env = tiny
    seconds = _timed(env, "train", "RUN=reference", "DATA=imagenet", TRAIN_SET)
    reference = _weights(root / "runs" / "reference", 900)
    for trial in range(TRIALS):
        name, whole = f"k{trial}", trial % 2 == 0
        at = rng.uniform(0, seconds)
        finished = _kill_at(env, at, ["train", f"RUN={name}", "DATA=imagenet", TRAIN_SET], whole_group=whole)
        run_dir = root / "runs" / name
        outcome = "finished first" if finished else _rerun_training(env, run_dir, name)
        assert runs.Run(run_dir).snapshot().iteration == 900
        resumed = re.search(r"snap_iter_(\d+)", outcome)
        if resumed is None or _on_epoch_boundary(run_dir, int(resumed.group(1))):  # the same weights
            np.testing.assert_array_equal(_weights(run_dir, 900), reference)
            outcome += ", weights equal the uninterrupted run's"
        else:
            outcome += " (off an epoch boundary: Caffe re-reads the data from the start, as documented)"
        TRIED.append(
            ("make train", f"{'group' if whole else 'make alone'} killed at {at:.1f} of {seconds:.1f} s: {outcome}")
        )


def _strip_page(text):
    return re.sub(r"report_assets/[0-9T-]+/", "report_assets/PAGE/", text)


@pytest.fixture(scope="module")
def trained(tiny):
    root, env = tiny
    _make(env, "train", "RUN=shown", "DATA=imagenet", TRAIN_SET)
    _make(env, "eval", "RUN=shown")
    return root, env


def test_killed_figures_and_reports_leave_the_old_ones_whole_and_the_rerun_equals_an_uninterrupted_one(trained, rng):
    root, env = trained
    out = root / "runs" / "shown"
    for stage, result in (("figures", out / "figures" / "figures.json"), ("report", out / "report.html")):
        seconds = _timed(env, stage, "RUN=shown")
        expected = result.read_text()
        for _ in range(TRIALS):
            before = result.read_text()
            at = rng.uniform(0, seconds)
            finished = _kill_at(env, at, [stage, "RUN=shown"])
            assert result.read_text() in (before, expected) or _strip_page(result.read_text()) == _strip_page(expected)
            if stage == "report":  # every file the page links is there
                page = result.read_text()
                assert all((out / src).is_file() for src in re.findall(r"src='(report_assets/[^']+)'", page))
            else:
                names = {p.name for p in (out / "figures").iterdir()}
                assert {"figures.json", "blog_fooling_image.png", "blog_templates_all.png"} <= names
            _make(env, stage, "RUN=shown")
            assert _strip_page(result.read_text()) == _strip_page(expected)
            if stage == "report":
                assert len(list((out / "report_assets").iterdir())) == 1
            TRIED.append(
                (
                    f"make {stage}",
                    f"killed at {at:.1f} of {seconds:.1f} s: "
                    f"{'finished first' if finished else 'old one kept whole'}; rerun equal",
                )
            )


def test_a_disk_that_fills_while_caffe_writes_a_snapshot_leaves_no_cut_short_snapshot(tiny, tmp_path):
    root, env = tiny
    disk = tmp_path / "small disk"
    disk.mkdir()
    # a tiny run's snapshot pair is ~1.8 MB: the first fits, the second is cut short
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2500k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}): needs root")
    try:
        env = {**env, "LINFOOL_RUNS": str(disk)}
        done = _make(env, "train", "RUN=full", "DATA=imagenet", "SET=max_iter=27 snapshot=9 test_iter=1", check=False)
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        assert done.returncode != 0 and any("was cut short" in e and "GB free on the disk" in e for e in errors), (
            done.stderr
        )
        assert runs.Run(disk / "full").snapshot().iteration == 9  # the newest good one, whole
        assert not (disk / "full" / "snap_iter_18.caffemodel").exists()
        TRIED.append(("full disk", f"caffe train exited {done.returncode}; {errors[0]}"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
