"""`make background`: the blog's closing claim, tested with real Caffe fine-tuning.

    python -m linfool.background --run blog [--rounds 3] [--fool 300] [--iters 1000]

Blog: "introducing a background class and iteratively adding fooling images as a new background class
during training [is] not effective". Round 0 is the trained run. Each round r = 1..R:
  1. fool `--fool` train images of the current model into random other classes (the blog's attack,
     P(target) >= 0.99), rounded to 8-bit pixels;
  2. data/<data>_bg<r>/: the original train records plus every fooling image so far with the new
     label K ("background"), shuffled; the same mean and val LMDB;
  3. `caffe train --weights=<previous model>` on the net with K + 1 outputs for `--iters` iterations
     (round 1 starts from the run's weights with a zero background row: Caffe-style net surgery);
  4. measure: the median Linf needed to fool fresh val images into the K real classes (blog and
     sign directions, linfool.attacks), val top-1, and how many of this round's new fooling images
     the fine-tuned model now calls background;
  5. control arm: the same fine-tuning from the same start without background images (runs
     <run>_ctl<r>), measured the same way, so that longer training is not credited to the class.
Writes runs/<run>/background/background.json and background.png; the rounds are runs <run>_bg<r>.
Embedded demo data: 3 rounds of 300 images and 1000 iterations take about 4 minutes on 2 cores.
"""
import argparse
import json
import shutil
import sys

import lmdb
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from linfool import (attacks, caffe_env, datasets, datum, evaluate, fooling, lmdb_checks, paths,  # noqa: E402
                     train, weights)

BACKGROUND = ("background", "background")      # (wnid, name) of the added class in labels.txt
SEED = 1701
MEASURE_IMAGES = 10                            # val images per round's attack measurement


def make_fooling_images(classifier, images, labels, n, num_real, seed):
    """Fool n random train images into random other real classes: (m, 3, 64, 64) uint8 of the
    fooled ones (m <= n), rounded to 8 bits as an LMDB stores them."""
    rng = np.random.default_rng(seed)
    made = []
    for i in rng.choice(len(images), size=n, replace=False):
        target = rng.choice(np.delete(np.arange(num_real), labels[i]))
        result = fooling.fool(classifier, images[i].astype(np.float32), [target])[0]
        if result.fooled:
            made.append(np.clip(np.rint(result.image), 0, 255).astype(np.uint8))
    return np.array(made, np.uint8).reshape(-1, 3, 64, 64)


def write_round_data(source_dir, out_dir, background_images):
    """out_dir/{train_lmdb, val_lmdb -> source val, labels.txt}: the source train records plus the
    background images (label K), shuffled with a fixed seed; written atomically."""
    labels = datasets.read_labels(source_dir / "labels.txt")
    background_label = len(labels)
    records = [value for _, value in lmdb_checks.raw_records(source_dir / "train_lmdb")]
    records += [datum.encode_datum(image, background_label) for image in background_images]
    order = np.random.default_rng(SEED).permutation(len(records))
    partial = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "train_lmdb").mkdir(parents=True)
    env = lmdb.open(str(partial / "train_lmdb"), map_size=2 * sum(len(r) for r in records) + (1 << 24))
    with env.begin(write=True) as txn:
        for key, i in enumerate(order):
            txn.put(f"{key:08d}".encode(), records[i])
    env.close()
    shutil.copy(source_dir / "train_lmdb" / "mean.binaryproto", partial / "train_lmdb" / "mean.binaryproto")
    (partial / "train_lmdb" / "manifest.json").write_text(json.dumps(
        {"source": f"{source_dir.name} + {len(background_images)} fooling images as background",
         "options": {"num_classes": background_label + 1}, "records": len(records)}) + "\n")
    (partial / "val_lmdb").symlink_to((source_dir / "val_lmdb").resolve())
    with open(partial / "labels.txt", "w") as out:
        out.write("".join(f"{w} {n}\n" for w, n in [*labels, BACKGROUND]))
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def surgery_weights(run_dir, out):
    """A .caffemodel for the K + 1 output net: the run's W, b and a zero background row."""
    caffe = caffe_env.import_caffe()
    params = weights.load(run_dir)
    deploy = (run_dir / "deploy.prototxt").read_text().replace(
        f"num_output: {len(params['W'])}", f"num_output: {len(params['W']) + 1}")
    path = out.with_suffix(".prototxt")
    path.write_text(deploy)
    net = caffe.Net(str(path), caffe.TEST)
    net.params["fc"][0].data[...] = np.vstack([params["W"], np.zeros_like(params["W"][:1])])
    net.params["fc"][1].data[...] = np.append(params["b"], 0.0)
    net.save(str(out))
    return out


def measure(run_dir, num_real, n_images=MEASURE_IMAGES):
    """Attack difficulty into the real classes, val top-1: dict for one round."""
    curves = attacks.attack_curves(run_dir, n_images, num_classes=num_real)
    metrics = evaluate.evaluate(run_dir)
    return {"run": run_dir.name, "median_epsilon": curves["median_epsilon"], "curves": curves["curves"],
            "epsilons": curves["epsilons"], "val_top1": metrics["val_top1"]}


def fine_tune(run, info, data, model, iterations):
    """`caffe train --weights=model` of the run's solver on data set `data` into runs/<run>/;
    returns the new snapshot."""
    code = train.train(run, data, info["solver"], info["overlays"],
                       [*info["settings"], f"max_iter={iterations}", f"snapshot={iterations}"],
                       gpu="auto", extra=[f"--weights={model}"])
    if code != 0:
        raise RuntimeError(f"caffe train exited with {code}; see {paths.run_dir(run) / 'train.log'}")
    return weights.newest_caffemodel(paths.run_dir(run))


def run_rounds(run, rounds, n_fool, iterations, n_measure=MEASURE_IMAGES):
    """Round 0 and the background rounds, each beside a control arm fine-tuned for as long on the
    same K + 1 output net without background images (so that longer training is not mistaken for the
    background class's effect). Returns one dict per round."""
    run_dir = paths.run_dir(run)
    info = json.loads((run_dir / "run.json").read_text())
    source = paths.dataset_dir(info["data"])
    images, labels = evaluate.read_lmdb(source / "train_lmdb", limit=20000)
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
        new = make_fooling_images(fooling.Classifier(current), images, labels, n_fool, num_real, SEED + r)
        background = np.concatenate([background, new])
        write_round_data(source, paths.dataset_dir(f"{info['data']}_bg{r}"), background)
        model = fine_tune(f"{run}_bg{r}", info, f"{info['data']}_bg{r}", model, iterations)
        control = fine_tune(f"{run}_ctl{r}", info, control_data, control, iterations)
        current = model.parent
        caught = fooling.Classifier(current).probs(new.astype(np.float32)).argmax(axis=1) == num_real
        results.append({**measure(current, num_real, n_measure), "round": r, "background_images": len(background),
                        "new_fooling_images": len(new), "caught": float(caught.mean()) if len(new) else None,
                        "control": measure(control.parent, num_real, n_measure)})
        print(f"round {r}: {len(background)} background images; median Linf to fool (blog direction): "
              f"{results[-1]['median_epsilon']['blog']:.1f}, control without background "
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
    except (FileNotFoundError, RuntimeError, train.TrainConfigError, lmdb_checks.LmdbError) as err:
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
