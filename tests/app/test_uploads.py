"""Uploads: bounded in bytes and pixels before decoding, anything not an image refused with the right status,
transparency composited on black, and an image fitted to the model exactly as a file is."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dgn_am.app.uploads import UploadError, decode_image, read_upload
from dgn_am.explain.dataset_views import fit_images
from dgn_am.models.fmnist import FASHION_MNIST_INPUT


def _save(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with a tiny (wrong) data chunk: a would-be bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_a_grey_png_reads_back_exactly():
    arr = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    x = read_upload(_save(Image.fromarray(arr, "L")), FASHION_MNIST_INPUT)
    assert x.shape == (1, 1, 28, 28)
    assert torch.equal(x[0, 0], torch.from_numpy(arr).float() / 255)


def test_colour_is_fitted_as_fit_images_does():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    x = read_upload(_save(Image.fromarray(arr, "RGB")), FASHION_MNIST_INPUT)
    ref = fit_images(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255, 1, (28, 28))
    assert torch.allclose(x, ref)


def test_transparent_pixels_become_black():
    im = Image.new("RGBA", (28, 28), (255, 255, 255, 0))
    im.putpixel((3, 4), (255, 255, 255, 255))
    x = read_upload(_save(im), FASHION_MNIST_INPUT)
    assert x[0, 0, 4, 3] == 1 and x.sum() == 1


def test_big_photo_is_shrunk_before_fitting():
    im = Image.new("L", (2000, 1000), 128)
    x = read_upload(_save(im, "JPEG"), FASHION_MNIST_INPUT)
    assert x.shape == (1, 1, 28, 28) and torch.allclose(x, torch.full_like(x, 128 / 255), atol=2 / 255)


@pytest.mark.parametrize("data, status, words", [
    (b"", 400, "empty"),
    (b"hello, not an image", 415, "not a supported image"),
    (_png_claiming(3000, 7000), 413, "3000x7000"),  # over our limit, under Pillow's
    (_png_claiming(60000, 60000), 413, "too many pixels"),  # over Pillow's decompression-bomb limit
], ids=["empty", "text", "over-limit", "bomb"])
def test_refused_uploads(data, status, words):
    with pytest.raises(UploadError, match=words) as e:
        decode_image(data)
    assert e.value.status == status


def test_byte_and_pixel_limits():
    data = _save(Image.new("L", (100, 100)))
    with pytest.raises(UploadError, match="bytes") as e:
        decode_image(data, max_bytes=len(data) - 1)
    assert e.value.status == 413
    with pytest.raises(UploadError, match="100x100") as e:
        decode_image(data, max_pixels=100 * 100 - 1)
    assert e.value.status == 413
    assert decode_image(data, max_bytes=len(data), max_pixels=100 * 100).size == (100, 100)


def test_truncated_and_unsupported_formats():
    data = _save(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)))
    with pytest.raises(UploadError, match="decoded") as e:
        decode_image(data[: len(data) // 2])
    assert e.value.status == 400
    with pytest.raises(UploadError) as e:
        decode_image(_save(Image.new("L", (8, 8)), "TIFF"))  # a real image, but not one the server takes
    assert e.value.status == 415
