"""What is optimized, and how it becomes an image.

A parameterization creates the optimized tensor p (B, ...) from per-item seeds, maps it to images
(B, C, H, W) in [0, 1] in the target model's colour format, and projects p back onto its constraint set after every
step. Randomness comes only from per-item torch.Generators seeded by the item's seed, so an item's start depends on
its seed alone, not on what else is in the batch.
"""

from __future__ import annotations

import functools
from pathlib import Path
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
    mean-subtracted coordinates, and an L2 penalty on p is his ||x||^2. It may also be an image (C, H, W) in
    [0, 1], e.g. the dataset mean image: then p = 0 is that image, and decay or pixel clipping pull towards it.
    init "randn" draws p ~ N(0, init_std^2); a tensor (C, H, W) in [0, 1] starts every item from that image.
    box=True projects x into [0, 1] after every step, so what is saved is exactly what was scored.
    """

    name = "pixels"

    def __init__(self, shape: tuple[int, int, int], centre: Sequence[float] | float | torch.Tensor = 0.5,
                 init: Init = "zeros", init_std: float = 0.01, box: bool = True) -> None:
        self.shape = tuple(shape)
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
        centre = "image" if self.centre_is_image else self.centre.flatten().tolist()
        return {"name": self.name, "init": init, "init_std": self.init_std, "box": self.box, "centre": centre}


class CodeParam(Parameterization):
    """DGN-AM: optimize a code h (B, code_dim) of a generator prior; the image is prior.image(h) for `target`.

    init "randn": h ~ N(0, init_std^2) per item from its seed (the reference, init_std 1);
    init "stats": h ~ N(mean, (init_std * std)^2) of the real codes, so the start looks like a real code;
    init "bank": the code of a real training image picked by the seed (the reference's start from E(x)), plus
    N(0, (init_std * std)^2) noise; the prior file stores a bank of such codes;
    init "bank-unit": a bank code chosen for the item's unit (dgn_am.methods.unit_bank_starts, which synthesize()
    puts into `starts`), plus the same noise;
    a tensor (code_dim,) or (B, code_dim) starts from given codes (e.g. the code of a real image).
    project() clips h into [lower, upper] per unit (post-ReLU codes: [0, mean + k * std]).
    clamp=True clamps the image to [0, 1] before the target sees it (what is scored is what is saved); the reference
    loop (clamp=False) feeds the raw generator output to the target and clips only what it saves.
    """

    name = "code"

    def __init__(self, prior, target_spec, init: Init = "randn", init_std: float = 1.0, clip: bool = True,
                 clamp: bool = True) -> None:
        self.prior, self.target_spec = prior, target_spec
        self.init_mode, self.init_std, self.clip, self.clamp = init, init_std, clip, clamp
        self.starts: torch.Tensor | None = None  # (B, code_dim) for init "bank-unit"

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
        elif self.init_mode == "bank":
            bank = getattr(self.prior, "bank", None)
            if bank is None or len(bank) == 0:
                raise ValueError("init 'bank' needs a prior file with a code bank (code_bank); this one has none")
            picks = [int(torch.randint(len(bank), (1,), generator=torch.Generator().manual_seed(int(s)))) for s in seeds]
            h = bank.cpu()[picks] + self._start_noise(seeds)
        elif self.init_mode == "bank-unit":
            if self.starts is None or len(self.starts) != len(seeds):
                raise ValueError("init 'bank-unit' picks each item's start for its unit: run the method through "
                                 "dgn_am.synthesize (or set CodeParam.starts to one code per item)")
            h = self.starts.float().cpu() + self._start_noise(seeds)
        else:
            raise ValueError(f"unknown code init '{self.init_mode}'; use 'randn', 'stats', 'bank', 'bank-unit' or a "
                             "code tensor")
        return h.to(device=device, dtype=dtype)

    def _start_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """N(0, (init_std * std)^2) per item from its seed, added to a bank start (its own stream, apart from the
        seed's pick)."""
        noise = seeded_normal([s + 1_000_003 for s in seeds], (self.prior.code_dim,), self.init_std)
        return noise * self.prior.std.cpu()

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        return self.prior.image(p, self.target_spec, clamp=self.clamp)

    def project(self, p: torch.Tensor) -> None:
        if self.clip:
            torch.maximum(torch.minimum(p, self.prior.upper.to(p)), self.prior.lower.to(p), out=p)

    def settings(self) -> dict:
        init = "codes" if isinstance(self.init_mode, torch.Tensor) else self.init_mode
        return {"name": self.name, "init": init, "init_std": self.init_std, "clip": self.clip, "clamp": self.clamp,
                "prior": self.prior.provenance.get("path"), "code_dim": self.prior.code_dim}


# ---- Hand-crafted image parameterizations (Olah et al. 2017; mean-image starts) ----

# Square root of ImageNet's RGB colour covariance (rows R, G, B; columns: decorrelated components), as published
# with Lucid. FourierParam scales it so its largest column has unit norm.
IMAGENET_COLOUR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


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
    image; an image tensor (C, H, W) in [0, 1]: from_image(image) plus N(0, init_std^2) noise.
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
        self.colour = m / m.norm(dim=0).max() if self.decorrelate else None  # (C, C): rgb = colour @ decorrelated
        self.scale = spectrum_scale(h, w, decay_power)  # (H, W // 2 + 1)
        self.decay_power, self.init_mode, self.init_std, self.gain = decay_power, init, init_std, gain

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        c, h, w = self.shape
        spec_shape = (c, h, w // 2 + 1, 2)
        if isinstance(self.init_mode, torch.Tensor):
            if tuple(self.init_mode.shape) != self.shape:
                raise ValueError(f"init image has shape {tuple(self.init_mode.shape)}, the model needs {self.shape}")
            base = self.from_image(self.init_mode.float().cpu().unsqueeze(0))  # (1, C, H, Wf, 2)
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


@functools.lru_cache(maxsize=1)
def _fashion_mnist_mean() -> torch.Tensor:
    from dgn_am.data import load_fashion_mnist

    images, _ = load_fashion_mnist("train")
    return images.mean(0)  # (1, 28, 28)


def mean_image(spec, source: str | Path | torch.Tensor | None = None) -> torch.Tensor:
    """The start image for "mean-image" inits, (C, H, W) in [0, 1], for a model with InputSpec `spec`.

    source: an image tensor (C, H, W), or an image file (converted and centre-cropped to the model's input), or None:
    the Fashion-MNIST training-set mean image for Fashion-MNIST models, else a flat image of the normalization mean.
    """
    from dgn_am.models.fmnist import FASHION_MNIST_INPUT

    shape = (spec.channels, *spec.size)
    if isinstance(source, torch.Tensor):
        if tuple(source.shape) != shape:
            raise ValueError(f"mean image has shape {tuple(source.shape)}, the model needs {shape}")
        return source.float().cpu()
    if source is not None:
        from dgn_am.imageio import load_image

        return load_image(source, spec)[0]
    if spec == FASHION_MNIST_INPUT:
        return _fashion_mnist_mean().clone()
    return torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1).expand(shape).clone()
