"""dgn_am.penalties: hand-computed values on tiny inputs, and reference implementations."""

from __future__ import annotations

import math

import pytest
import torch

from dgn_am.penalties import AlphaNorm, L2Penalty, TotalVariation

# a 3x3 single-channel image, shape (1, 1, 3, 3)
IMG = torch.tensor([[0.0, 1.0, 0.0],
                    [2.0, 0.0, 1.0],
                    [0.0, 0.0, 3.0]]).view(1, 1, 3, 3)


def test_total_variation_of_a_3x3_image_by_hand():
    # forward differences on the 2x2 grid (dx = right - here, dy = below - here):
    # (0,0): dx 1, dy 2 -> 5;  (0,1): dx -1, dy -1 -> 2;  (1,0): dx -2, dy -2 -> 8;  (1,1): dx 1, dy 0 -> 1
    assert TotalVariation(weight=1.0)(IMG, IMG).item() == pytest.approx(16.0)
    assert TotalVariation(weight=1.0, beta=1.0)(IMG, IMG).item() == pytest.approx(
        math.sqrt(5) + math.sqrt(2) + math.sqrt(8) + 1)
    assert TotalVariation(weight=0.5, scale=2.0)(IMG, IMG).item() == pytest.approx(0.5 * 16 / 4)
    assert TotalVariation(weight=1.0, mean=True)(IMG, IMG).item() == pytest.approx(16 / 4)


def test_total_variation_matches_a_loop_per_item_and_channel():
    x = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    beta = 1.5
    expected = torch.zeros(2, dtype=torch.float64)
    for b in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(3):
                    dx = float(x[b, c, i, j + 1] - x[b, c, i, j])
                    dy = float(x[b, c, i + 1, j] - x[b, c, i, j])
                    expected[b] += (dx * dx + dy * dy) ** (beta / 2)
    got = TotalVariation(weight=1.0, beta=beta)(x, x)
    assert got.shape == (2,)
    assert torch.allclose(got.double(), expected, rtol=1e-5)


def test_total_variation_gradient_is_finite_on_flat_images():
    x = torch.full((1, 1, 4, 4), 0.5, requires_grad=True)
    TotalVariation(beta=1.0)(x, x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()


def test_alpha_norm_of_a_3x3_image_by_hand():
    p = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, -1.0]]).view(1, 1, 3, 3)
    assert AlphaNorm(weight=1.0, alpha=6)(p, p).item() == pytest.approx(1 + 64 + 0.5 ** 6 + 1)
    assert AlphaNorm(weight=2.0, alpha=2, scale=2.0)(p, p).item() == pytest.approx(2 * (1 + 4 + 0.25 + 1) / 4)
    assert AlphaNorm(weight=1.0, alpha=6, mean=True)(p, p).item() == pytest.approx((66 + 0.5 ** 6) / 9)
    # centre=c reads x - c instead of p
    x = p + 0.25
    assert AlphaNorm(weight=1.0, alpha=6, centre=0.25)(x, torch.zeros(1, 5)).item() == pytest.approx(66 + 0.5 ** 6)


def test_penalties_on_p_refuse_a_non_pixel_parameterization():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="'pixels' parameterization, or set centre=0.5"):
        AlphaNorm()(x, torch.zeros(1, 1, 4, 3, 2))
    with pytest.raises(ValueError, match="alpha > 0"):
        AlphaNorm(alpha=0)
    with pytest.raises(ValueError, match="at least 2x2"):
        TotalVariation()(torch.zeros(1, 1, 1, 4), None)


def test_l2_penalty():
    p = torch.tensor([[1.0, 2.0], [0.0, -3.0]])
    assert L2Penalty(weight=0.5)(None, p).tolist() == [2.5, 4.5]
