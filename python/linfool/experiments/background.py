"""`make background`: the blog's closing claim, tested with real Caffe fine-tuning.

    python -m linfool background --run blog [--rounds 3] [--fool 300] [--iters 1000]

Blog: "introducing a background class and iteratively adding fooling images as a new background class
during training [is] not effective". Round 0 is the trained run. Each round r = 1..R:
  1. fool `--fool` train records (a seeded sample, read from the LMDB) of the current model into
     random other classes (the blog's attack, P(target) >= 0.99), rounded to 8-bit pixels;
  2. data/<data>_bg<r>/: background_lmdb with every fooling image so far, label K ("background");
     train_lmdb and val_lmdb are links to the original ones (never a copy: ImageNet's is 21 GB);
  3. `caffe train --weights=<previous model>` for `--iters` iterations on the net with K + 1 outputs
     whose TRAIN batch mixes two Caffe Data layers with a Concat: 256 - b original records and b
     background records, b = max(1, round(256 * background / (train + background))), the share a
     shuffled union of the two would have (round 1 starts from the run's weights with a zero
     background row: net surgery through protobuf);
  4. measure: the median Linf needed to fool fresh val images into the K real classes (blog and
     sign directions, linfool.experiments.attack_curves), val top-1 over every val record, and how many of this round's
     new fooling images the fine-tuned model now calls background;
  5. control arm: the same fine-tuning from the same start on the original data with K + 1 outputs
     and no background images (runs <run>_ctl<r>), measured the same way, so that longer training is
     not credited to the class.
Memory holds one round's fooling images and one batch of records, whatever the train set's size.
Writes runs/<run>/background/background.json and background.png; the rounds are runs <run>_bg<r>.
Embedded demo data: 3 rounds of 300 images and 1000 iterations take about 4 minutes on 2 cores.
"""

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from linfool.attacks import blog
from linfool.core import (
    caffe_env,
    cli,
    conventions,
    datasets,
    datum,
    files,
    paths,
    prototxt,
    records,
    runs,
    stages,
    stats,
)
from linfool.core.plots import plt, save
from linfool.experiments import accuracy, difficulty
from linfool.model import train, weights
from linfool.model.classifier import Classifier

BACKGROUND = ("background", "background")  # (wnid, name) of the added class in labels.txt
SEED = conventions.SEED
MEASURE_IMAGES = stages.default("background", "measure_images")  # val images per measurement
ROUNDS = stages.default("background", "rounds")
# 300 per round = as many as one real class has in the embedded set, so the background class is not
# starved; 1000 iterations = about 50 epochs of the embedded set's 5,400 train images.
FOOL = stages.default("background", "fool")  # fooling images added per round
ITERS = stages.default("background", "iters")  # fine-tuning iterations per round (and per control arm)
MEASURE_TARGETS = 17  # targets per image (every other class on the demo)


def make_fooling_images(classifier, train_lmdb, n, num_real, seed):
    """Fool n train records (a seeded sample) into random other real classes: (m, 3, 64, 64) uint8
    of the fooled ones (m <= n), rounded to 8 bits as an LMDB stores them. All n are fooled together
    (blog.fool_each: 28 batched forwards, not 28 per image)."""
    rng = np.random.default_rng(seed)
    images, labels = records.read(train_lmdb, records.random_positions(records.count(train_lmdb), n, seed))
    targets = [rng.choice(np.delete(np.arange(num_real), label)) for label in labels]
    results = blog.fool_each(classifier, images.astype(np.float32), targets)
    made = [np.clip(np.rint(result.image), 0, 255).astype(np.uint8) for result in results if result.fooled]
    return np.array(made, np.uint8).reshape(-1, *conventions.IMAGE_SHAPE)


def write_round_data(source, out, background_images, per_batch=None, run=None):
    """Publish the round's data set at `out` (linfool.core.datasets, whole): labels.txt (the K classes +
    background), train_lmdb and val_lmdb linked to the source set's (relative links, never a copy),
    and (when there are images) background_lmdb holding them with label K, in a seeded order, with
    the run's mixed net for it (mixed_net, `per_batch` background records a batch) as
    train_val_mixed.prototxt. Returns the published DataSet."""
    labels = source.labels()
    made_by = {"made_by": f"make background RUN={run.name}" if run is not None else "make background"}
    with datasets.building(out, made_by) as build:
        for split in ("train", "val"):  # relative links: data/ may be seen from a host and a container
            (build.dir / f"{split}_lmdb").symlink_to(os.path.relpath(source.lmdb(split).resolve(), build.dir))
        if len(background_images):
            order = np.random.default_rng(SEED).permutation(len(background_images))
            records.write(
                build.dir / "background_lmdb",
                (
                    (f"{k:08d}_background".encode(), datum.encode_datum(background_images[i], len(labels)))
                    for k, i in enumerate(order)
                ),
                len(order),
                num_classes=len(labels) + 1,
            )
            mixed_net(run, per_batch, build.dir / "train_val_mixed.prototxt")
        files.write_text(build.dir / "labels.txt", "".join(f"{w} {n}\n" for w, n in [*labels, BACKGROUND]))
        return build.publish()


def background_batch(n_train, n_background, batch=256):
    """Background records per TRAIN batch: their share of the union, at least 1."""
    return max(1, round(batch * n_background / (n_train + n_background)))


def mixed_net(run_dir, background, out):
    """Write the run's train_val net with its TRAIN batch split over two Data layers (the original
    LMDB and background_lmdb, `background` records a batch) joined by Concat layers; returns `out`.
    Net surgery through protobuf; make train resolves each source name in the round's data set."""
    pb2 = caffe_env.import_caffe().proto.caffe_pb2
    net = prototxt.read_net(run_dir.path / "train_val.prototxt")
    real = next(layer for layer in net.layer if layer.type == "Data" and layer.include[0].phase == pb2.TRAIN)
    batch = real.data_param.batch_size
    real.data_param.batch_size = batch - background
    real.top[:] = ["data_real", "label_real"]
    extra = pb2.NetParameter()
    bg = extra.layer.add()
    bg.CopyFrom(real)
    bg.name, bg.top[:] = "background", ["data_background", "label_background"]
    bg.data_param.source, bg.data_param.batch_size = "background_lmdb", background
    for top in ("data", "label"):
        concat = extra.layer.add(
            name=f"{top}_mix", type="Concat", bottom=[f"{top}_real", f"{top}_background"], top=[top]
        )
        concat.concat_param.axis = 0
        concat.include.add(phase=pb2.TRAIN)
    first_compute = next(i for i, layer in enumerate(net.layer) if layer.type != "Data")
    layers = list(net.layer)
    del net.layer[:]
    net.layer.extend(layers[:first_compute] + list(extra.layer) + layers[first_compute:])
    Path(out).write_text(prototxt.text(net))
    return out


def surgery_weights(run_dir, out):
    """A .caffemodel for the K + 1 output net: the run's W, b and a zero background row."""
    caffe = caffe_env.use_device()
    params = weights.load(run_dir)
    deploy = prototxt.read_net(run_dir.path / "deploy.prototxt")
    prototxt.fc_layer(deploy).inner_product_param.num_output = len(params["W"]) + 1
    path = out.with_suffix(".prototxt")
    path.write_text(prototxt.text(deploy))
    net = caffe.Net(str(path), caffe.TEST)
    net.params["fc"][0].data[...] = np.vstack([params["W"], np.zeros_like(params["W"][:1])])
    net.params["fc"][1].data[...] = np.append(params["b"], 0.0)
    net.save(str(out))
    return out


def measure(run_dir, num_real, n_images=MEASURE_IMAGES):
    """Attack difficulty into the real classes, val top-1: dict for one round."""
    curves = difficulty.attack_curves(
        run_dir, n_images=n_images, pairs=n_images * MEASURE_TARGETS, num_classes=num_real
    )
    metrics = accuracy.measure(run_dir)
    return {
        "run": run_dir.name,
        "median_epsilon": curves["median_epsilon"],
        "median_epsilon_ci": curves["median_epsilon_ci"],  # 95 %, order statistics
        "first_epsilon": curves["first_epsilon"],  # each pair's Linf: the round and its control share the pairs
        "curves": curves["curves"],
        "bands": curves["bands"],
        "epsilons": curves["epsilons"],
        "pairs": curves["pairs"],
        "val_top1": metrics["val_top1"],
        "val_top1_ci": metrics["val_top1_ci"],
        "val_images": metrics["val_images"],
    }


def fine_tune(run, info, data, model, iterations, command, net=None):
    """`caffe train --weights=model` of the run's solver (or with `net` as its net) on data set
    `data` into runs/<run>/, on the device GPU= chose; returns the new snapshot's path. `command` is
    recorded in the round's run.json (the make command that remakes the rounds)."""
    settings = [*info["settings"], f"max_iter={iterations}", f"snapshot={iterations}"]
    code = train.train(
        run,
        data=data,
        solver_file=info["solver"],
        overlays=info["overlays"],
        settings=settings + ([f'net="{net}"'] if net else []),
        extra=[f"--weights={model}"],
        command=command,
        fresh=True,  # the round's runs are this stage's own results: a rerun of make background remakes them
    )
    if code != 0:
        raise runs.RunError(f"caffe train exited with {code}; see {paths.run_dir(run) / 'train.log'}")
    return runs.Run.named(run).snapshot().path


def _round(run, r, state, source, iterations, n_measure):
    """One round: fool, publish the round's data, fine-tune it and its control, measure both."""
    num_real = source.num_classes
    new = make_fooling_images(Classifier(state["current"]), source.lmdb("train"), state["n_fool"], num_real, SEED + r)
    state["background"] = np.concatenate([state["background"], new])
    per_batch = background_batch(records.count(source.lmdb("train")), len(state["background"]))
    round_data = write_round_data(
        source, paths.dataset_dir(f"{source.name}_bg{r}"), state["background"], per_batch, run
    )
    state["model"] = fine_tune(
        f"{run.name}_bg{r}",
        run.info,
        round_data.name,
        state["model"],
        iterations,
        state["command"],
        round_data.root / "train_val_mixed.prototxt",
    )
    state["control"] = fine_tune(
        f"{run.name}_ctl{r}", run.info, state["control_data"], state["control"], iterations, state["command"]
    )
    state["current"] = runs.Run(state["model"].parent)
    caught = Classifier(state["current"]).probs(new.astype(np.float32)).argmax(axis=1) == num_real
    result = {
        **measure(state["current"], num_real, n_measure),
        "round": r,
        "background_images": len(state["background"]),
        "background_per_batch": per_batch,
        "new_fooling_images": len(new),
        "caught": float(caught.mean()) if len(new) else None,
        "control": measure(runs.Run(state["control"].parent), num_real, n_measure),
    }
    print(
        f"round {r}: {len(state['background'])} background images ({per_batch} per batch of 256); median Linf to "
        f"fool (blog direction, n = {result['pairs']} pairs, 95 % order statistics): "
        f"{stats.linf_text(result['median_epsilon_ci']['blog'])}, control without background "
        f"{stats.linf_text(result['control']['median_epsilon_ci']['blog'])}; this round's fooling images now called "
        f"background: {100 * (result['caught'] or 0):.0f} % of {len(new)}",
        flush=True,
    )
    return result


def run_rounds(run, *, rounds, n_fool, iterations, n_measure=MEASURE_IMAGES, command=None):
    """Round 0 and the background rounds, each beside a control arm fine-tuned for as long on the
    same K + 1 output net without background images (so that longer training is not mistaken for the
    background class's effect). Returns one dict per round."""
    source = run.dataset()
    round0 = measure(run, source.num_classes, n_measure)
    results = [{**round0, "round": 0, "background_images": 0, "caught": None, "control": round0}]
    control_data = write_round_data(
        source, paths.dataset_dir(f"{source.name}_bg0"), np.zeros((0, *conventions.IMAGE_SHAPE), np.uint8)
    )
    surgery = runs.Run.named(f"{run.name}_bg_surgery")
    surgery.path.mkdir(parents=True, exist_ok=True)
    model = surgery_weights(run, surgery.path / "surgery.caffemodel")
    state = {
        "current": run,
        "background": np.zeros((0, *conventions.IMAGE_SHAPE), np.uint8),
        "model": model,
        "control": model,
        "control_data": control_data.name,
        "n_fool": n_fool,
        "command": command or f"make background RUN={run.name}",
    }
    for r in range(1, rounds + 1):
        results.append(_round(run, r, state, source, iterations, n_measure))
    return results


def plot_rounds(results, out):
    """Left: fooled fraction vs epsilon per round (blog direction). Right: median epsilon per round."""
    fig, (ax_curves, ax_rounds) = plt.subplots(1, 2, figsize=(11, 4))
    for result in results:
        line = ax_curves.plot(result["epsilons"], result["curves"]["blog"], label=f"round {result['round']}")
        if "bands" in result:
            ax_curves.fill_between(
                result["epsilons"], *result["bands"]["blog"], color=line[0].get_color(), alpha=0.12, lw=0
            )
    ax_curves.set(
        xlabel="Linf budget epsilon (0..255)",
        ylabel="fraction fooled to P >= 0.99",
        title=f"Blog-direction attack after each round (n = {results[0]['pairs']}, 95 % bands)",
        xlim=(0, 255),
    )
    ax_curves.set_xscale("symlog", linthresh=4)
    ax_curves.legend(fontsize=8)
    rounds = [r["round"] for r in results]
    for kind, color in (("blog", "C0"), ("sign", "C1")):
        for arm, marker, label in (
            (results, "o-", "with background class"),
            ([r["control"] for r in results], "s--", "control (same fine-tuning, no background images)"),
        ):
            medians = [a["median_epsilon"][kind] for a in arm]
            if all("median_epsilon_ci" in a for a in arm):  # 95 % order-statistic intervals as error bars
                found = [a["median_epsilon_ci"][kind] for a in arm]
                below = [m - f["low"] for m, f in zip(medians, found)]
                above = [min(f["high"], 255) - m for m, f in zip(medians, found)]
                ax_rounds.errorbar(
                    rounds,
                    medians,
                    yerr=[below, above],
                    fmt=marker,
                    color=color,
                    capsize=3,
                    label=f"{kind} direction, {label}",
                )
            else:
                ax_rounds.plot(rounds, medians, marker, color=color, label=f"{kind} direction, {label}")
    ax_rounds.set(
        xlabel="round (fooling images added as background, then fine-tuned)",
        ylabel="median Linf to fool (0..255), 95 % bars",
        title=f"Does a background class help? (n = {results[0]['pairs']} pairs a round)",
        xticks=rounds,
    )
    ax_rounds.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    save(fig, out)


def _round_locks(stack, run, rounds):
    """Exclusive locks on what the rounds write: their runs and data sets (train takes them again)."""
    data = run.dataset().name
    for name in [
        f"{run.name}_bg_surgery",
        *(f"{run.name}_{kind}{r}" for r in range(1, rounds + 1) for kind in ("bg", "ctl")),
    ]:
        stack.enter_context(runs.Run.named(name).lock())
    for r in range(rounds + 1):
        stack.enter_context(datasets.write_lock(paths.dataset_dir(f"{data}_bg{r}")))


def main(argv=None) -> int:
    args = stages.parse("background", argv)

    def body():
        run = runs.Run.named(args.run)
        command = stages.command("background", args)
        with ExitStack() as stack:
            stack.enter_context(runs.locked(write=[run]))
            _round_locks(stack, run, args.rounds)
            results = run_rounds(
                run,
                rounds=args.rounds,
                n_fool=args.fool,
                iterations=args.iters,
                n_measure=args.measure_images,
                command=command,
            )
            with files.building_dir(run.path / "background") as out:
                plot_rounds(results, out / "background.png")
                files.write_json(
                    out / "background.json", {"command": command, "rounds": results, "sources": [run.source()]}
                )
        print(f"Background-class rounds in {run.path / 'background'}")

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
