"""dgn_am.operators: hand-computed values on tiny inputs, and reference implementations."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from dgn_am.engine import StepRule, maximize
from dgn_am.layers import Unit
from dgn_am.objectives import UnitObjective
from dgn_am.operators import (Anchor, BilateralBlur, CentreBias, ContributionClip, Decay, GaussianBlur, NormClip,
                              bilateral_filter, centre_fraction, centre_mask, contribution, gaussian_blur,
                              gaussian_kernel)
from dgn_am.parameterizations import FourierParam, PixelParam
from tests.helpers import linear_model


def ctx(step: int = 0, steps: int = 10, grad: torch.Tensor | None = None):
    return SimpleNamespace(step=step, steps=steps, grad=grad, param=None, score=None)


# ---- blur ----

def test_gaussian_kernel_matches_the_formula():
    k = gaussian_kernel(1.0)  # radius int(4 * 1 + 0.5) = 4
    t = np.arange(-4, 5)
    ref = np.exp(-t ** 2 / 2.0)
    assert np.allclose(k.numpy(), ref / ref.sum())
    assert gaussian_kernel(0.5).numel() == 2 * int(4 * 0.5 + 0.5) + 1


def _blur_reference(img: np.ndarray, sigma: float, border: str = "reflect") -> np.ndarray:
    """Direct 2-D convolution with the outer product of the 1-D kernel; borders by numpy.pad's `border` mode:
    "reflect" mirrors about the edge pixel (c b | a b c, torchvision's), "symmetric" repeats it (b a | a b c,
    scipy's default and this project's convention before issue 18)."""
    r = int(4 * sigma + 0.5)
    t = np.arange(-r, r + 1)
    k1 = np.exp(-t ** 2 / (2 * sigma ** 2))
    k1 /= k1.sum()
    k2 = np.outer(k1, k1)
    padded = np.pad(img, r, mode=border)
    out = np.zeros_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            out[i, j] = (padded[i: i + 2 * r + 1, j: j + 2 * r + 1] * k2).sum()
    return out


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_gaussian_blur_matches_a_reference_convolution(sigma):
    x = torch.rand(2, 3, 9, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)  # radius 7 < 9
    got = gaussian_blur(x, sigma)
    for b in range(2):
        for c in range(3):
            assert np.allclose(got[b, c].numpy(), _blur_reference(x[b, c].numpy(), sigma), atol=1e-12)


def test_gaussian_blur_matches_scipy_mirror_mode():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 1, 6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for sigma in (0.5, 1.0):
        ref = ndimage.gaussian_filter(x[0, 0].numpy(), sigma, mode="mirror")
        assert np.allclose(gaussian_blur(x, sigma)[0, 0].numpy(), ref, atol=1e-12)


def test_gaussian_blur_border_convention_changes_only_the_outer_band():
    # the old convention (edge repeated, scipy's default) and torchvision's (edge not repeated) agree wherever the
    # kernel (radius 4 for sigma 1) does not reach past the border
    x = torch.rand(1, 1, 12, 11, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    old = _blur_reference(x[0, 0].numpy(), 1.0, border="symmetric")
    new = gaussian_blur(x, 1.0)[0, 0].numpy()
    assert np.allclose(new[4:-4, 4:-4], old[4:-4, 4:-4], atol=1e-12)
    assert not np.allclose(new[0], old[0])


def test_gaussian_blur_rejects_a_kernel_wider_than_the_image():
    x = torch.rand(1, 1, 6, 5)
    with pytest.raises(ValueError, match="too wide for a 6x5 image"):
        gaussian_blur(x, 3.0)  # radius 12


def test_gaussian_blur_gradcheck_and_float32():
    x = torch.rand(2, 2, 7, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, 0.8), (x,))
    x32 = x.detach().float()
    assert gaussian_blur(x32, 0.8).dtype == torch.float32
    assert torch.allclose(gaussian_blur(x32, 0.8).double(), gaussian_blur(x.detach(), 0.8), atol=1e-6)


def test_blur_operator_runs_every_k_steps_and_keeps_constants():
    p = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    op = GaussianBlur(width=1.0, every=4)
    q = p.clone()
    op(q, ctx(step=1))
    assert torch.equal(q, p)
    op(q, ctx(step=4))
    assert torch.allclose(q, gaussian_blur(p, 1.0))
    flat = torch.full((1, 2, 5, 5), 0.3)
    op(flat, ctx(step=0))
    assert torch.allclose(flat, torch.full_like(flat, 0.3))
    assert GaussianBlur(width=1.0).rescaled(28 / 227).width == pytest.approx(28 / 227)


# ---- pixel clipping ----

def test_norm_clip_zeroes_exactly_the_pixels_below_the_percentile():
    # two channels; pixel norms are 1..9 in a shuffled layout; the 30th percentile of 1..9 is 3.4 (linear)
    norms = torch.tensor([[5.0, 1.0, 9.0], [3.0, 7.0, 2.0], [8.0, 4.0, 6.0]])
    p = torch.stack([norms * 0.6, norms * 0.8]).unsqueeze(0)  # (1, 2, 3, 3): ||(0.6 n, 0.8 n)|| = n
    assert np.percentile(np.arange(1, 10), 30) == pytest.approx(3.4)
    NormClip(pct=30)(p, ctx())
    kept = (p.abs().sum(1)[0] > 0)
    assert kept.tolist() == [[True, False, True], [False, True, False], [True, True, True]]  # 1, 2, 3 zeroed
    assert torch.allclose(p[0, 0][kept], (norms * 0.6)[kept])


def test_norm_clip_is_per_item_and_pct_zero_keeps_everything():
    p = torch.stack([torch.arange(9.0).view(1, 3, 3), 100 + torch.arange(9.0).view(1, 3, 3)])  # (2, 1, 3, 3)
    q = p.clone()
    NormClip(pct=0)(q, ctx())
    assert torch.equal(q, p)
    NormClip(pct=50)(q, ctx())  # median of each item is its 5th value: values 0-3 and 100-103 are zeroed
    assert (q.flatten(1) == 0).sum(1).tolist() == [4, 4]
    with pytest.raises(ValueError, match="percentile in"):
        NormClip(pct=120)


def test_contribution_clip_linear_estimate_by_hand():
    # |sum_c p * grad| per pixel: channel 0 and 1 partly cancel
    p = torch.tensor([[[1.0, 2.0], [3.0, -1.0]], [[1.0, 0.0], [1.0, 1.0]]]).unsqueeze(0)  # (1, 2, 2, 2)
    grad = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[-1.0, 5.0], [2.0, 4.0]]]).unsqueeze(0)
    assert contribution(p, ctx(grad=grad), exact=False)[0].tolist() == [[0.0, 2.0], [5.0, 3.0]]
    ContributionClip(pct=50)(p, ctx(grad=grad))  # median of (0, 2, 3, 5) is 2.5: pixels with 0 and 2 go
    assert (p.abs().sum(1)[0] > 0).tolist() == [[False, False], [True, True]]


class Recorder:
    """An operator that records the exact and estimated contributions at the first step."""

    def __init__(self) -> None:
        self.seen: list = []

    def __call__(self, p, ctx) -> None:
        if ctx.step == 0:
            self.seen.append((contribution(p, ctx, exact=True, chunk=7), contribution(p, ctx, exact=False)))


@pytest.mark.parametrize("channels", [1, 3])
def test_exact_and_estimated_contribution_agree_on_a_linear_model(channels):
    h, w = 4, 5
    n = channels * h * w
    weights = torch.randn(2, n, generator=torch.Generator().manual_seed(channels))
    rec = Recorder()
    param = PixelParam((channels, h, w), centre=0.3, init="randn", init_std=0.1)
    units = UnitObjective([Unit("lin", 0, None), Unit("lin", 1, None), Unit("lin", 0, None)])
    maximize(linear_model(weights), units, param, [0, 1, 2], 1, StepRule("sgd", lr=0.01), operators=(rec,))
    exact, estimate = rec.seen[0]
    assert exact.shape == (3, h, w)
    assert torch.allclose(exact, estimate, atol=1e-5)
    # hence the two clipping modes zero the same pixels
    results = [maximize(linear_model(weights), units, param, [0, 1, 2], 3, StepRule("sgd", lr=0.01),
                        operators=(ContributionClip(pct=60, exact=exact_mode),)).images for exact_mode in (True, False)]
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_exact_contribution_matches_zeroing_pixels_one_by_one(caffenet):
    rec = Recorder()
    param = PixelParam((1, 28, 28), centre=caffenet.input_spec.mean, init="randn", init_std=0.2)
    units = [Unit("fc8", 3, None), Unit("conv3", 5, "mean")]
    maximize(caffenet, UnitObjective(units), param, [0, 1], 1, StepRule("sgd", lr=0.0), operators=(rec,))
    exact = rec.seen[0][0]
    p = param.init([0, 1], torch.device("cpu"), torch.float32)
    mean = caffenet.input_spec.mean[0]
    with torch.no_grad():
        for b, unit in enumerate(units):
            for (i, j) in [(0, 0), (13, 14), (27, 5)]:
                x = (mean + p[b: b + 1]).clamp(0, 1)  # the box projection runs before the operators
                before = _read(caffenet, x, unit)
                x[0, 0, i, j] = mean
                assert exact[b, i, j].item() == pytest.approx(abs(before - _read(caffenet, x, unit)), abs=1e-4)


def _read(model, x, unit) -> float:
    from dgn_am.layers import read_units, run

    return float(read_units(run(model, x, [unit.layer])[unit.layer], [unit])[0])


def test_pixel_operators_refuse_non_image_p():
    spectrum = torch.zeros(1, 1, 4, 3, 2)
    for op in (GaussianBlur(), NormClip(), ContributionClip(), CentreBias()):
        with pytest.raises(ValueError, match="'pixels' parameterization"):
            op(spectrum, ctx(grad=spectrum))
    assert FourierParam((1, 4, 4)).name == "fourier"  # the parameterization these refuse


def test_decay():
    p = torch.ones(2, 3)
    Decay(rate=0.25)(p, ctx())
    assert torch.equal(p, torch.full((2, 3), 0.75))


def test_anchor_pulls_toward_the_start_and_projects():
    box = PixelParam((1, 1, 2), centre=0.0, box=True)  # p in [0, 1]
    start = torch.tensor([[[[0.0, 2.0]]]])  # the second value lies outside the box
    p = torch.tensor([[[[1.0, 0.5]]]])
    Anchor(weight=0.25)(p, SimpleNamespace(start=start, param=box))
    # 1 + 0.25 (0 - 1) = 0.75;  0.5 + 0.25 (2 - 0.5) = 0.875 (inside the box, kept)
    assert torch.allclose(p, torch.tensor([[[[0.75, 0.875]]]]))
    Anchor(weight=1.0)(p, SimpleNamespace(start=start, param=box))
    assert torch.equal(p, torch.tensor([[[[0.0, 1.0]]]]))  # the start, clipped into the box
    with pytest.raises(ValueError, match="fraction in"):
        Anchor(weight=1.5)
    with pytest.raises(ValueError, match="start point"):
        Anchor()(p, SimpleNamespace(start=None, param=box))


def test_anchor_in_the_engine_by_hand():
    # linear objective w.x, one sgd step of lr 0.1, then the pull: p1 = p0 + (1 - weight) * lr * w
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    param = PixelParam((1, 2, 2), centre=0.0, init="randn", init_std=0.1, box=False)
    units = UnitObjective([Unit("lin", 0, None)])
    p0 = param.init([7], torch.device("cpu"), torch.float32)
    out = maximize(linear_model(w), units, param, [7], 1, StepRule("sgd", lr=0.1), operators=(Anchor(weight=0.3),))
    assert torch.allclose(out.params.flatten(), p0.flatten() + 0.7 * 0.1 * w, atol=1e-6)
    # weight 1 undoes every step: the run ends where it started
    out = maximize(linear_model(w), units, param, [7], 5, StepRule("sgd", lr=0.1), operators=(Anchor(weight=1.0),))
    assert torch.allclose(out.params, p0)


# ---- centre bias ----

def test_centre_mask_and_schedule():
    # 2 of 4 rows from row 1, 3 of 6 columns from column (6 - 3) // 2 = 1
    assert centre_mask(4, 6, 0.5).int().tolist() == [[0, 0, 0, 0, 0, 0],
                                                      [0, 1, 1, 1, 0, 0],
                                                      [0, 1, 1, 1, 0, 0],
                                                      [0, 0, 0, 0, 0, 0]]
    assert centre_mask(3, 3, 0.01).sum() == 1  # at least one pixel
    assert centre_fraction(0, 10, 0.4, 0.5) == pytest.approx(0.4 + 0.6 * 1 / 5)
    assert centre_fraction(4, 10, 0.4, 0.5) == 1.0
    assert centre_fraction(0, 10, 0.4, 0.0) == 1.0


def test_centre_bias_zeroes_outside_the_growing_box():
    op = CentreBias(start=0.25, until=0.5)
    p = torch.ones(1, 1, 8, 8)
    op(p, ctx(step=0, steps=8))  # fraction 0.25 + 0.75 * 1/4 = 0.4375 -> a 4x4 box
    assert p[0, 0].sum() == 16 and p[0, 0, 2:6, 2:6].eq(1).all()
    q = torch.ones(1, 1, 8, 8)
    op(q, ctx(step=3, steps=8))  # past half-way: the whole image
    assert q.eq(1).all()
    with pytest.raises(ValueError, match="0 < start <= 1"):
        CentreBias(start=0.0)


# ---- bilateral filter ----

def _bilateral_reference(img: np.ndarray, sigma: float, sigma_range: float) -> np.ndarray:
    """A direct double loop over pixels and window offsets (numpy, float64), borders mirrored without repeating the
    edge pixel (numpy.pad "reflect", torchvision's)."""
    r = int(4 * sigma + 0.5)
    padded = np.pad(img, r, mode="reflect")
    out = np.empty_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            num = den = 0.0
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    v = padded[i + r + a, j + r + b]
                    wgt = np.exp(-(a * a + b * b) / (2 * sigma ** 2)) * np.exp(-(v - img[i, j]) ** 2 /
                                                                              (2 * sigma_range ** 2))
                    num, den = num + wgt * v, den + wgt
            out[i, j] = num / den
    return out


def test_bilateral_filter_matches_a_direct_loop():
    x = torch.rand(2, 2, 6, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = bilateral_filter(x, 0.6, 0.2)
    for b in range(2):
        for c in range(2):  # per item and channel
            assert np.allclose(out[b, c].numpy(), _bilateral_reference(x[b, c].numpy(), 0.6, 0.2), atol=1e-12)


def test_bilateral_filter_leaves_a_constant_image_unchanged():
    x = torch.full((2, 3, 9, 9), 0.3)
    x[1] = -0.2
    assert torch.allclose(bilateral_filter(x, 1.0, 0.1), x, atol=1e-7, rtol=0)


def test_bilateral_filter_keeps_a_step_edge_that_the_gaussian_blur_smears():
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0
    smeared = (gaussian_blur(step, 1.0) - step).abs().max().item()
    kept = (bilateral_filter(step, 1.0, 0.1) - step).abs().max().item()
    assert smeared > 0.3  # the pixels beside the edge move by ~0.31 under the blur
    assert kept < 1e-12  # across the edge the range weight is exp(-50) ~ 2e-22


def test_bilateral_filter_with_a_huge_range_sigma_is_the_gaussian_blur():
    x = torch.rand(2, 3, 12, 11, generator=torch.Generator().manual_seed(6))
    wide = bilateral_filter(x, 1.0, 1e6)
    assert torch.allclose(wide, gaussian_blur(x, 1.0), atol=1e-6, rtol=0)
    assert torch.allclose(wide, TF.gaussian_blur(x, [9, 9], [1.0, 1.0]), atol=1e-6, rtol=0)  # radius 4


def test_bilateral_blur_operator_schedule_settings_and_errors():
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    op = BilateralBlur(width=0.8, range_sigma=0.2, every=3)
    p = x.clone()
    op(p, ctx(step=1))
    assert torch.equal(p, x)  # not a filter step
    op(p, ctx(step=3))
    assert torch.equal(p, bilateral_filter(x, 0.8, 0.2))
    assert op.rescaled(2.0) == BilateralBlur(width=1.6, range_sigma=0.2, every=3)
    assert torch.equal(bilateral_filter(x, 0.0, 0.2), x)
    with pytest.raises(ValueError, match="range_sigma > 0"):
        BilateralBlur(range_sigma=0.0)
    with pytest.raises(ValueError, match="too wide"):
        bilateral_filter(x, 3.0, 0.2)
    with pytest.raises(ValueError, match="'pixels' parameterization"):
        op(torch.zeros(2, 10), ctx(step=0))
