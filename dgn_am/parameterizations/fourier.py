"""Olah et al. 2017's image parameterization: a 1/f-scaled Fourier spectrum with decorrelated colour."""

from __future__ import annotations

from typing import Sequence

import torch

from dgn_am.parameterizations.base import Init, Parameterization, seeded_normal

# Square root of ImageNet's RGB colour covariance (rows R, G, B; columns: decorrelated components), as published
# with Lucid. FourierParam scales it so its largest column has unit norm.
IMAGENET_COLOUR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


def decorrelation_matrix(colour: Sequence[Sequence[float]] | torch.Tensor | None = None) -> torch.Tensor:
    """(3, 3) float32: `colour` (default IMAGENET_COLOUR_SQRT) scaled so its largest column has unit norm;
    rgb = matrix @ decorrelated, per pixel."""
    m = torch.as_tensor(IMAGENET_COLOUR_SQRT if colour is None else colour, dtype=torch.float32)
    return m / m.norm(dim=0).max()


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """(H, W // 2 + 1) float32: 1 / max(|f|, 1 / max(H, W))^decay_power, |f| in cycles per pixel of each rfft2 bin."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = (fx ** 2 + fy ** 2).sqrt().clamp(min=1.0 / max(h, w))
    return f.pow(-decay_power).float()


class FourierParam(Parameterization):
    """Olah et al.'s image parameterization: a 1/f-scaled spectrum, decorrelated colour, a sigmoid to [0, 1].

    p: (B, C, H, W // 2 + 1, 2), real and imaginary parts of each channel's rfft2 spectrum, in units where white
    noise p has a 1/f^decay_power image spectrum (so every frequency band moves at a similar rate under Adam).
    to_image: z = gain * irfft2(p * spectrum_scale, norm="ortho") (B, C, H, W); for 3 channels with decorrelate,
    z <- M z per pixel with M = IMAGENET_COLOUR_SQRT (or `colour`) normalized; image = sigmoid(z) in (0, 1).
    init "randn": p ~ N(0, init_std^2) per item from its seed (Lucid: 0.01, a near-grey start); "zeros": a grey
    image; an image tensor (C, H, W) (or (B, C, H, W), one per item) in [0, 1]: from_image(image) plus
    N(0, init_std^2) noise.
    """

    name = "fourier"

    def __init__(self, shape: tuple[int, int, int], decorrelate: bool | None = None, decay_power: float = 1.0,
                 init: Init = "randn", init_std: float = 0.01, gain: float = 0.25,
                 colour: Sequence[Sequence[float]] | torch.Tensor | None = None) -> None:
        c, h, w = self.shape = tuple(shape)
        self.decorrelate = (c == 3) if decorrelate is None else bool(decorrelate)
        if self.decorrelate and c != 3 and colour is None:
            raise ValueError(f"decorrelated colour needs 3 channels (RGB), the model has {c}; set decorrelate=False "
                             "or pass a (C, C) colour matrix")
        m = torch.as_tensor(IMAGENET_COLOUR_SQRT if colour is None else colour, dtype=torch.float32)
        if self.decorrelate and tuple(m.shape) != (c, c):
            raise ValueError(f"colour matrix has shape {tuple(m.shape)}; it must be ({c}, {c})")
        self.colour = decorrelation_matrix(m) if self.decorrelate else None  # (C, C): rgb = colour @ decorrelated
        self.scale = spectrum_scale(h, w, decay_power)  # (H, W // 2 + 1)
        self.decay_power, self.init_mode, self.init_std, self.gain = decay_power, init, init_std, gain

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        c, h, w = self.shape
        spec_shape = (c, h, w // 2 + 1, 2)
        if isinstance(self.init_mode, torch.Tensor):
            images = self.init_mode.float().cpu()
            images = images.unsqueeze(0) if images.dim() == 3 else images  # (1 or B, C, H, W)
            if tuple(images.shape[1:]) != self.shape or len(images) not in (1, len(seeds)):
                raise ValueError(f"init image has shape {tuple(self.init_mode.shape)}, the model needs {self.shape} "
                                 f"(or ({len(seeds)}, *{self.shape}), one per item)")
            base = self.from_image(images)  # (1 or B, C, H, Wf, 2)
            p = base + seeded_normal(seeds, spec_shape, self.init_std)
        elif self.init_mode == "randn":
            p = seeded_normal(seeds, spec_shape, self.init_std)
        elif self.init_mode == "zeros":
            p = torch.zeros(len(seeds), *spec_shape)
        else:
            raise ValueError(f"unknown fourier init '{self.init_mode}'; use 'randn', 'zeros' or an image tensor")
        return p.to(device=device, dtype=dtype)

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        h, w = self.shape[1:]
        spectrum = torch.view_as_complex(p.contiguous()) * self.scale.to(p.device)  # (B, C, H, Wf) complex
        z = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") * self.gain  # (B, C, H, W)
        if self.colour is not None:
            z = torch.einsum("ij,bjhw->bihw", self.colour.to(z), z)
        return torch.sigmoid(z)

    def from_image(self, images: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
        """The inverse of to_image: images (B, C, H, W) in [0, 1] -> p (B, C, H, W // 2 + 1, 2).

        Exact (to float precision) for values in [eps, 1 - eps]; values outside are clamped into it first.
        """
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"images of shape {tuple(images.shape)} do not fit this parameterization {self.shape}")
        z = torch.logit(images.float().clamp(eps, 1 - eps))
        if self.colour is not None:
            z = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.colour).to(z), z)
        spectrum = torch.fft.rfft2(z / self.gain, norm="ortho") / self.scale.to(z.device)
        return torch.view_as_real(spectrum).contiguous()

    def settings(self) -> dict:
        init = "image" if isinstance(self.init_mode, torch.Tensor) else self.init_mode
        return {"name": self.name, "init": init, "init_std": self.init_std, "decorrelate": self.decorrelate,
                "decay_power": self.decay_power, "gain": self.gain}
