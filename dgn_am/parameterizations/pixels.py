"""Pixels around a centre image (Simonyan, Yosinski, Mahendran), and the mean image that pixel and Fourier starts
may use."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from dgn_am.parameterizations.base import Init, Parameterization, seeded_normal
from dgn_am.parameterizations.fourier import decorrelation_matrix


class PixelParam(Parameterization):
    """Pixels around a centre image: x = centre + p, p of shape (B, C, H, W).

    `centre` is the model's normalization mean by default, so p = 0 (init "zeros") is Simonyan's all-zero start in
    mean-subtracted coordinates, and an L2 penalty on p is his ||x||^2. It may also be an image (C, H, W) in
    [0, 1], e.g. the dataset mean image: then p = 0 is that image, and decay or pixel clipping pull towards it.
    init "randn" draws p ~ N(0, init_std^2); a tensor (C, H, W) in [0, 1] starts every item from that image.
    box=True projects x into [0, 1] after every step, so what is saved is exactly what was scored.
    decorrelate (default: True for 3 channels, as Olah et al.'s parameterization): p holds decorrelated colour
    components, x = centre + M p per pixel with M = the ImageNet colour matrix of `decorrelation_matrix`, so a
    step in p moves the colours the way natural images vary; grayscale images are plain pixels.
    """

    name = "pixels"

    def __init__(self, shape: tuple[int, int, int], centre: Sequence[float] | float | torch.Tensor = 0.5,
                 init: Init = "zeros", init_std: float = 0.01, box: bool = True,
                 decorrelate: bool | None = None) -> None:
        self.shape = tuple(shape)
        self.decorrelate = (shape[0] == 3) if decorrelate is None else bool(decorrelate)
        if self.decorrelate and shape[0] != 3:
            raise ValueError(f"decorrelated colour needs 3 channels (RGB), the model has {shape[0]}; set "
                             "decorrelate=False")
        self.colour = decorrelation_matrix() if self.decorrelate else None  # (3, 3): rgb = colour @ p
        self.colour_inv = torch.linalg.inv(self.colour) if self.decorrelate else None
        if isinstance(centre, torch.Tensor) and centre.dim() == 3:
            if tuple(centre.shape) != self.shape:
                raise ValueError(f"centre image has shape {tuple(centre.shape)}, the model needs {self.shape}")
            self.centre = centre.detach().float().cpu().unsqueeze(0)  # (1, C, H, W)
            self.centre_is_image = True
        else:
            self.centre_is_image = False
            c = torch.as_tensor(centre, dtype=torch.float32).reshape(-1)
            self.centre = (c if c.numel() == shape[0] else c.expand(shape[0])).view(1, -1, 1, 1)
        self.init_mode, self.init_std, self.box = init, init_std, box

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if isinstance(self.init_mode, torch.Tensor):
            if tuple(self.init_mode.shape) != self.shape:
                raise ValueError(f"init image has shape {tuple(self.init_mode.shape)}, the model needs {self.shape}")
            p = self._unmix(self.init_mode.float().unsqueeze(0) - self.centre).expand(len(seeds), *self.shape).clone()
        elif self.init_mode == "zeros":
            p = torch.zeros(len(seeds), *self.shape)
        elif self.init_mode == "randn":
            p = seeded_normal(seeds, self.shape, self.init_std)
        else:
            raise ValueError(f"unknown pixel init '{self.init_mode}'; use 'zeros', 'randn' or an image tensor")
        return p.to(device=device, dtype=dtype)

    def _mix(self, p: torch.Tensor) -> torch.Tensor:
        """Decorrelated components (B, 3, H, W) -> RGB offsets from the centre; the identity without decorrelate."""
        return p if self.colour is None else torch.einsum("ij,bjhw->bihw", self.colour.to(p), p)

    def _unmix(self, d: torch.Tensor) -> torch.Tensor:
        return d if self.colour_inv is None else torch.einsum("ij,bjhw->bihw", self.colour_inv.to(d), d)

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        return self.centre.to(p) + self._mix(p)

    def project(self, p: torch.Tensor) -> None:
        if self.box:
            c = self.centre.to(p)
            if self.colour is None:
                torch.maximum(torch.minimum(p, 1 - c), -c, out=p)
            else:  # clamp the image, then back to components
                p.copy_(self._unmix((c + self._mix(p)).clamp(0, 1) - c))

    def settings(self) -> dict:
        init = "image" if isinstance(self.init_mode, torch.Tensor) else self.init_mode
        centre = "image" if self.centre_is_image else self.centre.flatten().tolist()
        return {"name": self.name, "init": init, "init_std": self.init_std, "box": self.box, "centre": centre,
                "decorrelate": self.decorrelate}


def mean_image(spec, source: str | Path | torch.Tensor | None = None) -> torch.Tensor:
    """The start image for "mean-image" inits, (C, H, W) in [0, 1], for a model with InputSpec `spec`.

    source: an image tensor (C, H, W), or an image file (converted and centre-cropped to the model's input), or None:
    the data set's mean image where dgn_am.data knows the model's data set (Fashion-MNIST: its training-set mean),
    else a flat image of the normalization mean.
    """
    from dgn_am.data import dataset_mean_image

    shape = (spec.channels, *spec.size)
    if isinstance(source, torch.Tensor):
        if tuple(source.shape) != shape:
            raise ValueError(f"mean image has shape {tuple(source.shape)}, the model needs {shape}")
        return source.float().cpu()
    if source is not None:
        from dgn_am.imageio import load_image

        return load_image(source, spec)[0]
    known = dataset_mean_image(spec)
    if known is not None:
        return known
    return torch.tensor(spec.unit_mean(), dtype=torch.float32).view(-1, 1, 1).expand(shape).clone()
