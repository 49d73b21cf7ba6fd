"""Penalties: terms subtracted from the objective. Frozen dataclasses called as (x, p) -> (B,), weight included.

x is the image (B, C, H, W) in [0, 1]; p is the optimized tensor. For PixelParam p = x - centre, the
mean-subtracted image, which is the space Simonyan's L2 and Mahendran's alpha-norm are defined in (for RGB models
p holds its decorrelated colour components: x - centre = M p per pixel, see PixelParam). Penalties that
read p refuse other parameterizations (p shaped unlike x) unless told to use x - centre instead.

The operators applied to p after each step (Yosinski's r_theta: decay, blur, clipping) are a different kind of piece
and live in dgn_am.operators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AlphaNorm", "L2Penalty", "TotalVariation"]


def _pixels(x: torch.Tensor, p: torch.Tensor, centre: float | None, who: str) -> torch.Tensor:
    """The mean-subtracted image a penalty reads: p for pixel parameterizations, else x - centre."""
    if centre is not None:
        return x - centre
    if p.shape != x.shape:
        raise ValueError(f"{who} reads p as a mean-subtracted image, but p has shape {tuple(p.shape)} and the image "
                         f"{tuple(x.shape)}; use the 'pixels' parameterization, or set centre=0.5 to penalize x - 0.5")
    return p


@dataclass(frozen=True)
class L2Penalty:
    """Simonyan et al.: weight * ||p||^2 per item, p in the parameterization's own (mean-subtracted) coordinates."""

    weight: float = 1e-2  # lambda

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.weight * p.flatten(1).pow(2).sum(1)


@dataclass(frozen=True)
class AlphaNorm:
    """Mahendran & Vedaldi's alpha-norm: weight * sum |v / scale|^alpha over channels and pixels, (B,).

    v is p (the mean-subtracted image of a pixel parameterization) or, when `centre` is set, x - centre.
    With scale = B (a typical pixel range) and mean=True this is their normalized R_alpha / (H W B^alpha).
    """

    weight: float = 1.0  # lambda_alpha
    alpha: float = 6.0  # the exponent; 6 in the paper, large values act like a soft box constraint
    scale: float = 1.0  # B: v is divided by it first (their range normalization)
    mean: bool = False  # average over the C*H*W terms instead of summing (weights that do not depend on size)
    centre: float | None = None  # None: read p; a number c: read x - c (for non-pixel parameterizations)

    def __post_init__(self) -> None:
        if self.alpha <= 0 or self.scale <= 0:
            raise ValueError(f"AlphaNorm needs alpha > 0 and scale > 0, got alpha={self.alpha}, scale={self.scale}")

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        terms = (_pixels(x, p, self.centre, "AlphaNorm") / self.scale).abs().pow(self.alpha).flatten(1)  # (B, CHW)
        return self.weight * (terms.mean(1) if self.mean else terms.sum(1))


@dataclass(frozen=True)
class TotalVariation:
    """Mahendran & Vedaldi's total variation, (B,):

        weight * sum_{c, i < H-1, j < W-1} (((x[c,i,j+1] - x[c,i,j])^2 + (x[c,i+1,j] - x[c,i,j])^2) / scale^2)^(beta/2)

    Forward differences on the (H-1) x (W-1) grid where both exist, per channel. Reads the image x (differences do
    not depend on the centre). beta = 2 gives smooth images, beta = 1 the classic (edge-keeping) TV. Where both
    differences are 0 the term is 0 with gradient 0, so beta < 2 stays finite.
    """

    weight: float = 1.0  # lambda_V
    beta: float = 2.0  # the exponent on the gradient magnitude
    scale: float = 1.0  # V: differences are divided by it first (their normalization V = B / 6.5)
    mean: bool = False  # average over the C*(H-1)*(W-1) terms instead of summing

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.scale <= 0:
            raise ValueError(f"TotalVariation needs beta > 0 and scale > 0, got beta={self.beta}, scale={self.scale}")

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < 2 or x.shape[-1] < 2:
            raise ValueError(f"TotalVariation needs an image of at least 2x2 pixels, got {tuple(x.shape[-2:])}")
        base = x[..., :-1, :-1]
        dx = x[..., :-1, 1:] - base  # (B, C, H-1, W-1)
        dy = x[..., 1:, :-1] - base
        d2 = (dx.pow(2) + dy.pow(2)) / self.scale ** 2
        if self.beta == 2:
            terms = d2
        else:  # d2 ** (beta / 2) with a zero, finite gradient where d2 == 0
            terms = torch.where(d2 > 0, d2.clamp(min=1e-30).pow(self.beta / 2), torch.zeros_like(d2))
        terms = terms.flatten(1)
        return self.weight * (terms.mean(1) if self.mean else terms.sum(1))
