"""What a model expects as input, and the one place images are converted to it."""

from __future__ import annotations

from dataclasses import dataclass, asdict

import torch


@dataclass(frozen=True)
class InputSpec:
    """The input a network was trained on.

    Users and the engine always hand images as (B, channels, H, W) with values in [0, 1], RGB order for 3 channels.
    `normalize` maps that to what the raw network expects: (x - mean) / std per channel.
    """

    size: tuple[int, int]  # (H, W) in pixels
    channels: int  # 1 for grayscale, 3 for RGB
    mean: tuple[float, ...]  # per-channel mean subtracted after scaling to [0, 1]
    std: tuple[float, ...]  # per-channel std divided after subtracting the mean

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"InputSpec: mean and std need {self.channels} entries, got {self.mean} and {self.std}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1] -> (B, C, H, W) normalized for the raw network."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        return cls(size=tuple(d["size"]), channels=int(d["channels"]), mean=tuple(d["mean"]), std=tuple(d["std"]))


IMAGENET_INPUT = InputSpec(size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def check_images(x: torch.Tensor, spec: InputSpec) -> None:
    """Raise a clear error when x does not have the shape the model expects."""
    if x.dim() != 4 or x.shape[1] != spec.channels or tuple(x.shape[2:]) != tuple(spec.size):
        raise ValueError(
            f"images of shape {tuple(x.shape)} do not fit this model, which expects "
            f"(B, {spec.channels}, {spec.size[0]}, {spec.size[1]}) in [0, 1]; resize or convert the images first "
            "(dgn_am.imageio.load_image does both)"
        )
