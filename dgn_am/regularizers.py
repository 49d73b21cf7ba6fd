"""Regularizers: penalties subtracted from the objective, and operators r_theta applied to p after each step.

Penalties are frozen dataclasses called as (x (B, C, H, W), p (B, ...)) -> (B,), weight included.
Operators are frozen dataclasses called as (p, ctx: engine.StepContext) -> None and change p in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class L2Penalty:
    """Simonyan et al.: weight * ||p||^2 per item, p in the parameterization's own (mean-subtracted) coordinates."""

    weight: float = 1e-2  # lambda

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.weight * p.flatten(1).pow(2).sum(1)


@dataclass(frozen=True)
class Decay:
    """Yosinski's L2 decay and DGN-AM's code decay: p *= (1 - rate) after every step."""

    rate: float = 0.01  # theta_decay; DGN-AM's h *= 0.99 is rate 0.01

    def __call__(self, p: torch.Tensor, ctx) -> None:
        p.mul_(1.0 - self.rate)
