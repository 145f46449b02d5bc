"""A training run under runs/<name>/: the handle every stage goes through to read or write a run.

    run = Run.named("blog")          the name checked first (paths.check_name)
    run.info                         run.json (data set + identity, solver, overlays, settings, history)
    run.dataset()                    its data set, refused (DataChanged) when rebuilt since it trained
    run.snapshot()                   the newest .caffemodel, checked whole before Caffe reads it
    run.solverstate()                the newest .solverstate, checked the same way (resume)
    with run.lock(): ...             one writer per run (readers: run.lock(shared=True))
    run.source()                     provenance of a result: run, snapshot (iteration, sha256), data set
    check_sources(recorded, remake)  Stale (one line naming `remake`) unless a result's recorded
                                     sources are still the runs' current snapshots and data sets
    group(run, low, high)            [run, low, high] trained so far, all on one data set
    sweep_names(run)                 'blog' -> ('reg_low', 'reg_high'); 'imagenet' -> ('imagenet_reg_low', ...)
    deep_names(run)                  the deeper models beside it: 'blog' -> {'mlp': ('mlp', 'mlp_reg_high'), ...}

A damaged snapshot (cut short by a full disk or a kill) is never handed to Caffe: the message names
it and the newest good one. run.json and every result are written whole (linfool.core.files).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linfool.core import caffe_env, conventions, datasets, files, paths, prototxt
from linfool.core.cli import UserError

SNAPSHOT_PREFIX = "snap"  # Caffe writes <prefix>_iter_N.caffemodel / .solverstate
DEMO_RUN = conventions.DEMO_RUN  # its sweep is reg_low / reg_high
default_run = conventions.default_run  # RUN= not given: blog on the embedded set, else the data set's name


class RunMismatch(UserError, ValueError):
    """Runs that must not be compared (trained on different data sets); the message names them."""


class RunError(UserError):
    """A run that is missing, not trained yet, or whose snapshot is damaged; the message says what to do."""


class DataChanged(RunError):
    """The run's data set was rebuilt (another identity) after the run trained on it."""


class Stale(RunError):
    """A result made from another snapshot or data set than the run's current ones."""


def iteration(snapshot: str | Path) -> int:
    """N of a <prefix>_iter_N.caffemodel / .solverstate file."""
    found = re.search(r"_iter_(\d+)", Path(snapshot).name)
    if found is None:
        raise ValueError(f"{snapshot} is not a Caffe <prefix>_iter_N snapshot file")
    return int(found.group(1))


@dataclass(frozen=True)
class Snapshot:
    """One checked .caffemodel: its path, iteration and content fingerprint (sha256, 16 hex digits)."""

    path: Path
    iteration: int
    sha256: str

    def describe(self) -> dict:
        return {"snapshot": self.path.name, "iteration": self.iteration, "snapshot_sha256": self.sha256}


_CHECKED: dict[tuple, tuple[str, str]] = {}  # (path, size, mtime) -> (problem or None, sha256)


def blob_shape(blob: Any) -> tuple[int, ...]:
    """A BlobProto's shape: its shape field, else the legacy (num, channels, height, width)."""
    return tuple(blob.shape.dim) if blob.HasField("shape") else (blob.num, blob.channels, blob.height, blob.width)


def blobs_whole(message: Any) -> str:
    """'' when every learnable blob of a NetParameter (its layers, or an old model's V1 layers) holds
    as many values as its shape says, else what is wrong."""
    blobs = [blob for layer in [*message.layer, *message.layers] for blob in layer.blobs]
    if not blobs:
        return "it holds no learned weights"
    for blob in blobs:
        dims = [d for d in blob_shape(blob) if d]
        count = 1
        for d in dims:
            count *= d
        if len(blob.data) != count:
            return f"a weight blob holds {len(blob.data)} of its {count} values"
    return ""


def check_file(path: str | Path) -> tuple[str, str]:
    """(problem, sha256): problem is '' when the Caffe snapshot file parses whole (a .caffemodel as
    NetParameter with every blob complete; a .solverstate as SolverState with one history blob per
    learnable blob of its .caffemodel), else a short reason. Cached per file version."""
    path = Path(path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        raw = path.read_bytes()
        pb2 = caffe_env.import_caffe().proto.caffe_pb2
        try:
            if path.suffix == ".caffemodel":
                problem = blobs_whole(pb2.NetParameter.FromString(raw))
            else:
                state = pb2.SolverState.FromString(raw)
                model = path.with_suffix(".caffemodel")
                problem = "" if model.is_file() else f"its {model.name} is missing"
                if not problem:
                    problem = check_file(model)[0] and f"its {model.name} is damaged"
                if not problem:
                    net = pb2.NetParameter.FromString(model.read_bytes())
                    learnable = sum(len(layer.blobs) for layer in net.layer)
                    if len(state.history) != learnable:
                        problem = f"it has {len(state.history)} history blobs for {learnable} learnable blobs"
        except Exception as err:  # protobuf's DecodeError and friends: a cut-short or foreign file
            problem = f"it does not parse ({err.__class__.__name__}): cut short by a full disk or a kill?"
        _CHECKED[key] = (problem, hashlib.sha256(raw).hexdigest()[:16])
    return _CHECKED[key]


class Run:
    """One run folder (see the module docstring)."""

    def __init__(self, path):
        self.path = Path(path)
        self.name = self.path.name
        self._info = None

    @classmethod
    def named(cls, name: str) -> Run:
        return cls(paths.run_dir(name))

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def __eq__(self, other):
        return isinstance(other, Run) and self.path == other.path

    def __hash__(self):
        return hash(self.path)

    @property
    def info(self) -> dict:
        """run.json (written by make train), read once."""
        if self._info is None:
            path = self.path / "run.json"
            if not path.is_file():
                raise RunError(
                    f"no {path}: {self.name} is not a run made by `make train`; run `make train RUN={self.name}` first"
                )
            self._info = files.read_json(path, f"make train RUN={self.name}")
        return self._info

    def lock(self, shared: bool = False) -> AbstractContextManager[None]:
        """The run's lock (exclusive to write into the folder, shared to read it): that of the folder
        the name resolves to, so a run reached through a symlink shares its target's lock."""
        target = self.path.resolve()
        return files.lock(target.parent / f".{target.name}.lock", f"run '{self.name}'", shared=shared)

    def dataset(self) -> datasets.DataSet:
        """The data set the run trained on; DataChanged when it was rebuilt since (another identity),
        or when it is not the set the run's net was made for (run.json edited by hand: its classes or
        the LMDBs its train_val.prototxt reads differ)."""
        recorded = self.info.get("data_identity")
        dataset = datasets.DataSet.named(self.info["data"])
        retrain = f"retrain it (deleting its snapshots): `make train RUN={self.name} DATA={dataset.name} FRESH=1`"
        if recorded is None:
            raise DataChanged(
                f"run {self.name} was trained by an older linfool (run.json has no data-set identity); {retrain}"
            )
        if dataset.identity != recorded:
            raise DataChanged(
                f"run {self.name} was trained on data set '{dataset.name}' {recorded}, which was rebuilt "
                f"since (now {dataset.identity}); {retrain}"
            )
        self._check_net_fits(dataset)
        return dataset

    def _check_net_fits(self, dataset):
        """DataChanged unless the run's deploy net has one output per class of `dataset` and its
        train_val.prototxt read that set's version (what make train wrote, from the set it trained on)."""
        deploy, train_val = self.path / "deploy.prototxt", self.path / "train_val.prototxt"
        if deploy.is_file():
            outputs = prototxt.num_outputs(deploy)
            if outputs != dataset.num_classes:
                raise DataChanged(
                    f"run {self.name}'s net has {outputs} outputs but its run.json names data set '{dataset.name}' "
                    f"with {dataset.num_classes} classes: run.json was changed by hand; restore it, or train a run "
                    f"on that set: `make train RUN=<new> DATA={dataset.name}`"
                )
        read = prototxt.data_sources(train_val) if train_val.is_file() else []
        versions = {Path(source).parent.name for source in read}
        if read and versions != {Path(dataset.root).name}:
            raise DataChanged(
                f"run {self.name} was trained on the LMDBs in {Path(read[0]).parent}, not on data set "
                f"'{dataset.name}' ({dataset.root}) that its run.json names: run.json was changed by hand; restore it"
            )

    def _files(self, suffix):
        return sorted(self.path.glob(f"*_iter_*{suffix}"), key=iteration, reverse=True)

    def _newest_good(self, suffix, what):
        found = self._files(suffix)
        if not found:
            raise RunError(f"no {suffix} in {self.path}; run `make train RUN={self.name}` first")
        problem, sha = check_file(found[0])
        if problem:
            good = next((f for f in found[1:] if not check_file(f)[0]), None)
            instead = (
                f"the newest good one is {good.name}: remove the damaged file (rm '{found[0]}') to use it, "
                f"or `make train RUN={self.name} RESUME=1` continues from the newest good solver state "
                "(setting the damaged snapshot aside as *.damaged)"
                if good
                else f"no good {what} is left: `make train RUN={self.name} FRESH=1` trains it again"
            )
            raise RunError(f"{found[0].name} of run {self.name} is damaged ({problem}); {instead}")
        return Snapshot(found[0], iteration(found[0]), sha)

    def snapshot(self) -> Snapshot:
        """The newest .caffemodel, checked whole (RunError names the newest good one if it is not)."""
        return self._newest_good(".caffemodel", "snapshot")

    def solverstate(self) -> Snapshot:
        """The newest .solverstate, checked whole with its .caffemodel (what RESUME=1 continues)."""
        return self._newest_good(".solverstate", "solver state")

    def newest_files(self) -> list:
        """The newest .caffemodel and the newest .solverstate (those that exist), unchecked."""
        return self._files(".caffemodel")[:1] + self._files(".solverstate")[:1]

    def has_snapshot(self) -> bool:
        return bool(self._files(".caffemodel"))

    def source(self) -> dict:
        """Provenance of a result made from this run: its name, snapshot and data set."""
        return {"run": self.name, **self.snapshot().describe(), **self.dataset().describe()}


def as_run(run: Run | str | Path) -> "Run":
    """A Run for a Run or a run folder's path."""
    return run if isinstance(run, Run) else Run(run)


@contextmanager
def locked(write: Iterable[Run] = (), read: Iterable[Run] = ()) -> Iterator[None]:
    """Hold the locks a stage needs: exclusive on the runs it writes into, shared on those it only
    reads, and shared on their data sets (so that no rebuild swaps the data under it)."""
    with ExitStack() as stack:
        for run in write:
            stack.enter_context(run.lock())
        for run in read:
            if run not in write:
                stack.enter_context(run.lock(shared=True))
        seen = set()
        for run in [*write, *read]:
            dataset = run.dataset()
            if dataset.root not in seen:
                seen.add(dataset.root)
                stack.enter_context(dataset.lock(shared=True))
        yield


def sweep_names(run: str) -> tuple[str, str]:
    """The weakly and strongly regularized companions of `run` in a sweep (make sweep trains all three)."""
    return ("reg_low", "reg_high") if run == DEMO_RUN else (f"{run}_reg_low", f"{run}_reg_high")


DEEP_NETS = ("mlp", "conv")  # prototxt/solver_<net>.prototxt: the MLP and the small ConvNet


def deep_names(run: str) -> dict[str, tuple[str, str]]:
    """{net: (weak decay run, strong decay run)} of the deeper models trained beside `run` on its data
    set (make deep-sweep): 'blog' -> mlp / mlp_reg_high, conv / conv_reg_high; 'imagenet' ->
    imagenet_mlp / imagenet_mlp_reg_high, ..."""
    prefix = "" if run == DEMO_RUN else f"{run}_"
    return {net: (f"{prefix}{net}", f"{prefix}{net}_reg_high") for net in DEEP_NETS}


def companions(run: str, low: str | None = None, high: str | None = None) -> tuple[str, str]:
    """(low, high): the given names, else run's sweep companions (sweep_names)."""
    low_default, high_default = sweep_names(run)
    return low or low_default, high or high_default


def same_data(group_runs: list[Run]) -> datasets.DataSet:
    """The data set all runs were trained on; RunMismatch (one line) when they differ (by name or
    identity), DataChanged when one's data set was rebuilt since."""
    found = {run.name: run.dataset() for run in group_runs}
    if len({(d.name, d.identity) for d in found.values()}) > 1:
        listed = ", ".join(f"{name} on '{d.name}'" for name, d in found.items())
        raise RunMismatch(
            f"runs trained on different data sets cannot be compared ({listed}); "
            "use runs of one data set, e.g. `make sweep DATA=imagenet` then RUN=imagenet"
        )
    return next(iter(found.values()))


def group(run: str, low: str | None = None, high: str | None = None) -> list[Run]:
    """[run, low, high] as Run handles (low/high default to run's sweep companions), without repeats
    and without companions that have no snapshot yet; RunError when `run` itself has none,
    RunMismatch when they were trained on different data sets."""
    names = dict.fromkeys(
        [paths.check_name(run), *(paths.check_name(n, w) for n, w in zip(companions(run, low, high), ("LOW", "HIGH")))]
    )
    first = Run.named(run)
    if not first.has_snapshot():
        raise RunError(f"no .caffemodel in {first.path}; run `make train RUN={run}` first")
    found = [first] + [Run.named(name) for name in list(names)[1:] if Run.named(name).has_snapshot()]
    same_data(found)
    return found
