"""Texture synthesis and style transfer with Gram matrices (Gatys, Ecker & Bethge 2015, 2016), on any target model.

A layer's features F_l (N_l channels x M_l positions) are read as the layer outputs them (after its ReLU, as
Gatys et al. read VGG's conv blobs). Their Gram matrix G_l = F_l F_l^T (N_l, N_l) keeps which channels fire
together and drops where. With A_l the example's Gram matrix and P_l the content image's features:

    E_l      = sum_ij (G_l - A_l)_ij^2 / (4 N_l^2 M_l^2)       one layer's texture (style) loss
    L_style  = sum_l w_l E_l,  w_l = 1 / |layers| unless given
    L_content = 1/2 sum_ij (F_l - P_l)_ij^2                    at one content layer
    L_total  = alpha L_content + beta L_style                  (content weight alpha, style weight beta)

The objectives below return MINUS these losses (values to maximize, as every objective), so the engine's single
sign flip minimizes them. Texture synthesis is L_style alone. Both run over pixels (from white noise or from the
content image) or over a generator prior's code (the image stays on the prior's manifold).
"""

from __future__ import annotations

from typing import Sequence

import torch

from dgn_am.engine import Result, maximize
from dgn_am.layers import POST_RELU, relu_readings, run
from dgn_am.objectives import Acts, Objective
from dgn_am.parameterizations import CodeParam, Parameterization, PixelParam
from dgn_am.steps import StepRule


def gram(a: torch.Tensor) -> torch.Tensor:
    """Gram matrices of feature maps: a (B, C, H, W) -> (B, C, C), G_ij = sum over positions of a_i * a_j."""
    if a.dim() != 4:
        raise ValueError(f"a Gram matrix needs a spatial layer's output (B, C, H, W), got shape {tuple(a.shape)}")
    f = a.flatten(2)  # (B, C, HW)
    return torch.bmm(f, f.transpose(1, 2))


def layer_style_loss(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gatys' E_l: a (B, C, H, W) features, target (C, C) or (B, C, C) Gram matrix -> (B,) loss >= 0."""
    n, m = a.shape[1], a.shape[2] * a.shape[3]
    return (gram(a) - target).pow(2).flatten(1).sum(1) / (4.0 * n * n * m * m)


def feature_reading(model: torch.nn.Module, layer: str) -> str:
    """The name that reads `layer`'s output as it is: `layer+relu` for a layer that ends in a ReLU (whose plain
    name reads the pre-activation), else `layer`. An unknown layer raises the layer module's clear error."""
    if layer.endswith(POST_RELU):
        return layer
    return layer + POST_RELU if layer in relu_readings(model) else layer


class GramMatch(Objective):
    """Minus Gatys' style loss: -sum_l w_l E_l(x) (B,), for targets {reading: Gram matrix (C, C)}."""

    def __init__(self, targets: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> None:
        self.targets = dict(targets)
        self.layers = tuple(self.targets)
        self.weights = weights or {k: 1.0 / len(self.layers) for k in self.layers}

    def per_layer(self, acts: Acts) -> dict[str, torch.Tensor]:
        """{reading: E_l (B,)}, unweighted."""
        return {k: layer_style_loss(acts[k], t.to(acts[k])) for k, t in self.targets.items()}

    def __call__(self, acts: Acts) -> torch.Tensor:
        return -sum(self.weights[k] * e for k, e in self.per_layer(acts).items())


class ContentMatch(Objective):
    """Minus Gatys' content loss: -1/2 sum (F - P)^2 (B,) at one layer, for target features P (same shape as one
    item's features)."""

    def __init__(self, reading: str, target: torch.Tensor) -> None:
        self.layers, self.target = (reading,), target

    def __call__(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layers[0]]
        return -0.5 * (a - self.target.to(a)).pow(2).flatten(1).sum(1)


@torch.no_grad()
def gram_targets(model: torch.nn.Module, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """{reading: the Gram matrix (C, C) of image (1, C, H, W) in [0, 1] at that layer} for every layer."""
    readings = list(dict.fromkeys(feature_reading(model, l) for l in layers))
    acts = run(model, image, readings)
    return {k: gram(acts[k])[0] for k in readings}


def texture_objective(model: torch.nn.Module, example: torch.Tensor, layers: Sequence[str],
                      weights: Sequence[float] | None = None) -> GramMatch:
    """The texture objective of `example` (1, C, H, W) in [0, 1] at `layers` (weights: one per layer, or equal)."""
    if not layers:
        raise ValueError("texture synthesis needs at least one layer (e.g. conv1 conv2 conv3)")
    targets = gram_targets(model, example, layers)
    if weights is not None:
        if len(weights) != len(layers):
            raise ValueError(f"give one weight per layer: {len(layers)} layers, {len(weights)} weights")
        return GramMatch(targets, {feature_reading(model, l): float(w) for l, w in zip(layers, weights)})
    return GramMatch(targets)


def style_parts(model: torch.nn.Module, content: torch.Tensor, style: torch.Tensor, content_layer: str,
                style_layers: Sequence[str]) -> tuple[ContentMatch, GramMatch]:
    """(-L_content, -L_style) for content and style images (1, C, H, W) in [0, 1], unweighted."""
    reading = feature_reading(model, content_layer)
    with torch.no_grad():
        target = run(model, content, [reading])[reading][0]
    return ContentMatch(reading, target), texture_objective(model, style, style_layers)


def style_objective(model: torch.nn.Module, content: torch.Tensor, style: torch.Tensor, content_layer: str,
                    style_layers: Sequence[str], content_weight: float, style_weight: float) -> Objective:
    """-(alpha L_content + beta L_style): content and style images (1, C, H, W) in [0, 1]."""
    content_part, style_part = style_parts(model, content, style, content_layer, style_layers)
    return content_weight * content_part + style_weight * style_part


@torch.no_grad()
def part_losses(model: torch.nn.Module, images: torch.Tensor, parts: Sequence[Objective]) -> list[list[float]]:
    """For each (minus-loss) objective in parts, its loss on every image (B, C, H, W) in [0, 1]."""
    acts = run(model, images, list(dict.fromkeys(k for p in parts for k in p.layers)))
    return [(-p(acts)).tolist() for p in parts]


def pixel_start(model: torch.nn.Module, init: torch.Tensor | None = None, noise_std: float = 0.1) -> PixelParam:
    """Pixels x = 0.5 + p in [0, 1]: from white noise N(0.5, noise_std^2) per seed (init None, Gatys' start) or
    from an image init (C, H, W) in [0, 1] (style transfer from the content image)."""
    spec = model.input_spec
    shape = (spec.channels, *spec.size)
    if init is None:
        return PixelParam(shape, centre=0.5, init="randn", init_std=noise_std)
    return PixelParam(shape, centre=0.5, init=init)


def code_start(model: torch.nn.Module, prior, init: torch.Tensor | None = None) -> CodeParam:
    """The prior's code: from codes drawn from the real codes' statistics (init None) or from a given code
    (code_dim,) (style transfer from the content image's code, dgn_am.priors.encode). Images clamped to [0, 1]."""
    return CodeParam(prior, model.input_spec, init="stats" if init is None else init, init_std=1.0)


def run_texture(model: torch.nn.Module, objective: Objective, param: Parameterization, seeds: Sequence[int],
                steps: int, lr: float, progress=None) -> Result:
    """Maximize the (minus-loss) objective with Adam over param for every seed; Result.activations is the final
    objective (minus the loss), Result.history the objective at every step."""
    return maximize(model, objective, param, list(seeds), steps, StepRule("adam", lr=lr), progress=progress)


@torch.no_grad()
def style_losses(model: torch.nn.Module, images: torch.Tensor, objective: GramMatch) -> dict[str, list[float]]:
    """{reading: [E_l of each image]} for images (B, C, H, W) in [0, 1], and "total" (the weighted sum)."""
    acts = run(model, images, list(objective.layers))
    per = objective.per_layer(acts)
    out = {k: v.tolist() for k, v in per.items()}
    out["total"] = (-objective(acts)).tolist()
    return out
