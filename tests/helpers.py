"""Tiny modules for the tests, importable as `tests.helpers:NAME` (the package.module:factory model path)."""

from __future__ import annotations

import gzip
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

import torch
from torch import nn

from dgn_am.models.loading import TargetModel, load_model
from dgn_am.models.spec import InputSpec

def random_caffenet() -> TargetModel:
    """The random-weight fmnist-caffenet the tests and the CLI's `--weights random` build (seed 0)."""
    torch.manual_seed(0)
    return load_model("fmnist-caffenet", weights="random")


TINY_SPEC = InputSpec(size=(4, 4), channels=1, mean=(0.5,), std=(0.25,))


class TinyConvNet(nn.Module):
    """(B, 1, 4, 4) -> conv (2, 4, 4) -> flatten -> fc (3,). Has an input_spec, so load_model accepts it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * 4 * 4, 3)
        self.unused = nn.Linear(3, 3)  # never called in forward: capturing it must fail clearly
        self.input_spec = TINY_SPEC

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.conv(x)))


def factory() -> TinyConvNet:
    torch.manual_seed(7)
    return TinyConvNet()


def factory_dict_spec() -> TinyConvNet:
    """The same network with its input_spec given as a plain dict, which load_model also accepts."""
    net = factory()
    net.input_spec = TINY_SPEC.to_dict()
    return net


def no_spec_factory() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def not_a_module() -> int:
    return 3


def probe_model() -> nn.Module:
    """flatten -> `body` (identity): the objective sees the raw pixels, (B, n), so gradients are known exactly."""
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(), body=nn.Identity()))


def linear_model(w: torch.Tensor) -> nn.Module:
    """flatten -> `lin`: lin(x) = w @ x (no bias); w (n,) gives one output, w (K, n) gives K."""
    w = w.reshape(-1, w.shape[-1])  # (K, n)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    model = nn.Sequential(OrderedDict(flatten=nn.Flatten(), lin=lin))
    return model.eval().requires_grad_(False)


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """The IDX encoding, written out by hand: 0, 0, dtype, ndim, then big-endian uint32 dims, then the data."""
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, **kw) -> None:
    """Write an IDX file, gzipped when the name ends in .gz."""
    raw = idx_bytes(array, **kw)
    Path(path).write_bytes(gzip.compress(raw) if str(path).endswith(".gz") else raw)


def have_fashion_mnist() -> bool:
    """True where the Fashion-MNIST files are installed (apt-get install dataset-fashion-mnist)."""
    from dgn_am.data import fashion_mnist_dir

    try:
        fashion_mnist_dir()
        return True
    except FileNotFoundError:
        return False


FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def write_fake_fashion_mnist(root: Path, n_train: int = 6, n_test: int = 4,
                             test_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The four Fashion-MNIST files with random images; returns {file name: array}."""
    rng = np.random.default_rng(0)
    arrays = {
        FASHION_FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        FASHION_FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        FASHION_FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        FASHION_FILES[3]: (np.arange(n_test)[::-1] % 10).astype(np.uint8) if test_labels is None
        else np.asarray(test_labels, dtype=np.uint8),
    }
    Path(root).mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        write_idx(Path(root) / name, a)
    return arrays


def png_bytes(samples: np.ndarray, colour_type: int, bit_depth: int = 8, palette: bytes | None = None,
              filters: tuple[int, ...] = (0,)) -> bytes:
    """A PNG file written out by hand (PNG specification, sections 5-11): samples (H, W, C) or (H, W), one IDAT,
    row r filtered with filters[r % len(filters)] (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    import zlib

    arr = samples.reshape(samples.shape[0], samples.shape[1], -1)
    h, w, c = arr.shape
    rows = arr.astype(">u2" if bit_depth == 16 else np.uint8).reshape(h, -1).view(np.uint8).astype(np.int64)
    bpp = c * bit_depth // 8
    out, prev = [], np.zeros(rows.shape[1], dtype=np.int64)
    for r, line in enumerate(rows):
        kind = filters[r % len(filters)]
        left = np.concatenate([np.zeros(bpp, dtype=np.int64), line[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, dtype=np.int64), prev[:-bpp]])
        if kind == 0:
            pred = np.zeros_like(line)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - up_left
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        out.append(bytes([kind]) + ((line - pred) % 256).astype(np.uint8).tobytes())
        prev = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + head + (chunk(b"PLTE", palette) if palette else b"") +
            chunk(b"IDAT", zlib.compress(b"".join(out))) + chunk(b"IEND", b""))


class Poison(nn.Module):
    """(B, 3) -> (B, 3) with column 1 NaN and column 2 +inf; column 0 passes through with a finite gradient
    (torch.where sends no gradient through the replaced entries)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        col = torch.arange(x.shape[1], device=x.device)
        x = torch.where(col == 1, torch.full_like(x, float("nan")), x)
        return torch.where(col == 2, torch.full_like(x, float("inf")), x)


class NonFiniteNet(TinyConvNet):
    """TinyConvNet followed by layer `out` (Poison): out:0 is healthy, out:1 is NaN and out:2 is +inf."""

    def __init__(self) -> None:
        super().__init__()
        self.out = Poison()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(super().forward(x))


def non_finite_factory() -> NonFiniteNet:
    torch.manual_seed(7)
    return NonFiniteNet()


class NoGradNet(TinyConvNet):
    """TinyConvNet whose forward runs under torch.no_grad: nothing it outputs has a gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().forward(x)


def no_grad_factory() -> NoGradNet:
    torch.manual_seed(7)
    return NoGradNet()
