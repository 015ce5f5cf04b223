"""A PNG mosaic of 8x8 images (matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np

from .frechet import as_images

__all__ = ["image_grid", "mosaic"]


def mosaic(x, ncols: int | None = None, gap: int = 1, background: float = 0.0) -> np.ndarray:
    """Tile images ``x`` ``(n, 1, 8, 8)`` (values in ``[-1, 1]``, clipped) into one ``(H, W)`` array in ``[-1, 1]``.

    ``ncols`` defaults to ``ceil(sqrt(n))``; tiles are separated by ``gap`` pixels of ``background``.
    """
    arr = np.clip(as_images("x", x)[:, 0], -1.0, 1.0)
    n = arr.shape[0]
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    if isinstance(gap, bool) or not isinstance(gap, numbers.Integral) or gap < 0:
        raise ValueError(f"gap must be a non-negative integer, got {gap!r}")
    nrows = math.ceil(n / ncols)
    out = np.full((nrows * (8 + gap) + gap, ncols * (8 + gap) + gap), float(background))
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x0 = gap + r * (8 + gap), gap + c * (8 + gap)
        out[y : y + 8, x0 : x0 + 8] = arr[i]
    return out


def image_grid(x, path, *, ncols: int | None = None, scale: int = 6, title: str | None = None, cmap: str = "gray_r"):
    """Write the images ``x`` ``(n, 1, 8, 8)`` (or ``(n, 8, 8)``) in ``[-1, 1]`` to ``path`` as a PNG grid.

    Ink (``+1``) is dark with the default ``cmap="gray_r"``. ``scale`` is the size in screen pixels of one
    image pixel at 100 dpi. Returns ``path`` as a ``pathlib.Path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    img = mosaic(x, ncols=ncols, background=0.0)  # mid-grey lines between the tiles
    h, w = img.shape
    top = 0.3 if title else 0.0
    fig = Figure(figsize=(w * scale / 100, h * scale / 100 + top), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, h * scale / 100 / (h * scale / 100 + top)))
    ax.imshow(img, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9, y=1.0, va="top")
    path = Path(path)
    fig.savefig(path, format="png")
    return path
