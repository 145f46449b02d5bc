"""Headless figures, the one place that picks matplotlib's backend: every stage draws with
`from linfool.core.plots import plt, save` (Agg: no display needed, the same PNG bytes on any machine
for the same data and matplotlib), and `save(fig, path)` writes and closes a figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

DPI = 110  # the report's figures: readable at the page's width without zooming

__all__ = ["plt", "save"]


def save(fig: Figure, path: str | Path, dpi: int = DPI, **kwargs: Any) -> None:
    """Write `fig` as a PNG to `path` (inside a files.building_dir / atomic_path block: published whole)
    and close it, so that a stage drawing hundreds of figures does not grow."""
    fig.savefig(path, dpi=dpi, **kwargs)
    plt.close(fig)
