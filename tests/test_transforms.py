"""dgn_am.transforms: exact shifts, known resampling answers, an independent rotation sampler, and reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgn_am.transforms import Jitter, Pad, RandomRotate, RandomScale, jitter_offsets


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_jitter_moves_each_item_by_exactly_the_drawn_offset():
    x = torch.rand(3, 2, 5, 7, generator=gen(1))
    out = Jitter(pixels=3)(x, gen(42))
    offsets = jitter_offsets(3, 3, gen(42))  # the same draw from an identically seeded generator
    assert offsets.abs().max() <= 3
    h, w = 5, 7
    for b, (dy, dx) in enumerate(offsets.tolist()):
        for i in range(h):
            for j in range(w):
                assert torch.equal(out[b, :, i, j], x[b, :, (i - dy) % h, (j - dx) % w])


def test_jitter_offsets_cover_the_range_and_zero_is_identity():
    drawn = jitter_offsets(2000, 2, gen(0))
    assert sorted(set(drawn.flatten().tolist())) == [-2, -1, 0, 1, 2]
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(Jitter(pixels=0)(x, gen()), x)


def test_pad_by_hand():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    out = Pad(pixels=1, value=0.5)(x, gen())
    assert out[0, 0].tolist() == [[0.5, 0.5, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.5, 2.0, 3.0, 0.5],
                                  [0.5, 0.5, 0.5, 0.5]]
    assert Pad(pixels=1, mode="replicate")(x, gen())[0, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown mode"):
        Pad(mode="circular")


def test_scale_one_and_rotate_zero_are_identities():
    x = torch.rand(2, 3, 6, 9, generator=gen(2))
    assert torch.allclose(RandomScale(1.0, 1.0)(x, gen()), x, atol=1e-6)
    assert torch.allclose(RandomRotate(0.0)(x, gen()), x, atol=1e-6)


def test_scale_two_samples_a_ramp_at_the_expected_positions():
    # zoom x2 about the centre of a 4-pixel-wide ramp x[.., j] = j: output column j samples input column
    # c + (j - c) / 2 with c = 1.5 (pixel centres), i.e. 0.75, 1.25, 1.75, 2.25
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    out = RandomScale(2.0, 2.0)(ramp, gen())
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.75, 1.25, 1.75, 2.25]), atol=1e-6)


def _rotate_reference(img: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of img (H, W) at pixel centres rotated by `degrees` about the image centre, in pixel units.
    Returns the values and a mask of outputs whose sample lies inside the image (no padding involved)."""
    h, w = img.shape
    a = math.radians(degrees)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    out, inside = np.zeros_like(img), np.zeros(img.shape, bool)
    for i in range(h):
        for j in range(w):
            x, y = j - cx, i - cy
            sx, sy = math.cos(a) * x - math.sin(a) * y + cx, math.sin(a) * x + math.cos(a) * y + cy
            if 0 <= sx <= w - 1 and 0 <= sy <= h - 1:
                x0, y0 = min(int(sx), w - 2), min(int(sy), h - 2)
                fx, fy = sx - x0, sy - y0
                out[i, j] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x0 + 1])
                             + fy * ((1 - fx) * img[y0 + 1, x0] + fx * img[y0 + 1, x0 + 1]))
                inside[i, j] = True
    return out, inside


def test_rotation_matches_an_independent_sampler_on_a_non_square_image():
    x = torch.rand(2, 1, 7, 12, generator=gen(5), dtype=torch.float64)
    out = RandomRotate(degrees=30)(x, gen(9))
    u = torch.rand(2, generator=gen(9), dtype=torch.float64)  # the angles drawn: U(-30, 30)
    for b in range(2):
        ref, inside = _rotate_reference(x[b, 0].numpy(), float((2 * u[b] - 1) * 30))
        assert inside.sum() > 40
        assert np.allclose(out[b, 0].numpy()[inside], ref[inside], atol=1e-9)


@pytest.mark.parametrize("transform", [Pad(2), Jitter(2), RandomScale(0.8, 1.2), RandomRotate(15)])
def test_transforms_are_differentiable_and_reproducible(transform):
    x = torch.rand(3, 3, 8, 8, generator=gen(0), requires_grad=True)
    out = transform(x, gen(7))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(transform(x, gen(7)), out)
    if not isinstance(transform, Pad):  # Pad draws nothing
        assert not torch.equal(transform(x, gen(8)), out)


def test_items_get_different_draws():
    x = torch.rand(1, 1, 6, 6, generator=gen(0)).expand(8, 1, 6, 6)
    out = RandomRotate(20)(x, gen(1))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def test_transforms_draw_nothing_from_the_global_rng():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    x = torch.rand(2, 1, 6, 6, generator=gen(0))
    for t in (Pad(1), Jitter(2), RandomScale(), RandomRotate()):
        x = t(x, gen(3))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_rescaled_pixel_counts():
    assert Jitter(8).rescaled(28 / 224).pixels == 1
    assert Jitter(4).rescaled(28 / 224).pixels == 1  # 0.5 rounds half up, and never below 1
    assert Pad(12).rescaled(28 / 224).pixels == 2  # 1.5 -> 2
    assert Jitter(0).rescaled(0.5).pixels == 0
    assert RandomRotate(10).rescaled(0.1) == RandomRotate(10)
    with pytest.raises(ValueError, match="0 < low <= high"):
        RandomScale(1.2, 1.1)


def test_jitter_equals_a_roll_of_each_item_values_and_gradients():
    from dgn_am.transforms import Jitter, jitter_offsets

    x = torch.randn(5, 3, 7, 9, requires_grad=True)
    y = Jitter(3)(x, torch.Generator().manual_seed(3))
    offsets = jitter_offsets(5, 3, torch.Generator().manual_seed(3))
    ref = torch.stack([torch.roll(x[b], (int(dy), int(dx)), dims=(-2, -1))
                       for b, (dy, dx) in enumerate(offsets.tolist())])
    assert torch.equal(y, ref)
    w = torch.randn_like(y)
    assert torch.equal(torch.autograd.grad((y * w).sum(), x)[0], torch.autograd.grad((ref * w).sum(), x)[0])


# ---- libraries: torchvision's functional transforms as references, gradcheck in float64 ----

def test_pad_modes_equal_torch_pad():
    x = torch.rand(2, 3, 4, 5, generator=gen(3))
    assert torch.equal(Pad(2, mode="constant", value=0.25)(x, gen()), torch.nn.functional.pad(x, (2,) * 4, value=0.25))
    for mode in ("reflect", "replicate"):
        assert torch.equal(Pad(2, mode=mode)(x, gen()), torch.nn.functional.pad(x, (2,) * 4, mode=mode))


def test_rotate_and_scale_equal_torchvision_affine_per_item():
    # torchvision's affine takes one angle per call, so it is the per-item reference; zero fill on both sides.
    tv = pytest.importorskip("torchvision.transforms.v2.functional")
    from torchvision.transforms import InterpolationMode

    x = torch.rand(3, 2, 9, 13, generator=gen(4), dtype=torch.float64)
    out = RandomRotate(degrees=25, padding="zeros")(x, gen(5))
    angles = (2 * torch.rand(3, generator=gen(5), dtype=torch.float64) - 1) * 25
    for b in range(3):  # torchvision turns counter-clockwise for positive angles on screen; ours, clockwise
        ref = tv.affine(x[b], angle=-float(angles[b]), translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                        interpolation=InterpolationMode.BILINEAR)
        assert torch.allclose(out[b], ref, atol=1e-6)
    out = RandomScale(0.7, 1.4, padding="zeros")(x, gen(6))
    s = 0.7 + 0.7 * torch.rand(3, generator=gen(6), dtype=torch.float64)
    for b in range(3):
        ref = tv.affine(x[b], angle=0.0, translate=[0, 0], scale=float(s[b]), shear=[0.0, 0.0],
                        interpolation=InterpolationMode.BILINEAR)
        assert torch.allclose(out[b], ref, atol=1e-6)


@pytest.mark.parametrize("transform", [Pad(2), Pad(1, mode="reflect"), Pad(1, mode="replicate"), Jitter(2),
                                       RandomScale(0.8, 1.2), RandomRotate(15),
                                       RandomRotate(15, padding="reflection")])
def test_transforms_pass_gradcheck(transform):
    x = torch.rand(2, 2, 5, 6, generator=gen(0), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: transform(t, gen(3)), (x,))


def test_transform_chain_repeats_bit_for_bit():
    # the same seed gives the same image bit for bit: a batch run twice from identically seeded generators
    x = torch.rand(5, 1, 10, 10, generator=gen(1))
    chain = (Pad(2), Jitter(2), RandomScale(), RandomRotate(), Jitter(1))

    def run(g):
        y = x
        for t in chain:
            y = t(y, g)
        return y

    assert torch.equal(run(gen(9)), run(gen(9)))


def test_jitter_keeps_the_usual_memory_layout():
    # a channels-last-looking result sends the next convolution down another kernel, which rounds differently
    x = torch.rand(4, 1, 6, 6, generator=gen(0))
    assert Jitter(2)(x, gen(1)).stride() == x.stride()
    x3 = torch.rand(4, 3, 6, 6, generator=gen(0))
    assert Jitter(2)(x3, gen(1)).stride() == x3.stride()
