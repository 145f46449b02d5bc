"""What every `python -m linfool.<stage>` shares: errors the user can fix, said in one line; exit
codes; positive-number options; and a stage that dies with the `make` that started it.

    raise cli.UserError("what is wrong; what to do")    -> "ERROR: ..." on stderr, exit 2
    sys.exit(cli.run(body))                             -> runs body(), maps errors to exit codes
    parser.add_argument("--pairs", type=cli.positive_int)
    parser = cli.ArgumentParser(...)                    -> a bad option is one 'ERROR:' line too
    cli.make_command("eval", RUN="blog")                -> the command recorded in a result
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import math
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

T = TypeVar("T")
EXIT_USER = 2  # a UserError: bad input, a missing step, a busy run
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class UserError(Exception):
    """Something the user can fix. str(err) is one line: what is wrong and the command that fixes it."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (PAIRS=0, ROUNDS=-1 and the like are refused in one line)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def number_in(low: float, high: float | None = None) -> Callable[[str], float]:
    """argparse type factory: a finite number > low (and <= high when given); EPS=nan, EPS=inf,
    EPS=0 and EPS=300 are refused in one line."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= low or (high is not None and value > high):
            bound = f"> {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number {bound}")
        return value

    return parse


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad option said in one 'ERROR:' line (and `--help` for the usage), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER, f"ERROR: {self.prog}: {message} (see --help)\n")


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """A bar with the rate and an ETA over `iterable` (tqdm, to stderr, closed at 100 % when the
    loop ends); shown on a terminal, left out of logs (tqdm's disable=None)."""
    from tqdm import tqdm  # noqa: PLC0415  (only stages with long loops need it)

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None, leave=True)


def user_path(text: str | Path, what: str) -> Path:
    """The path a user typed (IMAGENET=, MODEL=, ...), as given: relative to where the stage runs.
    With `make -C <checkout>` that is the checkout, not the shell's folder (LINFOOL_CALLER_DIR, from
    the Makefile): a relative path found only there is one line naming the absolute path to give."""
    path = Path(text)
    caller = os.environ.get("LINFOOL_CALLER_DIR")
    if path.is_absolute() or path.exists() or not caller or Path(caller).resolve() == Path.cwd().resolve():
        return path
    there = Path(caller) / path
    if there.exists():
        raise UserError(
            f"{what}={text} is not in {Path.cwd()}, where make runs (make -C), but in {caller}, where you are: "
            f"give {what}={there.resolve()}"
        )
    return path


def make_command(target: str, **variables: object) -> str:
    """The make command that remakes a stage's result, recorded in it: the one make passed in
    (LINFOOL_COMMAND, exactly as the user typed it) when it is for `target`, else `make TARGET VAR=value`
    from the stage's own settings (a stage run as `python -m linfool ...`). Never read from sys.argv."""
    given = os.environ.get("LINFOOL_COMMAND", "").split()
    if given[:2] == ["make", target]:
        return " ".join(word for word in given if not word.endswith("="))  # DATA= (empty) says nothing
    return " ".join(["make", target, *(f"{k}={v}" for k, v in variables.items() if v not in (None, "", False))])


def _terminated(signum, _frame):
    raise SystemExit(128 + signum)


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent (make) dies, and turn SIGTERM into
    a normal exit (so `finally` blocks and child processes are cleaned up): killing make leaves no
    stage behind still writing. Linux only; elsewhere a no-op."""
    signal.signal(signal.SIGTERM, _terminated)
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        raise SystemExit(128 + signal.SIGTERM)


_FOLDERS = "point LINFOOL_DATA (data sets) / LINFOOL_RUNS (runs and results) at another folder"
_OS_ERRORS = {
    errno.ENOSPC: f"the disk is full: free space (or {_FOLDERS}) and run the same command again",
    errno.EDQUOT: f"your disk quota is used up: free space (or {_FOLDERS}) and run the same command again",
    errno.EROFS: f"a read-only file system, and this stage writes there: {_FOLDERS}",
    errno.EACCES: f"permission denied: make it writable (or readable) for you, or {_FOLDERS}",
    errno.EPERM: f"not permitted: make it writable (or readable) for you, or {_FOLDERS}",
    errno.ENOTDIR: f"a part of that path is a file, not a folder: {_FOLDERS}",
}


def os_error_line(err: BaseException) -> str:
    """One line for a file-system error a user can fix (a full disk, a read-only volume, ...), or ''."""
    errno_ = getattr(err, "errno", None)
    if errno_ is None and "No space left on device" in str(err):  # LMDB says it in its own exception
        errno_ = errno.ENOSPC
    if errno_ not in _OS_ERRORS:
        return ""
    where = getattr(err, "filename", None) or str(err).split(":")[0]
    return f"{where}: {_OS_ERRORS[errno_]}; nothing half-written was published"


def run(body: Callable[[], int | None]) -> int:
    """Run a stage's body (returns an exit code or None): UserError -> one 'ERROR:' line and exit 2,
    a file-system error the user can fix (os_error_line) -> one line and exit 2, Ctrl-C -> one line
    and exit 130."""
    die_with_parent()
    try:
        return body() or 0
    except UserError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return EXIT_USER
    except Exception as err:  # OSError, and LMDB's own errors (not OSError) for a full disk
        line = os_error_line(err)
        if not line:
            raise
        print(f"ERROR: {line}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print(
            "ERROR: interrupted (Ctrl-C); nothing half-written was published: run the same command again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
