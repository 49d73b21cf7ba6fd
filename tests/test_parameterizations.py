"""dgn_am.parameterizations: the Fourier parameterization (round trip, 1/f scale, colour), image centres, mean images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgn_am.models.fmnist import FASHION_MNIST_INPUT
from dgn_am.models.spec import IMAGENET_INPUT, InputSpec
from dgn_am.parameterizations import IMAGENET_COLOUR_SQRT, FourierParam, PixelParam, mean_image, spectrum_scale

CPU = torch.device("cpu")


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16), (3, 9, 14), (1, 7, 5)])
def test_fourier_round_trip_from_image_to_image(shape):
    param = FourierParam(shape)
    images = 0.02 + 0.96 * torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    p = param.from_image(images)
    assert p.shape == (2, shape[0], shape[1], shape[2] // 2 + 1, 2)
    assert torch.allclose(param.to_image(p), images, atol=1e-5)


def test_fourier_round_trip_from_p():
    param = FourierParam((3, 12, 10))
    p = param.init([4], CPU, torch.float32) * 100  # a far-from-grey image
    images = param.to_image(p)
    assert torch.allclose(param.to_image(param.from_image(images)), images, atol=1e-5)


def test_spectrum_scale_is_one_over_frequency():
    s = spectrum_scale(8, 8)
    assert s.shape == (8, 5)
    assert s[0, 0] == pytest.approx(8.0)  # DC is capped at 1 / (1 / max(H, W))
    assert s[0, 1] == pytest.approx(8.0)  # |f| = 1/8
    assert s[0, 4] == pytest.approx(2.0)  # |f| = 1/2 (Nyquist)
    assert s[4, 4] == pytest.approx(1 / np.sqrt(0.5))
    assert spectrum_scale(8, 8, decay_power=2.0)[0, 4] == pytest.approx(4.0)


def test_fourier_white_spectrum_gives_a_falling_image_spectrum():
    param = FourierParam((1, 32, 32), init_std=0.01)
    p = param.init(list(range(64)), CPU, torch.float32)
    z = torch.logit(param.to_image(p).double())  # undo the sigmoid: z = gain * irfft2(p * scale)
    power = torch.fft.rfft2(z).abs().pow(2).mean((0, 1))  # (32, 17)
    assert power[0, 1] > 10 * power[0, 8] > 10 * power[16, 16]


def test_fourier_init_depends_on_the_item_seed_only():
    param = FourierParam((3, 8, 8))
    a = param.init([5, 6], CPU, torch.float32)
    b = param.init([6], CPU, torch.float32)
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])
    grey = param.to_image(FourierParam((3, 8, 8), init="zeros").init([0], CPU, torch.float32))
    assert torch.allclose(grey, torch.full_like(grey, 0.5))


def test_decorrelated_colour():
    param = FourierParam((3, 4, 4))
    assert param.decorrelate and param.colour.norm(dim=0).max() == pytest.approx(1.0)
    m = torch.tensor(IMAGENET_COLOUR_SQRT)
    assert torch.allclose(param.colour, m / m.norm(dim=0).max())
    # one decorrelated component lights all three colour channels through the matrix
    p = torch.zeros(1, 3, 4, 3, 2)
    p[0, 0, 0, 0, 0] = 10.0  # DC of the first component
    z = torch.logit(param.to_image(p)[0, :, 0, 0].double())
    assert torch.allclose(z / z[0], (param.colour[:, 0] / param.colour[0, 0]).double(), atol=1e-5)
    assert not FourierParam((1, 4, 4)).decorrelate
    with pytest.raises(ValueError, match="needs 3 channels"):
        FourierParam((1, 4, 4), decorrelate=True)


def test_fourier_gradients_flow():
    param = FourierParam((3, 8, 8))
    p = param.init([0], CPU, torch.float32).requires_grad_(True)
    param.to_image(p)[:, 0].sum().backward()
    assert p.grad.abs().sum() > 0


def test_fourier_init_from_an_image_plus_noise():
    image = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    exact = FourierParam((1, 6, 6), init=image, init_std=0.0)
    assert torch.allclose(exact.to_image(exact.init([0, 1], CPU, torch.float32)), image.expand(2, 1, 6, 6), atol=1e-5)
    noisy = FourierParam((1, 6, 6), init=image, init_std=0.01).init([0, 1], CPU, torch.float32)
    assert not torch.equal(noisy[0], noisy[1])


def test_pixel_param_with_an_image_centre():
    centre = torch.rand(1, 5, 5)
    param = PixelParam((1, 5, 5), centre=centre, init="zeros")
    p = param.init([0, 1], CPU, torch.float32)
    assert torch.equal(param.to_image(p), centre.expand(2, 1, 5, 5))
    p += 2.0
    param.project(p)  # the box is [0, 1] around the image centre
    assert torch.allclose(param.to_image(p), torch.ones(2, 1, 5, 5))
    assert param.settings()["centre"] == "image"
    with pytest.raises(ValueError, match="centre image has shape"):
        PixelParam((1, 5, 5), centre=torch.rand(1, 4, 4))


def test_mean_image_defaults_and_sources(tmp_path):
    flat = mean_image(IMAGENET_INPUT)
    assert flat.shape == (3, 224, 224)
    assert torch.allclose(flat[:, 0, 0], torch.tensor(IMAGENET_INPUT.mean))
    spec = InputSpec(size=(6, 4), channels=1, mean=(0.1,), std=(1.0,))
    given = torch.rand(1, 6, 4)
    assert torch.equal(mean_image(spec, given), given)
    with pytest.raises(ValueError, match="mean image has shape"):
        mean_image(spec, torch.rand(1, 4, 4))
    from PIL import Image

    Image.fromarray(np.full((6, 4), 51, np.uint8), "L").save(tmp_path / "m.png")
    assert torch.allclose(mean_image(spec, tmp_path / "m.png"), torch.full((1, 6, 4), 0.2))


def test_fashion_mnist_mean_image():
    from dgn_am.data import fashion_mnist_dir

    try:
        fashion_mnist_dir()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    m = mean_image(FASHION_MNIST_INPUT)
    assert m.shape == (1, 28, 28)
    assert m.mean().item() == pytest.approx(FASHION_MNIST_INPUT.mean[0], abs=1e-3)
    assert m[0, 14, 14] > 0.4 > m[0, 0, 0]  # clothes in the middle, black corners


def test_rgb_pixels_are_decorrelated_colour_components():
    from dgn_am.parameterizations.fourier import decorrelation_matrix

    m = decorrelation_matrix()
    image = torch.rand(3, 4, 5)
    param = PixelParam((3, 4, 5), centre=(0.4, 0.5, 0.6), init=image)
    assert param.decorrelate and param.settings()["decorrelate"] is True
    p = param.init([0, 1], torch.device("cpu"), torch.float32)
    torch.testing.assert_close(param.to_image(p), image.expand(2, 3, 4, 5))
    q = torch.zeros(1, 3, 4, 5)
    q[0, :, 1, 2] = torch.tensor([1.0, -2.0, 0.5])  # one pixel's components
    x = param.to_image(q)
    torch.testing.assert_close(x[0, :, 1, 2] - torch.tensor([0.4, 0.5, 0.6]), m @ torch.tensor([1.0, -2.0, 0.5]))
    param.project(q)  # the box holds in image space
    y = param.to_image(q)
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
    torch.testing.assert_close(y[0, :, 1, 2], x[0, :, 1, 2].clamp(0, 1))
    grey = PixelParam((1, 4, 5), centre=0.5)
    assert not grey.decorrelate and torch.equal(grey.to_image(torch.ones(1, 1, 4, 5)), torch.full((1, 1, 4, 5), 1.5))
    plain = PixelParam((3, 4, 5), decorrelate=False)
    torch.testing.assert_close(plain.to_image(q), 0.5 + q)
