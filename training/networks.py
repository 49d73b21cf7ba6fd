"""The networks a prior is trained with: the frozen encoder E and comparator C, and the discriminator D."""

from __future__ import annotations

import torch
from torch import nn

from dgn_am.layers import get_layer, run
from dgn_am.models.loading import load_model
from dgn_am.priors import to_target


class Encoder(nn.Module):
    """Frozen E: images (B, C, H, W) in [0, 1] (any size; fitted to the model) -> code (B, D) at `layer`."""

    def __init__(self, model: str = "fmnist-caffenet", layer: str = "fc6", weights: str | None = None) -> None:
        super().__init__()
        self.model = load_model(model, weights)
        get_layer(self.model, layer)  # fails early with the list of layers
        self.spec_name, self.layer = model, layer

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        return to_target(x, "unit", self.model.input_spec, clip=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run(self.model, self.fit(x), [self.layer], raw=True)[self.layer].flatten(1)  # (B, D)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's full model output (logits) on x."""
        return self.model(self.fit(x).clamp(0, 1))


class Comparator(nn.Module):
    """Frozen C: images -> list of feature tensors at `layers`, for the feature loss."""

    def __init__(self, model: str = "fmnist-caffenet", layers: list[str] = ("pool5",), weights: str | None = None):
        super().__init__()
        self.model = load_model(model, weights)
        self.layers = list(layers)
        for name in self.layers:
            get_layer(self.model, name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        acts = run(self.model, to_target(x, "unit", self.model.input_spec, clip=False), self.layers, raw=True)
        return [acts[n] for n in self.layers]


class Discriminator(nn.Module):
    """D(x, h) -> (B,) real/fake logits. It sees the image through a conv branch and the code through a separate
    fc branch, as in DeePSiM, then classifies the joined features."""

    def __init__(self, channels: int = 1, size: int = 28, code_dim: int = 512, width: int = 32) -> None:
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)
        layers, c, s = [], channels, size
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), act()]
            c, s = c_out, (s + 1) // 2
        self.image = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())  # (B, 4w*4)
        self.code = nn.Sequential(nn.Linear(code_dim, 256), act(), nn.Linear(256, 128), act())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(c * 4 + 128, 256), act(), nn.Linear(256, 1))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(x), self.code(h)], 1)).squeeze(1)
