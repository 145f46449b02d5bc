"""`make report`: one HTML page with every figure and number, each section saying where it came from.

    python -m linfool report --run NAME [--low RUN --high RUN]    # runs/<name>/report.html

The page covers the run and its sweep companions (--low/--high, default linfool.core.runs.sweep_names)
that are trained, all on one data set; a run of another data set is refused, never shown. It only
renders: each section reads one stage's result and shows the snapshots and data set it was made
from; a result that is missing, or made from another snapshot or data set than the runs' current
ones, is shown as a notice naming the make command that remakes it, never as current (the explore
section too: its data is `make figures`' explore.json). Where each result lives and which target makes
it come from linfool.core.stages. The pictures the page shows
are linked into runs/<name>/report_assets/<page>/ (hard links: a later `make figures` cannot change
an existing page) and report.html is replaced whole, so a killed `make report` leaves the old page.
"""

import html
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from linfool.core import cli, conventions, files, paths, results, runs, stages, stats
from linfool.experiments import accuracy, adversarial
from linfool.experiments import claims as claims_table
from linfool.model import adv_train
from linfool.report import explore as explore_page

BLOG = "http://karpathy.github.io/2015/03/30/breaking-convnets/"
FIGURES = (
    ("blog_templates_selected.png", "Learned templates of a few classes (the blog's Granny Smith figure)."),
    ("blog_templates_all.png", "Templates of all classes."),
    ("blog_fooling_image.png", "A val image fooled into each target class with 99 % confidence."),
    ("blog_fooling_noise.png", "Random noise fooled into each target class."),
    ("blog_regularization.png", "The same image fooled on weakly and strongly regularized runs."),
    ("blog_toy_example.png", "The blog's toy example."),
)


class Page:
    """The page being made: its sections (HTML strings), its asset folder, and the notices of
    results that could not be shown (printed at the end)."""

    def __init__(self, first):
        self.first = first
        self.id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.assets = first.path / "report_assets" / self.id
        self.assets.mkdir(parents=True)
        self.id_url = f"report_assets/{self.id}"
        self.parts, self.notices, self.commands = [], [], []

    def asset(self, path, name=None) -> str:
        """Link the file into this page's asset folder; returns the URL relative to report.html."""
        target = self.assets / (name or Path(path).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        return os.path.relpath(target, self.first.path)

    def optional(self, path, remake, what, first="make open-questions"):
        """A result of a stage the page shows only when it was run (the open questions): None and a
        line naming `first` (what makes it the first time) when its file is not there (no notice),
        else self.result (a stale or damaged one is a notice naming `remake`)."""
        if not Path(path).is_file():
            self.parts.append(f"<p>Not run on these runs; <code>{html.escape(first)}</code> measures it.</p>")
            return None
        return self.result(path, remake, what)

    def result(self, path, remake, what):
        """A stage's result, or None after adding a notice (missing, damaged or out of date)."""
        try:
            found = results.read_result(path, remake, what)
        except (runs.RunError, files.DamagedFile) as err:
            self.notices.append(str(err))
            self.parts.append(f"<p class='notice'><b>Not shown:</b> {html.escape(str(err))}</p>")
            return None
        if found.get("command"):
            self.commands.append(found["command"])
        self.parts.append(source_line(found["sources"]))
        return found


def source_line(sources) -> str:
    """'From snap_iter_3000 (iteration 3000, sha256 1a2b...) of run blog, ...; data set ...'."""
    made = ", ".join(
        f"{s['snapshot']} of run {s['run']} (iteration {s['iteration']}, sha256 {s['snapshot_sha256'][:8]})"
        for s in sources
    )
    data = sources[0]
    return (
        f"<p class='source'>From {html.escape(made)}; data set '{html.escape(data['data'])}' "
        f"{html.escape(data['data_identity'])}.</p>"
    )


def _table(rows, columns):
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(rows):
    keys_pct = ("start_prob", "target_prob", "val_top1", "val_top5", "train_top1", "train_top5")
    out = []
    for r in rows:
        out.append(
            {
                k: (f"{100 * v:.1f} %" if k in keys_pct else f"{v:.4g}" if isinstance(v, float) else v)
                for k, v in r.items()
            }
        )
    return out


def claims_section(page, run):
    page.parts.append("<h2>The blog's claims, measured on these runs</h2>")
    claims = page.result(*stages.result("claims", run), "the claims table")
    if claims:
        shown = [
            {
                **r,
                "n": claims_table.n_text(r.get("n")),
                "p": claims_table.p_text(r.get("p")),
                "effect (95 %)": f"{r.get('effect_of', '')}: {claims_table.effect_text(r.get('effect'))}"
                if r.get("effect")
                else "-",
            }
            for r in claims["rows"]
        ]
        page.parts += [
            _table(shown, ["claim", "how", "blog", "value", "test", "n", "effect (95 %)", "p", "verdict", "why"]),
            f"<p><b>The verdict rule.</b> {html.escape(claims.get('rule', ''))} The tests over val images "
            "and pairs cover the sampling of the test set, not the randomness of training: a second seed of "
            "the same run can move a small effect (docs/RESULTS.md).</p>",
        ]


def attack_curves_section(page, run):
    page.parts.append("<h2>Fooling difficulty: fraction fooled vs the Linf budget</h2>")
    curves = page.result(*stages.result("attack-curves", run), f"the attack curves of run {run.name}")
    if curves:
        page.parts += [
            "<p>Blog direction: epsilon * w_target / max|w_target|; sign direction: epsilon * "
            "sign(w_target - w_true), the Linf-optimal one for a linear model. Dashed: the closed form, "
            "no Linf perturbation can reach P = 0.99 below (s_true - s_target + ln 99) / "
            f"||w_target - w_true||_1 (median ||w_target - w_true||_1 here: {curves['median_l1_gap_norm']:.3g}). "
            f"n = {curves['pairs']} (val image, target) pairs; shaded: each fraction's 95 % Clopper-Pearson "
            "band; the medians' 95 % intervals (order statistics) are in the legends.</p>",
            "".join(
                f"<img src='{page.asset(run.path / 'attacks' / name, f'attacks/{name}')}'>"
                for name in ("attack_curves.png", "attack_curves_runs.png")
                if (run.path / "attacks" / name).is_file()
            ),
        ]


def _rate_cell(rate, found=None):
    """'25 % (12-43)' of a rate with its stats.proportion (older results: the rate alone)."""
    if found is None or not found.get("n"):
        return f"{100 * rate:.0f} %"
    return f"{100 * rate:.0f} % ({100 * found['low']:.0f}-{100 * found['high']:.0f}, {found['k']}/{found['n']})"


def transfer_section(page, run):
    page.parts.append("<h2>Transfer between runs</h2>")
    transfer = page.result(*stages.result("transfer", run), "the transfer matrix")
    if transfer:
        rows = [
            {
                "made on": src,
                "fooled on source": n,
                **{f"classified by {d}": _rate_cell(v, c) for d, v, c in zip(transfer["runs"], row, cis)},
            }
            for src, n, row, cis in zip(
                transfer["runs"],
                transfer["fooled_on_source"],
                transfer["matrix"],
                transfer.get("matrix_ci", [[None] * len(transfer["runs"])] * len(transfer["runs"])),
            )
        ]
        page.parts += [
            f"<img src='{page.asset(run.path / 'transfer' / 'transfer.png', 'transfer/transfer.png')}'>",
            _table(rows, ["made on", "fooled on source", *[f"classified by {d}" for d in transfer["runs"]]]),
        ]


def _median_cell(found, kind):
    """'36 (32-38)' of a result's median Linf with its 95 % interval (older results: the median alone)."""
    if "median_epsilon_ci" in found:
        return stats.linf_text(found["median_epsilon_ci"][kind])
    return f"{found['median_epsilon'][kind]:.1f}"


def background_section(page, run):
    page.parts.append("<h2>Does a background class of fooling images help? (the blog says no)</h2>")
    background = page.result(*stages.result("background", run), "the background-class rounds")
    if background:
        rows = [
            {
                "round": r["round"],
                "background images": r["background_images"],
                "val top-1": f"{100 * r['val_top1']:.1f} %",
                "pairs": r["pairs"],
                "median Linf, blog (95 %)": _median_cell(r, "blog"),
                "median Linf, sign (95 %)": _median_cell(r, "sign"),
                "control: median Linf, blog (95 %)": _median_cell(r["control"], "blog"),
                "control: val top-1": f"{100 * r['control']['val_top1']:.1f} %",
                "new fooling images now background": "" if r["caught"] is None else f"{100 * r['caught']:.0f} %",
            }
            for r in background["rounds"]
        ]
        page.parts += [
            f"<img src='{page.asset(run.path / 'background' / 'background.png', 'background/background.png')}'>",
            _table(rows, list(rows[0])),
        ]


def _blackbox_row(r):
    med = lambda key: f"{float(np.median([row[key] for row in r['rows']])):.1f}"  # noqa: E731
    reached = lambda key: f"{sum(row[key] >= 0.99 - 1e-6 for row in r['rows'])}/{len(r['rows'])}"  # noqa: E731
    return {
        "run": r["run"],
        "pairs": len(r["rows"]),
        "white-box alpha attack: median Linf": med("whitebox_linf"),
        "white-box: reached 0.99": reached("whitebox_prob"),
        "square attack at that Linf: reached (95 %)": _rate_cell(
            r["squares_reached"] / len(r["rows"]), r.get("squares_reached_ci")
        ),
        "median queries (95 %)": _queries_cell(r),
        "recovery queries": r["recovery"]["queries"],
        "recovered vs true templates (centred): correlation": f"{r['recovery']['correlation_mean']:.6f}",
        "fooling with recovered templates: median Linf": med("recovered_linf"),
        "recovered: reached 0.99": reached("recovered_prob"),
    }


def _queries_cell(r):
    found = r.get("squares_median_queries_ci")
    return stats.median_text(found, label="95 %: ") if found else r["squares_median_queries"]


def blackbox_section(page, group):
    """Fooling with scores only, one row per run of the group, and each run's true vs recovered
    templates (from runs/<run>/blackbox/blackbox.json, written by `make blackbox`)."""
    page.parts.append("<h2>Fooling without the weights: scores only</h2>")
    found = [
        (
            run,
            page.result(
                stages.result("blackbox", run)[0],
                stages.result("blackbox", group[0])[1],  # the main run's make blackbox makes its companions'
                f"the black-box attacks on run {run.name}",
            ),
        )
        for run in group
    ]
    found = [(run, r) for run, r in found if r]
    if not found:
        return
    page.parts += [
        "<p>Each run's Caffe model as an oracle: images in, probabilities out, each image one query. Square "
        "attack (Andriushchenko et al. 2020) with the Linf the blog's white-box attack needed on the same pair; "
        "exact recovery: log p_i - log p_j = s_i - s_j, so one query per pixel gives W minus its class mean, "
        "which then fools like the true templates.</p>",
        _table([_blackbox_row(r) for _, r in found], list(_blackbox_row(found[0][1]))),
        "".join(
            f"<img src='{page.asset(run.path / 'blackbox' / 'blackbox.png', f'blackbox/{run.name}.png')}'>"
            for run, _ in found
        ),
    ]


def _pct(value):
    return "-" if value != value else f"{100 * value:.0f} %"  # nan: nothing fooled on the source


def _deep_cell(curves, i):
    """'fooled to 0.99 iteratively / by one sign step / by one gradient step (iteratively to the target's
    top-1)' at budget i."""
    steps = " / ".join(_pct(curves[k][i]) for k in ("iterative", "sign", "gradient"))
    return f"{steps} ({_pct(curves['iterative_top1'][i])})"


def deep_section(page, run):
    """The post's open question on deeper models: make deep's result (and each net's decay search)."""
    page.parts.append("<h2>Open question: deeper models fooled by backprop through Caffe</h2>")
    deep = page.optional(*stages.result("deep", run), "make deep's result")
    if not deep:
        return
    if {m["kind"] for m in deep["models"]} <= {"linear"}:  # made before the deeper models were trained
        line = (
            "make deep's result holds the linear runs only (no deeper model was trained when it ran), so it "
            f"answers nothing yet: `make deep-sweep` then `{deep.get('command', 'make deep')}`"
        )
        page.notices.append(line)
        page.parts.append(f"<p class='notice'><b>Not shown:</b> {html.escape(line)}</p>")
        return
    shown = [e for e in (4, 16, 64) if e in deep["ladder"]]
    rows = [
        {
            "run": m["run"],
            "model": m["kind"],
            "weight decay": f"{m['weight_decay']:g}",
            "val top-1": _pct(m["val_top1"]),
            **{
                f"Linf {e}: iterative / sign / gradient (iterative, top-1)": _deep_cell(
                    m["curves"], deep["ladder"].index(e)
                )
                for e in shown
            },
        }
        for m in deep["models"]
    ]
    page.parts += [
        f"<p>Every model is fooled the same way, by Caffe's own backward pass to the pixels, on {deep['pairs']} "
        f"(val image, target) pairs: one fast-gradient-sign step, at most {deep['steps']} projected sign steps "
        "(the iterative Linf attack), and one step along the gradient of the target's score (for the linear "
        "model the gradient is its template: the blog's attack), to P(target) >= 0.99. Transfer: the images "
        f"fooled at Linf {deep['transfer_eps']} on one model, classified by each other model. Recompute: "
        f"<code>{html.escape(deep.get('command', 'make deep'))}</code> (after <code>make deep-sweep</code>).</p>",
        _table(rows, list(rows[0])),
        "".join(
            f"<img src='{page.asset(run.path / 'deep' / name, f'deep/{name}')}'>"
            for name in ("attack_curves.png", "filters.png", "transfer.png")
        ),
    ]
    for net, (weak, _) in runs.deep_names(run.name).items():
        folder = paths.decay_search_dir(weak)
        search = page.optional(
            folder / "decay_search.json",
            f"make decay-search NET={net}",
            f"the weight-decay search of {net}",
            first=f"make decay-search NET={net}",
        )
        if search:
            page.parts += [
                f"<p>{html.escape(net)}: {html.escape(search['rule'])}; chosen weak {search['weak']:g}, "
                f"strong {search['strong']:g} ({search['iterations']} iterations per candidate).</p>",
                f"<img src='{page.asset(folder / 'decay_search.png', f'deep/decay_search_{net}.png')}'>",
            ]


def forest_section(page, run):
    """The post's unconfirmed claim: a random forest fooled with scores only (make forest)."""
    page.parts.append("<h2>Open question: a random forest fooled with scores only</h2>")
    forest = page.optional(*stages.result("forest", run), "make forest's result")
    if not forest:
        return
    about = forest["forest"]
    rows = [
        {
            "model": model,
            "Linf": f"{a['linf']:g}",
            "pushed to P >= 0.99": _pct(a["reached"]),
            "pushed to the target's top-1": _pct(a["top1"]),
            "median queries": a["median_queries"] if a["median_queries"] is not None else "-",
        }
        for model, attacks in forest["attacks"].items()
        for a in attacks
    ]
    page.parts += [
        f"<p>scikit-learn random forest of {about['trees']} trees (mean depth {about['mean_depth']:.0f}) on "
        f"{about['train_records']} train images' raw pixels, val top-1 {_pct(about['val_top1'])}; the square attack "
        f"with predict_proba as its only oracle, at most {forest['max_queries']} queries per pair, beside the run's "
        "linear Caffe model on the same pairs and budgets. Recompute: "
        f"<code>{html.escape(forest.get('command', 'make forest'))}</code>.</p>",
        _table(rows, list(rows[0])),
        f"<img src='{page.asset(run.path / 'forest' / 'forest.png', 'forest/forest.png')}'>",
    ]


def _or_nan(value):
    return float("nan") if value is None else value


def adversarial_section(page, run):
    """The post's closing hope: adversarial training against weight decay at the same accuracy (make
    adv-train): the linear run's comparison, then the MLP's and the ConvNet's where their runs exist."""
    page.parts.append('<h2>Open question: adversarial training, the post\'s "more resistant objective"</h2>')
    for net in ("linear", "mlp", "conv"):
        adv = runs.Run.named(adv_train.run_name(net, run.dataset().name))
        if net == "linear" or adv.path.is_dir():
            _adversarial_part(page, adv, net)


def _adversarial_part(page, adv, net):
    """One adversarial run's comparison: its table, tests and figure (linear-only columns left out for a deeper net)."""
    first = "make adv-train" if net == "linear" else f"make adv-train NET={net}"
    found = page.optional(*stages.result("adv-train", adv), f"make adv-train's comparison ({net})", first=first)
    if not found:
        return
    roles = {
        found["run"]: "adversarial training",
        found["matched"]: "closest top-1",
        found["strong"]: "strongest decay",
    }
    if found["matched"] == found["strong"]:
        roles[found["matched"]] = "closest top-1, strongest decay"
    rows = [
        {
            "run": name,
            "role": role,
            "val top-1 (95 %)": accuracy.interval_text(found["top1"][name]),
            **_linear_cells(found, name),
            "median Linf, iterative": adversarial.iterative_text(found["iterative"][name]["median"]),
            "standard run's fooling images: top-1 = target": _pct(_or_nan(found["transfer"]["top1_is_target"][name])),
            "smoothness": f"{found['smoothness'][name]:.3f}" if name in found["smoothness"] else "-",
            "sparsity": f"{found['sparsity'][name]:.2f}",
        }
        for name, role in roles.items()
    ]
    tests = "; ".join(
        f"against {name}: the iterative attack needs more Linf on {t['more']} pairs, less on {t['fewer']} "
        f"(sign test p = {t['p_more']:.2g}); val top-1 McNemar p = {found['accuracy_tests'][name]['p']:.2g}"
        for name, t in found["paired_iterative"].items()
    )
    about = found["adversarial"]
    page.parts += [
        f"<h3>{html.escape(net)}: run {html.escape(adv.name)}</h3>",
        f"<p>Goodfellow et al.'s objective, ALPHA J(x) + (1 - ALPHA) J(x + EPS sign(dJ/dx)) with EPS "
        f"{about['eps']:g} and ALPHA {about['alpha']:g}, trained by Caffe's SGD solver on each batch's clean "
        f"and adversarial halves, against the weight-decay sweep on the same {found['pairs']} (image, target) pairs "
        "(median Linf to P >= 0.99 with 95 % intervals; the bound is what no Linf attack can beat; the iterative "
        f"attack's budgets double from 1 to 128; the standard run's fooling images: those the iterative attack "
        f"made on {html.escape(found['transfer']['source'])} at Linf {found['transfer']['eps']}; smoothness: "
        "lower is smoother; Hoyer sparsity: 0 all weights alike, 1 one weight). "
        f"{html.escape(tests)}. Recompute: <code>{html.escape(found.get('command', 'make adv-train'))}</code>.</p>",
        _table(rows, list(rows[0])),
        f"<img src='{page.asset(adv.path / 'adversarial' / 'comparison.png', f'{adv.name}/adversarial/comparison.png')}'>",
    ]


def _linear_cells(found, name):
    """The linear comparison's median Linf along the blog's and the sign direction and the bound; {} for a deeper net."""
    if "median_linf" not in found:
        return {}
    median = found["median_linf"][name]
    return {
        "median Linf, blog": stats.linf_text(median["blog"]),
        "median Linf, sign": stats.linf_text(median["sign"]),
        "median bound": stats.linf_text(median["bound"]),
    }


def template_tiles(grid, url):
    """The all-templates mosaic as one tile per class with its name (CSS crops of the one PNG at
    `url`), so that 1000 templates can be browsed and found with the browser's search."""
    step = grid["tile"] + grid["gap"]
    tiles = "".join(
        f"<figure title='{html.escape(wnid)}'><div style='background-position:-{grid['gap'] + (i % grid['cols']) * step}px "
        f"-{grid['gap'] + (i // grid['cols']) * step}px'></div><figcaption>{html.escape(name)}</figcaption></figure>"
        for i, (name, wnid) in enumerate(zip(grid["names"], grid["wnids"]))
    )
    style = (
        "<style>.tiles{display:flex;flex-wrap:wrap;gap:4px}.tiles figure{margin:0;width:80px;font-size:10px;"
        "text-align:center}.tiles div{width:64px;height:64px;margin:auto;background-image:"
        f"url('{url}')}}</style>"
    )
    return (
        f"{style}<h2>Every class's template (search by name with the browser's find)</h2>"
        f"<div class='tiles'>{tiles}</div>"
    )


def accuracy_section(page, group):
    page.parts.append("<h2>Accuracy per run</h2>")
    rows = []
    for run in group:
        try:
            rows.append(results.read_metrics(run))
            page.commands.append(rows[-1].get("command", f"make eval RUN={run.name}"))
        except (runs.RunError, files.DamagedFile) as err:
            page.notices.append(str(err))
            page.parts.append(f"<p class='notice'><b>Not shown:</b> {html.escape(str(err))}</p>")
    if rows:
        k = rows[0].get("top_k", 5)
        shown = [
            {
                **r,
                **{
                    f"{key} (95 %)": accuracy.interval_text(r[f"{key}_ci"])
                    for key in ("val_top1", "val_top5")
                    if f"{key}_ci" in r
                },
            }
            for r in _fmt(rows)
        ]
        page.parts += [
            source_line([source for r in rows for source in r["sources"]]),
            _table(
                shown,
                [
                    "run",
                    "data",
                    "iteration",
                    "val_top1 (95 %)",
                    "val_top5 (95 %)",
                    "val_images",
                    "val_subset",
                    "train_top1",
                    "train_images",
                ],
            ).replace("<th>val_top5 (95 %)</th>", f"<th>val_top{k} (95 %)</th>"),
            "<p>Intervals: Wilson 95 % over the n val images. Two runs' accuracies are compared paired, on the "
            "same images, in the claims table (McNemar).</p>",
        ]


FOOL_COLUMNS = [
    "start_class",
    "start_prob",
    "target",
    "target_prob",
    "alpha",
    "l2",
    "linf",
    "fooled",
    "clipping_changed_outcome",
]


def figures_section(page, run):
    """The blog's figures and their numbers; returns figures.json's numbers (None when not shown)."""
    page.parts.append("<h2>The blog's figures</h2>")
    numbers = page.result(*stages.result("figures", run), f"the figures of run {run.name}")
    if numbers is None:
        return None
    for name, caption in FIGURES:
        if (run.path / "figures" / name).is_file():
            url = page.asset(run.path / "figures" / name, f"figures/{name}")
            page.parts.append(f"<h2>{html.escape(caption)}</h2><img src='{url}'>")
            key = {
                "blog_fooling_image.png": "fooling_image",
                "blog_fooling_noise.png": "fooling_noise",
                "blog_regularization.png": "regularization",
            }.get(name)
            if key and key in numbers:
                cols = (["run", "val_top1", "smoothness"] if key == "regularization" else []) + FOOL_COLUMNS
                page.parts.append(_table(_fmt(numbers[key]), cols))
    if numbers.get("templates_grid"):
        page.parts.append(template_tiles(numbers["templates_grid"], f"{page.id_url}/figures/blog_templates_all.png"))
    toy = numbers["toy"]
    page.parts.append(
        f"<p>Toy: w.x = {toy['score']:g}, P = {toy['prob']:.4f}; after x + 0.5w: w.x = "
        f"{toy['score_adv']:g}, P = {toy['prob_adv']:.2f} (blog: -3, 0.0474; 2, 0.88).</p>"
    )
    return numbers


def curves_section(page, group):
    page.parts.append("<h2>Training curves</h2>")
    for run in group:
        curves = page.result(*stages.result("curves", run), f"the training curves of run {run.name}")
        if curves:
            page.parts.append(f"<img src='{page.asset(run.path / 'curves.png', f'curves/{run.name}.png')}'>")


def _intro(run, group, dataset):
    source = (
        "the embedded synthetic set (18 ImageNet classes drawn by linfool.data.synthetic)"
        if dataset.name == conventions.DEMO_DATA
        else f"data set '{dataset.name}'"
    )
    snapshots = "; ".join(
        f"{r.name}: {s['snapshot']} (iteration {s['iteration']}, sha256 {s['snapshot_sha256'][:8]})"
        for r, s in ((r, r.source()) for r in group)
    )
    return [
        f"<h1>linfool report: run {html.escape(run)}</h1>",
        f"<p>Reproducing Andrej Karpathy, <a href='{BLOG}'>Breaking Linear Classifiers on ImageNet</a> (2015), "
        f"with real Caffe. Data: {html.escape(source)}, identity {dataset.identity}. Current snapshots: "
        f"{html.escape(snapshots)}. Probabilities come from pycaffe forwards of each run's deploy net; L2 and "
        "Linf are in 0..255 pixel units. Every section below says which snapshots it was made from. See also "
        "Szegedy et al. 2013, <i>Intriguing properties of neural networks</i>, and Goodfellow et al. 2014, "
        "<i>Explaining and harnessing adversarial examples</i>.</p>",
    ]


def explore_section(page, run, numbers):
    """The explore section from the figures' explore data (made with them, from the same snapshot),
    its per-target files linked into this page's assets."""
    if numbers is None or not (run.path / "figures" / "explore.json").is_file():
        return
    data = files.read_json(run.path / "figures" / "explore.json", f"make figures RUN={run.name}")
    data["files"] = [page.asset(run.path / "figures" / name, name) for name in data["files"]]
    page.parts.append(explore_page.section(data))


STYLE = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px}"
    ".source{color:#555;font-size:12px}.notice{background:#fff3cd;border:1px solid #e0c060;padding:6px}</style>"
)


def write_report(run, low=None, high=None):
    """Write runs/<run>/report.html (replaced whole) from the stages' results; returns (its path,
    the notices of results not shown)."""
    group = runs.group(run, low, high)
    first = group[0]
    with runs.locked(write=[first], read=group[1:]):
        page = Page(first)
        try:
            page.parts += _intro(run, group, first.dataset())
            accuracy_section(page, group)
            numbers = figures_section(page, first)
            explore_section(page, first, numbers)
            claims_section(page, first)
            attack_curves_section(page, first)
            transfer_section(page, first)
            background_section(page, first)
            blackbox_section(page, group)
            deep_section(page, first)
            forest_section(page, first)
            adversarial_section(page, first)
            curves_section(page, group)
            page.parts.append(
                "<h2>Commands that made this</h2><pre>"
                + html.escape(
                    "\n".join(
                        dict.fromkeys(
                            [r.info["command"] for r in group]
                            + page.commands
                            + [cli.make_command("report", RUN=run, LOW=low, HIGH=high)]
                        )
                    )
                )
                + "</pre>"
            )
            out = first.path / "report.html"
            files.write_text(
                out,
                f"<!doctype html><html><head><meta charset='utf-8'><title>linfool {html.escape(run)}"
                f"</title>{STYLE}</head><body>{''.join(page.parts)}</body></html>\n",
            )
        except BaseException:
            shutil.rmtree(page.assets, ignore_errors=True)
            raise
        for old in (first.path / "report_assets").iterdir():  # the pages this one replaced
            if old != page.assets:
                shutil.rmtree(old, ignore_errors=True)
    return out, page.notices


def main(argv=None) -> int:
    args = stages.parse("report", argv)

    def body():
        out, notices = write_report(args.run, args.low, args.high)
        for notice in notices:
            print(f"not shown: {notice}")
        print(f"Report: {out}" + (f" ({len(notices)} section(s) not shown, see above)" if notices else ""))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
