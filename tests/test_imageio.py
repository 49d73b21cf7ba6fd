"""dgn_am.imageio: PNG round trips, grid layout, fitting an image file to a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dgn_am.imageio import load_image, make_grid, save_image, to_pil
from dgn_am.models.spec import InputSpec
from tests.helpers import png_bytes

GRAY = InputSpec(size=(10, 10), channels=1, mean=(0.5,), std=(0.5,))
RGB = InputSpec(size=(10, 10), channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_image_round_trip(tmp_path, channels, mode):
    x = torch.rand(channels, 5, 7, generator=torch.Generator().manual_seed(channels))
    save_image(x, tmp_path / "x.png")
    im = Image.open(tmp_path / "x.png")
    assert im.mode == mode and im.size == (7, 5)  # PIL sizes are (W, H)
    back = load_image(tmp_path / "x.png", InputSpec((5, 7), channels, (0.0,) * channels, (1.0,) * channels))[0]
    assert back.shape == (channels, 5, 7)
    assert (back - x).abs().max() <= 0.5 / 255 + 1e-6  # exact up to 8-bit quantization
    arr = np.asarray(im)
    expected = (x.numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(arr if channels == 3 else arr[None], expected.transpose(1, 2, 0) if channels == 3
                                  else expected)


def test_to_pil_clips_and_orders_channels():
    x = torch.zeros(3, 1, 2)
    x[0, 0, 0] = 2.0  # red, over range: clipped to 255
    x[2, 0, 1] = -1.0  # under range: clipped to 0
    x[1, 0, 1] = 0.5  # green 127.5 -> rounds to 128
    im = to_pil(x)
    assert im.mode == "RGB"
    assert im.getpixel((0, 0)) == (255, 0, 0) and im.getpixel((1, 0)) == (0, 128, 0)


def test_save_image_scale_is_nearest_neighbour(tmp_path):
    x = torch.tensor([[[0.0, 1.0]]])  # (1, 1, 2)
    save_image(x, tmp_path / "sub" / "x.png", scale=3)  # parent folders are created
    arr = np.asarray(Image.open(tmp_path / "sub" / "x.png"))
    assert arr.shape == (3, 6)
    assert (arr[:, :3] == 0).all() and (arr[:, 3:] == 255).all()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]  # no temporary file left behind


def test_make_grid_layout():
    n, c, h, w, rows, pad = 6, 3, 4, 5, 2, 2
    images = torch.zeros(n, c, h, w)
    for i in range(n):
        images[i, :, 1, 3] = (i + 1) / 10  # one marked pixel per image, at row 1, col 3
    grid = make_grid(images, rows=rows, pad=pad, fill=1.0)
    cols = n // rows
    assert grid.shape == (c, rows * (h + pad) + pad, cols * (w + pad) + pad) == (3, 14, 23)
    for i in range(n):
        r, k = divmod(i, cols)  # row-major
        y, x = pad + r * (h + pad) + 1, pad + k * (w + pad) + 3
        assert torch.allclose(grid[:, y, x], torch.full((3,), (i + 1) / 10)), i
    assert (grid[:, :pad, :] == 1.0).all() and (grid[:, :, :pad] == 1.0).all()  # the fill between cells
    assert (grid[:, pad + h: 2 * pad + h, :] == 1.0).all()
    assert (grid[:, pad: pad + h, pad: pad + w] == images[0]).all()  # cell 0 holds image 0 exactly


def test_make_grid_clamps_and_checks_rows():
    grid = make_grid(torch.full((2, 1, 2, 2), 3.0), rows=1, pad=0)
    assert grid.shape == (1, 2, 4) and (grid == 1.0).all()
    with pytest.raises(ValueError, match="5 images do not fill 2 rows"):
        make_grid(torch.zeros(5, 1, 2, 2), rows=2)


def _banded(width: int, height: int, vertical: bool = False) -> Image.Image:
    """Red, white, blue bands along the long side (columns, or rows when vertical): a quarter, a half, a quarter."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    n = height if vertical else width
    q = n // 4
    for lo, hi, colour in ((0, q, (255, 0, 0)), (q, n - q, (255, 255, 255)), (n - q, n, (0, 0, 255))):
        arr[(slice(lo, hi), slice(None)) if vertical else (slice(None), slice(lo, hi))] = colour
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize("vertical", [False, True])
def test_load_image_resizes_shorter_side_and_centre_crops(tmp_path, vertical):
    # 80 x 20: the shorter side 20 -> 10, so 40 x 10; the centre crop keeps resized columns 15-24, i.e. source
    # columns 30-49 (+-2 of filter support), all inside the white centre half (20-59). A crop from the left would
    # see red, an unresized crop would be 10 source pixels of white, so the next test checks the size too.
    size = (20, 80) if vertical else (80, 20)
    path = tmp_path / "banded.png"
    _banded(*size, vertical=vertical).save(path)
    gray = load_image(path, GRAY)
    assert gray.shape == (1, 1, 10, 10) and gray.dtype == torch.float32
    assert torch.equal(gray, torch.ones(1, 1, 10, 10))
    rgb = load_image(path, RGB)
    assert rgb.shape == (1, 3, 10, 10) and torch.equal(rgb, torch.ones(1, 3, 10, 10))


def test_load_image_scales_content(tmp_path):
    # 40 x 20, left half black, right half white -> 20 x 10, centre crop = resized columns 5-14, so the edge (source
    # column 20, resized 10) lands between crop columns 4 and 5. Halving with PIL's bilinear (triangle) filter
    # weighs source pixels .25, .75, .75, .25 / 2 around each output pixel: 1/8 of the other side leaks into
    # each edge column, 255 / 8 -> 32. Without the resize the crop would hold a sharp edge at the same place.
    arr = np.zeros((20, 40), dtype=np.uint8)
    arr[:, 20:] = 255
    Image.fromarray(arr, "L").save(tmp_path / "half.png")
    x = load_image(tmp_path / "half.png", GRAY)[0, 0]
    row = torch.tensor([0, 0, 0, 0, 32, 223, 255, 255, 255, 255]) / 255
    assert torch.allclose(x, row.expand(10, 10), atol=1e-6)


def test_load_image_converts_channels(tmp_path):
    Image.new("RGB", (10, 10), (255, 0, 0)).save(tmp_path / "red.png")
    gray = load_image(tmp_path / "red.png", GRAY)
    assert torch.allclose(gray, torch.full((1, 1, 10, 10), 76 / 255))  # ITU-R 601 luma: 0.299 * 255 -> 76
    Image.new("L", (10, 10), 200).save(tmp_path / "gray.png")
    rgb = load_image(tmp_path / "gray.png", RGB)
    assert rgb.shape == (1, 3, 10, 10) and torch.allclose(rgb, torch.full((1, 3, 10, 10), 200 / 255))
    Image.new("RGBA", (10, 10), (0, 255, 0, 128)).save(tmp_path / "alpha.png")
    assert load_image(tmp_path / "alpha.png", RGB)[0, :, 0, 0].tolist() == [0.0, 1.0, 0.0]


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found"):
        load_image(tmp_path / "missing.png", GRAY)
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="cannot read image .*junk.png"):
        load_image(tmp_path / "junk.png", GRAY)


# ---- every kind of file, read at its real depth (issue 11). The files are written byte by byte (tests.helpers) ----

RNG = np.random.default_rng(11)
GREY16 = RNG.integers(0, 65536, (6, 5)).astype(np.uint16)
RGB16 = RNG.integers(0, 65536, (6, 5, 3)).astype(np.uint16)
ALPHA16 = RNG.integers(0, 65536, (6, 5)).astype(np.uint16)
GREY8 = RNG.integers(0, 256, (6, 5)).astype(np.uint8)
RGB8 = RNG.integers(0, 256, (6, 5, 3)).astype(np.uint8)
LUMA = np.array([0.299, 0.587, 0.114])


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _exact(path, channels, size=(6, 5)):
    """load_image at the file's own size: no resampling, so the values are the file's samples."""
    return load_image(path, InputSpec(size, channels, (0.0,) * channels, (1.0,) * channels))[0].numpy()


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4)])
def test_16bit_rgb_png_keeps_all_16_bits_under_every_row_filter(tmp_path, filters):
    path = _write(tmp_path, "rgb16.png", png_bytes(RGB16, colour_type=2, bit_depth=16, filters=filters))
    got = _exact(path, 3)  # (3, 6, 5)
    np.testing.assert_allclose(got, RGB16.transpose(2, 0, 1) / 65535.0, atol=1e-7)
    # a value that 8 bits cannot hold: 8-bit reading would be off by up to 1/510
    assert np.abs(got - np.round(got * 255) / 255).max() > 1e-3


def test_16bit_grey_png_is_not_saturated(tmp_path):
    """The bug of issue 11: Pillow's 16-bit grey (mode I;16) converted to 8 bits made 99.6% of pixels 1.0."""
    path = _write(tmp_path, "grey16.png", png_bytes(GREY16, colour_type=0, bit_depth=16, filters=(4, 1)))
    got = _exact(path, 1)
    np.testing.assert_allclose(got[0], GREY16 / 65535.0, atol=1e-7)
    assert (got == 1.0).mean() < 0.05
    rgb = _exact(path, 3)  # grey to RGB: three equal channels
    np.testing.assert_allclose(rgb, np.repeat(GREY16[None] / 65535.0, 3, 0), atol=1e-7)


@pytest.mark.parametrize("colour_type, samples, expected_rgb", [
    (4, np.stack([GREY16, ALPHA16], -1), np.repeat(GREY16[..., None], 3, -1)),  # grey + alpha: alpha dropped
    (6, np.concatenate([RGB16, ALPHA16[..., None]], -1), RGB16),  # RGBA: alpha dropped
])
def test_16bit_png_with_alpha(tmp_path, colour_type, samples, expected_rgb):
    path = _write(tmp_path, "a16.png", png_bytes(samples, colour_type=colour_type, bit_depth=16, filters=(3, 2)))
    np.testing.assert_allclose(_exact(path, 3), expected_rgb.transpose(2, 0, 1) / 65535.0, atol=1e-7)
    grey = _exact(path, 1)[0]
    np.testing.assert_allclose(grey, (expected_rgb / 65535.0) @ LUMA, atol=1e-6)


def test_16bit_rgb_to_grey_is_luma(tmp_path):
    path = _write(tmp_path, "rgb16.png", png_bytes(RGB16, colour_type=2, bit_depth=16))
    np.testing.assert_allclose(_exact(path, 1)[0], (RGB16 / 65535.0) @ LUMA, atol=1e-6)


@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba", "grey+alpha", "palette"])
def test_8bit_files_of_every_kind(tmp_path, kind):
    alpha = RNG.integers(0, 256, (6, 5)).astype(np.uint8)
    palette_rgb = RNG.integers(0, 256, (16, 3)).astype(np.uint8)
    index = RNG.integers(0, 16, (6, 5)).astype(np.uint8)
    data, rgb = {
        "grey": (lambda: png_bytes(GREY8, 0), np.repeat(GREY8[..., None], 3, -1)),
        "rgb": (lambda: png_bytes(RGB8, 2, filters=(4, 3)), RGB8),
        "rgba": (lambda: png_bytes(np.concatenate([RGB8, alpha[..., None]], -1), 6), RGB8),
        "grey+alpha": (lambda: png_bytes(np.stack([GREY8, alpha], -1), 4), np.repeat(GREY8[..., None], 3, -1)),
        "palette": (lambda: png_bytes(index, 3, palette=palette_rgb.tobytes()), palette_rgb[index]),
    }[kind]
    path = _write(tmp_path, f"{kind}.png", data())
    np.testing.assert_allclose(_exact(path, 3), rgb.transpose(2, 0, 1) / 255.0, atol=1e-7)
    grey = _exact(path, 1)[0] * 255
    # Pillow's 8-bit luma, rounded to an integer: within half a level of the exact luma
    assert np.abs(grey - rgb @ LUMA).max() <= 0.5 + 1e-4
    assert np.array_equal(grey, np.round(grey))


def test_16bit_file_is_resized_in_floating_point(tmp_path):
    """A smooth 16-bit ramp resized to half size stays a fine ramp (no 8-bit steps)."""
    ramp = np.tile(np.linspace(1000, 1300, 20).round().astype(np.uint16), (20, 1))  # 300 levels of 65535
    path = _write(tmp_path, "ramp.png", png_bytes(ramp, colour_type=0, bit_depth=16))
    got = load_image(path, InputSpec((10, 10), 1, (0.0,), (1.0,)))[0, 0].numpy()
    assert got.min() > 1000 / 65535 - 1e-6 and got.max() < 1300 / 65535 + 1e-6
    assert len(np.unique(got[0])) == 10  # 10 distinct values; 8 bits would give at most 2 here
