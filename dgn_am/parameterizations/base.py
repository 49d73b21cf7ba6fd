"""The Parameterization interface: what is optimized and how it becomes an image, and seeded per-item noise."""

from __future__ import annotations

from typing import Sequence, Union

import torch

Init = Union[str, torch.Tensor]


def seeded_normal(seeds: Sequence[int], shape: tuple[int, ...], std: float = 1.0) -> torch.Tensor:
    """(B, *shape) float32 on the CPU; row b is N(0, std^2) drawn from a generator seeded with seeds[b]."""
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows) * std


class Parameterization:
    """Base class. Subclasses implement init, to_image, and optionally project and settings."""

    name = "base"

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Return the tensor to optimize, (B, ...), one row per seed."""
        raise NotImplementedError

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        """p (B, ...) -> images (B, C, H, W), nominally in [0, 1]; differentiable."""
        raise NotImplementedError

    def project(self, p: torch.Tensor) -> None:
        """Put p back into its constraint set, in place (called under no_grad after every step)."""

    def extras(self) -> dict:
        """Per-item maps the parameterization gathered during the run, {name: (B, ...)}, e.g. MACO's "transparency";
        the engine puts them in Result.extras."""
        return {}

    def settings(self) -> dict:
        return {"name": self.name}
