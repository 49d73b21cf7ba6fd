"""dgn_am.preconditioners: gradient blur and Laplacian-pyramid normalization on tiny inputs with known answers, and
the engine applying them to the ascent direction before the step rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dgn_am.engine import StepRule, maximize
from dgn_am.layers import Unit, parse_units
from dgn_am.methods import get_method, synthesize
from dgn_am.objectives import UnitObjective
from dgn_am.operators import gaussian_blur
from dgn_am.parameterizations import PixelParam
from dgn_am.preconditioners import (GradientBlur, LaplacianNormalize, laplacian_pyramid, level_scale, precondition,
                                    recombine)
from tests.helpers import linear_model


# ---- gradient blur ----

def test_gradient_blur_of_a_delta_is_the_gaussian_kernel():
    d = torch.zeros(1, 1, 15, 15)
    d[0, 0, 7, 7] = 1.0
    out = GradientBlur(width=1.0)(d)[0, 0].double().numpy()
    t = np.arange(-4, 5)  # radius int(4 * 1 + 0.5) = 4
    k = np.exp(-t ** 2 / 2.0)
    k2 = np.outer(k, k) / k.sum() ** 2
    assert np.allclose(out[3:12, 3:12], k2, atol=1e-7)
    assert np.abs(out).sum() == pytest.approx(1.0, abs=1e-6)  # nothing reaches the border: mass kept
    assert np.all(out[:3] == 0) and np.all(out[:, 12:] == 0)


def test_gradient_blur_width_zero_is_identity_and_rescales():
    d = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(GradientBlur(width=0.0)(d), d)
    assert GradientBlur(width=0.5).rescaled(4.0) == GradientBlur(width=2.0)
    with pytest.raises(ValueError, match="width >= 0"):
        GradientBlur(width=-1.0)
    with pytest.raises(ValueError, match="'pixels' parameterization"):
        GradientBlur()(torch.zeros(2, 10))


# ---- the Laplacian pyramid ----

def test_pyramid_of_a_2x2_image_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    band, low = laplacian_pyramid(x, 2)
    assert low.flatten().tolist() == [2.5]  # the mean of the four pixels
    assert band[0, 0].tolist() == [[-1.5, -0.5], [0.5, 1.5]]  # x minus the upsampled (constant) low-pass
    assert torch.equal(recombine([band, low]), x)


def test_pyramid_sides_and_exact_recombination():
    x = torch.randn(3, 2, 28, 27, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pyramid = laplacian_pyramid(x, 4)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(28, 27), (14, 14), (7, 7), (4, 4)]
    assert torch.allclose(recombine(pyramid), x, atol=1e-12, rtol=0)
    assert laplacian_pyramid(x, 1)[0] is x
    with pytest.raises(ValueError, match="use levels <= 5"):
        laplacian_pyramid(x, 6)  # 28 px: 28, 14, 7, 4, 2 is the deepest
    with pytest.raises(ValueError, match="levels >= 1"):
        laplacian_pyramid(x, 0)


def test_a_smooth_ramp_has_no_fine_band_inside():
    """Bilinear upsampling reproduces a linear ramp away from the borders, so the finest band is ~0 there."""
    ramp = torch.arange(16, dtype=torch.float64).repeat(16, 1).view(1, 1, 16, 16)
    band = laplacian_pyramid(ramp, 2)[0]
    assert band[..., 2:-2, 2:-2].abs().max() < 1e-12
    assert band.abs().max() > 0.1  # the mirrored-free borders of the interpolation do differ


# ---- normalization ----

@pytest.mark.parametrize("scale", ["rms", "mean-abs"])
def test_each_level_of_each_item_gets_scale_one(scale):
    g = torch.Generator().manual_seed(2)
    d = torch.randn(2, 1, 28, 28, generator=g)
    d[1] *= 1000.0  # items are normalized on their own
    pre = LaplacianNormalize(levels=4, scale=scale)
    levels = pre.normalized(laplacian_pyramid(d, 4))
    for level in levels:
        assert torch.allclose(level_scale(level, scale), torch.ones(2), atol=1e-5)
    assert level_scale(torch.tensor([[[[3.0, -4.0]]]]), "rms").item() == pytest.approx(12.5 ** 0.5)
    assert level_scale(torch.tensor([[[[3.0, -4.0]]]]), "mean-abs").item() == pytest.approx(3.5)


def test_normalization_is_scale_free_per_item_and_keeps_zeros():
    g = torch.Generator().manual_seed(3)
    d = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    pre = LaplacianNormalize(levels=3)
    scaled = d * torch.tensor([5.0, 0.01], dtype=torch.float64).view(2, 1, 1, 1)
    assert torch.allclose(pre(scaled), pre(d), atol=1e-10)
    assert torch.equal(pre(torch.zeros(1, 1, 16, 16)), torch.zeros(1, 1, 16, 16))
    # the weak coarse level is boosted: a checkerboard (all in the fine band, rms 1) plus a faint constant 0.01 (all
    # in the low-pass residual) comes out as the checkerboard plus 1
    i = torch.arange(16)
    checker = ((i[:, None] + i[None, :]) % 2 * 2 - 1).to(torch.float64).view(1, 1, 16, 16)
    assert torch.allclose(LaplacianNormalize(levels=2)(checker + 0.01), checker + 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="scale must be rms or mean-abs"):
        LaplacianNormalize(scale="max")


# ---- the engine applies them before the step rule ----

def _one_sgd_step(preconditioners, w: torch.Tensor) -> torch.Tensor:
    model = linear_model(w)  # lin:k = sum(w[k] * x): the ascent direction is w[k], whatever x is
    param = PixelParam((1, 6, 6), centre=0.0, init="zeros", box=False)
    result = maximize(model, UnitObjective([Unit("lin", 0, None)]), param, [0], steps=1,
                      step_rule=StepRule("sgd", lr=0.5), preconditioners=preconditioners)
    return result.params


def test_engine_steps_along_the_preconditioned_direction():
    w = torch.randn(2, 36, generator=torch.Generator().manual_seed(4))
    d = w[0].view(1, 1, 6, 6)
    assert torch.allclose(_one_sgd_step((), w), 0.5 * d, atol=1e-7)
    blurred = _one_sgd_step((GradientBlur(width=0.7),), w)
    assert torch.allclose(blurred, 0.5 * gaussian_blur(d, 0.7), atol=1e-6)
    both = (GradientBlur(width=0.7), LaplacianNormalize(levels=2))
    assert torch.allclose(_one_sgd_step(both, w), 0.5 * precondition(d, both), atol=1e-6)
    assert not torch.allclose(blurred, 0.5 * d)


def test_olah_lapnorm_same_seed_same_images_and_records_the_preconditioner(caffenet):
    method = dataclasses.replace(get_method("olah-lapnorm"), steps=3)
    a, _ = synthesize(caffenet, parse_units("fc8:1"), [0, 1], method)
    b, _ = synthesize(caffenet, parse_units("fc8:1"), [0, 1], method)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images[0], a.images[1])
    assert a.settings["method"]["preconditioners"] == [{"type": "LaplacianNormalize", "levels": 4, "scale": "rms",
                                                        "eps": 1e-12}]
    assert a.settings["method"]["parameterization"] == "pixels"
    plain = dataclasses.replace(method, preconditioners=())
    c, _ = synthesize(caffenet, parse_units("fc8:1"), [0, 1], plain)
    assert not torch.equal(a.images, c.images)  # the preconditioner changes the path
    assert "preconditioners" not in c.settings["method"]  # not recorded when unused: old manifests still match
