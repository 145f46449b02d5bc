"""A built data set: data/<name> appears whole or not at all, has an identity, and has one writer.

Layout (written by `make data` and the background rounds through `building`; nothing else needs it):

    data/<name>                   -> .<name>.d/<identity>     a relative symlink: the published version
    data/.<name>.d/<identity>/    train_lmdb/ val_lmdb/ (each with manifest.json, mean.binaryproto, ...),
                                  labels.txt, dataset.json (written last)
    data/.<name>.lock             its lock: a build holds it exclusively, every reader shared; a name
                                  that links to another set's version (data/alias -> real) takes the
                                  lock of the store it resolves to (data/.real.lock)

A build writes into data/.<name>.d/.partial-<pid>/ and is published by one atomic rename of the
symlink, so a reader sees the old set or the new one, never a new train LMDB beside an old val LMDB.
dataset.json also records the set's source (the embedded synthetic set, an image tree and its
VAL_TXT, or the stage that made it): `make data` never replaces a set with one from another source
unless asked (REPLACE=1), and every "rebuild it" message names the command that rebuilds it from its
own source (linfool.core.remake). The identity is a fingerprint of the set's records (each LMDB's
sha256 over its keys and values, made while writing it) and of labels.txt: every run records it,
every result carries it, and a run whose set was rebuilt since is refused. Partials and versions left by killed builds are removed, and so
freed, by the next build before it checks the disk.

    DataSet.at(path) / DataSet.named(name)   the published set, checked (complete, LMDBs intact)
    ds.identity  ds.root  ds.lmdb("train")  ds.mean_file  ds.labels()  ds.num_classes  ds.lock()
    with building(path) as build:            build.dir, build.current (the published set or None),
        ...; build.publish()                 build.reclaimed (bytes freed from killed builds)
"""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import AbstractContextManager
from pathlib import Path

from linfool.core import files, paths, records
from linfool.core.cli import UserError
from linfool.core.remake import recorded_source, remake_command

MAKE_DATA = "make data"


class DataSetError(UserError):
    """A data set that is missing, incomplete or damaged; the message says how to (re)build it."""


def read_labels(path: str | Path) -> list[tuple[str, str]]:
    """[(wnid, name)] in label order from a labels.txt."""
    return [
        (wnid, name) for wnid, _, name in (line.partition(" ") for line in Path(path).read_text().splitlines() if line)
    ]


def _store(path: Path) -> Path:
    path = Path(path)
    return path.parent / f".{path.name}.d"


def _lock_file(path: Path) -> Path:
    """data/.<name>.lock of the set at `path`, by what it resolves to: a link into another set's
    store (data/alias -> data/.real.d/<identity>) gives that set's lock, data/.real.lock."""
    target = Path(path).resolve()
    store = target.parent
    if store.name.startswith(".") and store.name.endswith(".d") and len(store.name) > 3:
        return store.parent / f"{store.name[:-2]}.lock"
    return target.parent / f".{target.name}.lock"


class DataSet:
    """A published data set (see the module docstring). Open it with `at` or `named`."""

    def __init__(self, path, root, meta):
        self.path, self.root, self.meta = Path(path), Path(root), meta
        self.name = self.path.name

    @classmethod
    def named(cls, name: str) -> DataSet:
        """data/<name> (LINFOOL_DATA), the name checked first (paths.check_name)."""
        return cls.at(paths.dataset_dir(name))

    @classmethod
    def at(cls, path: Path) -> DataSet:
        """The set published at `path`; DataSetError (one line) when it is missing, was never
        finished, or one of its LMDBs is damaged (cheap checks: records.check_intact)."""
        path = Path(path)
        if not path.exists():
            dangling = (
                f" (data/{path.name} is a link to {os.readlink(path)}, which does not exist)"
                if path.is_symlink()
                else ""
            )
            raise DataSetError(
                f"no data set '{path.name}' in {path.parent}{dangling}; build it: `{remake_command(path.name)}`"
            )
        root = path.resolve()
        remake = remake_command(path.name, recorded_source(root))
        if not (root / "dataset.json").is_file():
            raise DataSetError(
                f"{path} is not a whole data set (no dataset.json: made by an older linfool, by hand, or "
                f"a build that was cut short); rebuild it: `{remake}`"
            )
        meta = files.read_json(root / "dataset.json", remake)
        for name, lmdb in meta["lmdbs"].items():
            try:
                records.check_intact(root / name, lmdb["written"], shape=None)
            except records.LmdbError as err:
                raise DataSetError(f"data set '{path.name}': {err}") from None
        return cls(path, root, meta)

    @property
    def identity(self) -> str:
        return self.meta["identity"]

    def lmdb(self, split: str) -> Path:
        """The LMDB folder of a split ('train', 'val', 'background')."""
        return self.root / f"{split}_lmdb"

    @property
    def mean_file(self) -> Path:
        """The train LMDB's mean.binaryproto (compute_image_mean's format): what the nets subtract."""
        return self.lmdb("train") / "mean.binaryproto"

    def labels(self) -> list:
        return read_labels(self.root / "labels.txt")

    @property
    def num_classes(self) -> int:
        return len(self.labels())

    def lock(self, shared: bool = True) -> AbstractContextManager[None]:
        """The set's lock: shared for stages that read it (a rebuild then waits), exclusive to write."""
        return files.lock(_lock_file(self.path), f"data set '{self.name}'", shared=shared)

    @property
    def source(self) -> dict | None:
        """Where the set came from (linfool.core.remake.recorded_source): {'imagenet': tree or None, ...}."""
        return recorded_source(self.root)

    def describe(self) -> dict:
        """Provenance: {'data': name, 'data_identity': identity}."""
        return {"data": self.name, "data_identity": self.identity}


def identity_of(folder: Path) -> str:
    """The identity of a finished set in `folder`: sha256 over each LMDB's recorded records_sha256
    (in name order) and labels.txt's bytes; 16 hex digits."""
    digest = hashlib.sha256()
    for lmdb in sorted(p for p in Path(folder).iterdir() if p.name.endswith("_lmdb")):
        meta = files.read_json(lmdb / "manifest.json", MAKE_DATA)
        digest.update(f"{lmdb.name} {meta['written']} {meta['records_sha256']}\n".encode())
    digest.update((Path(folder) / "labels.txt").read_bytes())
    return digest.hexdigest()[:16]


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


_SIDE_FILES = ("list.txt", "skipped.txt", "manifest.json")  # beside each LMDB: what describes it, not records


def _refresh_side_files(new, published):
    """Copy the new build's dataset.json and each LMDB's list.txt, skipped.txt and manifest.json over
    the published version's (same records, so the same identity: e.g. a corrected VAL_TXT that
    skips other files), each file atomically."""
    for lmdb in (p for p in Path(new).iterdir() if p.name.endswith("_lmdb") and not p.is_symlink()):
        for name in _SIDE_FILES:
            if (lmdb / name).is_file() and (published / lmdb.name).is_dir():
                files.write_bytes(published / lmdb.name / name, (lmdb / name).read_bytes())
    files.write_bytes(published / "dataset.json", (Path(new) / "dataset.json").read_bytes())


def write_lock(path: Path) -> AbstractContextManager[None]:
    """The exclusive lock of the data set at `path` (re-entrant: `building` takes it again)."""
    return files.lock(_lock_file(path), f"data set '{Path(path).name}'")


class building:  # noqa: N801  (used as a context manager: `with building(path) as build`)
    """Build a new version of the data set at `path` under its exclusive lock (see the module
    docstring); leaving the block without publish() discards the partial."""

    def __init__(self, path, source=None):
        self.path = Path(path)
        self.store = _store(self.path)
        self.source = source  # recorded in dataset.json (recorded_source)
        self.reclaimed = 0
        self._lock = write_lock(self.path)

    def __enter__(self):
        self._lock.__enter__()
        try:
            self.store.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            self.current = None
            if self.path.exists():
                try:
                    self.current = DataSet.at(self.path)
                except DataSetError as err:  # damaged or unfinished: rebuilt whole, said so
                    print(f"{err}: building it again", flush=True)
            self.dir = self.store / f".partial-{os.getpid()}"
            self.dir.mkdir()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _published(self):
        return self.path.resolve() if self.path.is_symlink() else None

    def _remove_leftovers(self):
        """Partials and unpublished versions left by killed builds: removed, their size said."""
        published = self._published()
        for entry in self.store.iterdir():
            if entry.resolve() != published:
                size = _du(entry)
                shutil.rmtree(entry, ignore_errors=True)
                self.reclaimed += size
                print(
                    f"Removed {entry.name} under {self.store} ({size / 1e9:.2f} GB), left by an interrupted build",
                    flush=True,
                )

    def publish(self) -> DataSet:
        """Give the finished folder its identity and make it the published version (one rename of
        the symlink); older versions are then deleted. Returns the published DataSet."""
        identity = identity_of(self.dir)
        lmdbs = {
            p.name: {
                k: v
                for k, v in files.read_json(p / "manifest.json", MAKE_DATA).items()
                if k in ("written", "records_sha256")
            }
            for p in sorted(self.dir.iterdir())
            if p.name.endswith("_lmdb")
        }
        meta = {"identity": identity, "lmdbs": lmdbs, "classes": len(read_labels(self.dir / "labels.txt"))}
        files.write_json(self.dir / "dataset.json", {**meta, "source": self.source})
        version = self.store / identity
        if version.exists() and self.current is not None and self.current.identity == identity:
            _refresh_side_files(self.dir, version)  # the same records: only what describes them is new
            shutil.rmtree(self.dir)
        else:
            if version.exists():  # the same identity, but damaged (a cut-short LMDB): replaced
                version.rename(self.store / f".damaged-{os.getpid()}")
            self.dir.rename(version)
        link = self.path.parent / f".{self.path.name}.link-{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(version, self.path.parent))
        if self.path.exists() and not self.path.is_symlink():  # a data set of the older, unversioned layout
            print(f"Replacing {self.path} (an older linfool's unversioned layout)", flush=True)
            shutil.rmtree(self.path)
        os.replace(link, self.path)
        for old in self.store.iterdir():
            if old.name != identity:
                shutil.rmtree(old, ignore_errors=True)
        return DataSet.at(self.path)

    def __exit__(self, *exc):
        try:
            if getattr(self, "dir", None) is not None and self.dir.exists():
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            self._lock.__exit__(*exc)
        return False
