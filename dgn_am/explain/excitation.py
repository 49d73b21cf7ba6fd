"""Excitation backprop and contrastive excitation backprop (Zhang et al. 2016): top-down marginal winning
probabilities (MWP).

The unit starts with probability 1. A layer with non-negative inputs a_j (the previous ReLU's outputs) and output
neurons i passes each neuron's probability to its inputs in proportion to their positive excitation:

    P(a_j) = sum_i P(a_j | a_i) P(a_i),   P(a_j | a_i) = a_j w+_ji / sum_k a_k w+_ki,   w+ = max(w, 0)

Biases are ignored, as in the paper. Rules by layer type:
  Conv2d, Linear        the rule above with the layer's weights.
  BatchNorm (eval)      a per-channel affine map, folded into the conv/linear layer next to it: w' = w * scale per
                        output channel (BN after the layer) or per input channel (BN before it); the shift is a
                        bias and is dropped. A batch norm with no such neighbour is its own diagonal layer.
  input normalization   for a TargetModel, (x - mean) / std is folded into the first layer the same way, so the
                        map at the input is over the image in [0, 1], which is non-negative as the rule requires.
  ReLU (ReLU6)          the same neurons before and after: probabilities pass unchanged.
  MaxPool2d             winner-take-all: each window passes its probability to its recorded argmax.
  AvgPool2d, AdaptiveAvgPool2d   the rule above with the pool's (positive) weights.
  Flatten, Dropout (eval), Identity, reshapes   pass unchanged.
The network must be a chain of these between the stop layer and the unit (no residual additions or
concatenations); anything else raises a ValueError that names the layer.

Contrastive (c-MWP): a dual unit with the negated weights is formed at the first conv/linear layer below the unit;
both are propagated down (the difference, since propagation is linear) and the map is max(P_unit - P_dual, 0).

Every returned map is non-negative and is divided by its sum, so it sums to 1 per image. Without contrast the
propagation conserves probability exactly, except where a neuron with probability has no positive excitation at
all (e.g. its activation came from a positive bias alone); that loss is made up by the division, which equals
renormalizing at every layer. A map with no mass at all (the unit has no positive evidence) is all zeros.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dgn_am.explain.chain import Chain, Step, record_chain
from dgn_am.explain.targets import UnitLike, check_batch, check_eval, resolve_units
from dgn_am.layers import Unit

Fn = Callable[[torch.Tensor], torch.Tensor]


def _mwp(f: Fn, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """P_in = a * f^T(P / f(a)) for a linear map f with non-negative weights; 0 where f(a) = 0."""
    a_ = a.detach().requires_grad_(True)
    with torch.enable_grad():
        z = f(a_)
        ratio = torch.where(z > 0, p / torch.where(z > 0, z, torch.ones_like(z)), torch.zeros_like(z))
        (c,) = torch.autograd.grad(z, a_, grad_outputs=ratio)
    return a * c


def _switches(module: nn.Module, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Max pooling: each window's probability goes to the input that won it."""
    a_ = a.detach().requires_grad_(True)
    with torch.enable_grad():
        (c,) = torch.autograd.grad(module(a_), a_, grad_outputs=p)
    return c


def _scale_product(steps: list[Step], channels: int) -> torch.Tensor | None:
    scale = None
    for s in steps:
        if s.scale.numel() != channels:
            raise ValueError(f"cannot fold '{s.name}' ({s.scale.numel()} channels) into a layer with {channels}")
        scale = s.scale if scale is None else scale * s.scale
    return scale


def _layer_fn(core: Step | None, lead: list[Step], trail: list[Step], sign: float) -> Fn:
    """The group's linear map with weights max(sign * w', 0), w' = weights with the affine scales folded in."""
    if core is None:
        scale = (sign * _scale_product(trail, trail[0].scale.numel())).clamp(min=0)
        return lambda a: a * scale.view(1, -1, *[1] * (a.dim() - 2))
    m = core.module
    w = m.weight
    out_scale = _scale_product(trail, w.shape[0]) if trail else None
    if core.kind == "conv":
        if out_scale is not None:
            w = w * out_scale.view(-1, 1, 1, 1)
        if lead:
            groups, per_group = m.groups, w.shape[1]
            s_in = _scale_product(lead, groups * per_group).view(groups, per_group)
            w = w * s_in[torch.arange(w.shape[0], device=w.device) // (w.shape[0] // groups)].view(*w.shape[:2], 1, 1)
        wp = (sign * w).clamp(min=0)
        return lambda a: m._conv_forward(a, wp, None)
    if out_scale is not None:
        w = w * out_scale.view(-1, 1)
    if lead:
        w = w * _scale_product(lead, w.shape[1]).view(1, -1)
    wp = (sign * w).clamp(min=0)
    return lambda a: F.linear(a, wp)


def _group(steps: list[Step], i: int, floor: int) -> tuple[int, Step | None, list[Step], list[Step]]:
    """The weighted layer whose top step is steps[i]: (lowest index, core conv/linear, leading affines, trailing
    affines). Leading affines (batch norm or normalization before the layer) are folded only when no other
    conv/linear layer sits right below them; the group never extends below steps[floor]."""
    j, trail = i, []
    while j >= floor and steps[j].kind == "affine":
        trail.append(steps[j])
        j -= 1
    if not (j >= floor and steps[j].kind in ("conv", "linear")):
        return j + 1, None, [], trail
    core, j = steps[j], j - 1
    lead = []
    while j >= floor and steps[j].kind == "affine":
        lead.append(steps[j])
        j -= 1
    below_is_layer = j >= floor and steps[j].kind in ("conv", "linear")
    if below_is_layer or (lead and core.kind == "linear" and core.input.dim() != 2):
        j += len(lead)
        lead = []
    return j + 1, core, lead, trail


def _start(top: torch.Tensor, units: list[Unit]) -> torch.Tensor:
    """Probability 1 on each image's unit in the layer output top: (B, C) or (B, C, H, W)."""
    p = torch.zeros_like(top)
    for b, u in enumerate(units):
        if u.index >= top.shape[1]:
            raise ValueError(f"unit {u} out of range: the layer has {top.shape[1]} channels (0-{top.shape[1] - 1})")
        if top.dim() == 2:
            p[b, u.index] = 1
        elif top.dim() == 4:
            h, w = top.shape[2:]
            if u.spatial == "mean":  # the mean over positions is a layer with equal positive weights
                a = top[b, u.index].clamp(min=0)
                p[b, u.index] = a / a.sum() if a.sum() > 0 else 1.0 / (h * w)
            else:
                r, c = u.spatial if isinstance(u.spatial, tuple) else (h // 2, w // 2)
                if r >= h or c >= w:
                    raise ValueError(f"unit {u}: position out of range; the layer is {h}x{w}")
                p[b, u.index, r, c] = 1
        else:
            raise ValueError(f"layer output of shape {tuple(top.shape)} is neither (B, C) nor (B, C, H, W)")
    return p


def _normalized(p: torch.Tensor) -> torch.Tensor:
    total = p.flatten(1).sum(1).view(-1, *[1] * (p.dim() - 1))
    return torch.where(total > 0, p / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(p))


def _propagate(chain: Chain, p: torch.Tensor, top: int, keep: set[int], contrastive: bool) -> dict[int, torch.Tensor]:
    """Walk steps top-1 .. min(keep) carrying p; return the normalized maps at the positions in keep."""
    steps, bottom, out = chain.steps, min(keep), {}
    dual_pending = contrastive
    i = top - 1
    if top in keep:
        out[top] = p
    while i >= bottom:
        step = steps[i]
        if step.kind in ("relu", "identity", "reshape"):
            p, lo = p.reshape(step.input.shape), i
        elif step.kind == "maxpool":
            p, lo = _switches(step.module, step.input, p), i
        elif step.kind == "avgpool":
            p, lo = _mwp(step.module, step.input, p), i
        else:  # conv, linear, affine
            floor = max([k for k in keep if k <= i] + [bottom])
            lo, core, lead, trail = _group(steps, i, floor)
            a = steps[lo].input
            if a.min() < 0:
                where = steps[lo].name
                raise ValueError(f"excitation backprop needs non-negative inputs, but the input of '{where}' has "
                                 f"values down to {float(a.min()):.3g}. Stop above it (stop_layer at a ReLU output) "
                                 "or feed non-negative images (a TargetModel takes [0, 1] and folds its "
                                 "normalization into the first layer)")
            if dual_pending and core is not None:
                p = _mwp(_layer_fn(core, lead, trail, 1.0), a, p) - _mwp(_layer_fn(core, lead, trail, -1.0), a, p)
                dual_pending = False
            else:
                p = _mwp(_layer_fn(core, lead, trail, 1.0), a, p)
        i = lo - 1
        if lo in keep:
            out[lo] = p
    if dual_pending:
        raise ValueError("contrastive excitation backprop needs a conv or linear layer between the stop layer and "
                         "the unit, to form the dual unit from its negated weights")
    return {k: _normalized(v.clamp(min=0) if contrastive else v) for k, v in out.items()}


def excitation_maps(model: nn.Module, x: torch.Tensor, unit: UnitLike, layers: list[str | None],
                    contrastive: bool = False) -> dict[str, torch.Tensor]:
    """Marginal winning probabilities of each image's unit at several layers, from one top-down pass.

    x: (B, C, H, W), non-negative ([0, 1] for a TargetModel). layers: names of layers below the unit; "input" (or
    None) is the model's input. Returns {layer: P}, P shaped like that layer's output (B, C', H', W') or
    (B, D), non-negative and summing to 1 per image.
    """
    check_batch(x)
    check_eval(model)
    units = resolve_units(unit, x.shape[0])
    chain = record_chain(model, x)
    top = chain.position(units[0].layer)
    if top == 0:
        raise ValueError(f"layer '{units[0].layer}' produced no output to start from")
    positions = {("input" if name is None else name): chain.position(name) for name in layers}
    for name, pos in positions.items():
        if pos > top:
            raise ValueError(f"stop layer '{name}' comes after the unit's layer '{units[0].layer}'; pick a lower one")
    chain.check_links(min(positions.values()), top)
    maps = _propagate(chain, _start(chain.steps[top - 1].output, units), top, set(positions.values()), contrastive)
    return {name: maps[pos] for name, pos in positions.items()}


def excitation_backprop(model: nn.Module, x: torch.Tensor, unit: UnitLike, stop_layer: str | None = None,
                        contrastive: bool = False) -> torch.Tensor:
    """Excitation backprop (contrastive=False) or contrastive excitation backprop (contrastive=True).

    x: (B, C, H, W), non-negative ([0, 1] for a TargetModel). stop_layer: where to read the map, a layer below the
    unit; None or "input" is the model's input. Returns the probabilities over that layer's output neurons,
    shaped (B, C', H', W') or (B, D), non-negative and summing to 1 per image. Sum over channels for a spatial map
    (`maps.reduce_channels(p, "sum")`).
    """
    return excitation_maps(model, x, unit, [stop_layer], contrastive)["input" if stop_layer is None else stop_layer]


def contrastive_excitation_backprop(model: nn.Module, x: torch.Tensor, unit: UnitLike,
                                    stop_layer: str | None = None) -> torch.Tensor:
    """`excitation_backprop(..., contrastive=True)`: max(P_unit - P_dual, 0), normalized to sum 1 per image."""
    return excitation_backprop(model, x, unit, stop_layer, contrastive=True)
