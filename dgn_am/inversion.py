"""Feature inversion: reconstruct images from their representation at one layer of a target network.

    phi0 = phi(x0) at `layer`;  x* = argmax_x  -||phi(x) - phi0||^2 / ||phi0||^2 - penalties(x)     (FeatureMatch)

Three ways, one function (`invert`):
  "pixels"   Mahendran & Vedaldi 2015: the pixels, from the data set's mean image, with their hand-crafted prior:
             the alpha-norm (alpha 6) and total-variation (beta 2) penalties and 1-px jitter; Adam.
  "prior"    Dosovitskiy & Brox 2016's learned prior, optimized: the code h of a generator prior, from the mean of
             the real codes, clipped to the prior's bounds; x = G(h). No penalty: the generator is the prior.
  "encoder"  the prior's encoder directly, for the prior's own code layer only: x = G(E(x0)), no optimization.

The layer is read as its module outputs it (`LAYER+relu` where the module ends in a ReLU: after the ReLU, the
representation the next layer sees and the one the prior's encoder reads), so "encoder" and "prior" at the
encoder's layer invert the same features.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from dgn_am.engine import maximize
from dgn_am.layers import output_reading as reading, run, split_reading
from dgn_am.methods import Method
from dgn_am.objectives import FeatureMatch
from dgn_am.parameterizations import CodeParam, PixelParam, mean_image
from dgn_am.penalties import AlphaNorm, TotalVariation
from dgn_am.steps import StepRule
from dgn_am.transforms import Jitter

MODES = ("pixels", "prior", "encoder")
_B = 80 / 255  # Mahendran & Vedaldi's pixel range B (80 on [0, 255]), and V = B / 6.5 for the TV term

# The two optimized recipes. Penalty weights are relative to the normalized feature loss, which is 1 at the start
# of a flat image and 0 at a perfect match.
INVERSION_METHODS = {
    "pixels": Method(
        name="invert-pixels", parameterization="pixels", init="mean-image", init_std=0.0, steps=200,
        step_rule=StepRule("adam", lr=0.05, lr_end=0.005),
        penalties=(AlphaNorm(weight=1e-2, alpha=6, scale=_B, mean=True),
                   TotalVariation(weight=1e-2, beta=2, scale=_B / 6.5, mean=True)),
        transforms=(Jitter(pixels=1),),
        description="Mahendran & Vedaldi 2015: pixels from the mean image, alpha-norm + TV, 1-px jitter, Adam"),
    "prior": Method(
        name="invert-prior", parameterization="code", init="stats", init_std=0.0, steps=200,
        step_rule=StepRule("adam", lr=0.05, lr_end=0.005),
        description="Dosovitskiy & Brox 2016: the generator prior's code from the mean real code, clipped, Adam"),
}


@dataclass
class Inversion:
    """images (B, C, H, W) in [0, 1], the reconstructions; loss (B,) ||phi(x) - phi0||^2 / ||phi0||^2 of them;
    settings: what produced them."""

    images: torch.Tensor
    loss: torch.Tensor
    settings: dict


@torch.no_grad()
def features(model: torch.nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """phi(images) at `layer` as read by `reading`: (B, ...)."""
    read = reading(model, layer)
    return run(model, images, [read])[read].detach()


def feature_loss(model: torch.nn.Module, images: torch.Tensor, target: torch.Tensor, layer: str) -> torch.Tensor:
    """||phi(images) - target||^2 / ||target||^2 per item, (B,)."""
    with torch.no_grad():
        return -FeatureMatch(reading(model, layer), target)({reading(model, layer): features(model, images, layer)})


def _check(model: torch.nn.Module, layer: str, mode: str, prior: Any) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown inversion mode '{mode}'; use {', '.join(MODES)}")
    if mode != "pixels" and prior is None:
        raise ValueError(f"inversion mode '{mode}' needs a generator prior (--prior fmnist-fc6)")
    if mode == "encoder":
        enc = prior.provenance.get("encoder") if isinstance(prior.provenance.get("encoder"), dict) else {}
        if split_reading(layer)[0] != enc.get("layer") or getattr(model, "name", enc.get("model")) != enc.get("model"):
            raise ValueError(f"mode 'encoder' inverts the prior's own code layer only: {enc.get('model')} layer "
                             f"{enc.get('layer')}; for layer '{layer}' use mode 'prior' or 'pixels'")


def invert(model: torch.nn.Module, images: torch.Tensor, layer: str, mode: str = "pixels", prior: Any = None,
           steps: int | None = None, method: Method | None = None, seed: int = 0,
           progress: Callable[[int, int, torch.Tensor], None] | None = None) -> Inversion:
    """Reconstruct images (B, C, H, W) in [0, 1] (the model's input format) from their features at `layer`.

    mode: pixels, prior or encoder (module docstring); method: the recipe (default INVERSION_METHODS[mode]), steps
    overriding its number of steps. The same inputs and seed give the same images."""
    from dgn_am.priors import encode

    _check(model, layer, mode, prior)
    target = features(model, images, layer)
    if mode == "encoder":
        with torch.no_grad():
            out = prior.image(encode(prior, images), model.input_spec)
        settings = {"mode": mode, "layer": layer, "reading": reading(model, layer),
                    "prior": prior.provenance.get("path")}
        return Inversion(out, feature_loss(model, out, target, layer), settings)
    method = method or INVERSION_METHODS[mode]
    if steps is not None:
        method = dataclasses.replace(method, steps=steps)
    spec = model.input_spec
    if mode == "pixels":
        param = PixelParam((spec.channels, *spec.size), centre=mean_image(spec), init="randn",
                           init_std=method.init_std)
    else:
        param = CodeParam(prior, spec, init=method.init, init_std=method.init_std)
    objective = FeatureMatch(reading(model, layer), target)
    result = maximize(model, objective, param, [seed + i for i in range(len(images))], method.steps,
                      method.step_rule, method.penalties, method.operators, method.transforms, progress=progress,
                      preconditioners=method.preconditioners)
    settings = {"mode": mode, "layer": layer, "reading": reading(model, layer), "method": method.settings(),
                "parameterization": param.settings(), "seed": seed}
    return Inversion(result.images, feature_loss(model, result.images, target, layer), settings)
