"""`make report`: one self-contained HTML page with every figure and the numbers behind it.

    python -m linfool.report --run NAME [--low RUN --high RUN]    # runs/<name>/report.html

The page covers the run and its sweep companions (--low/--high, default linfool.runs.sweep_names)
that are trained, all on one data set; a run of another data set is refused, never shown.
"""
import argparse
import html
import json
import sys

import numpy as np

from linfool import caffe_env, curves, evaluate, explore, figures, runs

BLOG = "http://karpathy.github.io/2015/03/30/breaking-convnets/"
FIGURES = (
    ("blog_templates_selected.png", "Learned templates of a few classes (the blog's Granny Smith figure)."),
    ("blog_templates_all.png", "Templates of all classes."),
    ("blog_fooling_image.png", "A val image fooled into each target class with 99 % confidence."),
    ("blog_fooling_noise.png", "Random noise fooled into each target class."),
    ("blog_regularization.png", "The same image fooled on weakly and strongly regularized runs."),
    ("blog_toy_example.png", "The blog's toy example."),
)


def _table(rows, columns):
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(rows):
    keys_pct = ("start_prob", "target_prob", "val_top1", "val_top5", "train_top1", "train_top5")
    out = []
    for r in rows:
        out.append({k: (f"{100 * v:.1f} %" if k in keys_pct else f"{v:.4g}" if isinstance(v, float) else v)
                    for k, v in r.items()})
    return out


def _json(path):
    return json.loads(path.read_text()) if path.is_file() else None


def _missing(what, command):
    return f"<p><i>{html.escape(what)} not computed yet: run <code>{html.escape(command)}</code>.</i></p>"


def beyond_the_blog(run_dir):
    """HTML parts: claims table, attack curves, transfer matrix, background-class rounds, each with
    the command that recomputes it (from the json the module wrote)."""
    parts = ["<h2>The blog's claims, measured on these runs</h2>"]
    claims = _json(run_dir / "claims.json")
    if claims:
        parts += [_table(claims["rows"], ["claim", "how", "blog", "value", "verdict", "why"]),
                  f"<p>Recompute: <code>{html.escape(claims['command'])}</code></p>"]
    else:
        parts.append(_missing("The claims table", "make claims"))
    parts.append("<h2>Fooling difficulty: fraction fooled vs the Linf budget</h2>")
    curves = _json(run_dir / "attacks" / "attack_curves.json")
    if curves:
        parts += ["<p>Blog direction: epsilon * w_target / max|w_target|; sign direction: epsilon * "
                  "sign(w_target - w_true), the Linf-optimal one for a linear model. Dashed: the closed form, "
                  "no Linf perturbation can reach P = 0.99 below (s_true - s_target + ln 99) / "
                  f"||w_target - w_true||_1 (median ||w_target - w_true||_1 here: {curves['median_l1_gap_norm']:.3g}).</p>",
                  "<img src='attacks/attack_curves.png'><img src='attacks/attack_curves_runs.png'>",
                  f"<p>Recompute: <code>{html.escape(curves['command'])}</code></p>"]
    else:
        parts.append(_missing("Attack curves", "make attack-curves"))
    parts.append("<h2>Transfer between runs</h2>")
    transfer = _json(run_dir / "attacks" / "transfer.json")
    if transfer:
        rows = [{"made on": src, "fooled on source": n, **{f"classified by {d}": f"{100 * v:.0f} %"
                 for d, v in zip(transfer["runs"], row)}}
                for src, n, row in zip(transfer["runs"], transfer["fooled_on_source"], transfer["matrix"])]
        parts += ["<img src='attacks/transfer.png'>",
                  _table(rows, ["made on", "fooled on source", *[f"classified by {d}" for d in transfer["runs"]]]),
                  f"<p>Recompute: <code>{html.escape(transfer['command'])}</code></p>"]
    else:
        parts.append(_missing("The transfer matrix", "make transfer"))
    parts.append("<h2>Does a background class of fooling images help? (the blog says no)</h2>")
    background = _json(run_dir / "background" / "background.json")
    if background:
        rows = [{"round": r["round"], "background images": r["background_images"],
                 "val top-1": f"{100 * r['val_top1']:.1f} %", "median Linf, blog": f"{r['median_epsilon']['blog']:.1f}",
                 "median Linf, sign": f"{r['median_epsilon']['sign']:.1f}",
                 "control: median Linf, blog": f"{r['control']['median_epsilon']['blog']:.1f}",
                 "control: val top-1": f"{100 * r['control']['val_top1']:.1f} %",
                 "new fooling images now background": "" if r["caught"] is None else f"{100 * r['caught']:.0f} %"}
                for r in background["rounds"]]
        parts += ["<img src='background/background.png'>", _table(rows, list(rows[0])),
                  f"<p>Recompute: <code>{html.escape(background['command'])}</code></p>"]
    else:
        parts.append(_missing("The background-class rounds", "make background"))
    return parts


def blackbox_section(group):
    """HTML: fooling with scores only, one row per run of the group, and each run's true vs recovered
    templates (from runs/<run>/blackbox/blackbox.json, written by `make blackbox`)."""
    parts = ["<h2>Fooling without the weights: scores only</h2>"]
    results = [r for r in (_json(d / "blackbox" / "blackbox.json") for d in group) if r]
    if not results:
        return parts + [_missing("The black-box attacks", "make blackbox")]
    rows = []
    for r in results:
        med = lambda key: f"{float(np.median([row[key] for row in r['rows']])):.1f}"  # noqa: E731
        reached = lambda key: f"{sum(row[key] >= 0.99 - 1e-6 for row in r['rows'])}/{len(r['rows'])}"  # noqa: E731
        rows.append({"run": r["run"], "pairs": len(r["rows"]),
                     "white-box alpha attack: median Linf": med("whitebox_linf"),
                     "white-box: reached 0.99": reached("whitebox_prob"),
                     "square attack at that Linf: reached": f"{r['squares_reached']}/{len(r['rows'])}",
                     "median queries": r["squares_median_queries"],
                     "recovery queries": r["recovery"]["queries"],
                     "recovered vs true templates (centred): correlation": f"{r['recovery']['correlation_mean']:.6f}",
                     "fooling with recovered templates: median Linf": med("recovered_linf"),
                     "recovered: reached 0.99": reached("recovered_prob")})
    return parts + [
        "<p>Each run's Caffe model as an oracle: images in, probabilities out, each image one query. Square "
        "attack (Andriushchenko et al. 2020) with the Linf the blog's white-box attack needed on the same pair; "
        "exact recovery: log p_i - log p_j = s_i - s_j, so one query per pixel gives W minus its class mean, "
        "which then fools like the true templates.</p>",
        _table(rows, list(rows[0])),
        "".join(f"<img src='../{r['run']}/blackbox/blackbox.png'>" for r in results),
        f"<p>Recompute: <code>{html.escape(results[0]['command'])}</code></p>"]


def template_tiles(grid):
    """The all-templates mosaic as one tile per class with its name (CSS crops of the one PNG), so
    that 1000 templates can be browsed and found with the browser's search."""
    step = grid["tile"] + grid["gap"]
    tiles = "".join(
        f"<figure title='{html.escape(wnid)}'><div style='background-position:-{grid['gap'] + (i % grid['cols']) * step}px "
        f"-{grid['gap'] + (i // grid['cols']) * step}px'></div><figcaption>{html.escape(name)}</figcaption></figure>"
        for i, (name, wnid) in enumerate(zip(grid["names"], grid["wnids"])))
    style = ("<style>.tiles{display:flex;flex-wrap:wrap;gap:4px}.tiles figure{margin:0;width:80px;font-size:10px;"
             "text-align:center}.tiles div{width:64px;height:64px;margin:auto;background-image:"
             "url('figures/blog_templates_all.png')}</style>")
    return (f"{style}<h2>Every class's template (search by name with the browser's find)</h2>"
            f"<div class='tiles'>{tiles}</div>")


def write_report(run, low=None, high=None):
    """Write runs/<run>/report.html from figures.json, metrics.json and curves; returns its path."""
    group = runs.group(run, low, high)
    run_dir = group[0]
    figures_json = run_dir / "figures" / "figures.json"
    if not figures_json.is_file():
        raise FileNotFoundError(f"no {figures_json}; run `make figures RUN={run}` first")
    numbers = json.loads(figures_json.read_text())
    all_runs = [d.name for d in group]
    metrics = [evaluate.load_metrics(d) for d in group]
    for d in group:
        curves.make_curves(d)
    data = runs.info(run_dir)["data"]
    source = "the embedded synthetic set (18 ImageNet classes drawn by linfool.synthetic)" if data == "synthetic" \
        else f"data set '{data}'"
    fool_cols = ["start_class", "start_prob", "target", "target_prob", "alpha", "l2", "linf", "fooled",
                 "clipping_changed_outcome"]
    parts = [f"<h1>linfool report: run {html.escape(run)}</h1>",
             f"<p>Reproducing Andrej Karpathy, <a href='{BLOG}'>Breaking Linear Classifiers on ImageNet</a> (2015), "
             f"with real Caffe. Data: {html.escape(source)}. Probabilities come from pycaffe forwards of each "
             "run's deploy net; L2 and Linf are in 0..255 pixel units. See also Szegedy et al. 2013, "
             "<i>Intriguing properties of neural networks</i>, and Goodfellow et al. 2014, <i>Explaining and "
             "harnessing adversarial examples</i>.</p>",
             "<h2>Accuracy per run</h2>",
             _table(_fmt(metrics), ["run", "data", "iteration", "val_top1", "val_top5", "val_images", "val_subset",
                                    "train_top1", "train_images"])]
    for name, caption in FIGURES:
        if (run_dir / "figures" / name).is_file():
            parts.append(f"<h2>{html.escape(caption)}</h2><img src='figures/{name}'>")
            key = {"blog_fooling_image.png": "fooling_image", "blog_fooling_noise.png": "fooling_noise",
                   "blog_regularization.png": "regularization"}.get(name)
            if key and key in numbers:
                cols = (["run", "val_top1", "smoothness"] if key == "regularization" else []) + fool_cols
                parts.append(_table(_fmt(numbers[key]), cols))
    if numbers.get("templates_grid"):
        parts.append(template_tiles(numbers["templates_grid"]))
    parts.append(explore.section(run_dir, numbers.get("start", figures.START),
                                 numbers.get("targets", figures.TARGETS)[0]))
    toy = numbers["toy"]
    parts.append(f"<p>Toy: w.x = {toy['score']:g}, P = {toy['prob']:.4f}; after x + 0.5w: w.x = "
                 f"{toy['score_adv']:g}, P = {toy['prob_adv']:.2f} (blog: -3, 0.0474; 2, 0.88).</p>")
    parts += beyond_the_blog(run_dir)
    parts += blackbox_section(group)
    parts.append("<h2>Training curves</h2>" + "".join(f"<img src='../{r}/curves.png'>" for r in all_runs))
    parts.append("<h2>Commands that made this</h2><pre>" + html.escape("\n".join(
        [runs.info(d)["command"] for d in group]
        + [" ".join(["python -m linfool.report", *sys.argv[1:]])])) + "</pre>")
    style = "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}" \
            "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px}</style>"
    out = run_dir / "report.html"
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>linfool {html.escape(run)}</title>"
                   f"{style}</head><body>{''.join(parts)}</body></html>\n")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    runs.add_group_arguments(parser)
    args = parser.parse_args(argv)
    try:
        out = write_report(args.run, args.low, args.high)
    except (FileNotFoundError, runs.RunMismatch, caffe_env.DeviceError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    print(f"Report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
