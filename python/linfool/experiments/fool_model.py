"""`make fool`: fool any Caffe classifier you have by backprop through Caffe (the post's first half:
"backpropagate to the pixels", with no change to the net but force_backward).

    make fool MODEL=deploy.prototxt WEIGHTS=net.caffemodel IMAGE=photo.jpg TARGET=goldfish|3
              [MEAN=mean.binaryproto | MEAN_VALUES=104,117,123] [SCALE=0.00390625] [CHANNELS=bgr|rgb|gray]
              [LABELS=synsets.txt] [EPS=16] [STEPS=100]

The image is read and resized to the net's input as convert_imageset does (OpenCV, bilinear), in the
net's channel order (CHANNELS: bgr, Caffe's own, by default; gray for 1-channel nets); the net sees
(pixels - mean) * scale, as Caffe's transform_param computes it. The attack is the iterative Linf one
(linfool.attacks.gradient.projected) under EPS pixel units (0..255) until P(target) >= 0.99,
every step in whole pixel values, so "fooled" is judged on exactly the image the PNG holds. MODEL and
WEIGHTS are checked before Caffe reads them (one input; every learned layer of MODEL in WEIGHTS with
its shapes); the WEIGHTS or MODEL of a linfool run (runs/<run>/) subtract its data set's mean unless
MEAN= or MEAN_VALUES= is given.

Writes runs/fool/<weights>-<image>-to-<target>-<key>/ (paths.fool_dir; whole, or not at all):
original.png and fooled.png (8-bit, the net's input size, lossless), fooled.npy (the exact (C, H, W)
float32 pixels), fool.png (the figure) and result.json (P(target) and the top 5 before and after,
the perturbation's Linf / L2, the command). A rerun of the same model, weights, image and target
replaces its folder, and says so.
"""

import re
import sys
from pathlib import Path

import cv2
import numpy as np

from linfool.attacks import CONFIDENCE, LADDER, gradient
from linfool.core import cli, datum, files, paths, runs, stages, stats
from linfool.data.images import opencv_reason
from linfool.model.gradients import Differentiable

CHANNELS = ("bgr", "rgb", "gray")


def read_image(path, shape, channels="bgr"):
    """The image file as the net's input: (C, H, W) float32 pixels 0..255 in the net's channel order,
    resized to (H, W) with cv::resize's default (bilinear). shape: the net's (C, H, W)."""
    if len(shape) != 3:
        raise cli.UserError(
            f"the net's input is {tuple(shape)} per example, not an image (C, H, W): it cannot take IMAGE="
        )
    c, h, w = shape
    if channels not in CHANNELS:
        raise cli.UserError(f"CHANNELS={channels!r}: use one of {', '.join(CHANNELS)}")
    if (c == 1) != (channels == "gray") or c not in (1, 3):
        raise cli.UserError(
            f"the net's input has {c} channel(s) ({c}x{h}x{w}); CHANNELS={channels} gives "
            f"{1 if channels == 'gray' else 3}: use {'CHANNELS=gray' if c == 1 else 'CHANNELS=bgr or rgb'}"
            + ("" if c in (1, 3) else " (an image has 1 or 3 channels: this net cannot take one)")
        )
    try:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if c == 1 else cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30)
        raise cli.UserError(f"IMAGE={path}: OpenCV refuses to decode it ({opencv_reason(err)})") from None
    if image is None:
        raise cli.UserError(f"IMAGE={path}: not a readable image file (OpenCV could not decode it)")
    image = cv2.resize(image, (w, h)).reshape(h, w, c)
    if channels == "rgb":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


def read_mean(mean_file, mean_values, shape):
    """(mean in pixel units, a note): a (C, H, W) binaryproto of the net's input size as it is, one of
    another size as its per-channel means (what pycaffe users do for a 256x256 mean on a 227 net),
    MEAN_VALUES as given; (None, 'none') without either."""
    if mean_file and mean_values:
        raise cli.UserError("give MEAN= or MEAN_VALUES=, not both")
    if mean_values:
        try:
            values = np.array([float(v) for v in mean_values.split(",")], np.float32)
        except ValueError:
            values = np.array([np.nan])
        if not np.all(np.isfinite(values)):
            raise cli.UserError(f"MEAN_VALUES={mean_values!r}: give finite numbers separated by commas") from None
        if len(values) not in (1, shape[0]):
            raise cli.UserError(f"MEAN_VALUES has {len(values)} values; the net's input has {shape[0]} channel(s)")
        return values, f"values {mean_values}"
    if not mean_file:
        return None, "none"
    try:
        mean = datum.decode_mean(Path(mean_file).read_bytes())
    except OSError as err:
        raise cli.UserError(f"MEAN={mean_file}: {err.strerror}") from None
    except Exception as err:  # protobuf's DecodeError, a data size that is not its shape's
        raise cli.UserError(
            f"MEAN={mean_file} is not a mean .binaryproto (Caffe's BlobProto, as compute_image_mean writes it: "
            f"{err.__class__.__name__}); for per-channel means give MEAN_VALUES=104,117,123"
        ) from None
    if mean.shape[0] != shape[0]:
        raise cli.UserError(f"MEAN={mean_file} has {mean.shape[0]} channel(s); the net's input has {shape[0]}")
    if mean.shape != tuple(shape):
        return mean.mean(axis=(1, 2)), f"{mean_file} ({'x'.join(map(str, mean.shape))}: its per-channel means)"
    return mean, str(mean_file)


def read_labels(path, classes):
    """Class names, one per line of a Caffe synsets/labels file (its first comma-separated name after
    an optional wnid); numbers 0..classes-1 without a file."""
    if not path:
        return [str(i) for i in range(classes)]
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise cli.UserError(f"LABELS={path}: {err.strerror}; give a text file with one class name per line") from None
    except UnicodeDecodeError:
        raise cli.UserError(f"LABELS={path} is not a text file; give one with one class name per line") from None
    if len(lines) != classes:
        raise cli.UserError(f"LABELS={path} has {len(lines)} lines; the net has {classes} classes")
    return lines


def _names(line):
    """The names a label line holds, lower-case: its wnid (if it starts with one) and each comma-separated name."""
    wnid = re.match(r"n\d{8}\b", line)
    rest = line[wnid.end() :] if wnid else line
    return ([wnid.group(0)] if wnid else []) + [name.strip().lower() for name in rest.split(",")]


def find_target(target, labels):
    """The class index TARGET names: a number, or a name or wnid of one label line (exactly, else the
    one line that contains it), case-insensitive."""
    if target.isdigit():
        if int(target) >= len(labels):
            raise cli.UserError(f"TARGET={target}: the net has classes 0..{len(labels) - 1}")
        return int(target)
    wanted = target.strip().lower()
    chosen = [i for i, line in enumerate(labels) if wanted in _names(line)]
    chosen = chosen or [i for i, line in enumerate(labels) if wanted in line.lower()]
    if len(chosen) != 1:
        found = "; ".join(f"{i}: {labels[i]}" for i in chosen[:5]) or "no label line has it"
        raise cli.UserError(f"TARGET={target!r} is not one class ({found}); give its number or LABELS=")
    return chosen[0]


def _top(probs, labels, k=5):
    order = np.argsort(probs)[::-1][:k]
    return [{"class": int(i), "label": labels[i], "prob": float(probs[i])} for i in order]


def _save_png(path, image, channels):
    """(C, H, W) float pixels of whole values -> an 8-bit PNG, written atomically."""
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if channels == "rgb":
        pixels = pixels[:, :, ::-1]
    with files.atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), pixels):
            raise cli.UserError(f"could not write {path}")


def _figure(path, x, fooled, before, after, channels):
    """Original | perturbation (stretched to the full range) | fooled image, with their top classes."""
    from linfool.core.plots import plt, save  # noqa: PLC0415  (the figure is the last step)

    def show(image):
        rgb = image.transpose(1, 2, 0)
        return rgb[:, :, 0] if rgb.shape[2] == 1 else (rgb[:, :, ::-1] if channels == "bgr" else rgb)

    delta = fooled - x
    stretched = 127.5 + 127.5 * delta / max(float(np.abs(delta).max()), 1e-6)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    panels = (
        (x, f"original: {before[0]['label']}\nP = {before[0]['prob']:.3f}"),
        (stretched, f"perturbation (stretched)\nLinf {np.abs(delta).max():.1f} / 255"),
        (fooled, f"fooled: {after[0]['label']}\nP = {after[0]['prob']:.3f}"),
    )
    for ax, (image, title) in zip(axes, panels):
        ax.imshow(np.clip(show(image), 0, 255).astype(np.uint8), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        save(fig, tmp, dpi=100, bbox_inches="tight")


def _run_of(model_file, weights):
    """The linfool run whose folder holds WEIGHTS or MODEL (runs/<run>/, with its run.json), or None."""
    for given in (weights, model_file):
        folder = Path(given).resolve().parent
        if (folder / "run.json").is_file():
            return runs.Run(folder)
    return None


def _prepare(model_file, weights, image, target, mean, mean_values, scale, labels):
    """Check the inputs and load the net: (model, mean note, class names, target index). A linfool
    run's WEIGHTS or MODEL gives its data set's mean unless MEAN= or MEAN_VALUES= is given (said)."""
    for what, given in (("MODEL", model_file), ("WEIGHTS", weights)):
        if not given or not Path(given).is_file():
            raise cli.UserError(f"{what}={given or ''}: no such file; make fool needs MODEL=, WEIGHTS= and IMAGE=")
    if not image or not Path(image).exists():
        raise cli.UserError(f"IMAGE={image or ''}: no such file or folder; make fool needs MODEL=, WEIGHTS= and IMAGE=")
    if target is None or str(target).strip() == "":
        raise cli.UserError("make fool needs TARGET= (a class number, or a name of LABELS=)")
    run = _run_of(model_file, weights)
    hint = f"; run {run.name}'s own net is MODEL={run.path / 'deploy.prototxt'}" if run else ""
    model = Differentiable(model_file, weights, hint=hint)
    if run is not None and not (mean or mean_values):
        mean = str(run.dataset().mean_file)
        print(f"MEAN: run {run.name}'s data-set mean {mean}, which its net was trained with (MEAN= overrides)")
    mean_array, mean_note = read_mean(mean, mean_values, model.shape)
    model.set_transform(mean_array, scale)
    names = read_labels(labels, model.classes)
    return model, mean_note, names, find_target(str(target), names)


def _attack(model, x, goal, eps, steps):
    """The iterative attack in whole pixel values (x is whole already) inside the budget, so that
    the confidence is judged on exactly what the PNG holds: (image, its probs, gradient steps)."""
    attack = gradient.projected(model, x, goal, eps, iterations=steps, confidence=CONFIDENCE, whole_pixels=True)
    return attack.image, model.probs(attack.image[None])[0], attack.passes


def _provenance(model_file, weights, image, model, channels, mean_note, scale, names, goal, command):
    return {
        "model": str(Path(model_file).resolve()),
        "weights": str(Path(weights).resolve()),
        "weights_sha256": files.sha256(weights, 64),
        "image": str(Path(image).resolve()),
        "input": list(model.shape),
        "channels": channels,
        "mean": mean_note,
        "scale": scale,
        "target": {"class": goal, "label": names[goal]},
        "confidence": CONFIDENCE,
        "command": command,
    }


def _replacing(out):
    """One line when `out` holds an earlier result of the same model, weights, image and target."""
    for name in ("result.json", "curve.json"):
        if (out / name).is_file():
            try:
                earlier = files.read_json(out / name, "make fool").get("command") or "an earlier make fool"
            except files.DamagedFile:
                earlier = "an earlier make fool (its result file is damaged)"
            print(f"Replacing {out}: the same model, weights, image and target, made by `{earlier}`", flush=True)


def fool(
    model_file,
    weights,
    image,
    target,
    *,
    mean=None,
    mean_values=None,
    scale=1.0,
    channels="bgr",
    labels=None,
    eps=16.0,
    steps=100,
    images=20,
    command="",
):
    """Fool one image (or, IMAGE a folder, its first `images` images: attack_curve) of any Caffe
    classifier towards `target`; writes and returns runs/fool/<weights>-<image>-to-<target>-<key>/
    (paths.fool_dir; see the module docstring). Every probability comes from a pycaffe forward of the net."""
    model, mean_note, names, goal = _prepare(model_file, weights, image, target, mean, mean_values, scale, labels)
    about = _provenance(model_file, weights, image, model, channels, mean_note, scale, names, goal, command)
    out = paths.fool_dir(model_file, weights, image, names[goal])
    if Path(image).is_dir():
        return attack_curve(model, image, goal, names, about, out, eps=eps, steps=steps, images=images)
    x = read_image(image, model.shape, channels)
    before = model.probs(x[None])[0]
    fooled, after, passes = _attack(model, x, goal, eps, steps)
    with files.lock(out.parent / f".{out.name}.lock", what=f"runs/fool/{out.name}"), files.building_dir(out) as tmp:
        _replacing(out)
        _save_png(tmp / "original.png", x, channels)
        _save_png(tmp / "fooled.png", fooled, channels)
        np.save(tmp / "fooled.npy", fooled)
        _figure(tmp / "fool.png", x, fooled, _top(before, names), _top(after, names), channels)
        delta = fooled - x
        result = {
            "fooled": bool(after[goal] >= CONFIDENCE),
            "eps": eps,
            "steps": steps,
            "steps_taken": passes,
            "linf": float(np.abs(delta).max()),
            "l2": float(np.linalg.norm(delta)),
            "target_prob": {"before": float(before[goal]), "after": float(after[goal])},
            "before": _top(before, names),
            "after": _top(after, names),
        }
        files.write_json(tmp / "result.json", {**about, **result})
    verdict = (
        "fooled"
        if after[goal] >= CONFIDENCE
        else f"NOT fooled within EPS={eps:g} and STEPS={steps} (in whole pixel values; raise EPS= or STEPS=)"
    )
    print(
        f"{Path(image).name}: {names[int(before.argmax())]} (P {before.max():.3f}) -> P({names[goal]}) "
        f"{after[goal]:.4f} after {passes} steps, Linf {np.abs(fooled - x).max():.0f}/255: {verdict}; wrote {out}"
    )
    return out


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def attack_curve(model, folder, goal, names, about, out, *, eps, steps, images):
    """The fraction of a folder's images fooled to the target at each Linf budget of LADDER up to eps
    (each image's smallest budget that reaches P >= 0.99, in whole pixel values): out/curve.json and
    curve.png. Files the net cannot read are listed with their reason, not fatal."""
    files_in = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:images]
    budgets = [b for b in LADDER if b < eps] + [eps]
    rows, skipped = [], []
    for path in files_in:
        try:
            x = read_image(path, model.shape, about["channels"])
        except cli.UserError as err:
            skipped.append({"file": path.name, "reason": str(err)})
            continue
        start = model.probs(x[None])[0]
        needed = next((b for b in budgets if _attack(model, x, goal, b, steps)[1][goal] >= CONFIDENCE), None)
        rows.append({"file": path.name, "start": names[int(start.argmax())], "needed_linf": needed})
        print(f"{path.name}: {names[int(start.argmax())]} -> {names[goal]}: Linf {needed or '> EPS'}", flush=True)
    if not rows:
        raise cli.UserError(f"IMAGE={folder}: no image in it that the net can take ({len(skipped)} skipped)")
    fooled = np.array([[r["needed_linf"] is not None and r["needed_linf"] <= b for r in rows] for b in budgets])
    fractions, band = fooled.mean(axis=1).tolist(), stats.bands(fooled)
    with files.lock(out.parent / f".{out.name}.lock", what=f"runs/fool/{out.name}"), files.building_dir(out) as tmp:
        _replacing(out)
        curve = {
            "budgets": budgets,
            "fooled_fraction": fractions,
            "band": band,  # Clopper-Pearson 95 % per budget, over the n images
            "n": len(rows),
            "images": rows,
            "skipped": skipped,
            "steps": steps,
        }
        files.write_json(tmp / "curve.json", {**about, **curve})
        _curve_figure(tmp / "curve.png", budgets, fractions, band, names[goal], len(rows))
    last = stats.proportion(int(fooled[-1].sum()), len(rows), "exact")
    print(
        f"{len(rows)} images: fooled to {names[goal]} at Linf {eps:g}: {last['k']}/{last['n']} "
        f"(95 % {100 * last['low']:.0f}-{100 * last['high']:.0f} %); wrote {out}"
    )
    return out


def _curve_figure(path, budgets, fractions, band, target, n):
    from linfool.core.plots import plt, save  # noqa: PLC0415  (the figure is the last step)

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.fill_between(budgets, *band, alpha=0.2, linewidth=0, label="95 % Clopper-Pearson")
    ax.plot(budgets, fractions, "o-")
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Linf budget (of 255)")
    ax.set_ylabel(f"fraction fooled (P >= {CONFIDENCE})")
    ax.set_title(f"n = {n} images -> {target} (band: 95 %)", fontsize=9)
    ax.grid(alpha=0.3)
    with files.atomic_path(path) as tmp:
        save(fig, tmp, dpi=100, bbox_inches="tight")


def main(argv=None) -> int:
    parsed = stages.parse("fool", argv)
    command = stages.command("fool", parsed)  # each option as its make variable, the defaults left out
    args = vars(parsed)

    def body():
        for key in ("model", "weights", "image", "mean", "labels"):  # relative to where make runs (make -C)
            if args[key]:
                args[key] = str(cli.user_path(args[key], key.upper()))
        model, weights, image, target = (args.pop(k) for k in ("model", "weights", "image", "target"))
        fool(model, weights, image, target, command=command, **args)

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
