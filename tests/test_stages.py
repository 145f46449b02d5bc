"""linfool.core.stages: every stage and target declared once; the Makefile, the parsers, make help, the
recorded commands and the demo's order all follow the declaration."""

import os
import re

import pytest

from linfool.core import cli, paths, stages

from running import make, one_error

pytestmark = pytest.mark.fast
MAKEFILE = (paths.ROOT / "Makefile").read_text()


def _make_list(name) -> set:
    """The words of a `NAME := a b \\ c` list in the Makefile."""
    text = re.search(rf"^{name} := ((?:.*\\\n)*.*)$", MAKEFILE, re.M).group(1)
    return set(text.replace("\\\n", " ").split())


def test_the_makefile_runs_exactly_the_declared_targets():
    staged, other = _make_list("STAGE_TARGETS"), _make_list("OTHER_TARGETS")
    assert staged == {t.name for t in stages.TARGETS.values() if t.stage}
    assert other == {t.name for t in stages.TARGETS.values() if not t.stage}
    recipes = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.M)) | {"$(STAGE_TARGETS)"}
    assert recipes == other | {"$(STAGE_TARGETS)"}
    for t in stages.TARGETS.values():
        assert t.stage is None or t.stage in stages.STAGES
        assert all(f in {o.flag for o in stages.STAGES[t.stage].options} for f in t.fixed) if t.stage else True


def test_no_default_is_restated_in_the_makefile():
    assert re.findall(r"^(\w+) \?=", MAKEFILE, re.M) == ["GPU"]  # the one variable every recipe exports
    assert "## " not in MAKEFILE  # help comes from the declaration
    for opt in (o for s in stages.STAGES.values() for o in s.options if o.make and o.default is not None):
        assert not re.search(rf"\b{opt.make}={opt.default}\b", MAKEFILE), opt


def test_module_constants_are_the_declared_defaults():
    from linfool.experiments import background, blackbox, forest, pairs  # noqa: PLC0415

    assert (pairs.IMAGES, pairs.PAIRS) == (stages.default("transfer", "images"), stages.default("transfer", "pairs"))
    assert (blackbox.PAIRS, blackbox.MAX_QUERIES) == (6, stages.default("blackbox", "queries"))
    assert forest.QUERIES == stages.default("forest", "queries") and background.FOOL == stages.default(
        "background", "fool"
    )


def test_make_help_lists_every_target_in_sections_under_100_columns():
    text = stages.help_text()
    assert all(len(line) < 100 for line in text.splitlines())
    for section in stages.SECTIONS:
        assert f"\n{section}:\n" in text
    for t in stages.TARGETS.values():
        assert re.search(rf"^  {re.escape(t.name)} ", text, re.M), t.name
        for variable in stages.own_variables(t.name):
            assert f"{variable}=" in text
    pipeline = text.split(f"{stages.PIPELINE}:")[1].split("\n\n")[0]
    assert (
        pipeline.index("  data ") < pipeline.index("  sweep ") < pipeline.index("  eval ") < pipeline.index("  report ")
    )


def test_make_variables_become_the_stages_options():
    stage, argv = stages.from_make("sweep", ["RUN=r", "SET=max_iter=10 snapshot=5", "FRESH=1", "DATA=", "PAIRS=3"])
    assert stage == "train"
    assert argv == ["--sweep", "--run", "r", "--set", "max_iter=10", "--set", "snapshot=5", "--fresh", "--"]
    args = stages.parse("train", argv)
    assert args.sweep and args.fresh and args.settings == ["max_iter=10", "snapshot=5"] and args.extra == []
    assert stages.from_make("train", ["ARGS=--foo 1"])[1] == ["--", "--foo", "1"]
    assert stages.from_make("fool", ["IMAGENET=/a b", "MEAN_VALUES=1,2,3"])[1] == ["--mean-values", "1,2,3"]


@pytest.mark.parametrize(
    "target, words, expected",
    [
        ("eval", ["VAL_PER_CLAS=3"], "no target takes VAL_PER_CLAS= (a typo?); make eval takes RUN="),
        ("train", ["RESUME=yes"], "RESUME=yes: RESUME takes 1"),
        ("decay-search", [], "make decay-search needs NET=mlp|conv"),
    ],
)
def test_a_variable_that_cannot_be_meant_is_refused(target, words, expected):
    with pytest.raises(cli.UserError, match=re.escape(expected)):
        stages.from_make(target, words)


def test_a_typo_through_make_is_one_line_before_anything_runs(tmp_path):
    env = {**os.environ, "LINFOOL_SET_UP": "1", "LINFOOL_RUNS": str(tmp_path / "runs")}
    one_error(make(env, "attack-curves", "PAIR=3"), "no target takes PAIR=")
    one_error(make(env, "attack-curves", "PAIRS=0"), "--pairs: '0' is not a whole number >= 1")
    assert not (tmp_path / "runs").exists()


def test_every_stage_parses_its_defaults_and_resolves_the_run_the_same_way():
    for name, s in stages.STAGES.items():
        argv = ["x" for o in s.options if o.kind == "positional"]
        argv += [word for o in s.options if o.required for word in (o.flag, o.choices[0])]
        args = stages.parse(name, argv)
        for o in s.options:
            if o.kind in ("text", "count", "int", "number", "choice") and not o.required and o.name != "run":
                assert getattr(args, o.name) == o.default, (name, o.name)
        if s.run_from_data:
            assert args.run == "blog" and stages.parse(name, ["--data", "imagenet"]).run == "imagenet"


def test_the_recorded_command_names_the_target_run_and_what_differs_from_the_defaults(monkeypatch):
    monkeypatch.delenv("LINFOOL_COMMAND", raising=False)
    args = stages.parse("attack-curves", ["--images", "10", "--pairs", "510"])
    assert stages.command("attack-curves", args) == "make attack-curves RUN=blog IMAGES=10"
    args = stages.parse("train", ["--sweep", "--run", "r", "--set", "max_iter=5", "--fresh"])
    assert stages.command("sweep", args) == "make sweep RUN=r SET=max_iter=5 FRESH=1"


def test_the_demo_and_the_open_questions_run_each_stage_after_what_it_reads():
    for which in ("demo", "open-questions"):
        order = [line.split()[0] for line in stages.plan(which, environ={})]
        for i, name in enumerate(order):
            reads = stages.STAGES[stages.TARGETS[name].stage].reads
            later = {stages.TARGETS[n].stage for n in order[i + 1 :]}
            assert not set(reads) & later - {stages.TARGETS[name].stage}, (which, name)
    demo = stages.plan("demo", environ={"PAIRS": "50"})
    assert demo[0] == "data DATA= IMAGENET=" and demo[-1] == "report RUN=blog"
    assert "attack-curves RUN=blog PAIRS=50 IMAGES=10" in demo  # a size given to make demo wins
    assert stages.plan("open-questions", environ={}) == [
        "deep-sweep",
        "deep",
        "forest",
        "adv-train",
        "claims",
        "report",
    ]


def test_the_readme_pipeline_table_names_each_targets_declared_stage_and_module():
    readme = (paths.ROOT / "README.md").read_text()
    rows = re.findall(r"^\| [^|]+ \| `make ([a-z-]+)[^`]*` \| `([a-z -]+)` / `([\w.]+)` \|$", readme, re.M)
    assert len(rows) >= 15
    for target, command, module in rows:
        t = stages.TARGETS[target]
        if t.stage:
            assert command.split()[0] == t.stage and module == stages.STAGES[t.stage].module, target
    staged = {t.name for t in stages.TARGETS.values() if t.stage and t.section in (stages.PIPELINE, stages.QUESTIONS)}
    assert staged <= {target for target, _, _ in rows} | {"sweep", "deep-sweep"}


def test_an_unknown_plan_is_refused_in_one_line():
    with pytest.raises(cli.UserError, match="no plan 'bogus'; the plans are demo and open-questions"):
        stages.plan("bogus", environ={})
