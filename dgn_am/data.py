"""Datasets as plain tensors: Fashion-MNIST from its gzip IDX files, and folders of a user's own images.

No Lightning here; `training.data` wraps these in DataModules. Nothing downloads unless the caller asks.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
HOW_TO_GET = (
    "install the Debian package (apt-get install dataset-fashion-mnist, which puts the files in "
    f"{DEBIAN_FASHION_MNIST}), or pass --data-dir DIR holding {', '.join(_FILES['train'] + _FILES['test'])}, "
    "or set DGN_AM_FASHION_MNIST=DIR, or pass --download to fetch them with torchvision (needs internet)"
)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a (optionally gzipped) IDX file: unsigned-byte images (N, H, W) or labels (N,)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} bytes")
    return array.reshape(shape)


def fashion_mnist_dir(data_dir: str | Path | None = None) -> Path:
    """The folder with the IDX files: data_dir when given (and nothing else: a folder the user names is never
    silently replaced by another copy), else $DGN_AM_FASHION_MNIST, else the Debian package's folder."""
    if data_dir:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"--data-dir {root} does not exist or is not a folder; give the folder holding "
                                    f"{', '.join(_FILES['train'] + _FILES['test'])}, or leave --data-dir out to use "
                                    f"the system copy in {DEBIAN_FASHION_MNIST}")
        candidates = [root]
    else:
        env = os.environ.get("DGN_AM_FASHION_MNIST")
        candidates = ([Path(env)] if env else []) + [DEBIAN_FASHION_MNIST]
    for c in candidates:
        if all((c / f).is_file() for f in _FILES["train"] + _FILES["test"]):
            return c
        raw = c / "FashionMNIST" / "raw"  # torchvision's download layout
        if all((raw / f).is_file() for f in _FILES["train"] + _FILES["test"]):
            return raw
    raise FileNotFoundError(f"Fashion-MNIST not found in {', '.join(map(str, candidates))}; {HOW_TO_GET}")


def load_fashion_mnist(
    split: str = "train", data_dir: str | Path | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels): images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64.

    With download set (an explicit opt-in, never the default), missing files are fetched with torchvision into
    data_dir (default ./data).
    """
    if split not in _FILES:
        raise ValueError(f"unknown split '{split}'; use 'train' or 'test'")
    try:
        root = fashion_mnist_dir(data_dir)
    except FileNotFoundError:
        if not download:
            raise
        import torchvision

        target = Path(data_dir or "data")
        for train in (True, False):  # `download` is the caller's opt-in; it is False unless they asked
            torchvision.datasets.FashionMNIST(str(target), train=train, download=download)
        root = fashion_mnist_dir(target)
    images_file, labels_file = _FILES[split]
    images = torch.from_numpy(read_idx(root / images_file).copy()).float().div_(255).unsqueeze(1)
    labels = torch.from_numpy(read_idx(root / labels_file).astype(np.int64))
    return images, labels


# The last VALIDATION_SIZE Fashion-MNIST training images are held out for validation when training a classifier or
# a prior; the rest is the training split (the one the shipped prior's code statistics are taken over).
VALIDATION_SIZE = 5000

@functools.lru_cache(maxsize=1)
def _fashion_mnist_mean() -> torch.Tensor:
    images, _ = load_fashion_mnist("train")
    return images.mean(0)  # (1, 28, 28)


def dataset_mean_image(spec) -> torch.Tensor | None:
    """The training-set mean image (C, H, W) in [0, 1] of the data set a model with InputSpec `spec` was trained on,
    where that data set is known here (Fashion-MNIST); None otherwise."""
    from dgn_am.models.fmnist import FASHION_MNIST_INPUT

    if spec == FASHION_MNIST_INPUT:
        return _fashion_mnist_mean().clone()
    return None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_folder(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """List an ImageFolder tree (root/CLASS/IMAGE): (paths, labels, class names). Errors say what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; expected {root}/CLASS_NAME/IMAGE.png ...")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        for p in sorted((root / c).rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(i)
    if not paths:
        raise ValueError(f"no images found under {root}; expected {root}/CLASS_NAME/IMAGE with {IMAGE_SUFFIXES}")
    return paths, labels, classes


# the classes of `write_shapes_folder`: (shape, RGB colour)
SHAPES = {"red-disc": ("disc", (220, 40, 40)), "green-square": ("square", (40, 180, 60)),
          "blue-triangle": ("triangle", (40, 70, 220)), "yellow-ring": ("ring", (230, 200, 30))}


def write_shapes_folder(root: str | Path, per_class: int = 24, size: int = 64, seed: int = 0) -> list[str]:
    """A small RGB ImageFolder to try the RGB recipe on: root/CLASS/NNN.png, `per_class` PNGs of size x size for
    each class of SHAPES (a coloured shape at a random place and scale, its colour jittered, on a noisy light
    background). The same seed writes the same files. Returns the class names."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    for name, (shape, colour) in SHAPES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            background = rng.integers(170, 250, 3)
            pixels = np.clip(background + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
            im = Image.fromarray(pixels, "RGB")
            r = rng.uniform(0.18, 0.32) * size
            cx, cy = rng.uniform(r, size - r, 2)
            fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
            draw, box = ImageDraw.Draw(im), (cx - r, cy - r, cx + r, cy + r)
            if shape == "disc":
                draw.ellipse(box, fill=fill)
            elif shape == "square":
                draw.rectangle(box, fill=fill)
            elif shape == "triangle":
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
            else:
                draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
            im.save(root / name / f"{i:03d}.png")
    return list(SHAPES)
