"""The embedded default data set: deterministic synthetic photos of real ImageNet classes, written
as JPEGs in the ILSVRC2012 layout so that the demo travels the exact ImageNet code path.

    python -m linfool synthetic OUT_DIR [--train-per-class 300] [--val-per-class 50] [--seed 0]
    -> OUT_DIR/train/<wnid>/<wnid>_<i>.JPEG, OUT_DIR/val/ILSVRC2012_val_<n>.JPEG, OUT_DIR/val.txt

Design (every class in CLASSES below): each class is an object of its own colour, shape and
typical place in the frame (what a linear template can pick up, like the blog's "green stuff in
the middle" of Granny Smith), on a landscape background. To keep a linear classifier well below
100 % and learning for the whole demo run, colours of several classes overlap (Granny Smith,
cucumber, broccoli are green; orange, goldfish, kit fox, red fox are orange-brown; lemon,
banana, school bus are yellow), and every image has heavy nuisance: half the time another
class's background, 1-3 distractor objects of other classes, position and scale jitter, colour
and brightness jitter, JPEG noise and pixel noise. Source sizes vary like ImageNet's (~500x375).
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from linfool.core import stages
from linfool.data import images

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class ClassSpec:
    """One class: an object `shape` of `color` (BGR) centred at `where` (x, y as fractions of the
    frame) with size `size` (fraction of the frame's width), on background `sky` over `ground`
    with the horizon at `horizon` (fraction of the height)."""

    wnid: str
    shape: str
    color: tuple
    where: tuple
    size: float
    sky: tuple
    ground: tuple
    horizon: float


CLASSES = (
    ClassSpec("n01443537", "fish", (20, 120, 250), (0.5, 0.5), 0.30, (150, 90, 20), (120, 70, 10), 0.1),  # goldfish
    ClassSpec("n01910747", "jelly", (230, 190, 240), (0.5, 0.4), 0.35, (90, 30, 10), (60, 20, 5), 0.5),  # jellyfish
    ClassSpec("n02119022", "fox", (30, 80, 200), (0.5, 0.6), 0.45, (210, 190, 170), (50, 140, 60), 0.6),  # red fox
    ClassSpec("n02119789", "fox", (110, 170, 210), (0.5, 0.6), 0.40, (200, 200, 190), (90, 160, 180), 0.55),  # kit fox
    ClassSpec("n02165456", "dots", (30, 30, 220), (0.5, 0.5), 0.25, (60, 160, 60), (40, 120, 40), 0.3),  # ladybug
    ClassSpec(
        "n02391049", "stripes", (240, 240, 240), (0.5, 0.55), 0.5, (220, 180, 140), (70, 170, 190), 0.55
    ),  # zebra
    ClassSpec("n03345487", "truck", (30, 30, 210), (0.5, 0.6), 0.70, (200, 190, 180), (90, 90, 90), 0.65),  # fire truck
    ClassSpec("n04146614", "bus", (20, 200, 240), (0.5, 0.6), 0.70, (230, 200, 160), (90, 90, 90), 0.65),  # school bus
    ClassSpec(
        "n07714990", "florets", (40, 110, 30), (0.5, 0.5), 0.45, (200, 200, 200), (170, 170, 170), 0.7
    ),  # broccoli
    ClassSpec("n07718472", "rod", (40, 140, 50), (0.5, 0.5), 0.65, (180, 200, 210), (150, 170, 180), 0.7),  # cucumber
    ClassSpec("n07734744", "mushroom", (190, 210, 225), (0.5, 0.55), 0.35, (40, 80, 60), (30, 60, 90), 0.6),  # mushroom
    ClassSpec(
        "n07742313", "apple", (50, 200, 110), (0.5, 0.5), 0.40, (170, 170, 190), (120, 140, 160), 0.7
    ),  # Granny Smith
    ClassSpec(
        "n07745940", "berry", (40, 30, 210), (0.5, 0.5), 0.35, (220, 220, 220), (180, 180, 190), 0.7
    ),  # strawberry
    ClassSpec("n07747607", "disc", (0, 140, 250), (0.5, 0.5), 0.40, (200, 210, 220), (140, 160, 180), 0.7),  # orange
    ClassSpec("n07749582", "disc", (40, 230, 250), (0.5, 0.5), 0.35, (200, 190, 170), (130, 140, 150), 0.7),  # lemon
    ClassSpec("n07753592", "crescent", (50, 220, 240), (0.5, 0.5), 0.50, (120, 100, 90), (80, 70, 60), 0.7),  # banana
    ClassSpec("n09472597", "cone", (50, 50, 70), (0.5, 0.55), 0.80, (230, 180, 120), (70, 110, 90), 0.8),  # volcano
    ClassSpec("n11939491", "flower", (245, 245, 245), (0.5, 0.5), 0.40, (60, 150, 70), (40, 110, 50), 0.2),  # daisy
)
SOURCE_SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (400, 300), (640, 480), (333, 500), (300, 300))


def _jitter_color(rng, color, amount=40):
    return tuple(int(np.clip(c * rng.uniform(0.7, 1.2) + rng.normal(0, amount / 2), 0, 255)) for c in color)


def _background(rng, spec, w, h):
    """Sky over ground with a wobbly horizon, plus low-frequency texture."""
    img = np.empty((h, w, 3), np.float32)
    horizon = int(h * np.clip(spec.horizon + rng.normal(0, 0.08), 0.05, 0.95))
    img[:horizon] = _jitter_color(rng, spec.sky)
    img[horizon:] = _jitter_color(rng, spec.ground)
    texture = cv2.resize(rng.normal(0, 25, (h // 16 + 1, w // 16 + 1, 3)).astype(np.float32), (w, h))
    return img + texture


def _ellipse(img, c, axes, color, angle=0):
    cv2.ellipse(img, c, (max(1, axes[0]), max(1, axes[1])), angle, 0, 360, color, -1, cv2.LINE_AA)


def _round(img, rng, spec, cx, cy, s, col, dark, r):
    """disc, apple, berry and dots: a round body and its details."""
    shape = spec.shape
    _ellipse(img, (cx, cy), (r, int(r * (1.15 if shape == "berry" else 0.95))), col)
    if shape == "apple":
        cv2.line(img, (cx, cy - r), (cx + r // 5, cy - r - r // 3), (30, 60, 90), max(2, r // 10))
    if shape == "berry":
        for _ in range(12):
            _ellipse(
                img,
                (cx + int(rng.uniform(-0.7, 0.7) * r), cy + int(rng.uniform(-0.7, 0.9) * r)),
                (2, 3),
                (80, 220, 240),
            )
        _ellipse(img, (cx, cy - r), (r // 2, r // 5), (40, 150, 40))
    if shape == "dots":
        for _ in range(6):
            _ellipse(
                img,
                (cx + int(rng.uniform(-0.6, 0.6) * r), cy + int(rng.uniform(-0.6, 0.6) * r)),
                (r // 6, r // 6),
                dark,
            )


def _fish(img, rng, spec, cx, cy, s, col, dark, r):
    _ellipse(img, (cx, cy), (r, r // 2), col)
    tail = np.array([[cx + r - 5, cy], [cx + r + r // 2, cy - r // 2], [cx + r + r // 2, cy + r // 2]])
    cv2.fillPoly(img, [tail], col, cv2.LINE_AA)


def _jelly(img, rng, spec, cx, cy, s, col, dark, r):
    cv2.ellipse(img, (cx, cy), (r, int(r * 0.7)), 0, 180, 360, col, -1, cv2.LINE_AA)
    for k in range(-3, 4):
        cv2.line(img, (cx + k * r // 4, cy), (cx + k * r // 4 + int(rng.normal(0, r / 6)), cy + r), col, 3)


def _fox(img, rng, spec, cx, cy, s, col, dark, r):
    _ellipse(img, (cx, cy), (r, r // 2), col)
    hx, hy = cx - r, cy - r // 2
    _ellipse(img, (hx, hy), (r // 3, r // 3), col)
    for dx in (-1, 1):
        ear = np.array([[hx + dx * r // 5, hy - r // 4], [hx + dx * r // 3, hy - r * 2 // 3], [hx, hy - r // 4]])
        cv2.fillPoly(img, [ear], col, cv2.LINE_AA)
    _ellipse(img, (cx + r, cy - r // 6), (r // 2, r // 7), col, angle=-20)


def _stripes(img, rng, spec, cx, cy, s, col, dark, r):
    mask = np.zeros(img.shape[:2], np.uint8)
    _ellipse(mask, (cx, cy), (r, r // 2), 255)
    stripes = ((np.arange(img.shape[1]) // max(3, s // 14)) % 2).astype(bool)
    img[(mask > 0) & stripes[None, :]] = col
    img[(mask > 0) & ~stripes[None, :]] = dark


def _vehicle(img, rng, spec, cx, cy, s, col, dark, r):
    """bus (windows) and truck (a ladder)."""
    cv2.rectangle(img, (cx - r, cy - r // 3), (cx + r, cy + r // 4), col, -1)
    for k in range(6):
        x0 = cx - r + 8 + k * (2 * r - 16) // 6
        if spec.shape == "bus":
            cv2.rectangle(img, (x0, cy - r // 4), (x0 + r // 5, cy - r // 12), dark, -1)
        else:
            cv2.line(img, (x0, cy - r // 3 - 6), (x0 + r // 4, cy - r // 3 - 6), (200, 200, 200), 3)
    for wx in (cx - 2 * r // 3, cx + 2 * r // 3):
        _ellipse(img, (wx, cy + r // 4), (r // 7, r // 7), dark)


def _florets(img, rng, spec, cx, cy, s, col, dark, r):
    for _ in range(25):
        _ellipse(
            img,
            (cx + int(rng.normal(0, r / 2.5)), cy - r // 4 + int(rng.normal(0, r / 3.5))),
            (r // 5, r // 5),
            _jitter_color(rng, spec.color, 20),
        )
    cv2.rectangle(img, (cx - r // 8, cy), (cx + r // 8, cy + r), (90, 170, 120), -1)


def _rod(img, rng, spec, cx, cy, s, col, dark, r):
    _ellipse(img, (cx, cy), (r, r // 5), col, angle=int(rng.uniform(-30, 30)))


def _mushroom(img, rng, spec, cx, cy, s, col, dark, r):
    cv2.rectangle(img, (cx - r // 6, cy - r // 4), (cx + r // 6, cy + r // 2), (210, 230, 240), -1)
    cv2.ellipse(img, (cx, cy - r // 4), (r, r // 2), 0, 180, 360, (40, 60, 140), -1, cv2.LINE_AA)


def _crescent(img, rng, spec, cx, cy, s, col, dark, r):
    cv2.ellipse(img, (cx, cy - r // 2), (r, r), 0, 20, 160, col, max(4, r // 3), cv2.LINE_AA)


def _cone(img, rng, spec, cx, cy, s, col, dark, r):
    h = img.shape[0]
    cone = np.array([[cx - r, h], [cx - r // 6, cy - r // 2], [cx + r // 6, cy - r // 2], [cx + r, h]])
    cv2.fillPoly(img, [cone], col, cv2.LINE_AA)
    _ellipse(img, (cx, cy - r // 2), (r // 5, r // 10), (20, 60, 230))


def _flower(img, rng, spec, cx, cy, s, col, dark, r):
    for k in range(12):
        a = 2 * np.pi * k / 12
        _ellipse(
            img,
            (cx + int(r * 0.6 * np.cos(a)), cy + int(r * 0.6 * np.sin(a))),
            (r // 3, r // 8),
            col,
            angle=int(np.degrees(a)),
        )
    _ellipse(img, (cx, cy), (r // 4, r // 4), (20, 200, 240))


_DRAW = {
    "disc": _round,
    "apple": _round,
    "berry": _round,
    "dots": _round,
    "fish": _fish,
    "jelly": _jelly,
    "fox": _fox,
    "stripes": _stripes,
    "bus": _vehicle,
    "truck": _vehicle,
    "florets": _florets,
    "rod": _rod,
    "mushroom": _mushroom,
    "crescent": _crescent,
    "cone": _cone,
    "flower": _flower,
}


def _draw_object(img, rng, spec, cx, cy, s):
    """Draw `spec.shape` centred at (cx, cy), s = width in pixels (one drawing function per shape)."""
    col, dark = _jitter_color(rng, spec.color), (20, 20, 20)
    _DRAW[spec.shape](img, rng, spec, cx, cy, s, col, dark, s // 2)


def render(rng, spec, w, h):
    """One synthetic photo of class `spec`: (h, w, 3) uint8 BGR."""
    background_spec = spec if rng.random() < 0.5 else CLASSES[rng.integers(len(CLASSES))]
    img = _background(rng, background_spec, w, h)
    for _ in range(rng.integers(1, 4)):  # distractors of other classes, smaller
        other = CLASSES[rng.integers(len(CLASSES))]
        if other is not spec:
            s = int(w * other.size * rng.uniform(0.3, 0.6))
            _draw_object(img, rng, other, int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.1, 0.9) * h), s)
    s = int(w * spec.size * rng.uniform(0.6, 1.2))
    cx = int(w * np.clip(spec.where[0] + rng.normal(0, 0.12), 0.15, 0.85))
    cy = int(h * np.clip(spec.where[1] + rng.normal(0, 0.12), 0.15, 0.85))
    _draw_object(img, rng, spec, cx, cy, s)
    img = img * rng.uniform(0.6, 1.3) + rng.normal(0, 25, 3)  # exposure and white balance
    img += rng.normal(0, 18, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_one(job):
    path, class_index, seed = job
    rng = np.random.default_rng(seed)
    w, h = SOURCE_SIZES[rng.integers(len(SOURCE_SIZES))]
    img = render(rng, CLASSES[class_index], int(w * rng.uniform(0.8, 1.2)), int(h * rng.uniform(0.8, 1.2)))
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 95))])


def _jobs(out, train_per_class, val_per_class, seed):
    """Every file to write: (path, class index, seed), deterministic in (seed, counts)."""
    jobs, val_lines = [], []
    wnids = sorted(spec.wnid for spec in CLASSES)
    order = {spec.wnid: i for i, spec in enumerate(CLASSES)}
    for label, wnid in enumerate(wnids):
        for i in range(train_per_class):
            jobs.append((out / "train" / wnid / f"{wnid}_{i}.JPEG", order[wnid], (seed, 0, label, i)))
    val_rng = np.random.default_rng((seed, 1))
    val_labels = val_rng.permutation(np.repeat(np.arange(len(wnids)), val_per_class))
    for n, label in enumerate(val_labels, start=1):
        name = f"ILSVRC2012_val_{n:08d}.JPEG"
        jobs.append((out / "val" / name, order[wnids[label]], (seed, 2, n)))
        val_lines.append(f"{name} {label}\n")
    return wnids, jobs, val_lines


def generate(out, *, train_per_class=300, val_per_class=50, seed=0, workers=None, progress=True):
    """Write the data set under `out` (skips work when a finished copy with the same settings is
    there; an interrupted run is redone from scratch). Returns `out`."""
    out = Path(out)
    stamp = f"v{GENERATOR_VERSION} seed={seed} train={train_per_class} val={val_per_class}\n"
    if (out / "DONE").is_file() and (out / "DONE").read_text() == stamp:
        return out
    (out / "DONE").unlink(missing_ok=True)
    wnids, jobs, val_lines = _jobs(out, train_per_class, val_per_class, seed)
    for wnid in wnids:
        (out / "train" / wnid).mkdir(parents=True, exist_ok=True)
    (out / "val").mkdir(parents=True, exist_ok=True)
    with images.worker_pool(workers) as pool:
        for _ in tqdm(
            pool.imap_unordered(_write_one, jobs, chunksize=16),
            total=len(jobs),
            unit="img",
            desc="synthetic images",
            disable=not progress,
        ):
            pass
    (out / "val.txt").write_text("".join(val_lines))
    (out / "DONE").write_text(stamp)
    return out


def main(argv=None) -> int:
    args = stages.parse("synthetic", argv)
    generate(args.out, train_per_class=args.train_per_class, val_per_class=args.val_per_class, seed=args.seed)
    print(f"wrote {len(CLASSES)} classes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
