"""What is optimized, and how it becomes an image.

A parameterization creates the optimized tensor p (B, ...) from per-item seeds, maps it to images
(B, C, H, W) in [0, 1] in the target model's colour format, and projects p back onto its constraint set after every
step. Randomness comes only from per-item torch.Generators seeded by the item's seed, so an item's start depends on
its seed alone, not on what else is in the batch.
"""

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

    def settings(self) -> dict:
        return {"name": self.name}


class PixelParam(Parameterization):
    """Pixels around a centre image: x = centre + p, p of shape (B, C, H, W).

    `centre` is the model's normalization mean by default, so p = 0 (init "zeros") is Simonyan's all-zero start in
    mean-subtracted coordinates, and an L2 penalty on p is his ||x||^2. init "randn" draws p ~ N(0, init_std^2);
    a tensor (C, H, W) in [0, 1] starts every item from that image (e.g. the dataset mean image).
    box=True projects x into [0, 1] after every step, so what is saved is exactly what was scored.
    """

    name = "pixels"

    def __init__(self, shape: tuple[int, int, int], centre: Sequence[float] | float = 0.5, init: Init = "zeros",
                 init_std: float = 0.01, box: bool = True) -> None:
        self.shape = tuple(shape)
        c = torch.as_tensor(centre, dtype=torch.float32).reshape(-1)
        self.centre = (c if c.numel() == shape[0] else c.expand(shape[0])).view(1, -1, 1, 1)
        self.init_mode, self.init_std, self.box = init, init_std, box

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if isinstance(self.init_mode, torch.Tensor):
            if tuple(self.init_mode.shape) != self.shape:
                raise ValueError(f"init image has shape {tuple(self.init_mode.shape)}, the model needs {self.shape}")
            p = (self.init_mode.float().unsqueeze(0) - self.centre).expand(len(seeds), *self.shape).clone()
        elif self.init_mode == "zeros":
            p = torch.zeros(len(seeds), *self.shape)
        elif self.init_mode == "randn":
            p = seeded_normal(seeds, self.shape, self.init_std)
        else:
            raise ValueError(f"unknown pixel init '{self.init_mode}'; use 'zeros', 'randn' or an image tensor")
        return p.to(device=device, dtype=dtype)

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        return self.centre.to(p) + p

    def project(self, p: torch.Tensor) -> None:
        if self.box:
            c = self.centre.to(p)
            torch.maximum(torch.minimum(p, 1 - c), -c, out=p)

    def settings(self) -> dict:
        init = "image" if isinstance(self.init_mode, torch.Tensor) else self.init_mode
        return {"name": self.name, "init": init, "init_std": self.init_std, "box": self.box,
                "centre": self.centre.flatten().tolist()}
