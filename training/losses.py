"""Loss terms of the DeePSiM objective, as pure functions. Images are (B, C, H, W); codes (B, D)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def image_loss(x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error ||G(E(x)) - x||^2 / N."""
    return F.mse_loss(x_rec, x)


def feature_loss(f_rec: list[torch.Tensor], f_real: list[torch.Tensor]) -> torch.Tensor:
    """Sum over comparator layers of the mean squared feature error ||C(G(E(x))) - C(x)||^2 / N."""
    return sum(F.mse_loss(a, b) for a, b in zip(f_rec, f_real))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: real images labelled 1, generated ones 0."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: generated images labelled real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
