"""Occlusion sensitivity (Zeiler & Fergus 2014): slide a patch of a baseline value over the image and record how
much the unit's activation drops.

For window w, drop_w = unit(x) - unit(x with w set to the baseline). A pixel's value in the map is the mean drop of
the windows that cover it (0 for pixels no window covers). Positive: hiding the pixel lowers the unit; negative:
hiding it raises the unit. Windows start at 0, stride, 2*stride, ... while they fit inside the image, so pick a
stride that divides (H - patch) to cover the bottom and right edges.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from dgn_am.explain.targets import UnitLike, check_batch, check_eval, resolve_units, unit_values

Pair = Union[int, tuple[int, int]]


def _pair(v: Pair, name: str) -> tuple[int, int]:
    p = (v, v) if isinstance(v, int) else tuple(v)
    if len(p) != 2 or not all(isinstance(i, int) and i >= 1 for i in p):
        raise ValueError(f"{name} must be a positive int or (rows, cols), got {v!r}")
    return p  # type: ignore[return-value]


def default_window(size: tuple[int, int]) -> tuple[int, int]:
    """(patch, stride) used when none is given: a seventh of the shorter image side, and half of that."""
    patch = max(1, round(min(size) / 7))
    return patch, max(1, patch // 2)


def window_positions(size: tuple[int, int], patch: Pair, stride: Pair) -> list[tuple[int, int]]:
    """Top-left corners (row, col) of every occluding window, row-major."""
    (h, w), (ph, pw), (sh, sw) = size, _pair(patch, "patch"), _pair(stride, "stride")
    if ph > h or pw > w:
        raise ValueError(f"patch {ph}x{pw} is larger than the image {h}x{w}; use a smaller --patch")
    return [(r, c) for r in range(0, h - ph + 1, sh) for c in range(0, w - pw + 1, sw)]


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    unit: UnitLike,
    patch: Optional[Pair] = None,
    stride: Optional[Pair] = None,
    baseline: Union[float, Sequence[float], torch.Tensor] = 0.0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Map of the unit's activation drop when each region is hidden.

    x: (B, C, H, W) in the model's input space ([0, 1] for a TargetModel). patch, stride: pixels, an int or
    (rows, cols); by default patch = a seventh of the image side (4 for 28 x 28, 32 for 224 x 224) and stride =
    half the patch. baseline: the value written into the window: a float, one float per channel, or a tensor
    broadcastable to (C, H, W) (e.g. a blurred copy of the image). batch_size: occluded copies per forward pass.
    Returns (B, H, W) in units of the activation, on x's device and dtype.
    """
    check_batch(x, dims=(4,))
    check_eval(model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    units = resolve_units(unit, x.shape[0])
    b, c, h, w = x.shape
    if patch is None:
        patch = default_window((h, w))[0]
    if stride is None:
        stride = tuple(max(1, p // 2) for p in _pair(patch, "patch"))
    ph, pw = _pair(patch, "patch")
    corners = window_positions((h, w), patch, stride)
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if base.dim() == 1:
        if base.numel() != c:
            raise ValueError(f"baseline has {base.numel()} values but the images have {c} channels")
        base = base.view(c, 1, 1)
    base = base.expand(c, h, w)
    drops = torch.zeros(b, h, w, dtype=x.dtype, device=x.device)
    counts = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    for r, col in corners:
        counts[r: r + ph, col: col + pw] += 1
    with torch.no_grad():
        reference = unit_values(model, x, units)  # (B,)
        for i in range(b):
            for lo in range(0, len(corners), batch_size):
                part = corners[lo: lo + batch_size]
                batch = x[i].expand(len(part), c, h, w).clone()  # (n, C, H, W)
                for k, (r, col) in enumerate(part):
                    batch[k, :, r: r + ph, col: col + pw] = base[:, r: r + ph, col: col + pw]
                drop = reference[i] - unit_values(model, batch, [units[i]] * len(part))  # (n,)
                for k, (r, col) in enumerate(part):
                    drops[i, r: r + ph, col: col + pw] += drop[k]
    return drops / counts.clamp(min=1)
