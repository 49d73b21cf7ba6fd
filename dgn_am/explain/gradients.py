"""Plain-gradient attributions: the gradient, Simonyan et al.'s saliency map, and gradient x input.

All take the model's own input space: for a `TargetModel`, images (B, C, H, W) in [0, 1], so d unit / d x
includes the model's input normalization. The sign convention is that of the unit: positive gradient means
raising the pixel raises the unit.
"""

from __future__ import annotations

import torch
from torch import nn

from dgn_am.explain.targets import UnitLike, input_gradient


def gradient(model: nn.Module, x: torch.Tensor, unit: UnitLike) -> torch.Tensor:
    """d unit / d x, signed, for each image's own unit.

    x: (B, C, H, W) (or (B, D)) -> (B, C, H, W), same shape, dtype and device as x.
    """
    return input_gradient(model, x, unit)[0]


def saliency(model: nn.Module, x: torch.Tensor, unit: UnitLike) -> torch.Tensor:
    """Simonyan et al. (2014): |d unit / d x|, maximum over colour channels.

    x: (B, C, H, W) -> (B, H, W), non-negative. For (B, D) inputs, (B, D) = |gradient|.
    """
    g = gradient(model, x, unit).abs()
    return g.amax(1) if g.dim() == 4 else g


def gradient_x_input(model: nn.Module, x: torch.Tensor, unit: UnitLike) -> torch.Tensor:
    """x * d unit / d x, per element and signed: the first-order contribution of each input value.

    x: (B, C, H, W) -> (B, C, H, W). Sum over channels for a per-pixel map (`maps.reduce_channels(a, "sum")`).
    For a network of ReLUs and linear layers without biases, the elements sum to the unit's value.
    """
    return x.detach() * gradient(model, x, unit)
