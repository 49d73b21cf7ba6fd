"""The attribution methods by name, with the one 2-D view of each that the pictures show.

    attr = explain(model, x, "fc8:3", "guided-backprop")       # (B, C, H, W), the method's own output
    m = display_map("guided-backprop", attr, x.shape[-2:])     # (B, H, W), what the PNG shows
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dgn_am.explain.excitation import contrastive_excitation_backprop, excitation_backprop
from dgn_am.explain.gradients import gradient_x_input, saliency
from dgn_am.explain.maps import reduce_channels, resize_map
from dgn_am.explain.occlusion import occlusion
from dgn_am.explain.relu_rules import deconvnet, guided_backprop
from dgn_am.explain.targets import UnitLike


@dataclass(frozen=True)
class Explainer:
    """One attribution method."""

    name: str  # the CLI name
    fn: Callable[..., torch.Tensor]  # (model, x, unit, **options) -> attribution
    output: str  # the shape of fn's result, for the docs
    reduce: str | None  # channel reduction to a (B, H, W) map; None when fn already returns one
    signed: bool  # whether the map can be negative (diverging colours)
    options: tuple[str, ...]  # keyword options fn accepts
    description: str
    short: str = ""  # a short title for figures (default: the name)


METHODS: dict[str, Explainer] = {e.name: e for e in [
    Explainer("saliency", saliency, "(B, H, W)", None, False, (),
              "|d unit / d x|, max over channels (Simonyan et al. 2014)"),
    Explainer("gradient-x-input", gradient_x_input, "(B, C, H, W)", "sum", True, (),
              "x * d unit / d x; the map sums channels", "grad x input"),
    Explainer("guided-backprop", guided_backprop, "(B, C, H, W)", "sum", True, (),
              "positive signals only, where the ReLU input was positive (Springenberg et al. 2015)", "guided BP"),
    Explainer("deconvnet", deconvnet, "(B, C, H, W)", "sum", True, (),
              "signal rectified at each ReLU, max-pool switches, transposed filters (Zeiler & Fergus 2014)"),
    Explainer("occlusion", occlusion, "(B, H, W)", None, True, ("patch", "stride", "baseline", "batch_size"),
              "drop of the unit when a sliding patch is set to a baseline (Zeiler & Fergus 2014)"),
    Explainer("excitation-backprop", excitation_backprop, "(B, C', H', W') at the stop layer", "sum", False,
              ("stop_layer",), "top-down marginal winning probabilities (Zhang et al. 2016)", "excitation BP"),
    Explainer("contrastive-excitation-backprop",
              contrastive_excitation_backprop, "(B, C', H', W') at the stop layer", "sum", False, ("stop_layer",),
              "unit's MWP minus its dual's (negated weights), clipped at 0 (Zhang et al. 2016)", "contrastive EB"),
]}


def get_explainer(name: str) -> Explainer:
    """The method called `name`; ValueError listing the names otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; use one of {', '.join(METHODS)}")
    return METHODS[name]


def explain(model: nn.Module, x: torch.Tensor, unit: UnitLike, method: str, **options) -> torch.Tensor:
    """Run the named method. options are passed on (e.g. patch=4 for occlusion, stop_layer="conv3" for excitation
    backprop); an option the method does not take raises ValueError."""
    e = get_explainer(method)
    unknown = set(options) - set(e.options)
    if unknown:
        raise ValueError(f"method '{method}' takes no option {sorted(unknown)}; it takes {list(e.options) or 'none'}")
    return e.fn(model, x, unit, **options)


def display_map(method: str, attr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A method's output -> (B, H, W) map at the image size: channels reduced as the method's `reduce` says,
    lower-resolution maps (excitation backprop at a conv layer) resized bilinearly. Layers without spatial
    positions (B, D) have no map: ValueError."""
    e = get_explainer(method)
    if e.reduce is not None:
        if attr.dim() != 4:
            raise ValueError(f"{method} produced {tuple(attr.shape)}, which has no spatial map; for excitation "
                             "backprop pick a stop layer with spatial positions (a conv or pool layer, or input)")
        attr = reduce_channels(attr, e.reduce)
    return resize_map(attr, tuple(size))
