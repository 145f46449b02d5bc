"""Files that appear whole, folders that appear whole, and one writer at a time.

    write_text(path, text) / write_json(path, obj)   temp file + fsync + rename: old or new, never half
    read_json(path, remake)                          DamagedFile (one line naming the make command) if not JSON
    sha256(path, digits=16)                          a file's fingerprint (None when it is not there)
    partial_dir(final) -> Path                       a fresh hidden folder beside `final` to build into
    publish_dir(partial, final)                      swap it in: `final` is the old folder, the new one or
                                                     (after a kill between two renames) absent, never mixed
    with lock(path, what=..., shared=False): ...     an exclusive (or shared) flock on `path`; a second
                                                     writer is refused in one line naming the holder

Locks are flock(2) locks: the kernel drops them when their process dies, so there is never a stale
lock to remove by hand (the lock file stays, holding only the last holder's PID and command for the
message). A process may take the same lock again (re-entrant); a shared holder asking for the
exclusive lock upgrades it. Child processes given the lock's descriptor keep it while they run.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from linfool.core import paths
from linfool.core.cli import UserError


class DamagedFile(UserError):
    """A file that exists but cannot be read (truncated, not JSON): the message names it and its remake."""


class Busy(UserError):
    """Another process holds the lock: the message names it (PID and command) and what to do."""


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically, as write_bytes."""
    write_bytes(path, text.encode())


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a temp file beside it, fsynced, then renamed over it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a kill: no temporary file left holding the space
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name (matplotlib's
    savefig, cv2.imwrite); it replaces `path` when the block ends without an error."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def sha256(path: str | Path, digits: int = 16) -> str | None:
    """The first `digits` hex digits of the file's sha256 (None when there is no such file)."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:digits] if path.is_file() else None


def write_json(path: str | Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=1) + "\n")


def read_json(path: str | Path, remake: str) -> Any:
    """The JSON at `path`; DamagedFile naming the file and `remake` (a make command) when it is not
    JSON (e.g. cut short by a full disk or a kill of an older linfool)."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFile(f"{path} is damaged ({err.__class__.__name__}: {err}); `{remake}` remakes it") from None


def partial_dir(final: Path) -> Path:
    """A new, empty hidden folder beside `final` for building it; partials left by earlier, killed
    builders of the same folder are removed first (the caller holds the folder's lock)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for old in final.parent.glob(f".{final.name}.partial*"):
        shutil.rmtree(old, ignore_errors=True)
    partial = final.parent / f".{final.name}.partial-{os.getpid()}"
    partial.mkdir()
    return partial


@contextmanager
def building_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh partial folder for `final`; publish it (publish_dir) when the block ends without
    an error, remove it when it raises."""
    partial = partial_dir(final)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    publish_dir(partial, final)


def publish_dir(partial: Path, final: Path) -> None:
    """Move the finished folder `partial` to `final`, replacing an older `final` only once the new
    one is whole (two renames; the old one is deleted last)."""
    final = Path(final)
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        final.rename(old)
    Path(partial).rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _command() -> str:
    """How this process was started, for a lock's message: the make command make passes in
    (LINFOOL_COMMAND), else python -m <module> <args>."""
    if os.environ.get("LINFOOL_COMMAND"):
        return os.environ["LINFOOL_COMMAND"]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else " ".join(sys.argv[:1])
    return " ".join([program, *sys.argv[1:]])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holders(handle):
    """'PID 123 (make train RUN=blog) is writing it' for each live process named in the lock file."""
    handle.seek(0)
    found = []
    for line in handle.read().splitlines():
        pid, _, rest = line.partition(" ")
        mode, _, command = rest.partition(" ")
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            found.append(f"PID {pid} ({command}) is {'reading' if mode == 'read' else 'writing'} it")
    return found


_HELD: dict[str, list] = {}  # resolved lock path -> [file object, shared?, depth]


@contextmanager
def lock(path: str | Path, what: str, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or, with shared, a shared) lock on the file `path` for the block. `what`
    names the locked thing in the refusal: '<what> is busy: PID 123 (make train RUN=blog) is
    writing it; wait for it ...'. Re-entrant within a process."""
    path = Path(path)
    key = str(path.resolve())
    held = _HELD.get(key)
    if held and (shared or not held[1]):
        held[2] += 1
        try:
            yield
        finally:
            held[2] -= 1
        return
    handle = held[0] if held else _open_lock(path, what, shared)
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holders = _holders(handle) or ["another process holds it"]
        if held:  # a failed upgrade may drop the shared lock: take it back
            fcntl.flock(handle, fcntl.LOCK_SH)
        else:
            handle.close()
        raise Busy(
            f"{what} is busy: {', '.join(holders)}; wait for it to finish (or stop it) and run this again"
        ) from None
    if handle.writable():
        if not shared:
            handle.truncate(0)
        handle.write(f"{os.getpid()} {'read' if shared else 'write'} {_command()}\n")
        handle.flush()
    previous = list(held) if held else None
    _HELD[key] = [handle, shared, 1]
    try:
        yield
    finally:
        if previous:  # an upgrade ends: back to the shared lock held before
            fcntl.flock(handle, fcntl.LOCK_SH)
            _HELD[key] = previous
        else:
            del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_SAID: set[str] = set()


def _open_lock(path, what, shared):
    """The lock file opened for flock: for writing (it names its holders), or where its folder is
    read-only (a shared ImageNet volume) read-only when it exists, else a lock file of the same name
    under the cache (said once): readers need no write access. A writer there is one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+")
    except OSError as err:
        if err.errno not in _READ_ONLY:
            raise
        if not shared:
            raise UserError(
                f"{what} cannot be written: its lock {path} cannot be created ({err.strerror}); "
                "point LINFOOL_DATA / LINFOOL_RUNS at a writable folder (or make it writable)"
            ) from None
    if path.is_file():
        return open(path, "r")
    elsewhere = paths.CACHE / "locks" / hashlib.sha256(str(path).encode()).hexdigest()[:16] / path.name
    if str(path) not in _SAID:
        _SAID.add(str(path))
        print(f"{path.parent} is read-only: {what}'s readers lock {elsewhere} instead (this machine only)", flush=True)
    elsewhere.parent.mkdir(parents=True, exist_ok=True)
    return open(elsewhere, "a+")


def lock_fds() -> list:
    """File descriptors of every lock this process holds: pass them to a child (subprocess pass_fds)
    that writes under the locks, so that they stay held for as long as the child lives."""
    return [entry[0].fileno() for entry in _HELD.values()]
