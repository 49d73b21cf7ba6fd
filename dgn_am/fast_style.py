"""Fast style transfer (Johnson, Alahi & Fei-Fei 2016): a feed-forward network trained once per style image, so
that stylizing a new image is one forward pass instead of Gatys et al.'s hundreds of optimization steps.

The network (`Stylizer`) maps a content image (B, C, H, W) in [0, 1] to a stylized one of the same size: a 9x9
convolution, two stride-2 convolutions down, residual blocks, two nearest-neighbour upsamplings each followed by a
convolution, and a 9x9 convolution to C channels; instance normalization after every hidden convolution (Ulyanov
et al. 2016, which Johnson et al.'s later code adopted). One departure from Johnson et al.: the last convolution's
output is added to the content image's logit before the sigmoid, y = sigmoid(logit(x) + g(x)), and starts at zero,
so an untrained network returns the content image (within 1e-3) and training only has to learn the change. Without
this skip, a network this small trained for minutes on a CPU did worse than returning the content unchanged: at the
content weight `dgn-am style` uses, reproducing the content is most of the loss. It is trained (training/stylizer.py,
`dgn-am train-stylizer`) to minimize, over content images x,

    alpha * L_content(f(x); x) + beta * L_style(f(x); style) + gamma * TV(f(x))

with Gatys' content and style losses read by the target model (dgn_am.texture's ContentMatch and GramMatch, the
very objectives `dgn-am style` optimizes image by image), so the two ways of stylizing are scored alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from dgn_am.layers import run
from dgn_am.penalties import TotalVariation
from dgn_am.texture import ContentMatch, GramMatch, feature_reading, texture_objective

EPS = 1e-3  # content pixels are clamped to [EPS, 1 - EPS] before their logit


@dataclass(frozen=True)
class StylizerConfig:
    channels: int = 1  # image channels in and out
    width: int = 16  # channels of the first convolution; doubled by each of the two down steps
    blocks: int = 3  # residual blocks at the lowest resolution

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or self.width < 1 or self.blocks < 0:
            raise ValueError(f"a stylizer needs channels 1 or 3, width >= 1 and blocks >= 0, got {self}")


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    """Reflection-padded convolution, instance norm, ReLU."""
    return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(c_in, c_out, k, stride),
                         nn.InstanceNorm2d(c_out, affine=True), nn.ReLU())


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(c, c, 3), nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3),
                                  nn.InstanceNorm2d(c, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Stylizer(nn.Module):
    """(B, C, H, W) in [0, 1] -> (B, C, H, W) in (0, 1); H and W divisible by 4."""

    def __init__(self, config: StylizerConfig = StylizerConfig()) -> None:
        super().__init__()
        self.config = config
        c, w = config.channels, config.width
        self.net = nn.Sequential(
            _conv(c, w, 9), _conv(w, 2 * w, 3, 2), _conv(2 * w, 4 * w, 3, 2),
            *[_Residual(4 * w) for _ in range(config.blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(4 * w, 2 * w, 3),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(2 * w, w, 3),
            nn.ReflectionPad2d(4), nn.Conv2d(w, c, 9))
        nn.init.zeros_(self.net[-1].weight)  # the change starts at zero: the untrained network is the identity
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.channels or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"the stylizer takes (B, {self.config.channels}, H, W) with H and W divisible by 4, "
                             f"got {tuple(x.shape)}")
        return torch.sigmoid(torch.logit(x.clamp(EPS, 1 - EPS)) + self.net(x))


@dataclass(frozen=True)
class TransferLossConfig:
    content_layer: str = "conv4"
    style_layers: tuple[str, ...] = ("conv1", "conv2", "conv3")
    content_weight: float = 1e-5  # alpha, as `dgn-am style`'s default
    style_weight: float = 1.0  # beta
    tv_weight: float = 1e-6  # gamma, on the summed squared differences


class TransferLoss:
    """alpha L_content + beta L_style + gamma TV of stylized images, with the content targets read from the
    content images; call(outputs, contents) -> {"total", "content", "style", "tv"}, each (B,)."""

    def __init__(self, model: nn.Module, style: torch.Tensor, config: TransferLossConfig = TransferLossConfig()):
        self.model, self.config = model, config
        self.reading = feature_reading(model, config.content_layer)
        self.style: GramMatch = texture_objective(model, style, list(config.style_layers))
        self.tv = TotalVariation(weight=1.0, beta=2.0)

    def __call__(self, outputs: torch.Tensor, contents: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target = run(self.model, contents, [self.reading])[self.reading]
        content_part = ContentMatch(self.reading, target)
        acts = run(self.model, outputs, list(dict.fromkeys([self.reading, *self.style.layers])))
        content, style = -content_part(acts), -self.style(acts)
        tv = self.tv(outputs, outputs)
        c = self.config
        total = c.content_weight * content + c.style_weight * style + c.tv_weight * tv
        return {"total": total, "content": content, "style": style, "tv": tv}


def save_stylizer(path: str | Path, net: Stylizer, metadata: dict) -> None:
    """The weights as safetensors with the network's config and `metadata` (the training settings), atomically."""
    from dgn_am.models.loading import write_state_dict

    write_state_dict(path, net.state_dict(), {"kind": "stylizer", "config": asdict(net.config), **metadata})


def load_stylizer(path: str | Path, device: str | torch.device = "cpu") -> tuple[Stylizer, dict]:
    """(network in eval mode, frozen; metadata) from a file written by save_stylizer."""
    from dgn_am.models.loading import read_state_dict

    state, meta = read_state_dict(path)
    if meta.get("kind") != "stylizer":
        raise ValueError(f"{path} is not a stylizer file (train one with dgn-am train-stylizer)")
    decoded = {k: _json_or_text(v) for k, v in meta.items()}
    net = Stylizer(StylizerConfig(**decoded["config"]))
    net.load_state_dict(state)
    return net.eval().requires_grad_(False).to(device), decoded


def _json_or_text(value: str):
    """A metadata value as write_state_dict stored it: JSON for everything but plain strings."""
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value


@torch.no_grad()
def stylize(net: Stylizer, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Stylize images (B, C, H, W) in [0, 1] in batches of `batch`."""
    return torch.cat([net(images[i:i + batch]) for i in range(0, len(images), batch)])


def mean_losses(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Means over all images of each loss in a list of TransferLoss results."""
    keys = parts[0].keys()
    return {k: float(torch.cat([p[k].detach().flatten() for p in parts]).mean()) for k in keys}
