"""Classes, templates and start images, shared by the figures, black-box and claims experiments and
the report: a class by wnid or name, the blog's default classes (or a data set's own), a template as
a picture, and how smooth templates are.

    template_rgb(w (12288,)) -> (64, 64, 3) RGB 0..1      to_rgb((3, H, W) BGR 0..255) -> (H, W, 3) uint8
    find_class(params, 'goldfish' | 'n01443537') -> label    choose_classes(params, start, targets)
    start_image(run, params, query) -> (3, 64, 64) float32 0..255 BGR (the first val image of the class)
"""

import numpy as np

from linfool.core import cli, conventions, records, runs

START, TARGETS = "n02119789", ("n01443537", "n04146614")  # kit fox -> goldfish, school bus (the blog's)


def to_rgb(chw):
    """(3, H, W) BGR 0..255 -> (H, W, 3) RGB uint8 for display."""
    return np.clip(np.asarray(chw)[::-1].transpose(1, 2, 0), 0, 255).astype(np.uint8)


def template_rgb(w):
    """A class's weights (12288,) = (3, 64, 64) BGR -> (64, 64, 3) RGB in 0..1, scaled per template
    to the full display range as the blog does (min -> 0, max -> 1)."""
    chw = np.asarray(w, dtype=np.float64).reshape(conventions.IMAGE_SHAPE)
    return ((chw - chw.min()) / max(chw.max() - chw.min(), 1e-12))[::-1].transpose(1, 2, 0)


def smoothness(W):
    """Mean absolute difference of horizontally and vertically neighbouring pixels of the
    normalised templates (0..1): lower is smoother."""
    t = np.stack([template_rgb(w) for w in W])
    return float((np.abs(np.diff(t, axis=1)).mean() + np.abs(np.diff(t, axis=2)).mean()) / 2)


class UnknownClass(cli.UserError, KeyError):
    """A class the run does not have; the message names a few it does have."""

    def __str__(self):
        return self.args[0]


def find_class(params, query):
    """Label of a class given by wnid or by name (case/underscore-insensitive); UnknownClass naming
    the query and a few classes the run does have."""
    wanted = query.replace("_", " ").lower()
    for i, (wnid, name) in enumerate(zip(params["wnids"], params["names"])):
        if wanted in (str(wnid).lower(), str(name).lower(), str(name).lower().replace(" apple", "")):
            return i
    some = ", ".join(f"{w} {n}" for w, n in list(zip(params["wnids"], params["names"]))[:3])
    raise UnknownClass(
        f"class {query!r} is not among this run's {len(params['names'])} classes (labels.txt: {some}, "
        "...); give START= / TARGETS= (--start/--targets) with a wnid or name it has"
    )


def has_class(params, query) -> bool:
    try:
        find_class(params, query)
    except UnknownClass:
        return False
    return True


def choose_classes(params, start=None, targets=None):
    """(start, targets) as wnids: the given ones, else the blog's kit fox -> goldfish, school bus
    where the run has them, else its own first classes; says so when it falls back."""
    wnids = [str(w) for w in params["wnids"]]
    if start is None:
        start = START if has_class(params, START) else wnids[0]
    start = wnids[find_class(params, start)]
    if targets is None:
        targets = [t for t in TARGETS if has_class(params, t) and t != start]
        targets = targets or [w for w in wnids if w != start][:2]
        if not has_class(params, START) or len(targets) < len(TARGETS):
            names = dict(zip(wnids, (str(n) for n in params["names"])))
            print(
                f"(the blog's kit fox -> goldfish, school bus are not all in this data set: start {names[start]}, "
                f"targets {', '.join(names[t] for t in targets)}; START= and TARGETS= choose others)",
                flush=True,
            )
    return start, [wnids[find_class(params, t)] for t in targets]


def start_image(run, params, query):
    """The first val record of class `query` (wnid or name) in the run's val LMDB: (3, 64, 64)
    float32 0..255 BGR. Streams the LMDB until it finds one."""
    run = runs.as_run(run)
    label = find_class(params, query)
    for images, labels in records.batches(run.dataset().lmdb("val")):
        hits = np.flatnonzero(labels == label)
        if len(hits):
            return images[hits[0]].astype(np.float32)
    raise UnknownClass(
        f"the val LMDB of run {run.name} has no image of {params['names'][label]} "
        f"({params['wnids'][label]}); give START= with another class"
    )
