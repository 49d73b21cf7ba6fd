"""DeepDream's octaves (Mordvintsev et al. 2015): a detail image added to a downscaled copy of the input, shown to
the model at its own input size."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from dgn_am.parameterizations.base import Parameterization


class OctaveParam(Parameterization):
    """x = resize(base + p) to `size`: p (B, C, h, w) is the detail added at this octave to base (B, C, h, w), the
    input images scaled to this octave, in [0, 1]; the image is resized bilinearly to the model's (H, W).

    start: (B, C, h, w) the detail carried over from the coarser octave (None: zeros). project() keeps base + p in
    [0, 1]. Draws nothing: every start is given."""

    name = "octave"

    def __init__(self, base: torch.Tensor, size: Sequence[int], start: torch.Tensor | None = None) -> None:
        self.base, self.size = base.detach(), tuple(int(v) for v in size)
        self.start = torch.zeros_like(self.base) if start is None else start.detach()
        if self.start.shape != self.base.shape:
            raise ValueError(f"octave start detail {tuple(self.start.shape)} does not match base {tuple(base.shape)}")

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if len(seeds) != len(self.base):
            raise ValueError(f"{len(seeds)} seeds for {len(self.base)} octave images")
        return self.start.to(device=device, dtype=dtype).clone()

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        x = self.base.to(p) + p
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def project(self, p: torch.Tensor) -> None:
        base = self.base.to(p)
        torch.maximum(torch.minimum(p, 1 - base), -base, out=p)

    def settings(self) -> dict:
        return {"name": self.name, "octave_size": list(self.base.shape[-2:]), "size": list(self.size)}
