"""`make readme-figures`: the README's pictures, small PNGs under docs/img/, remade from a demo run.

    python -m linfool_dev.readme_figures [--run blog]

From runs/<run>/ (after `make demo` and `make open-questions`): the templates of all classes, the
fooling figure, the regularization figure, the attack curves of the three runs, the deeper
models' attack curves and first-layer filters, and make adv-train's comparison, each scaled to at most WIDTH pixels
wide and stored with a 128-colour palette (Pillow, which matplotlib brings), written whole. Refused in one line when a picture is
missing or out of date (the make command that remakes it is named).
"""

import sys

from PIL import Image

from linfool.core import cli, files, paths, results, runs
from linfool.model import adv_train

WIDTH = 640
PICTURES = (  # (source relative to the run, the result that must be current, its make target, the README's name)
    # a source under "adv/" is in make adv-train's linear run of the same data set (adv_train.run_name)
    ("figures/blog_templates_all.png", "figures/figures.json", "figures", "templates.png"),
    ("figures/blog_fooling_image.png", "figures/figures.json", "figures", "fooling.png"),
    ("figures/blog_regularization.png", "figures/figures.json", "figures", "regularization.png"),
    ("attacks/attack_curves_runs.png", "attacks/attack_curves.json", "attack-curves", "attack_curves.png"),
    ("deep/attack_curves.png", "deep/deep.json", "open-questions", "deep_attack_curves.png"),
    ("deep/filters.png", "deep/deep.json", "open-questions", "deep_filters.png"),
    ("adv/adversarial/comparison.png", "adv/adversarial/comparison.json", "adv-train", "adversarial.png"),
)


def make(run):
    """Write docs/img/<name>.png for each PICTURES entry of `run`; returns the paths written."""
    out = paths.ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source, result, target, name in PICTURES:
        where = run
        if source.startswith("adv/"):
            where = runs.Run.named(adv_train.run_name("linear", run.dataset().name))
            source, result = source.removeprefix("adv/"), result.removeprefix("adv/")
        results.read_result(where.path / result, f"make {target} RUN={where.name}", f"{source} of run {where.name}")
        image = Image.open(where.path / source).convert("RGB")
        scale = min(1.0, WIDTH / image.width)
        small = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        with files.atomic_path(out / name) as tmp:
            small.quantize(colors=128).save(tmp, optimize=True)
        written.append(out / name)
    return written


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=runs.DEMO_RUN, help="the demo run whose pictures are used")
    args = parser.parse_args(argv)

    def body():
        run = runs.Run.named(args.run)
        with runs.locked(read=[run]):
            for path in make(run):
                print(f"{path} ({path.stat().st_size / 1024:.0f} KB)")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
