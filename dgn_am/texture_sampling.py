"""Non-parametric texture synthesis: grow a texture one pixel at a time in scanline order, copying the example's
pixel whose neighbourhood best matches what has been generated so far (the nearest-neighbour method the project's
notes list beside Gatys et al.'s Gram matrices; Efros & Leung 1999 sample among the near-best matches instead, and
Wei & Levoy 2000 grow in scanline order with a causal neighbourhood, as here).

For output pixel (i, j), its neighbourhood is the causal half of a `window` x `window` square: the rows above it and
the pixels left of it in its own row, the ones already generated. Every example position whose whole causal
neighbourhood lies inside the example is a candidate. The distance to a candidate is the mean squared difference
over the neighbourhood pixels that exist in the output (those outside it, at the top and left borders, are left
out). The pixel copied is the candidate's centre: the nearest one (`tolerance` 0), or one drawn at random among
those within (1 + tolerance) times the smallest distance (Efros & Leung's epsilon, 0.1 in their paper); ties are
broken by the same draw. The first pixel has no neighbourhood and is drawn at random among all candidates. No
network is involved: the textures can be larger than any model's input.
"""

from __future__ import annotations

from typing import Callable

import torch

MAX_SIDE = 512  # a pixel loop over side^2 pixels: 512 x 512 takes minutes


def causal_offsets(window: int) -> list[tuple[int, int]]:
    """(dy, dx) of the already-generated neighbours of a pixel in scanline order: dy < 0 within the window's rows
    above, or dy == 0 and dx < 0. window 3 -> [(-1, -1), (-1, 0), (-1, 1), (0, -1)]."""
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd number >= 3, got {window}")
    half = window // 2
    return [(dy, dx) for dy in range(-half, 1) for dx in range(-half, half + 1) if dy < 0 or dx < 0]


def candidates(example: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every example position whose causal neighbourhood fits inside it: (N, K, C) neighbourhood values (K =
    len(causal_offsets(window))) and (N, C) centre values. example (C, H, W)."""
    c, h, w = example.shape
    half = window // 2
    if h <= half or w <= 2 * half:
        raise ValueError(f"the example ({h}x{w}) is too small for a {window}x{window} window: use a smaller "
                         f"--window or a larger example")
    ys, xs = torch.meshgrid(torch.arange(half, h), torch.arange(half, w - half), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    around = torch.stack([example[:, ys + dy, xs + dx] for dy, dx in causal_offsets(window)], 1)  # (C, K, N)
    return around.permute(2, 1, 0).contiguous(), example[:, ys, xs].T.contiguous()


def scanline_texture(example: torch.Tensor, size: tuple[int, int], window: int = 5, tolerance: float = 0.0,
                     seed: int = 0, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """A (C, size[0], size[1]) texture grown from example (C, H, W), values copied from it (so in its range).

    tolerance: 0 copies the nearest match; > 0 draws among matches within (1 + tolerance) x the best distance.
    seed: draws the first pixel and breaks ties, so the same seed gives the same texture.
    progress(row, rows) is called after each output row."""
    if example.dim() != 3:
        raise ValueError(f"example must be (C, H, W), got shape {tuple(example.shape)}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    out_h, out_w = size
    if not (1 <= out_h <= MAX_SIDE and 1 <= out_w <= MAX_SIDE):
        raise ValueError(f"size must be within 1..{MAX_SIDE} on each side, got {out_h}x{out_w}")
    example = example.detach().float().cpu()
    around, centre = candidates(example, window)
    offsets = torch.tensor(causal_offsets(window))  # (K, 2)
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(example.shape[0], out_h, out_w)
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = centre[_pick(out, i, j, offsets, around, tolerance, gen)]
        if progress is not None:
            progress(i + 1, out_h)
    return out


def _pick(out: torch.Tensor, i: int, j: int, offsets: torch.Tensor, around: torch.Tensor, tolerance: float,
          gen: torch.Generator) -> int:
    """The candidate whose centre is copied to out[:, i, j] (see the module docstring)."""
    ys, xs = offsets[:, 0] + i, offsets[:, 1] + j
    inside = (ys >= 0) & (xs >= 0) & (xs < out.shape[2])  # rows above i and pixels left of j are generated
    if not inside.any():
        return int(torch.randint(len(around), (1,), generator=gen))
    have = out[:, ys[inside], xs[inside]].T  # (k, C)
    dist = (around[:, inside] - have).pow(2).mean((1, 2))  # (N,)
    best = dist.min()
    near = torch.nonzero(dist <= best * (1 + tolerance) + 1e-12).flatten()
    return int(near[torch.randint(len(near), (1,), generator=gen)])
