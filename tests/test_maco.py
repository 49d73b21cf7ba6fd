"""MACO: the mean spectrum, the phase-only image, its transparency map, the crop and noise transforms."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dgn_am.engine import maximize
from dgn_am.layers import parse_units
from dgn_am.models.spec import InputSpec
from dgn_am.objectives import UnitObjective
from dgn_am.parameterizations import MacoParam, Spectrum, load_spectrum, mean_spectrum, save_spectrum
from dgn_am.steps import StepRule
from dgn_am.transforms import Noise, RandomCrop
from tests.helpers import linear_model


def test_mean_spectrum_of_constant_images_is_all_dc():
    # rfft2 with norm="ortho" of a constant c on H x W: c * sqrt(H * W) at (0, 0), zero elsewhere
    images = torch.stack([torch.full((1, 4, 6), 0.2), torch.full((1, 4, 6), 0.6)])
    s = mean_spectrum(images)
    expected = torch.zeros(1, 4, 4)
    expected[0, 0, 0] = 0.4 * (4 * 6) ** 0.5
    assert torch.allclose(s.magnitude, expected, atol=1e-6)
    assert s.pixel_mean.item() == pytest.approx(0.4)
    assert s.pixel_std.item() == pytest.approx(torch.tensor([0.2] * 24 + [0.6] * 24).std().item(), rel=1e-5)
    assert s.shape == (1, 4, 6)


def test_mean_spectrum_is_the_mean_magnitude():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 8, 8, generator=g)
    s = mean_spectrum(images, batch=2)
    ref = torch.stack([torch.fft.rfft2(x, norm="ortho").abs() for x in images.double()]).mean(0)
    assert torch.allclose(s.magnitude, ref.float(), atol=1e-6)


def test_mean_spectrum_rejects_odd_width_and_too_few_images():
    with pytest.raises(ValueError, match="even image width"):
        mean_spectrum(torch.rand(3, 1, 4, 5))
    with pytest.raises(ValueError, match="at least 2 images"):
        mean_spectrum(torch.rand(1, 1, 4, 4))


def _spectrum(h=8, w=8, std=0.05) -> Spectrum:
    g = torch.Generator().manual_seed(1)
    mag = torch.rand(1, h, w // 2 + 1, generator=g) + 0.5
    return Spectrum(mag, torch.tensor([0.5]), torch.tensor([std]), {"test": True})


def test_phase_only_image_keeps_the_magnitude():
    # for the rfft columns that irfft2 does not symmetrize (1 .. W/2 - 1), rfft2 of the image gives back
    # magnitude * exp(i phase) up to the standardization's one positive factor; no pixel is clamped at std 0.05
    spec = _spectrum()
    param = MacoParam(spec, (1, 8, 8))
    p = param.init([3, 4], torch.device("cpu"), torch.float32)
    x = param.to_image(p)
    assert x.min() > 0 and x.max() < 1
    z = (x - 0.5) / 0.05
    back = torch.fft.rfft2(z, norm="ortho")[..., 1:4]
    ratio = back.abs() / spec.magnitude[..., 1:4]
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), rtol=1e-4)
    phasor = torch.polar(torch.ones_like(p), p)[..., 1:4]  # unit phasors: no wrap-around at +-pi
    assert torch.allclose(back / back.abs(), phasor, atol=1e-4)


def test_standardized_image_has_the_data_pixel_statistics():
    spec = _spectrum(std=0.05)
    x = MacoParam(spec, (1, 8, 8)).to_image(torch.randn(3, 1, 8, 5, generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(x.mean((1, 2, 3)), torch.full((3,), 0.5), atol=1e-6)
    assert torch.allclose(x.std((1, 2, 3)), torch.full((3,), 0.05), atol=1e-6)


def test_maco_start_depends_only_on_the_seed():
    param = MacoParam(_spectrum(), (1, 8, 8))
    a = param.init([5, 6], torch.device("cpu"), torch.float32)
    b = param.init([7, 5], torch.device("cpu"), torch.float32)
    assert torch.equal(a[0], b[1]) and not torch.equal(a[0], a[1])


def test_spectrum_of_another_size_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="dgn-am spectrum"):
        MacoParam(_spectrum(8, 8), (1, 28, 28))


def test_transparency_is_the_accumulated_gradient_magnitude():
    # a linear unit w . x: d unit / d x = w at every step, so the map is |w| / max |w|, whatever the phases do
    w = torch.randn(64, generator=torch.Generator().manual_seed(3))
    model = linear_model(w)
    model.input_spec = InputSpec((8, 8), 1, (0.5,), (0.25,))
    param = MacoParam(_spectrum(), (1, 8, 8))
    result = maximize(model, UnitObjective(parse_units("lin:0") * 2), param, [0, 1], steps=4,
                      step_rule=StepRule("adam", lr=0.1))
    t = result.extras["transparency"]
    assert t.shape == (2, 1, 8, 8)
    expected = (w.abs() / w.abs().max()).view(1, 1, 8, 8).expand(2, 1, 8, 8)
    assert torch.allclose(t, expected, atol=1e-5)
    assert result.history[-1].mean() > result.history[0].mean()  # the unit rose


def test_spectrum_file_round_trip_and_shipped_name(tmp_path):
    spec = _spectrum()
    save_spectrum(spec, tmp_path / "s.safetensors")
    back = load_spectrum(tmp_path / "s.safetensors")
    assert torch.equal(back.magnitude, spec.magnitude) and back.digest() == spec.digest()
    shipped = load_spectrum("fmnist")
    assert shipped.shape == (1, 28, 28) and shipped.source["file"] == "fmnist"
    with pytest.raises(FileNotFoundError, match="dgn-am spectrum"):
        load_spectrum(tmp_path / "missing.safetensors")


def test_maco_method_raises_a_unit_and_repeats(caffenet):
    from dgn_am.methods import get_method, synthesize

    method = dataclasses.replace(get_method("maco"), steps=6)
    a, _ = synthesize(caffenet, parse_units("fc8:1"), [0], method)
    b, _ = synthesize(caffenet, parse_units("fc8:1"), [0], method)
    assert torch.equal(a.images, b.images)
    assert a.history[-1, 0] > a.history[0, 0]
    assert a.settings["parameterization"]["spectrum_sha256"] == load_spectrum("fmnist").digest()
    assert a.extras["transparency"].amax() == 1.0


def test_random_crop_keeps_size_and_full_box_is_identity():
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    y = RandomCrop(low=1.0, high=1.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(y, x, atol=1e-6)
    # a half-size box at a drawn corner: output pixel (0, 0) samples inside the box, not the whole image
    z = RandomCrop(low=0.5, high=0.5)(x, torch.Generator().manual_seed(0))
    assert z.shape == x.shape
    a = RandomCrop(0.5, 0.9)(x, torch.Generator().manual_seed(5))
    b = RandomCrop(0.5, 0.9)(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        RandomCrop(low=0.0)


def test_random_crop_of_a_ramp_is_a_zoom_into_the_box():
    # x[i, j] = j (a horizontal ramp): a box of side s keeps a ramp, with slope s (in pixels per pixel)
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    y = RandomCrop(low=0.5, high=0.5)(x, torch.Generator().manual_seed(1))
    slope = (y[0, 0, 4, 5] - y[0, 0, 4, 2]) / 3
    assert slope.item() == pytest.approx(0.5, abs=1e-5)


def test_noise_bounds_and_repeats():
    x = torch.full((2, 1, 5, 5), 0.5)
    y = Noise(amplitude=0.05)(x, torch.Generator().manual_seed(0))
    assert (y - x).abs().max() <= 0.05 and (y - x).abs().max() > 0.01
    assert torch.equal(y, Noise(0.05)(x, torch.Generator().manual_seed(0)))
    assert torch.equal(Noise(0.0)(x, torch.Generator()), x)
