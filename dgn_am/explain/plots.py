"""Matplotlib figures for the dataset views. Figures are built with the Agg canvas (no display, no pyplot state)
and returned; the caller saves them (`fig.savefig(path)`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _thumbnail_points(coords: np.ndarray, count: int, seed: int) -> list[int]:
    """Up to `count` points, visited in a seeded random order, kept when no kept point is closer than 1/25 of the
    plot's extent: thumbnails that overlap little."""
    order = np.random.default_rng(seed).permutation(len(coords))
    span = float(np.ptp(coords, axis=0).max()) or 1.0
    kept: list[int] = []
    for i in order:
        if len(kept) == count:
            break
        if not kept or np.min(np.linalg.norm(coords[kept] - coords[i], axis=1)) > span / 25:
            kept.append(int(i))
    return kept


def plot_embedding(coords: np.ndarray, labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                   images: torch.Tensor | None = None, thumbnails: int = 0, seed: int = 0, title: str = "",
                   size: float = 6.0) -> "Figure":
    """A scatter plot of a 2-D embedding, returned as a matplotlib Figure.

    coords: (N, 2). labels: (N,) class indices, coloured with a qualitative colour map and named in a legend by
    class_names. images: (N, C, H, W) in [0, 1]; with thumbnails > 0, up to that many images are drawn at their
    points (chosen by `seed`, spread out). size: the figure's side in inches (100 dpi).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be (N, 2), got {coords.shape}")
    if labels is not None and len(labels) != len(coords):
        raise ValueError(f"{len(labels)} labels for {len(coords)} points")
    if thumbnails and (images is None or len(images) != len(coords)):
        raise ValueError("thumbnails need one image per point")
    fig = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = "tab10"
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=6, c="0.3")
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = "tab10" if classes.max() < 10 else "tab20"
        for c in classes:
            mask = labels == c
            name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
            ax.scatter(coords[mask, 0], coords[mask, 1], s=6, color=_colour(cmap, int(c)),
                       label=name)
        ax.legend(fontsize=7, markerscale=2, loc="best", framealpha=0.8)
    for i in _thumbnail_points(coords, thumbnails, seed) if thumbnails else []:
        im = images[i].detach().float().clamp(0, 1).cpu()
        arr = im[0].numpy() if im.shape[0] == 1 else im.permute(1, 2, 0).numpy()
        box = OffsetImage(arr, cmap="gray" if im.shape[0] == 1 else None, zoom=max(0.5, 24 / max(arr.shape[:2])))
        ax.add_artist(AnnotationBbox(box, coords[i], frameon=labels is not None, pad=0.1,
                                     bboxprops={"edgecolor": _colour(cmap, int(labels[i]))} if labels is not None
                                     else None))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _colour(cmap: str, i: int) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    cm = colormaps[cmap]
    return cm(i % cm.N)


def plot_panel(tiles: Sequence[torch.Tensor], titles: Sequence[str], columns: int = 4,
               tile_inches: float = 1.8) -> "Figure":
    """Images (C, H, W) in [0, 1], C in {1, 3}, side by side with a title each, as a matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(tiles) != len(titles) or not tiles:
        raise ValueError(f"need one title per tile, got {len(tiles)} tiles and {len(titles)} titles")
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    fig = Figure(figsize=(columns * tile_inches, rows * (tile_inches + 0.3)), dpi=100)
    FigureCanvasAgg(fig)
    for i, (tile, title) in enumerate(zip(tiles, titles)):
        ax = fig.add_subplot(rows, columns, i + 1)
        t = tile.detach().float().clamp(0, 1).cpu()
        if t.shape[0] == 1:
            ax.imshow(t[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(t.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig
