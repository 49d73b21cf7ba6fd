"""Figures made of images: a table whose cells are small grids, with row and column labels, sized to be read.

Cells hold (N, C, H, W) images in [0, 1], laid out `cols` to a row and enlarged by an integer factor (nearest
neighbour), so a 28-pixel garment is drawn at 28 * scale pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from dgn_am.imageio import atomic_write, font, make_grid, to_pil


def _cell(images: torch.Tensor, cols: int, scale: int) -> Image.Image:
    rows = -(-len(images) // cols)
    if len(images) < rows * cols:  # pad the last row with white
        images = torch.cat([images, torch.ones(rows * cols - len(images), *images.shape[1:])])
    im = to_pil(make_grid(images, rows=rows, pad=1)).convert("RGB")
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def image_table(cells: list[list[torch.Tensor]], row_labels: list[str], col_labels: list[str], path: str | Path,
                cols: list[int] | None = None, scale: int = 2, title: str = "", text: int = 14) -> None:
    """Save a table of image grids: cells[r][c] (N, C, H, W) drawn `cols[c]` images to a row (default: all in
    one row), with row_labels on the left and col_labels above."""
    cols = cols or [len(c) for c in cells[0]]
    drawn = [[_cell(im.detach().float().cpu(), cols[c], scale) for c, im in enumerate(row)] for row in cells]
    f, gap = font(text), text
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max(int(probe.textlength(t, font=f)) for t in row_labels) + gap
    widths = [max(max(r[c].width for r in drawn), int(probe.textlength(col_labels[c], font=f)))
              for c in range(len(cols))]
    heights = [max(im.height for im in r) for r in drawn]
    top = (2 * text + gap if title else 0) + text + gap
    out = Image.new("RGB", (left + sum(widths) + gap * len(widths), top + sum(heights) + gap * len(heights)), "white")
    draw = ImageDraw.Draw(out)
    if title:
        draw.text((gap // 2, gap // 2), title, fill="black", font=font(text + 2))
    x = left
    for c, w in enumerate(widths):
        draw.text((x + w // 2, top - gap // 2), col_labels[c], fill="black", font=f, anchor="mb")
        x += w + gap
    y = top
    for r, row in enumerate(drawn):
        draw.text((gap // 2, y + heights[r] // 2), row_labels[r], fill="black", font=f, anchor="lm")
        x = left
        for c, im in enumerate(row):
            out.paste(im, (x, y))
            x += widths[c] + gap
        y += heights[r] + gap
    atomic_write(path, lambda tmp: out.save(tmp, format="PNG"))
