"""Feature accentuation (Hamblin et al. 2024, the Faccent library): raise a unit starting from a given image, while
a regularizer keeps the image close to the seed image's representation in an intermediate layer.

A method is an accentuation when its options hold "keep_weight": synthesize() then maximizes

    unit(x') - keep_weight * ||a_l(x') - a_l(seed)||^2 / ||a_l(seed)||^2        (x' the transformed image)

with l = option "keep_layer" (default: middle_layer(model)) and the seed images of option "init_images"
((1, C, H, W) for every item, or (B, C, H, W), one per item), which the "fourier" builder also starts from
(init "seed-image"). `panel` draws seed, accentuation and their difference side by side.
"""

from __future__ import annotations

from typing import Any

import torch

from dgn_am.layers import device_and_dtype, list_layers, run
from dgn_am.objectives import Objective, RepresentationDistance

NEEDS_IMAGE = ("starts from a given image: pass --init-image FILE (in Python: "
               "dgn_am.parameterizations.start_from_image(method, FILE, model), or options init_images (N, C, H, W))")


def middle_layer(model: torch.nn.Module) -> str:
    """The top-level layer with a (C, H, W) output half way through the model's feature maps (conv3 of
    fmnist-caffenet): the default layer whose representation an accentuation keeps close to its seed's."""
    maps = [name for name, _, shape in list_layers(model) if "." not in name and len(shape) == 3]
    if not maps:
        raise ValueError("the model has no top-level layer with a (C, H, W) output; set option keep_layer")
    return maps[len(maps) // 2]


def seed_images(method: Any, batch: int) -> torch.Tensor:
    """The method's seed images expanded to (batch, C, H, W) in [0, 1]; a ValueError when it has none."""
    images = dict(method.options).get("init_images")
    if images is None:
        raise ValueError(f"method {method.name} {NEEDS_IMAGE}")
    images = torch.as_tensor(images).float()
    if images.dim() != 4 or len(images) not in (1, batch):
        raise ValueError(f"method {method.name}: init_images must be (1, C, H, W) or ({batch}, C, H, W), got "
                         f"{tuple(images.shape)}")
    return images.expand(batch, *images.shape[1:])


@torch.no_grad()
def keep_close(method: Any, model: torch.nn.Module, batch: int) -> Objective | None:
    """keep_weight * RepresentationDistance(layer, seed activations) for an accentuation method, else None."""
    opts = dict(method.options)
    if "keep_weight" not in opts:
        return None
    layer = opts.get("keep_layer") or middle_layer(model)
    known = [n for n, _, _ in list_layers(model)]
    if layer not in known:
        raise ValueError(f"keep_layer '{layer}' is not a layer of the model; its layers: {', '.join(known)}")
    device, dtype = device_and_dtype(model)
    seeds = seed_images(method, batch).to(device=device, dtype=dtype)
    reference = run(model, seeds, [layer])[layer]
    return float(opts["keep_weight"]) * RepresentationDistance(layer, reference)


def panel(seed: torch.Tensor, accentuated: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """seed, accentuation (C, H, W) in [0, 1] -> (C, H, 3W + 2 gap): seed | accentuation | difference, the
    difference shown as 0.5 + (accentuated - seed) / 2 (grey: unchanged; bright: raised; dark: lowered); white
    gaps."""
    diff = (0.5 + (accentuated - seed) / 2).clamp(0, 1)
    white = torch.ones(seed.shape[0], seed.shape[1], gap)
    return torch.cat([seed.cpu(), white, accentuated.cpu(), white, diff.cpu()], dim=2)
