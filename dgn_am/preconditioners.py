"""Preconditioners: changes to the ascent direction d = d(score - penalties)/dp that the engine applies before the step
rule moves p (Olah et al. 2017, "Preconditioning and parameterization"), as frozen dataclasses called d -> d'.

"Gradient blurring is equivalent to gradient descent in a different parameterization of image space, where high
frequency dimensions are stretched to make moving in those directions slower. Gradient Laplacian Pyramid
normalization is a kind of adaptive learning rate approach in the same space." Neither changes where the optima
are, only which one a run falls into and how fast it gets there.

They act on image-shaped directions d (B, C, H, W), i.e. with the "pixels" parameterization (for RGB models its
decorrelated colour components). Operators (operators.py) change p after the step; preconditioners change only the
step. Each item of the batch is treated on its own.

    d = LaplacianNormalize(levels=4)(d)    # (B, C, H, W) -> (B, C, H, W), each frequency band at scale 1
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dgn_am.operators import gaussian_blur


def _check_image(d: torch.Tensor, who: str) -> None:
    if d.dim() != 4:
        raise ValueError(f"{who} preconditions image-shaped gradients (B, C, H, W), but p has shape "
                         f"{tuple(d.shape)}; use it with the 'pixels' parameterization (--parameterization pixels)")


@dataclass(frozen=True)
class GradientBlur:
    """Blur the ascent direction with a Gaussian of std `width` pixels before every step: d' = G_width * d, per item
    and channel, borders mirrored as gaussian_blur (operators.py). Steps then move the low frequencies of p faster
    than the high ones, the preconditioned counterpart of the GaussianBlur operator."""

    width: float = 1.0  # the Gaussian's standard deviation in pixels; 0 leaves d unchanged
    truncate: float = 4.0  # kernel radius in standard deviations (scipy's default)

    def __post_init__(self) -> None:
        if self.width < 0 or self.truncate <= 0:
            raise ValueError(f"GradientBlur needs width >= 0 and truncate > 0, got width={self.width}, "
                             f"truncate={self.truncate}")

    def __call__(self, d: torch.Tensor) -> torch.Tensor:
        _check_image(d, "GradientBlur")
        return gaussian_blur(d, self.width, self.truncate)

    def rescaled(self, factor: float) -> "GradientBlur":
        return dataclasses.replace(self, width=self.width * factor)


def _down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2)): each output pixel the mean of the input pixels it covers."""
    return F.adaptive_avg_pool2d(x, (math.ceil(x.shape[-2] / 2), math.ceil(x.shape[-1] / 2)))


def _up(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, *size), bilinear (pixel centres aligned as in F.interpolate's align_corners=False)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """x (B, C, H, W) -> `levels` tensors, finest first: the bands x_i - up(down(x_i)) of sides H, H/2, ... (x_0 = x,
    x_{i+1} = down(x_i), halving rounds up), then the low-pass residual x_{levels-1}. recombine() inverts it exactly
    (up to rounding). levels = 1 returns [x]."""
    if levels < 1:
        raise ValueError(f"a Laplacian pyramid needs levels >= 1, got {levels}")
    if min(x.shape[-2:]) < 2 ** (levels - 1):
        raise ValueError(f"{levels} pyramid levels need an image side of at least {2 ** (levels - 1)} px, got "
                         f"{x.shape[-2]}x{x.shape[-1]}; use levels <= {int(math.log2(min(x.shape[-2:]))) + 1}")
    bands = []
    current = x
    for _ in range(levels - 1):
        low = _down(current)
        bands.append(current - _up(low, current.shape[-2:]))  # (B, C, h, w): what the coarser level cannot hold
        current = low
    return bands + [current]


def recombine(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """The inverse of laplacian_pyramid: start from the residual (last) and add each band, finest last."""
    out = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        out = _up(out, band.shape[-2:]) + band
    return out


SCALES = ("rms", "mean-abs")


def level_scale(level: torch.Tensor, scale: str) -> torch.Tensor:
    """Per-item scale of one pyramid level (B, C, h, w) -> (B,): "rms" sqrt(mean(level^2)) (lap_normalize's std about
    0) or "mean-abs" mean(|level|), over channels and pixels."""
    flat = level.flatten(1)
    if scale == "rms":
        return flat.pow(2).mean(1).sqrt()
    if scale == "mean-abs":
        return flat.abs().mean(1)
    raise ValueError(f"unknown pyramid level scale '{scale}'; use {' or '.join(SCALES)}")


@dataclass(frozen=True)
class LaplacianNormalize:
    """Laplacian-pyramid normalization of the ascent direction (Mordvintsev's DeepDream lap_normalize, as Olah et
    al. 2017 describe it): split d into a Laplacian pyramid of `levels` levels, divide every level of every item by
    its own scale (so each has scale 1; a level below `eps` is divided by eps), and recombine. The coarse levels,
    whose gradients are weak, then get as much of the step as the fine ones: an adaptive step size per frequency
    band. The result's overall size is arbitrary; a size-free step rule (adam, normalized) absorbs it."""

    levels: int = 4  # pyramid levels, finest band first and a low-pass residual last; 28 px: 28, 14, 7, 4
    scale: str = "rms"  # what is set to 1 in every level: "rms" (root mean square) or "mean-abs" (mean |level|)
    eps: float = 1e-12  # the smallest scale divided by (a level of zeros stays zero)

    def __post_init__(self) -> None:
        if self.levels < 1 or self.eps <= 0:
            raise ValueError(f"LaplacianNormalize needs levels >= 1 and eps > 0, got levels={self.levels}, "
                             f"eps={self.eps}")
        if self.scale not in SCALES:
            raise ValueError(f"LaplacianNormalize scale must be {' or '.join(SCALES)}, got '{self.scale}'")

    def normalized(self, pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every level (B, C, h, w) divided by its per-item scale (clamped below at eps)."""
        return [lv / level_scale(lv, self.scale).clamp(min=self.eps).view(-1, 1, 1, 1) for lv in pyramid]

    def __call__(self, d: torch.Tensor) -> torch.Tensor:
        _check_image(d, "LaplacianNormalize")
        return recombine(self.normalized(laplacian_pyramid(d, self.levels)))


def precondition(d: torch.Tensor, preconditioners: tuple | list) -> torch.Tensor:
    """d (B, ...) through every preconditioner in order; d itself when there are none."""
    for pre in preconditioners:
        d = pre(d)
    return d
