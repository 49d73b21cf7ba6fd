"""What an explanation is of: one unit per image, read from a forward pass, on a model in eval mode.

Every method in `dgn_am.explain` takes `unit` as an address string ("fc8:3", "conv5:12", "conv5:12@3,4",
"conv5:12@mean"), a `Unit`, or a sequence of B units (one per image). A class is the unit of the output layer
(`fc8:3` is the logit of class 3). Images are whatever the model's forward takes: (B, C, H, W) in [0, 1] for a
`TargetModel`, or the raw input of a plain `nn.Module` (layer names then refer to that module's own modules).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from dgn_am.engine import require_grad
from dgn_am.layers import Unit, parse_units, read_units, run

UnitLike = Union[str, Unit, Sequence[Unit]]

# Modules whose forward depends on the training flag: explanations are of the deployed (eval) network.
_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                   nn.AlphaDropout)


def resolve_units(unit: UnitLike, batch: int) -> list[Unit]:
    """unit -> a list of `batch` units, one per image. A string or Unit applies to every image.

    Raises ValueError for an address naming several units (fc8:0-9): explain one unit at a time.
    """
    if isinstance(unit, str):
        units = parse_units(unit)
        if len(units) != 1:
            raise ValueError(f"'{unit}' names {len(units)} units; explain one unit at a time, e.g. "
                             f"{units[0].layer}:{units[0].index}")
        unit = units[0]
    if isinstance(unit, Unit):
        return [unit] * batch
    units = list(unit)
    if len(units) != batch or not all(isinstance(u, Unit) for u in units):
        raise ValueError(f"give one Unit per image: {batch} images but {len(units)} units")
    if len({u.layer for u in units}) != 1:
        raise ValueError(f"all units of one call must be in one layer, got {sorted({u.layer for u in units})}")
    return units


def check_eval(model: nn.Module) -> None:
    """Raise when batch norm or dropout is in training mode: maps would depend on the rest of the batch."""
    training = [name or type(model).__name__ for name, m in model.named_modules()
                if isinstance(m, _MODE_DEPENDENT) and m.training]
    if training:
        raise ValueError(f"modules {training[:3]} are in training mode; call model.eval() before explaining "
                         "(load_model returns an eval-mode model)")


def check_batch(x: torch.Tensor, dims: tuple[int, ...] = (2, 3, 4)) -> None:
    """x must be a floating-point batch, (B, C, H, W) for images or (B, D) for vectors."""
    if x.dim() not in dims or not x.is_floating_point():
        raise ValueError(f"inputs must be a float tensor with a batch dimension, (B, C, H, W) for images, got "
                         f"{tuple(x.shape)} {x.dtype}; add a batch dimension with x[None] for a single image")


def unit_values(model: nn.Module, x: torch.Tensor, units: list[Unit]) -> torch.Tensor:
    """x: (B, ...) -> (B,) the activation of units[b] on image b. Keeps the autograd graph when x requires grad.

    The forward pass stops after the units' layer. A conv unit is read at its position: the centre by default,
    @ROW,COL, or @mean (the channel's spatial mean).
    """
    layer = units[0].layer
    act = run(model, x, [layer])[layer]
    if act.dim() == 4:
        for u in units:
            if isinstance(u.spatial, tuple) and not (u.spatial[0] < act.shape[2] and u.spatial[1] < act.shape[3]):
                raise ValueError(f"unit {u}: position out of range; '{layer}' is {act.shape[2]}x{act.shape[3]}")
    if act.dim() in (2, 4) and max(u.index for u in units) >= act.shape[1]:
        raise ValueError(f"unit index out of range: layer '{layer}' has {act.shape[1]} channels "
                         f"(0-{act.shape[1] - 1})")
    return read_units(act, units)


def input_gradient(model: nn.Module, x: torch.Tensor, unit: UnitLike) -> tuple[torch.Tensor, torch.Tensor]:
    """(d unit / d x of shape x.shape, unit values (B,)). Each image's gradient is of its own unit only."""
    check_batch(x)
    check_eval(model)
    units = resolve_units(unit, x.shape[0])
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        values = unit_values(model, x, units)
        require_grad(values)
        (grad,) = torch.autograd.grad(values.sum(), x, allow_unused=True)
    if grad is None:  # the unit does not depend on the input at all
        grad = torch.zeros_like(x)
    return grad, values.detach()
