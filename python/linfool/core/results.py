"""Reading a stage's result: refused in one line when it is missing, damaged, or made from another
snapshot or data set than its runs' current ones, naming the make command that remakes it (never
recomputed behind the user's back).

    read_result(path, remake, what) -> dict       check_sources(result, remake, what)
    read_metrics(run) -> metrics.json of `make eval`
"""

from __future__ import annotations

from pathlib import Path

from linfool.core import files, runs, stages
from linfool.core.runs import Run, RunError, Stale


def check_sources(result: dict, remake: str, what: str) -> None:
    """Stale (one line naming `remake`) unless every source recorded in a result (its 'sources':
    a list of Run.source() dicts) is still its run's current snapshot and data set."""
    if "sources" not in result:
        raise Stale(f"{what}: made by an older linfool (it records no snapshot); `{remake}` remakes it")
    for source in result["sources"]:
        run = Run.named(source["run"])
        now = run.source()
        if now["snapshot_sha256"] != source["snapshot_sha256"]:
            raise Stale(
                f"{what}: made from {source['snapshot']} of run {run.name}, which is now at "
                f"{now['snapshot']}; `{remake}` remakes it"
            )
        if now["data_identity"] != source["data_identity"]:
            raise Stale(
                f"{what}: made on data set '{source['data']}' {source['data_identity']}, which was "
                f"rebuilt since; `{remake}` remakes it"
            )


def read_result(path: str | Path, remake: str, what: str) -> dict:
    """A stage's JSON result, refused in one line when missing (RunError), damaged (DamagedFile) or
    made from other snapshots or data than the runs' current ones (Stale); each names `remake`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{what}: not made yet (no {path}); `{remake}` makes it")
    result = files.read_json(path, remake)
    check_sources(result, remake, what)
    return result


def read_metrics(run: Run | str | Path) -> dict:
    """The run's metrics.json, refused in one line (runs.RunError / runs.Stale) when missing or made
    from another snapshot or data set than the run's current ones: `make eval` remakes it."""
    run = runs.as_run(run)
    return read_result(*stages.result("eval", run), f"metrics.json of run {run.name}")
