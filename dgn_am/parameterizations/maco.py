"""MACO (Fel et al., NeurIPS 2023): optimize only the phase of an image's Fourier spectrum; the magnitude stays
fixed to the mean magnitude spectrum of real images of the data set. Also its transparency map: the accumulated
magnitude of the objective's gradient with respect to the image.

The magnitude (a `Spectrum`) is computed once from real images (`mean_spectrum`), stored in a .safetensors file
(`save_spectrum`; `dgn-am spectrum` writes one from a folder of your own images), and loaded by name or path
(`load_spectrum`): "fmnist" is the shipped checkpoints/spectrum-fmnist.safetensors (Fashion-MNIST training split).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from dgn_am.parameterizations.base import Init, Parameterization, seeded_normal

SHIPPED_SPECTRA = {"fmnist": "spectrum-fmnist.safetensors"}  # name -> file in checkpoints/


@dataclass(frozen=True)
class Spectrum:
    """What MACO keeps fixed: the mean magnitude spectrum of real images and their pixel statistics.

    magnitude: (C, H, W // 2 + 1) float32, mean over images of |rfft2(x, norm="ortho")| per channel.
    pixel_mean, pixel_std: (C,) mean and std of the real images' pixels in [0, 1]: a phase-only image, standardized
    per channel, is mapped to mean + std * z, so it has the data's brightness and contrast.
    source: where it came from (for the settings)."""

    magnitude: torch.Tensor
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    source: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images it describes (W from the rfft width: even widths assumed)."""
        c, h, wf = self.magnitude.shape
        return c, h, 2 * (wf - 1)

    def digest(self) -> str:
        """sha256 of the magnitude and pixel statistics (float32 bytes), to tell spectra apart in the settings."""
        h = hashlib.sha256()
        for t in (self.magnitude, self.pixel_mean, self.pixel_std):
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


@torch.no_grad()
def mean_spectrum(images: torch.Tensor, batch: int = 5000, source: dict | None = None) -> Spectrum:
    """The Spectrum of real images (N, C, H, W) in [0, 1], H and W even: mean |rfft2| per channel and frequency,
    and the pixels' mean and std per channel."""
    if images.dim() != 4 or len(images) < 2:
        raise ValueError(f"mean_spectrum needs at least 2 images (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[-1] % 2:
        raise ValueError(f"mean_spectrum needs an even image width, got {images.shape[-1]}")
    total = None
    for lo in range(0, len(images), batch):
        mag = torch.fft.rfft2(images[lo: lo + batch].double(), norm="ortho").abs().sum(0)  # (C, H, Wf)
        total = mag if total is None else total + mag
    x = images.double().transpose(0, 1).flatten(1)  # (C, N * H * W)
    return Spectrum((total / len(images)).float(), x.mean(1).float(), x.std(1).float(),
                    {"images": len(images), **(source or {})})


def save_spectrum(spectrum: Spectrum, path: str | Path) -> None:
    """Write a Spectrum as .safetensors (tensors magnitude, pixel_mean, pixel_std; metadata: its source)."""
    from safetensors.torch import save_file

    from dgn_am.imageio import atomic_write

    tensors = {"magnitude": spectrum.magnitude.contiguous(), "pixel_mean": spectrum.pixel_mean.contiguous(),
               "pixel_std": spectrum.pixel_std.contiguous()}
    meta = {"kind": "maco-spectrum", **{k: v if isinstance(v, str) else json.dumps(v)
                                        for k, v in spectrum.source.items()}}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_spectrum(name_or_path: str | Path) -> Spectrum:
    """A shipped spectrum by name (SHIPPED_SPECTRA: "fmnist") or a file written by save_spectrum / dgn-am spectrum."""
    from safetensors import safe_open

    from dgn_am.models.loading import checkpoints_dir

    text = str(name_or_path)
    path = checkpoints_dir() / SHIPPED_SPECTRA[text] if text in SHIPPED_SPECTRA else Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"MACO spectrum {text!r} not found ({path}); give a shipped name "
                                f"({', '.join(SHIPPED_SPECTRA)}) or a file made by `dgn-am spectrum --image-folder "
                                "DIR --size H --channels C --out FILE`")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        if meta.get("kind") != "maco-spectrum" or set(f.keys()) != {"magnitude", "pixel_mean", "pixel_std"}:
            raise ValueError(f"{path} is not a MACO spectrum file (make one with `dgn-am spectrum`)")
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    source = {"file": text if text in SHIPPED_SPECTRA else str(path), **{k: v for k, v in meta.items() if k != "kind"}}
    return Spectrum(tensors["magnitude"], tensors["pixel_mean"], tensors["pixel_std"], source)


class MacoParam(Parameterization):
    """MACO: p is the phase (B, C, H, W // 2 + 1) in radians; the magnitude is the Spectrum's, fixed.

    to_image: z = irfft2(magnitude * exp(i p), norm="ortho") (B, C, H, W); z standardized per item and channel
    (zero mean, unit std); image = clamp(pixel_mean + pixel_std * z, 0, 1).
    init "randn": p ~ N(0, init_std^2) per item from its seed (init_std ~ 1.8 is close to a uniform phase).
    While a run is in progress every rendered image keeps a hook that adds |d objective / d image| to a per-item
    accumulator: extras()["transparency"] (B, 1, H, W) in [0, 1], the sum over steps and channels, each item divided
    by its maximum (MACO's transparency map: where the objective kept asking for changes).
    """

    name = "maco"

    def __init__(self, spectrum: Spectrum, shape: Sequence[int], init: Init = "randn", init_std: float = 1.0) -> None:
        self.shape = tuple(int(s) for s in shape)
        if tuple(spectrum.shape) != self.shape:
            raise ValueError(f"the MACO spectrum is for {spectrum.shape[0]}x{spectrum.shape[1]}x{spectrum.shape[2]} "
                             f"images, the model takes {self.shape[0]}x{self.shape[1]}x{self.shape[2]}; make one for "
                             "this size with `dgn-am spectrum --image-folder DIR --size H --channels C --out FILE`")
        self.spectrum, self.init_mode, self.init_std = spectrum, init, init_std
        self._acc: torch.Tensor | None = None  # (B, 1, H, W) accumulated |gradient|

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        c, h, w = self.shape
        if self.init_mode == "randn":
            p = seeded_normal(seeds, (c, h, w // 2 + 1), self.init_std)
        elif self.init_mode == "zeros":
            p = torch.zeros(len(seeds), c, h, w // 2 + 1)
        else:
            raise ValueError(f"unknown maco init '{self.init_mode}'; use 'randn' or 'zeros'")
        self._acc = torch.zeros(len(seeds), 1, h, w)
        return p.to(device=device, dtype=dtype)

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        h, w = self.shape[1:]
        mag = self.spectrum.magnitude.to(p)
        spectrum = torch.polar(mag.expand_as(p), p)  # (B, C, H, Wf) complex: magnitude * exp(i phase)
        z = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")  # (B, C, H, W)
        z = (z - z.mean((-2, -1), keepdim=True)) / z.std((-2, -1), keepdim=True).clamp(min=1e-8)
        mean = self.spectrum.pixel_mean.to(p).view(1, -1, 1, 1)
        std = self.spectrum.pixel_std.to(p).view(1, -1, 1, 1)
        x = (mean + std * z).clamp(0, 1)
        if x.requires_grad and self._acc is not None and len(x) == len(self._acc):
            x.register_hook(self._accumulate)
        return x

    def _accumulate(self, grad: torch.Tensor) -> None:
        self._acc += grad.detach().abs().sum(1, keepdim=True).float().cpu()

    def extras(self) -> dict:
        if self._acc is None:
            return {}
        top = self._acc.flatten(1).amax(1).clamp(min=1e-30).view(-1, 1, 1, 1)
        return {"transparency": self._acc / top}

    def settings(self) -> dict:
        return {"name": self.name, "init": self.init_mode if isinstance(self.init_mode, str) else "tensor",
                "init_std": self.init_std, "spectrum": self.spectrum.source, "spectrum_sha256": self.spectrum.digest()}
