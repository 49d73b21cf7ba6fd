"""CaffeNet (BVLC reference CaffeNet, the network DGN-AM visualized) in PyTorch, with Caffe's layer names.

Layers, in Caffe's order (CaffeNet pools before it normalizes; AlexNet the other way round):

    conv1 (96, 11x11, stride 4) relu1 pool1 (3, stride 2) norm1 (LRN 5)
    conv2 (256, 5x5, pad 2, group 2) relu2 pool2 norm2
    conv3 (384, 3x3, pad 1) relu3   conv4 (384, 3x3, pad 1, group 2) relu4   conv5 (256, 3x3, pad 1, group 2) relu5
    pool5   fc6 (4096) relu6 drop6   fc7 (4096) relu7 drop7   fc8 (1000, raw logits)

For a 227x227 input: conv1 (96, 55, 55), pool1 (96, 27, 27), conv2 (256, 27, 27), pool2 (256, 13, 13),
conv3..conv5 (., 13, 13), pool5 (256, 6, 6), fc6 (4096,), fc7 (4096,), fc8 (1000,).
The weights are laid out as torchvision's: Conv2d (out, in / groups, kh, kw), Linear (out, in), and fc6 flattens
pool5 in (C, H, W) order, all exactly as Caffe stores its blobs, so a .caffemodel's blobs copy over unchanged.
Each ReLU is a module of its own, so `fc6` and `conv5` are read before their ReLU, as the reference read Caffe's
in-place ReLU blobs. Pooling rounds up (ceil_mode), as Caffe's does.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn

# Caffe's LRN: b_c = a_c / (k + alpha / n * sum over the n channels around c of a^2) ^ beta. Caffe divides alpha
# by n (local_size), and so does CrossChannelLRN below (the sum of the squares over the window, zero-padded at the
# ends). tests/test_caffenet.py checks it against a hand-written loop and against torch.nn.LocalResponseNorm.
LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}


@dataclass(frozen=True)
class CaffeNetConfig:
    convs: tuple[int, ...] = (96, 256, 384, 384, 256)  # output channels of conv1..conv5
    fcs: tuple[int, ...] = (4096, 4096)  # widths of fc6, fc7
    num_classes: int = 1000  # width of fc8
    size: int = 227  # input height = width

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "CaffeNetConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# (kernel, stride, padding, groups) of conv1..conv5, as in bvlc_reference_caffenet's deploy.prototxt
CONV_SHAPES = ((11, 4, 0, 1), (5, 1, 2, 2), (3, 1, 1, 1), (3, 1, 1, 2), (3, 1, 1, 2))


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class CrossChannelLRN(nn.Module):
    """torch.nn.LocalResponseNorm's formula, with the window's sum taken as `size` shifted channel slices added in
    order. LocalResponseNorm sums through avg_pool3d, whose CUDA backward pass has no deterministic kernel, so the
    same seed gave different CaffeNet images from run to run on a GPU; slices and additions have one."""

    def __init__(self, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        squares = nn.functional.pad(x * x, (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))
        total = squares[:, 0:c]
        for i in range(1, self.size):
            total = total + squares[:, i:i + c]
        return x / (self.k + self.alpha / self.size * total).pow(self.beta)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _lrn() -> CrossChannelLRN:
    return CrossChannelLRN(LRN["size"], alpha=LRN["alpha"], beta=LRN["beta"], k=LRN["k"])


class CaffeNet(nn.Module):
    """x (B, 3, size, size) as Caffe feeds it (BGR, 0..255, mean subtracted) -> (B, num_classes) logits.

    Wrap it in a TargetModel with `caffe_input_spec(...)` so that users hand RGB images in [0, 1]."""

    def __init__(self, config: CaffeNetConfig | dict | None = None) -> None:
        super().__init__()
        c = CaffeNetConfig.from_dict(config) if isinstance(config, dict) else (config or CaffeNetConfig())
        self.config = c
        c_in = 3
        for i, (c_out, (k, s, p, g)) in enumerate(zip(c.convs, CONV_SHAPES), start=1):
            if c_in % g or c_out % g:
                raise ValueError(f"conv{i}: {c_in} -> {c_out} channels cannot be split into {g} groups")
            self.add_module(f"conv{i}", nn.Conv2d(c_in, c_out, k, stride=s, padding=p, groups=g))
            self.add_module(f"relu{i}", nn.ReLU())
            if i in (1, 2):
                self.add_module(f"pool{i}", _pool())
                self.add_module(f"norm{i}", _lrn())
            c_in = c_out
        self.pool5 = _pool()
        self.flatten = nn.Flatten()  # (B, C * 6 * 6) in (C, H, W) order, as Caffe's InnerProduct reads it
        side = self.pool5_side(c.size)
        dims = (c_in * side * side, *c.fcs)
        for i, (d_in, d_out) in enumerate(zip(dims, dims[1:]), start=6):
            self.add_module(f"fc{i}", nn.Linear(d_in, d_out))
            self.add_module(f"relu{i}", nn.ReLU())
            self.add_module(f"drop{i}", nn.Dropout(0.5))
        self.fc8 = nn.Linear(dims[-1], c.num_classes)

    @staticmethod
    def pool5_side(size: int) -> int:
        """Side of pool5's output for a size x size input (6 for 227)."""
        side = (size - 11) // 4 + 1  # conv1
        for _ in range(3):  # pool1, pool2, pool5 (3, stride 2, rounding up)
            side = -(-(side - 3) // 2) + 1
        return side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, size, size) Caffe input -> (B, num_classes) logits."""
        x = self.norm1(self.pool1(self.relu1(self.conv1(x))))  # (B, 96, 27, 27)
        x = self.norm2(self.pool2(self.relu2(self.conv2(x))))  # (B, 256, 13, 13)
        x = self.relu5(self.conv5(self.relu4(self.conv4(self.relu3(self.conv3(x))))))  # (B, 256, 13, 13)
        x = self.flatten(self.pool5(x))  # (B, 9216)
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        return self.fc8(x)


CAFFENET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")  # the layers with weights
