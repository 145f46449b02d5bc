"""`make background`: the blog's closing claim, tested with real Caffe fine-tuning.

    python -m linfool.background --run blog [--rounds 3] [--fool 300] [--iters 1000]

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
     sign directions, linfool.attacks), val top-1 over every val record, and how many of this round's
     new fooling images the fine-tuned model now calls background;
  5. control arm: the same fine-tuning from the same start on the original data with K + 1 outputs
     and no background images (runs <run>_ctl<r>), measured the same way, so that longer training is
     not credited to the class.
Memory holds one round's fooling images and one batch of records, whatever the train set's size.
Writes runs/<run>/background/background.json and background.png; the rounds are runs <run>_bg<r>.
Embedded demo data: 3 rounds of 300 images and 1000 iterations take about 4 minutes on 2 cores.
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import matplotlib
import numpy as np
from google.protobuf import text_format

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from linfool import (attacks, caffe_env, datasets, datum, evaluate, fooling, paths, records, runs,  # noqa: E402
                     train, weights)

BACKGROUND = ("background", "background")      # (wnid, name) of the added class in labels.txt
SEED = 1701
MEASURE_IMAGES = 10                            # val images per round's attack measurement
MEASURE_TARGETS = 17                           # targets per image (every other class on the demo)


def make_fooling_images(classifier, train_lmdb, n, num_real, seed):
    """Fool n train records (a seeded sample) into random other real classes: (m, 3, 64, 64) uint8
    of the fooled ones (m <= n), rounded to 8 bits as an LMDB stores them."""
    rng = np.random.default_rng(seed)
    images, labels = records.read(train_lmdb, records.random_positions(records.count(train_lmdb), n, seed))
    made = []
    for image, label in zip(images, labels):
        target = rng.choice(np.delete(np.arange(num_real), label))
        result = fooling.fool(classifier, image.astype(np.float32), [target])[0]
        if result.fooled:
            made.append(np.clip(np.rint(result.image), 0, 255).astype(np.uint8))
    return np.array(made, np.uint8).reshape(-1, 3, 64, 64)


def write_round_data(source_dir, out_dir, background_images):
    """out_dir/: labels.txt (the K classes + background), train_lmdb and val_lmdb linked to the
    source's, and (when there are images) background_lmdb holding them with label K, in a seeded
    order. Appears atomically."""
    labels = datasets.read_labels(source_dir / "labels.txt")
    partial = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    final = out_dir.parent.resolve() / out_dir.name       # where the links end up once `partial` is renamed
    for split in ("train_lmdb", "val_lmdb"):       # relative links: data/ may be seen from a host and a container
        (partial / split).symlink_to(os.path.relpath((source_dir / split).resolve(), final))
    if len(background_images):
        order = np.random.default_rng(SEED).permutation(len(background_images))
        records.write(partial / "background_lmdb",
                      ((f"{k:08d}_background".encode(), datum.encode_datum(background_images[i], len(labels)))
                       for k, i in enumerate(order)), len(order), num_classes=len(labels) + 1)
    with open(partial / "labels.txt", "w") as out:
        out.write("".join(f"{w} {n}\n" for w, n in [*labels, BACKGROUND]))
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def background_batch(n_train, n_background, batch=256):
    """Background records per TRAIN batch: their share of the union, at least 1."""
    return max(1, round(batch * n_background / (n_train + n_background)))


def mixed_net(run_dir, background, out):
    """Write the run's train_val net with its TRAIN batch split over two Data layers (the original
    LMDB and background_lmdb, `background` records a batch) joined by Concat layers; returns `out`.
    Net surgery through protobuf; make train resolves each source name in the round's data set."""
    pb2 = caffe_env.import_caffe().proto.caffe_pb2
    net = text_format.Parse((run_dir / "train_val.prototxt").read_text(), pb2.NetParameter())
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
        concat = extra.layer.add(name=f"{top}_mix", type="Concat", bottom=[f"{top}_real", f"{top}_background"],
                                 top=[top])
        concat.concat_param.axis = 0
        concat.include.add(phase=pb2.TRAIN)
    first_compute = next(i for i, layer in enumerate(net.layer) if layer.type != "Data")
    layers = list(net.layer)
    del net.layer[:]
    net.layer.extend(layers[:first_compute] + list(extra.layer) + layers[first_compute:])
    Path(out).write_text(text_format.MessageToString(net))
    return out


def surgery_weights(run_dir, out):
    """A .caffemodel for the K + 1 output net: the run's W, b and a zero background row."""
    caffe = caffe_env.use_device()
    params = weights.load(run_dir)
    deploy = text_format.Parse((run_dir / "deploy.prototxt").read_text(), caffe.proto.caffe_pb2.NetParameter())
    train.fc_layer(deploy).inner_product_param.num_output = len(params["W"]) + 1
    path = out.with_suffix(".prototxt")
    path.write_text(text_format.MessageToString(deploy))
    net = caffe.Net(str(path), caffe.TEST)
    net.params["fc"][0].data[...] = np.vstack([params["W"], np.zeros_like(params["W"][:1])])
    net.params["fc"][1].data[...] = np.append(params["b"], 0.0)
    net.save(str(out))
    return out


def measure(run_dir, num_real, n_images=MEASURE_IMAGES):
    """Attack difficulty into the real classes, val top-1: dict for one round."""
    curves = attacks.attack_curves(run_dir, n_images, n_images * MEASURE_TARGETS, num_classes=num_real)
    metrics = evaluate.evaluate(run_dir)
    return {"run": run_dir.name, "median_epsilon": curves["median_epsilon"], "curves": curves["curves"],
            "epsilons": curves["epsilons"], "pairs": curves["pairs"], "val_top1": metrics["val_top1"],
            "val_images": metrics["val_images"]}


def fine_tune(run, info, data, model, iterations, net=None):
    """`caffe train --weights=model` of the run's solver (or with `net` as its net) on data set
    `data` into runs/<run>/; returns the new snapshot."""
    settings = [*info["settings"], f"max_iter={iterations}", f"snapshot={iterations}"]
    code = train.train(run, data, info["solver"], info["overlays"], settings + ([f'net="{net}"'] if net else []),
                       gpu="auto", extra=[f"--weights={model}"])
    if code != 0:
        raise RuntimeError(f"caffe train exited with {code}; see {paths.run_dir(run) / 'train.log'}")
    return weights.newest_caffemodel(paths.run_dir(run))


def run_rounds(run, rounds, n_fool, iterations, n_measure=MEASURE_IMAGES):
    """Round 0 and the background rounds, each beside a control arm fine-tuned for as long on the
    same K + 1 output net without background images (so that longer training is not mistaken for the
    background class's effect). Returns one dict per round."""
    run_dir = paths.run_dir(run)
    info = runs.info(run_dir)
    source = runs.data_dir(run_dir)
    train_lmdb = source / "train_lmdb"
    n_train = records.count(train_lmdb)
    num_real = len(datasets.read_labels(source / "labels.txt"))
    round0 = measure(run_dir, num_real, n_measure)
    results = [{**round0, "round": 0, "background_images": 0, "caught": None, "control": round0}]
    control_data = f"{info['data']}_bg0"
    write_round_data(source, paths.dataset_dir(control_data), np.zeros((0, 3, 64, 64), np.uint8))
    surgery_dir = paths.run_dir(f"{run}_bg_surgery")
    surgery_dir.mkdir(parents=True, exist_ok=True)
    model = control = surgery_weights(run_dir, surgery_dir / "surgery.caffemodel")
    current, background = run_dir, np.zeros((0, 3, 64, 64), np.uint8)
    for r in range(1, rounds + 1):
        new = make_fooling_images(fooling.Classifier(current), train_lmdb, n_fool, num_real, SEED + r)
        background = np.concatenate([background, new])
        round_data = paths.dataset_dir(f"{info['data']}_bg{r}")
        write_round_data(source, round_data, background)
        per_batch = background_batch(n_train, len(background))
        net = mixed_net(run_dir, per_batch, round_data / "train_val.prototxt")
        model = fine_tune(f"{run}_bg{r}", info, round_data.name, model, iterations, net)
        control = fine_tune(f"{run}_ctl{r}", info, control_data, control, iterations)
        current = model.parent
        caught = fooling.Classifier(current).probs(new.astype(np.float32)).argmax(axis=1) == num_real
        results.append({**measure(current, num_real, n_measure), "round": r, "background_images": len(background),
                        "background_per_batch": per_batch, "new_fooling_images": len(new),
                        "caught": float(caught.mean()) if len(new) else None,
                        "control": measure(control.parent, num_real, n_measure)})
        print(f"round {r}: {len(background)} background images ({per_batch} per batch of 256); median Linf to "
              f"fool (blog direction): {results[-1]['median_epsilon']['blog']:.1f}, control without background "
              f"{results[-1]['control']['median_epsilon']['blog']:.1f}; this round's fooling images now called "
              f"background: {100 * (results[-1]['caught'] or 0):.0f} %", flush=True)
    return results


def plot_rounds(results, out):
    """Left: fooled fraction vs epsilon per round (blog direction). Right: median epsilon per round."""
    fig, (ax_curves, ax_rounds) = plt.subplots(1, 2, figsize=(11, 4))
    for result in results:
        ax_curves.plot(result["epsilons"], result["curves"]["blog"], label=f"round {result['round']}")
    ax_curves.set(xlabel="Linf budget epsilon (0..255)", ylabel="fraction fooled to P >= 0.99",
                  title="Blog-direction attack after each round", xlim=(0, 255))
    ax_curves.set_xscale("symlog", linthresh=4)
    ax_curves.legend(fontsize=8)
    rounds = [r["round"] for r in results]
    for kind, color in (("blog", "C0"), ("sign", "C1")):
        ax_rounds.plot(rounds, [r["median_epsilon"][kind] for r in results], "o-", color=color,
                       label=f"{kind} direction, with background class")
        ax_rounds.plot(rounds, [r["control"]["median_epsilon"][kind] for r in results], "s--", color=color,
                       label=f"{kind} direction, control (same fine-tuning, no background images)")
    ax_rounds.set(xlabel="round (fooling images added as background, then fine-tuned)",
                  ylabel="median Linf to fool (0..255)", title="Does a background class help?", xticks=rounds)
    ax_rounds.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="blog")
    parser.add_argument("--rounds", type=int, default=3)
    # 300 per round = as many as one real class has in the embedded set, so the background class is
    # not starved; 1000 iterations = about 50 epochs of the embedded set's 5,400 train images.
    parser.add_argument("--fool", type=int, default=300, help="fooling images added per round")
    parser.add_argument("--iters", type=int, default=1000, help="fine-tuning iterations per round")
    parser.add_argument("--measure-images", type=int, default=MEASURE_IMAGES, help="val images per measurement")
    args = parser.parse_args(argv)
    try:
        results = run_rounds(args.run, args.rounds, args.fool, args.iters, args.measure_images)
    except (FileNotFoundError, RuntimeError, train.TrainConfigError, records.LmdbError, caffe_env.DeviceError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    out = paths.run_dir(args.run) / "background"
    out.mkdir(parents=True, exist_ok=True)
    command = f"python -m linfool.background --run {args.run} --rounds {args.rounds} --fool {args.fool} --iters {args.iters}"
    (out / "background.json").write_text(json.dumps({"command": command, "rounds": results}, indent=1) + "\n")
    plot_rounds(results, out / "background.png")
    print(f"Background-class rounds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
