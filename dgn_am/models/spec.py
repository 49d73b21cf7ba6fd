"""What a model expects as input, and the one place images are converted to it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch


@dataclass(frozen=True)
class InputSpec:
    """The input a network was trained on.

    Users and the engine always hand images as (B, channels, H, W) with values in [0, 1], RGB order for 3 channels.
    `normalize` maps that to what the raw network expects: the channels reordered to `order`, multiplied by `scale`,
    minus the mean (per channel, or the per-pixel `mean_image`), divided by std. The defaults give the torchvision
    convention (x - mean) / std; Caffe's ImageNet models take BGR on the 0..255 scale minus the ILSVRC 2012 mean
    image (`caffe_input_spec`).
    """

    size: tuple[int, int]  # (H, W) in pixels
    channels: int  # 1 for grayscale, 3 for RGB
    mean: tuple[float, ...]  # per-channel mean, in the network's channel order and scale, subtracted after scaling
    std: tuple[float, ...]  # per-channel std divided after subtracting the mean
    order: str = "rgb"  # channel order of the raw network's input: "rgb", or "bgr" (Caffe)
    scale: float = 1.0  # [0, 1] values are multiplied by this before the mean is subtracted (255 for Caffe)
    crop_from: tuple[int, int] | None = None  # the size images are brought to before a centre crop to `size`
    # (Caffe: 256x256, cropped to 227 at offset 14); None when the network's input is not a crop
    mean_image: torch.Tensor | None = field(default=None, compare=False, repr=False)  # (C, H, W) per-pixel mean in
    # the network's order and scale, already cropped to `size`; replaces `mean` when given (stored with the weights)

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"InputSpec: mean and std need {self.channels} entries, got {self.mean} and {self.std}")
        if self.order not in ("rgb", "bgr") or (self.order == "bgr" and self.channels != 3):
            raise ValueError(f"InputSpec: order must be 'rgb', or 'bgr' for 3 channels; got {self.order!r}")
        if self.mean_image is not None and tuple(self.mean_image.shape) != (self.channels, *self.size):
            raise ValueError(f"InputSpec: mean_image has shape {tuple(self.mean_image.shape)}, expected "
                             f"{(self.channels, *self.size)}")
        if self.crop_from is not None and any(c < s for c, s in zip(self.crop_from, self.size)):
            raise ValueError(f"InputSpec: crop_from {self.crop_from} is smaller than size {self.size}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1], RGB -> (B, C, H, W) as the raw network expects it."""
        if self.order == "bgr":
            x = x.flip(1)
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean_image is not None:
            mean = self.mean_image.to(dtype=x.dtype, device=x.device).unsqueeze(0)
        else:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def unit_mean(self) -> tuple[float, ...]:
        """The per-channel mean in the users' convention: [0, 1], RGB order (the mean image's average if per pixel)."""
        m = self.mean_image.double().mean((1, 2)).tolist() if self.mean_image is not None else list(self.mean)
        m = [v / self.scale for v in m]
        return tuple(m[::-1] if self.order == "bgr" else m)

    def crop_offset(self) -> tuple[int, int] | None:
        """(row, column) of the crop inside a `crop_from` image, or None: Caffe's 227 in 256 is (14, 14)."""
        if self.crop_from is None:
            return None
        return ((self.crop_from[0] - self.size[0]) // 2, (self.crop_from[1] - self.size[1]) // 2)

    def to_dict(self) -> dict:
        """JSON-able fields; the mean image is a tensor stored beside the weights, flagged by "per_pixel_mean"."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "mean_image"}
        d["per_pixel_mean"] = self.mean_image is not None
        return d

    @classmethod
    def from_dict(cls, d: dict, mean_image: torch.Tensor | None = None) -> "InputSpec":
        """The spec of `to_dict`; older dicts without order/scale/crop_from get the torchvision defaults."""
        if d.get("per_pixel_mean") and mean_image is None:
            raise ValueError("this input spec has a per-pixel mean, but no mean image was given with it")
        crop = d.get("crop_from")
        return cls(size=tuple(d["size"]), channels=int(d["channels"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   order=d.get("order", "rgb"), scale=float(d.get("scale", 1.0)),
                   crop_from=tuple(crop) if crop else None, mean_image=mean_image)


IMAGENET_INPUT = InputSpec(size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)  # ImageNet mean on the 0..255 scale, BGR order, as the Caffe models used


def caffe_input_spec(mean_image: torch.Tensor | None = None, size: int = 227, crop_from: int = 256) -> InputSpec:
    """Caffe's ImageNet convention: BGR, 0..255, minus the mean, a `size` crop of a `crop_from` image.

    mean_image: None for the per-channel mean (104, 117, 123), or the (3, crop_from, crop_from) BGR 0..255 mean of
    ilsvrc_2012_mean.npy (or already (3, size, size)); it is centre-cropped here at offset (crop_from - size) // 2."""
    if mean_image is not None:
        mean_image = torch.as_tensor(mean_image, dtype=torch.float32)
        if mean_image.dim() != 3 or mean_image.shape[0] != 3:
            raise ValueError(f"the mean image must be (3, H, W) in BGR order, got shape {tuple(mean_image.shape)}")
        h, w = mean_image.shape[1:]
        if (h, w) != (size, size):
            if h < size or w < size:
                raise ValueError(f"the mean image is {h}x{w}, smaller than the {size}x{size} input")
            top, left = (h - size) // 2, (w - size) // 2
            mean_image = mean_image[:, top: top + size, left: left + size]  # (3, size, size)
        mean_image = mean_image.contiguous()
    mean = tuple(float(v) for v in mean_image.double().mean((1, 2))) if mean_image is not None else CAFFE_MEAN_BGR
    return InputSpec(size=(size, size), channels=3, mean=mean, std=(1.0, 1.0, 1.0), order="bgr", scale=255.0,
                     crop_from=(crop_from, crop_from), mean_image=mean_image)


def check_images(x: torch.Tensor, spec: InputSpec) -> None:
    """Raise a clear error when x does not have the shape the model expects."""
    if x.dim() != 4 or x.shape[1] != spec.channels or tuple(x.shape[2:]) != tuple(spec.size):
        raise ValueError(
            f"images of shape {tuple(x.shape)} do not fit this model, which expects "
            f"(B, {spec.channels}, {spec.size[0]}, {spec.size[1]}) in [0, 1]; resize or convert the images first "
            "(dgn_am.imageio.load_image does both)"
        )
