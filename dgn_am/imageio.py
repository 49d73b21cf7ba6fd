"""Reading and writing images. Tensors are (C, H, W) or (B, C, H, W) with values in [0, 1]; files written are 8-bit
PNG; files read may be 8- or 16-bit (grey, RGB, RGBA, palette), each read at its real depth.

Writes are atomic (a temporary file, then rename), so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from dgn_am.errors import strict_dumps
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


def write_text(path: str | Path, text: str) -> None:
    """`text` to path, atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """obj as strict JSON (dgn_am.errors.strict_dumps: null for a non-finite number), atomically, newline-ended."""
    write_text(path, strict_dumps(obj, indent=indent) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One strict-JSON object per line (a manifest.jsonl), atomically."""
    write_text(path, "".join(strict_dumps(r) + "\n" for r in rows))


def view_scale(size: tuple[int, ...]) -> int:
    """The whole factor that enlarges an image of `size` (H, W) to at least 112 pixels on its longer side, for
    saved PNGs and grids a person looks at (1 for images that large already)."""
    return max(1, 112 // max(size))


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


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        im = Image.open(path)
        im.load()
    except Exception as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    return im


def _png_16bit_colour(path: Path) -> np.ndarray | None:
    """(H, W, C) float32 in [0, 1] of a 16-bit colour or grey + alpha PNG, alpha dropped (C = 3, or 1 for grey);
    None when the file is not 16 bits deep. Decoded by pypng, which keeps every bit (Pillow cuts these to 8)."""
    import png  # pypng

    try:
        reader = png.Reader(filename=str(path))
        reader.preamble()  # the header only: an 8-bit file is left to Pillow without being decoded twice
        if reader.bitdepth != 16:
            return None
        width, height, rows, info = reader.asDirect()
        planes = info["planes"]
        samples = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
    except png.Error as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    colour = planes - (1 if info["alpha"] else 0)
    return samples[..., :colour].astype(np.float32) / 65535.0


def _deep_pixels(path: Path, im: Image.Image) -> np.ndarray | None:
    """(H, W, C) float32 in [0, 1] for images deeper than 8 bits (alpha dropped), or None for 8-bit images, which
    Pillow converts exactly. 16-bit grey comes from Pillow; 16-bit colour PNGs, which Pillow cuts to 8 bits, are
    decoded with pypng."""
    if im.format == "PNG" and im.mode in ("RGB", "RGBA", "LA"):
        deep = _png_16bit_colour(path)
        if deep is not None:
            return deep
    if im.mode.startswith("I;16"):
        return (np.asarray(im).astype(np.float32) / 65535.0)[..., None]
    if im.mode == "I":  # 32-bit integer storage; 16-bit data in practice (older Pillow's 16-bit PNGs, TIFFs)
        arr = np.asarray(im).astype(np.float64)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(f"cannot read {path}: 32-bit integer pixels outside 0-65535 are not supported; "
                             "save it as an 8- or 16-bit image")
        return (arr / 65535.0).astype(np.float32)[..., None]
    if im.mode == "F":
        arr = np.asarray(im).astype(np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"cannot read {path}: float pixels must be finite and in [0, 1]")
        return arr[..., None]
    return None


def _fit(channels: list[Image.Image], size: tuple[int, int], fit: str = "crop",
         crop_from: tuple[int, int] | None = None) -> list[Image.Image]:
    """fit="crop": resize the shorter side to the target (bilinear) and centre-crop to size (H, W), or, for a model
    whose input is a crop of a `crop_from` image (Caffe: 256 -> 227), resize to crop_from as Caffe's data layer did
    and crop the centre; fit="squash": resize to size, the aspect ratio not kept. Every image the same."""
    h, w = size
    if fit == "squash":
        return [c.resize((w, h), Image.BILINEAR) for c in channels]
    if crop_from is not None:
        top, left = (crop_from[0] - h) // 2, (crop_from[1] - w) // 2
        return [c.resize((crop_from[1], crop_from[0]), Image.BILINEAR).crop((left, top, left + w, top + h))
                for c in channels]
    im = channels[0]
    s = max(h / im.height, w / im.width)
    new = (max(w, round(im.width * s)), max(h, round(im.height * s)))
    left, top = (new[0] - w) // 2, (new[1] - h) // 2
    return [c.resize(new, Image.BILINEAR).crop((left, top, left + w, top + h)) for c in channels]


def load_image(path: str | Path, spec: InputSpec, fit: str = "crop") -> torch.Tensor:
    """Read an image file and fit it to a model: convert to its channels, then fit="crop": resize the shorter side
    and centre-crop to its size; fit="squash": resize to its size, the aspect ratio not kept (the reference's start
    from a real image). Returns (1, C, H, W) in [0, 1].

    Every sample is read at its real depth: 8-bit files (grey, RGB, RGBA, palette, 1-bit) through Pillow's
    conversions, 16-bit files (grey, grey + alpha, RGB, RGBA PNGs; 16-bit grey TIFFs) divided by 65535 and resized
    in floating point. Alpha is dropped, as Pillow does; colour to grey is ITU-R 601 luma (0.299 R + 0.587 G +
    0.114 B)."""
    if fit not in ("crop", "squash"):
        raise ValueError(f"fit must be 'crop' or 'squash', got '{fit}'")
    path = Path(path)
    im = _open(path)
    deep = _deep_pixels(path, im)
    if deep is None:  # 8 bits: Pillow's exact conversions, unchanged
        (im,) = _fit([im.convert("L" if spec.channels == 1 else "RGB")], spec.size, fit, spec.crop_from)
        arr = np.asarray(im, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(arr.copy()).unsqueeze(0)
    if spec.channels == 1 and deep.shape[2] == 3:
        deep = deep @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)  # (H, W, 1)
    elif spec.channels == 3 and deep.shape[2] == 1:
        deep = np.repeat(deep, 3, axis=2)
    planes = _fit([Image.fromarray(np.ascontiguousarray(deep[..., c]), "F") for c in range(deep.shape[2])],
                  spec.size, fit, spec.crop_from)
    arr = np.stack([np.asarray(p, dtype=np.float32) for p in planes]).clip(0.0, 1.0)  # (C, H, W)
    return torch.from_numpy(arr.copy()).unsqueeze(0)


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as it is, (C, H, W) in [0, 1] with C = 1 (grey) or 3 (colour; alpha dropped); no resizing."""
    path = Path(path)
    im = _open(path)
    grey = im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16")
    return load_image(path, InputSpec((im.height, im.width), 1 if grey else 3, (0.0,) * (1 if grey else 3),
                                      (1.0,) * (1 if grey else 3)))[0]
