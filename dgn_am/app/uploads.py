"""Uploaded images, decoded safely and fitted to a model's input.

An upload is refused (UploadError, which the server answers with a 4xx) before it is decoded when it has more
than `max_bytes` bytes, is not PNG, JPEG, GIF, BMP or WebP, or declares more than `max_pixels` pixels in its
header; Pillow's own decompression-bomb check is made an error too. Only the first frame of an animation is read.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dgn_am.explain.dataset_views import fit_images
from dgn_am.models.spec import InputSpec

MAX_BYTES = 8 * 1024 * 1024  # default upload limit: a large photo, and far more than a webcam frame
MAX_PIXELS = 4096 * 4096  # default pixel limit: width x height as the file's header declares it
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


class UploadError(ValueError):
    """A refused upload; `status` is the HTTP status to answer with (413 too large, 415 not an image, 400 else)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The upload's first frame as a loaded 8-bit 'L' or 'RGB' image (transparency composited on black, the
    Fashion-MNIST background). UploadError when it is empty, too large, not an image or an unsupported format."""
    if not data:
        raise UploadError("the upload is empty; send an image file (PNG, JPEG, GIF, BMP or WebP)")
    if len(data) > max_bytes:
        raise UploadError(f"the upload has {len(data)} bytes, more than the limit of {max_bytes}; send a smaller "
                          "image (the model sees it at its own input size anyway)", 413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
            w, h = im.size
            if w * h > max_pixels or w < 1 or h < 1:
                raise UploadError(f"the image is {w}x{h} pixels, more than the limit of {max_pixels}; send a "
                                  "smaller image", 413)
            im.seek(0)
            im.load()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # Pillow's own limit, met first
        raise UploadError(f"the image declares too many pixels ({e}); send a smaller image", 413) from None
    except UnidentifiedImageError as e:
        raise UploadError(f"the upload is not a supported image ({e.__class__.__name__}); send a PNG, JPEG, GIF, "
                          "BMP or WebP file", 415) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated or corrupt data inside a valid header
        raise UploadError(f"the image could not be decoded ({e.__class__.__name__}: {e}); send an intact file") \
            from None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size, "black")
        im.paste(rgba, mask=rgba.getchannel("A"))
    return im.convert("L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB")


def to_model_input(im: Image.Image, spec: InputSpec) -> torch.Tensor:
    """A decoded image -> (1, C, H, W) in [0, 1] at the model's channels and size: grey <-> RGB by ITU-R 601 luma,
    shorter side scaled to the input size and centre-cropped (as `dgn-am explain --image` reads a file)."""
    factor = min(im.size) // (4 * max(spec.size))
    if factor > 1:  # shrink big photos first (box filter), so the float copy stays small
        im = im.reduce(factor)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())[None]  # (1, C, H, W)
    return fit_images(x, spec.channels, tuple(spec.size))


def read_upload(data: bytes, spec: InputSpec, max_bytes: int = MAX_BYTES,
                max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Upload bytes -> (1, C, H, W) in [0, 1] for a model with input `spec`; UploadError when refused."""
    return to_model_input(decode_image(data, max_bytes, max_pixels), spec)
