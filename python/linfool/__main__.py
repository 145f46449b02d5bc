"""`python -m linfool STAGE [options]`: every stage of the pipeline from one entry point, as declared in
linfool.core.stages (`python -m linfool --help` lists them, `python -m linfool STAGE --help` a stage's
options). The Makefile calls `python -m linfool make TARGET NAME=value ...`: the target's stage with
its make variables as options; `python -m linfool help` is `make help`, `python -m linfool plan demo`
the demo's make commands in order."""

import importlib
import sys

from linfool.core import cli, stages


def usage() -> str:
    width = max(map(len, stages.STAGES))
    return "usage: python -m linfool STAGE [options]\n\nstages:\n" + "\n".join(
        f"  {name:<{width}}  {s.about}" for name, s in stages.STAGES.items()
    )


def _run_stage(name, argv) -> int:
    module = importlib.import_module(stages.STAGES[name].module)
    sys.argv = [f"python -m linfool {name}", *argv]
    return module.main(argv)


def _from_make(argv) -> int:
    if not argv or argv[0] not in stages.TARGETS or not stages.TARGETS[argv[0]].stage:
        print(f"ERROR: no make target runs a stage called {argv[:1]} (make help)", file=sys.stderr)
        return cli.EXIT_USER
    try:
        name, stage_argv = stages.from_make(argv[0], argv[1:])
    except cli.UserError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return cli.EXIT_USER
    return _run_stage(name, stage_argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "make":
        return _from_make(argv[1:])
    if argv[0] in ("help", "plan"):
        return stages.main(argv)
    if argv[0] not in stages.STAGES:
        print(
            f"ERROR: no stage {argv[0]!r}; the stages are: {', '.join(stages.STAGES)} (python -m linfool --help)",
            file=sys.stderr,
        )
        return cli.EXIT_USER
    return _run_stage(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
