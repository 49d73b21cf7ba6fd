"""Image tables: cells land where the labels say, enlarged by the scale, with labels drawn beside them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from dgn_am.evaluation.figures import image_table


def test_image_table_places_enlarged_cells_under_their_labels(tmp_path):
    black = torch.zeros(2, 1, 4, 4)
    grey = torch.full((1, 1, 4, 4), 0.5)
    path = tmp_path / "t.png"
    image_table([[black, grey], [grey, black]], ["row a", "row b"], ["col 1", "col 2"], path, cols=[2, 1], scale=3)
    im = np.asarray(Image.open(path).convert("L")).astype(int)
    black = _solid_blocks(im == 0, 12)  # top-left corners of solid 12x12 squares: 4x4 images enlarged 3x
    grey = _solid_blocks(im == 128, 12)
    assert len(black) == 4 and len(grey) == 2  # 2 + 2 black images, 1 + 1 grey ones
    rows = sorted({y for y, _ in black + grey})
    # row a: both cells on one line; row b: column 2 holds 2 images at 1 per line, so they stack 3 * 5 px apart
    assert len(rows) == 3 and rows[1] - rows[0] >= 12 and rows[2] - rows[1] == 3 * (4 + 1)
    (ya, xa), (yb, xb) = sorted(black)[:2]  # row a's cell: two images side by side, 3 px of padding between
    assert ya == yb and xb - xa == 3 * (4 + 1)
    left, top = min(x for _, x in black + grey), rows[0]
    assert (im[:, : left - 2] < 100).sum() > 30  # the row labels are drawn left of the cells
    assert (im[: top - 2] < 100).sum() > 30  # and the column labels above them


def _solid_blocks(mask: np.ndarray, k: int) -> list[tuple[int, int]]:
    """(y, x) of every k x k window of mask that is all True, found with an integral image."""
    c = np.pad(mask.astype(int).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return [(int(y), int(x)) for y, x in zip(*np.nonzero(sums == k * k))]
