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


class CodeParam(Parameterization):
    """DGN-AM: optimize a code h (B, code_dim) of a generator prior; the image is prior.image(h) for `target`.

    init "randn": h ~ N(0, init_std^2) per item from its seed (the reference, init_std 1);
    init "stats": h ~ N(mean, (init_std * std)^2) of the real codes, so the start looks like a real code;
    a tensor (code_dim,) or (B, code_dim) starts from given codes (e.g. the code of a real image).
    project() clips h into [lower, upper] per unit (post-ReLU codes: [0, mean + k * std]).
    """

    name = "code"

    def __init__(self, prior, target_spec, init: Init = "randn", init_std: float = 1.0, clip: bool = True) -> None:
        self.prior, self.target_spec = prior, target_spec
        self.init_mode, self.init_std, self.clip = init, init_std, clip

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        d = self.prior.code_dim
        if isinstance(self.init_mode, torch.Tensor):
            h = self.init_mode.reshape(-1, d).float().cpu()
            if h.shape[0] not in (1, len(seeds)):
                raise ValueError(f"init codes have {h.shape[0]} rows; need 1 or {len(seeds)}")
            h = h.expand(len(seeds), d).clone()
        elif self.init_mode == "randn":
            h = seeded_normal(seeds, (d,), self.init_std)
        elif self.init_mode == "stats":
            h = self.prior.mean.cpu() + seeded_normal(seeds, (d,), self.init_std) * self.prior.std.cpu()
        else:
            raise ValueError(f"unknown code init '{self.init_mode}'; use 'randn', 'stats' or a code tensor")
        return h.to(device=device, dtype=dtype)

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        return self.prior.image(p, self.target_spec)

    def project(self, p: torch.Tensor) -> None:
        if self.clip:
            torch.maximum(torch.minimum(p, self.prior.upper.to(p)), self.prior.lower.to(p), out=p)

    def settings(self) -> dict:
        init = "codes" if isinstance(self.init_mode, torch.Tensor) else self.init_mode
        return {"name": self.name, "init": init, "init_std": self.init_std, "clip": self.clip,
                "prior": self.prior.provenance.get("path"), "code_dim": self.prior.code_dim}
