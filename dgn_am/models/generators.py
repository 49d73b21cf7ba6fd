"""Deep generator networks (DeePSiM family): fully connected layers, a reshape, then an up-convolution stack.

G maps a code h (B, code_dim) to an image (B, channels, size, size). What the output values mean is declared by
`GeneratorConfig.output` and converted in exactly one place, `dgn_am.priors.to_target`:
  - "unit":     values nominally in [0, 1], RGB order (the priors this project trains);
  - "caffe":    BGR, Caffe mean already subtracted, 0..255 scale (the published DeePSiM generators).
LeakyReLU(0.3) follows every layer except the last, whose output is linear, as in the reference.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    code_dim: int = 512  # length of the code h (the encoder layer's width)
    size: int = 28  # output height = width in pixels; must equal start * 2**len(up_channels)
    channels: int = 1  # output channels: 1 grayscale, 3 RGB (or BGR for output="caffe")
    fc_dims: tuple[int, ...] = (512,)  # hidden fully connected widths before the reshape
    start: int = 7  # spatial size after the reshape
    start_channels: int = 64  # channels after the reshape
    up_channels: tuple[int, ...] = (64, 32)  # output channels of each x2 up-convolution
    refine: tuple[int, ...] = (64, 32)  # channels of a 3x3 conv after each up-convolution (0: none)
    output: str = "unit"  # value convention of the output, see the module docstring

    def __post_init__(self) -> None:
        if self.start * 2 ** len(self.up_channels) != self.size:
            raise ValueError(f"start {self.start} * 2^{len(self.up_channels)} up-convolutions != size {self.size}")
        if len(self.refine) != len(self.up_channels):
            raise ValueError("refine needs one entry per up-convolution (0 for none)")
        if self.output not in ("unit", "caffe"):
            raise ValueError(f"unknown output convention '{self.output}'; use 'unit' or 'caffe'")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# Small generators for the sizes the project trains; DEEPSIM_FC6 is the published 256-pixel architecture.
PRESETS: dict[str, GeneratorConfig] = {
    "small-28": GeneratorConfig(),
    "small-32": GeneratorConfig(code_dim=512, size=32, channels=3, fc_dims=(512,), start=4, start_channels=128,
                                up_channels=(128, 64, 32), refine=(128, 64, 0)),
    "small-64": GeneratorConfig(code_dim=512, size=64, channels=3, fc_dims=(1024,), start=4, start_channels=128,
                                up_channels=(128, 128, 64, 32), refine=(128, 128, 64, 0)),
    # Dosovitskiy & Brox 2016, fc6 variant: 3 fc of 4096, 256x4x4, 6 up-convolutions to 256x256, ~56M parameters.
    "deepsim-fc6": GeneratorConfig(code_dim=4096, size=256, channels=3, fc_dims=(4096, 4096), start=4,
                                   start_channels=256, up_channels=(256, 256, 128, 64, 32, 3),
                                   refine=(512, 256, 128, 0, 0, 0), output="caffe"),
}
# Caffe layer names of the DeePSiM fc6 generator, in order, so converted weights map by position.
DEEPSIM_NAMES = ("defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1",
                 "deconv2", "deconv1", "deconv0")


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.3)


class Generator(nn.Module):
    """h (B, code_dim) -> image (B, channels, size, size) in the convention `config.output`.

    Module names follow the DeePSiM prototxt: defc7, defc6, ... for the fc part (the last fc is named defc5), then
    deconv{k} for up-convolutions (k4 s2) and conv{k}_1 for the 3x3 refinements, counting down to deconv0.
    """

    def __init__(self, config: GeneratorConfig | str = "small-28") -> None:
        """config: a GeneratorConfig, or the name of one in PRESETS (small-28, small-32, small-64, deepsim-fc6)."""
        super().__init__()
        if isinstance(config, str):
            if config not in PRESETS:
                raise ValueError(f"unknown generator preset '{config}'; available: {', '.join(PRESETS)}")
            config = PRESETS[config]
        self.config = c = config
        layers: list[tuple[str, nn.Module]] = []
        dims = (c.code_dim, *c.fc_dims, c.start_channels * c.start * c.start)
        n_fc = len(dims) - 1
        for i in range(n_fc):
            layers += [(f"defc{7 - i}" if i < n_fc - 1 else "defc5", nn.Linear(dims[i], dims[i + 1])),
                       (f"relu_defc{7 - i}" if i < n_fc - 1 else "relu_defc5", _lrelu())]
        self.fc = nn.Sequential(OrderedDict(layers))
        convs: list[tuple[str, nn.Module]] = []
        c_in, n = c.start_channels, len(c.up_channels)
        for i, (c_out, c_ref) in enumerate(zip(c.up_channels, c.refine)):
            k = n - 1 - i  # DeePSiM counts down: deconv5 ... deconv0
            last_layer = i == n - 1 and not c_ref and c_out == c.channels
            convs.append((f"deconv{k}", nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)))
            if not last_layer:
                convs.append((f"relu_deconv{k}", _lrelu()))
            c_in = c_out
            if c_ref:
                convs.append((f"conv{k}_1", nn.Conv2d(c_in, c_ref, 3, padding=1)))
                convs.append((f"relu_conv{k}_1", _lrelu()))
                c_in = c_ref
        if c_in != c.channels:
            convs.append(("to_image", nn.Conv2d(c_in, c.channels, 3, padding=1)))
        self.deconv = nn.Sequential(OrderedDict(convs))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, code_dim) -> (B, channels, size, size)."""
        c = self.config
        x = self.fc(h).view(-1, c.start_channels, c.start, c.start)  # (B, C0, s0, s0)
        return self.deconv(x)
