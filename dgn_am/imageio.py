"""Reading and writing images. Tensors are (C, H, W) or (B, C, H, W) with values in [0, 1]; files are 8-bit PNG.

Writes are atomic (a temporary file, then rename), so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from dgn_am.models.spec import InputSpec


def to_pil(x: torch.Tensor) -> Image.Image:
    """x: (C, H, W), C in {1, 3}, values clipped to [0, 1] -> 8-bit grayscale or RGB image."""
    arr = (x.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr[0], "L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), "RGB")


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path) and move the result to path in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_image(x: torch.Tensor, path: str | Path, scale: int = 1) -> None:
    """Save (C, H, W) in [0, 1] as PNG, optionally enlarged by an integer factor (nearest neighbour)."""
    im = to_pil(x)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))


def make_grid(images: torch.Tensor, rows: int, pad: int = 2, fill: float = 1.0) -> torch.Tensor:
    """images (N, C, H, W), N = rows * cols, row-major -> one (C, H', W') image with `pad` pixels between cells."""
    n, c, h, w = images.shape
    if n % rows:
        raise ValueError(f"{n} images do not fill {rows} rows evenly")
    cols = n // rows
    grid = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), fill, dtype=images.dtype)
    for i, im in enumerate(images.detach().cpu().clamp(0, 1)):
        r, k = divmod(i, cols)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = im
    return grid


def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's bundled font at `size` pixels (no font files needed)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def save_labelled_grid(grid: torch.Tensor, labels: list[str], path: str | Path, rows: int, scale: int = 1,
                       pad: int = 2) -> None:
    """Save a make_grid image (C, H', W') enlarged by `scale`, with labels[r] written left of row r."""
    im = to_pil(grid).convert("RGB")
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    size = max(10, min(16, (im.height // rows) // 3))
    f = font(size)
    width = max(int(ImageDraw.Draw(im).textlength(t, font=f)) for t in labels) + 2 * size if labels else 0
    out = Image.new("RGB", (im.width + width, im.height), "white")
    out.paste(im, (width, 0))
    draw = ImageDraw.Draw(out)
    cell = (im.height - pad * scale) / rows
    for r, text in enumerate(labels):
        draw.text((size // 2, int(pad * scale + r * cell + cell / 2)), text, fill="black", font=f, anchor="lm")
    atomic_write(path, lambda tmp: out.save(tmp, format="PNG"))


def load_image(path: str | Path, spec: InputSpec, fit: str = "crop") -> torch.Tensor:
    """Read an image file and fit it to a model: convert to its channels, then fit="crop": resize the shorter side
    and centre-crop to its size; fit="squash": resize to its size, aspect ratio not kept (the reference's start
    from a real image). Returns (1, C, H, W) in [0, 1]."""
    if fit not in ("crop", "squash"):
        raise ValueError(f"fit must be 'crop' or 'squash', got '{fit}'")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        im = Image.open(path)
        im.load()
    except Exception as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    im = im.convert("L" if spec.channels == 1 else "RGB")
    h, w = spec.size
    if fit == "squash":
        im = im.resize((w, h), Image.BILINEAR)
    else:
        s = max(h / im.height, w / im.width)
        im = im.resize((max(w, round(im.width * s)), max(h, round(im.height * s))), Image.BILINEAR)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        im = im.crop((left, top, left + w, top + h))
    arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy()).unsqueeze(0)
