"""Random, differentiable image transforms for transformation robustness (Mahendran & Vedaldi; Olah et al.).

Each is a frozen dataclass called as (x (B, C, H, W) in [0, 1], gen: torch.Generator) -> images. Random values are
drawn per item from `gen` only (never the global RNG, never numpy), on the CPU, so a run repeats bit for bit.
Jitter, RandomScale and RandomRotate keep the size; Pad enlarges the canvas and the engine centre-crops the final
result back to the model's input size. Gradients flow through all of them (indexing, pad, grid_sample), and every
one works on the whole batch at once, with one draw per item.

Libraries: Pad is torchvision.transforms.v2.functional.pad. RandomScale and RandomRotate call torch's own
affine_grid and grid_sample with one matrix per item. torchvision's v2 `affine` is not used for them because it takes
one angle and scale per call (per-item draws would mean a Python loop over the batch) and fills the outside with a
constant only (no "border" or "reflection"). tests/test_transforms.py checks that each item's result equals
torchvision's `affine` with that item's angle or scale (bilinear, zero fill). kornia's batched rotate and scale wrap
the same two torch calls, so it was not added as a dependency for them. Jitter is a batched gather (torchvision has
no per-item roll).

Spatial settings are in pixels of the image at hand; `rescaled(factor)` gives the transform for an image whose side
is `factor` times larger (used by Method.reference_size). Angles and scale ratios do not depend on the size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF


def _scaled_pixels(pixels: int, factor: float) -> int:
    """Round pixels * factor half up, keeping at least 1 pixel when there was any."""
    return 0 if pixels == 0 else max(1, int(math.floor(pixels * factor + 0.5)))


@dataclass(frozen=True)
class Pad:
    """Pad every side by `pixels`: (B, C, H, W) -> (B, C, H + 2 pixels, W + 2 pixels). Draws nothing."""

    pixels: int = 12  # border width in pixels
    mode: str = "constant"  # constant, reflect (c b | a b c) or replicate (a a | a b c)
    value: float = 0.5  # fill value for mode "constant", in [0, 1]

    def __post_init__(self) -> None:
        if self.pixels < 0:
            raise ValueError(f"Pad: pixels must be >= 0, got {self.pixels}")
        if self.mode not in ("constant", "reflect", "replicate"):
            raise ValueError(f"Pad: unknown mode '{self.mode}'; use constant, reflect or replicate")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.pixels == 0:
            return x
        mode = {"replicate": "edge"}.get(self.mode, self.mode)  # torchvision's name for it
        return TF.pad(x, [self.pixels] * 4, fill=self.value if mode == "constant" else None, padding_mode=mode)

    def rescaled(self, factor: float) -> "Pad":
        return dataclasses.replace(self, pixels=_scaled_pixels(self.pixels, factor))


def jitter_offsets(batch: int, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """(B, 2) int64 offsets (dy, dx), each uniform on {-pixels, ..., pixels}, drawn from gen."""
    return torch.randint(-pixels, pixels + 1, (batch, 2), generator=gen)


@dataclass(frozen=True)
class Jitter:
    """Shift item b by (dy, dx) = jitter_offsets(...)[b] with wrap-around: out[b, :, i, j] = x[b, :, i - dy, j - dx]
    (indices mod H, W). After a Pad the wrapped-in pixels are the border, so it is a translation on a canvas."""

    pixels: int = 8  # largest shift in pixels, per axis

    def __post_init__(self) -> None:
        if self.pixels < 0:
            raise ValueError(f"Jitter: pixels must be >= 0, got {self.pixels}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        offsets = jitter_offsets(x.shape[0], self.pixels, gen).to(x.device)
        if self.pixels == 0:
            return x
        (b, c, h, w), dev = x.shape, x.device
        rows = (torch.arange(h, device=dev) - offsets[:, :1]) % h  # (B, H): out row i reads row i - dy
        cols = (torch.arange(w, device=dev) - offsets[:, 1:]) % w  # (B, W)
        items, channels = torch.arange(b, device=dev), torch.arange(c, device=dev)
        # every index broadcast to (B, C, H, W), so the result has the usual strides (a permuted view would look
        # channels-last to the convolutions that follow, which then round differently)
        return x[items[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None],
                 cols[:, None, None, :]]

    def rescaled(self, factor: float) -> "Jitter":
        return dataclasses.replace(self, pixels=_scaled_pixels(self.pixels, factor))


def _affine(x: torch.Tensor, theta: torch.Tensor, padding: str) -> torch.Tensor:
    """Resample x (B, C, H, W) with per-item 2x3 matrices theta (B, 2, 3) in normalized coordinates (bilinear)."""
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


_PADDINGS = ("zeros", "border", "reflection")


@dataclass(frozen=True)
class RandomScale:
    """Zoom item b about the centre by s_b ~ U(low, high) drawn from gen, keeping the size (s > 1 enlarges).
    Pixels brought in from outside (s < 1) follow `padding`."""

    low: float = 0.9  # smallest zoom factor
    high: float = 1.1  # largest zoom factor
    padding: str = "border"  # grid_sample padding for pixels from outside the image: zeros, border or reflection

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError(f"RandomScale needs 0 < low <= high, got low={self.low}, high={self.high}")
        if self.padding not in _PADDINGS:
            raise ValueError(f"RandomScale: unknown padding '{self.padding}'; use {', '.join(_PADDINGS)}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = self.low + (self.high - self.low) * torch.rand(x.shape[0], generator=gen, dtype=torch.float64)  # (B,)
        theta = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s  # output pixel u samples the input at u / s
        return _affine(x, theta, self.padding)

    def rescaled(self, factor: float) -> "RandomScale":
        return self


@dataclass(frozen=True)
class RandomRotate:
    """Rotate item b about the centre by a_b ~ U(-degrees, degrees) drawn from gen, keeping the size; corners
    brought in from outside follow `padding`. Correct for non-square images (rotation in pixel units)."""

    degrees: float = 10.0  # largest rotation angle, either way
    padding: str = "border"  # grid_sample padding: zeros, border or reflection

    def __post_init__(self) -> None:
        if self.degrees < 0:
            raise ValueError(f"RandomRotate: degrees must be >= 0, got {self.degrees}")
        if self.padding not in _PADDINGS:
            raise ValueError(f"RandomRotate: unknown padding '{self.padding}'; use {', '.join(_PADDINGS)}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand(x.shape[0], generator=gen, dtype=torch.float64)
        a = torch.deg2rad((2 * u - 1) * self.degrees)  # (B,) radians
        h, w = x.shape[-2:]
        cos, sin = torch.cos(a), torch.sin(a)
        theta = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w  # normalized coordinates: x / (W/2), y / (H/2)
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        return _affine(x, theta, self.padding)

    def rescaled(self, factor: float) -> "RandomRotate":
        return self


@dataclass(frozen=True)
class RandomCrop:
    """MACO's crops: for item b a square box of side s_b * min(H, W), s_b ~ U(low, high), at a uniform position
    inside the image, resampled (bilinear) back to (H, W). Keeps the size; draws 3 numbers per item from gen."""

    low: float = 0.75  # smallest box side, as a fraction of the image side
    high: float = 1.0  # largest box side

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high <= 1:
            raise ValueError(f"RandomCrop needs 0 < low <= high <= 1, got low={self.low}, high={self.high}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand(x.shape[0], 3, generator=gen, dtype=torch.float64)  # (B, 3): side, row, column
        s = self.low + (self.high - self.low) * u[:, 0]  # (B,) box side over image side
        theta = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = theta[:, 1, 1] = s  # output [-1, 1] samples the input at s * u + centre
        theta[:, 0, 2] = (2 * u[:, 2] - 1) * (1 - s)  # box centre, so the box stays inside the image
        theta[:, 1, 2] = (2 * u[:, 1] - 1) * (1 - s)
        return _affine(x, theta, "border")

    def rescaled(self, factor: float) -> "RandomCrop":
        return self


@dataclass(frozen=True)
class Noise:
    """Additive uniform noise (MACO's): x + U(-amplitude, amplitude) per pixel, drawn from gen. Keeps the size."""

    amplitude: float = 0.05  # largest change of a pixel value (images in [0, 1])

    def __post_init__(self) -> None:
        if not self.amplitude >= 0:
            raise ValueError(f"Noise: amplitude must be >= 0, got {self.amplitude}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand(x.shape, generator=gen, dtype=torch.float32)
        return x + (2 * u.to(x) - 1) * self.amplitude

    def rescaled(self, factor: float) -> "Noise":
        return self
