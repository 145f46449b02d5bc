"""What every `python -m linfool.<stage>` shares: errors the user can fix, said in one line; exit
codes; positive-number options; and a stage that dies with the `make` that started it.

    raise cli.UserError("what is wrong; what to do")    -> "ERROR: ..." on stderr, exit 2
    sys.exit(cli.run(body))                             -> runs body(), maps errors to exit codes
    parser.add_argument("--pairs", type=cli.positive_int)
    parser = cli.ArgumentParser(...)                    -> a bad option is one 'ERROR:' line too
    cli.make_command("eval", RUN="blog")                -> the command recorded in a result
"""

import argparse
import ctypes
import os
import signal
import sys

EXIT_USER = 2  # a UserError: bad input, a missing step, a busy run
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class UserError(Exception):
    """Something the user can fix. str(err) is one line: what is wrong and the command that fixes it."""


def positive_int(text) -> int:
    """argparse type: an integer >= 1 (PAIRS=0, ROUNDS=-1 and the like are refused in one line)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad option said in one 'ERROR:' line (and `--help` for the usage), exit 2."""

    def error(self, message):
        self.exit(EXIT_USER, f"ERROR: {self.prog}: {message} (see --help)\n")


def progress(iterable, total=None, desc="", unit="it"):
    """A bar with the rate and an ETA over `iterable` (tqdm, to stderr, closed at 100 % when the
    loop ends); shown on a terminal, left out of logs (tqdm's disable=None)."""
    from tqdm import tqdm  # noqa: PLC0415  (only stages with long loops need it)

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None, leave=True)


def make_command(target, **variables) -> str:
    """The make command that remakes a stage's result, recorded in it: the one make passed in
    (LINFOOL_COMMAND, exactly as the user typed it) when it is for `target`, else `make TARGET VAR=value`
    from the stage's own settings (a stage run as `python -m linfool ...`). Never read from sys.argv."""
    given = os.environ.get("LINFOOL_COMMAND", "").split()
    if given[:2] == ["make", target]:
        return " ".join(word for word in given if not word.endswith("="))  # DATA= (empty) says nothing
    return " ".join(["make", target, *(f"{k}={v}" for k, v in variables.items() if v not in (None, "", False))])


def _terminated(signum, _frame):
    raise SystemExit(128 + signum)


def die_with_parent():
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


def run(body) -> int:
    """Run a stage's body (returns an exit code or None): UserError -> one 'ERROR:' line and exit 2,
    Ctrl-C -> one line and exit 130."""
    die_with_parent()
    try:
        return body() or 0
    except UserError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print(
            "ERROR: interrupted (Ctrl-C); nothing half-written was published: run the same command again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
