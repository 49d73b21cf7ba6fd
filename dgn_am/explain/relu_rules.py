"""Guided backpropagation and the deconvnet: the gradient with a different backward rule at every ReLU.

With R = forward input of a ReLU and G = the signal arriving from above, the signal sent below is:
  gradient (autograd):          G * [R > 0]
  guided backprop (Springenberg et al. 2015):  max(G, 0) * [R > 0]  only positive signals, only where R was positive
  deconvnet (Zeiler & Fergus 2014):            max(G, 0)            rectify the signal, ignore the forward sign

Everything else keeps its ordinary backward pass, which is already what the deconvnet prescribes: max pooling
routes the signal to the recorded switches (the argmax of each window), a convolution's backward is the
transposed convolution with the same filters, linear layers use W^T, and batch norm in eval mode is a fixed
per-channel affine map whose backward multiplies by its scale.

How: `relu_rule(kind)` is a context manager that intercepts every ReLU *call* (nn.ReLU modules, F.relu,
torch.relu, Tensor.relu and their in-place forms) with a torch function mode, so it needs no change to the
model: ReLU modules used several times, in-place ReLUs and functional ReLUs all get the rule. Nothing is left
behind when the block exits, even on an error. Other activations (GELU, SiLU, ReLU6, LeakyReLU, sigmoid, ...)
keep their ordinary gradient, with a warning that names them: the rules are defined for ReLU only.
Limitation: TorchScript or torch.compile'd models bypass function modes, so they get the plain gradient.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dgn_am.explain.targets import UnitLike, input_gradient

RULES = ("gradient", "guided", "deconvnet")
_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {F.relu_, torch.relu_, torch.Tensor.relu_}
_OTHER_ACTIVATIONS = {F.gelu, F.silu, F.mish, F.elu, F.selu, F.celu, F.leaky_relu, F.hardtanh, F.relu6,
                      F.hardswish, F.hardsigmoid, F.softplus, F.prelu, F.rrelu, torch.sigmoid, torch.tanh,
                      torch.Tensor.sigmoid, torch.Tensor.tanh, F.sigmoid, F.tanh}


class _RuleReLU(torch.autograd.Function):
    """max(x, 0) forward; the backward of `rule` ("guided" or "deconvnet")."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: str) -> torch.Tensor:
        ctx.rule = rule
        ctx.save_for_backward(x > 0)  # the forward sign, saved before an in-place ReLU overwrites x
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (positive,) = ctx.saved_tensors
        g = g.clamp(min=0)
        return (g * positive if ctx.rule == "guided" else g), None


class _ReLURuleMode(TorchFunctionMode):
    """Routes every ReLU call through `_RuleReLU`; records other activations that were called."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.others: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inplace = func in _RELU_INPLACE or (func is F.relu and (kwargs.get("inplace") or args[1:2] == (True,)))
        if func in _RELU or func in _RELU_INPLACE:
            x = args[0]
            if not torch.is_grad_enabled() or not x.requires_grad:
                return func(*args, **kwargs)
            y = _RuleReLU.apply(x, self.rule)
            if inplace:  # keep in-place semantics: x now holds the result, and its gradient goes through y
                return x.copy_(y)
            return y
        if func in _OTHER_ACTIVATIONS:
            self.others.add(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


@contextlib.contextmanager
def relu_rule(rule: str) -> Iterator[_ReLURuleMode]:
    """Within the block, every ReLU call backpropagates with `rule`: "gradient" (unchanged), "guided" or
    "deconvnet". Yields the mode; `mode.others` lists the non-ReLU activations seen. Always restores."""
    if rule not in RULES:
        raise ValueError(f"unknown ReLU rule '{rule}'; use one of {', '.join(RULES)}")
    if rule == "gradient":
        yield _ReLURuleMode(rule)
        return
    mode = _ReLURuleMode(rule)
    with mode:
        yield mode


def rule_gradient(model: nn.Module, x: torch.Tensor, unit: UnitLike, rule: str) -> torch.Tensor:
    """The signal that reaches x when backpropagating from each image's unit with `rule` at every ReLU.

    x: (B, C, H, W) -> (B, C, H, W), signed. The seed is d unit / d unit = 1, so for rule="gradient" this is
    exactly the gradient.
    """
    with relu_rule(rule) as mode:
        grad, _ = input_gradient(model, x, unit)
    if mode.others:
        warnings.warn(f"{rule}: the model also uses {', '.join(sorted(mode.others))}; the {rule} rule applies to "
                      "ReLUs only, so those layers passed their ordinary gradient", stacklevel=3)
    return grad


def guided_backprop(model: nn.Module, x: torch.Tensor, unit: UnitLike) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015): at each ReLU only positive signals pass, and only where
    the forward input was positive.

    x: (B, C, H, W) in the model's input space -> (B, C, H, W), signed (negative values can appear below the
    first ReLU, through negative filter weights).
    """
    return rule_gradient(model, x, unit, "guided")


def deconvnet(model: nn.Module, x: torch.Tensor, unit: UnitLike) -> torch.Tensor:
    """Zeiler & Fergus (2014) deconvnet projection: the signal is rectified at each ReLU whatever the forward sign,
    max pooling unpools through the recorded switches, convolutions use their transposed filters.

    x: (B, C, H, W) -> (B, C, H, W), signed. The seed at the unit is 1; the paper seeds with the unit's activation
    a, and since every step is positively homogeneous its projection is a * this map (zero when a = 0).
    """
    return rule_gradient(model, x, unit, "deconvnet")
