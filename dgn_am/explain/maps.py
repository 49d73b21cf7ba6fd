"""Turning attributions into pictures: reduce colour channels, resize to the image, colour, overlay, and show filters.

Everything returns tensors in [0, 1] ((3, H, W) RGB, or (N, C, h, w) tiles), ready for `dgn_am.imageio.save_image`
and `make_grid`; nothing here writes files. Colour maps come from matplotlib (imported only when colouring).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("sum", "abs-sum", "max", "abs-max")
SEQUENTIAL_CMAP = "inferno"  # for non-negative maps: black (0) -> yellow (max)
DIVERGING_CMAP = "RdBu_r"  # for signed maps: blue (negative) - white (0) - red (positive)


def reduce_channels(a: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W) by summing or taking the maximum over channels (of a or |a|)."""
    if a.dim() != 4:
        raise ValueError(f"expected (B, C, H, W), got {tuple(a.shape)}")
    if how == "sum":
        return a.sum(1)
    if how == "abs-sum":
        return a.abs().sum(1)
    if how == "max":
        return a.amax(1)
    if how == "abs-max":
        return a.abs().amax(1)
    raise ValueError(f"unknown channel reduction '{how}'; use one of {', '.join(REDUCTIONS)}")


def resize_map(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H, W) by bilinear interpolation (a map from a lower layer to the image); no-op if equal."""
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return F.interpolate(m[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0].to(m.dtype)


def is_signed(m: torch.Tensor) -> bool:
    """True when the map has negative values, so it needs a diverging colour map."""
    return bool((m < 0).any())


def heatmap(m: torch.Tensor, signed: bool | None = None, cmap: str | None = None) -> torch.Tensor:
    """(H, W) map -> (3, H, W) RGB in [0, 1].

    Non-negative maps are scaled to [0, max] on a sequential colour map; signed maps to [-max|m|, max|m|] on a
    diverging one, so 0 is white. signed=None decides from the values. An all-zero map is the colour of 0.
    """
    from matplotlib import colormaps

    if m.dim() != 2:
        raise ValueError(f"heatmap takes one (H, W) map, got {tuple(m.shape)}")
    m = m.detach().float().cpu()
    signed = is_signed(m) if signed is None else signed
    top = float(m.abs().max()) or 1.0
    unit = (m / top + 1) / 2 if signed else (m / top).clamp(min=0)
    rgba = colormaps[cmap or (DIVERGING_CMAP if signed else SEQUENTIAL_CMAP)](unit.numpy())  # (H, W, 4)
    return torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()


def overlay(image: torch.Tensor, m: torch.Tensor, alpha: float = 0.8, signed: bool | None = None) -> torch.Tensor:
    """image: (C, H, W) in [0, 1], C in {1, 3}; m: (h, w) map, resized to (H, W) -> (3, H, W): the image in grey,
    covered by the coloured map with opacity alpha * |m| / max|m| per pixel, so where the map is 0 the image shows."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    grey = image.detach().float().cpu().mean(0, keepdim=True).expand(3, *image.shape[1:])
    m = resize_map(m[None].detach().float().cpu(), tuple(image.shape[1:]))[0]
    colour = heatmap(m, signed=signed)
    weight = alpha * m.abs() / (float(m.abs().max()) or 1.0)  # (H, W)
    return (1 - weight) * grey + weight * colour


def filter_tiles(weights: torch.Tensor) -> torch.Tensor:
    """First-layer filters (F, C, kh, kw) -> tiles in [0, 1] with 0.5 = zero weight, each filter scaled by its
    own max |w|. C in {1, 3} gives (F, C, kh, kw) grey or RGB tiles; other C gives one grey tile per channel,
    (F * C, 1, kh, kw), filter-major."""
    if weights.dim() != 4:
        raise ValueError(f"expected conv weights (F, C, kh, kw), got {tuple(weights.shape)}")
    w = weights.detach().float().cpu()
    top = w.abs().flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    tiles = 0.5 + 0.5 * w / top
    if w.shape[1] not in (1, 3):
        tiles = tiles.reshape(-1, 1, *w.shape[2:])  # (F * C, 1, kh, kw)
    return tiles
