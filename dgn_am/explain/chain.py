"""A network's forward pass as a chain of layer calls, for methods that walk the layers top-down one by one.

`record_chain(model, x)` runs the model once, records every leaf-module call in call order with a copy of its
input and output, and checks that each call consumes the previous call's output. Plain reshapes (x.view,
torch.flatten) and functional ReLUs (F.relu) between modules are recognised and inserted as steps; anything else
(a residual addition, a concatenation, an arbitrary functional op) is recorded as a break, and a method that needs
to walk across a break raises an error that names the two modules around it.

For a `TargetModel`, step 0 is its input normalization, so the chain starts at the image in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from dgn_am.layers import _root

# Leaf module types by the role they play in a chain.
KINDS: dict[type, str] = {
    nn.Conv2d: "conv", nn.Linear: "linear",
    nn.BatchNorm1d: "affine", nn.BatchNorm2d: "affine",
    nn.ReLU: "relu", nn.ReLU6: "relu",
    nn.MaxPool2d: "maxpool", nn.AdaptiveMaxPool2d: "maxpool",
    nn.AvgPool2d: "avgpool", nn.AdaptiveAvgPool2d: "avgpool",
    nn.Flatten: "reshape", nn.Unflatten: "reshape", nn.Identity: "identity",
    nn.Dropout: "identity", nn.Dropout1d: "identity", nn.Dropout2d: "identity",
}


@dataclass
class Step:
    """One call in the chain: output = module(input). Tensors are copies taken at call time."""

    name: str  # module name inside the network, or a description for inserted steps
    kind: str  # conv, linear, affine, relu, maxpool, avgpool, reshape, identity, unsupported, or break
    input: torch.Tensor
    output: torch.Tensor
    module: nn.Module | None = None
    scale: torch.Tensor | None = None  # affine steps: per-channel multiplier (C,); the shift is not needed
    problem: str = ""  # unsupported steps: why


@dataclass
class Chain:
    """steps in call order; ends[layer] = number of steps done when that named module returned (first call)."""

    steps: list[Step]
    ends: dict[str, int] = field(default_factory=dict)

    def position(self, layer: str | None) -> int:
        """Steps done when `layer` returned; None or "input" -> 0, the model's input."""
        if layer in (None, "input"):
            return 0
        if layer not in self.ends:
            raise ValueError(f"layer '{layer}' was not called in the forward pass; pick one of: "
                             f"input {' '.join(n for n in self.ends if '.' not in n)}")
        return self.ends[layer]

    def check_links(self, lo: int, hi: int) -> None:
        """Raise unless steps lo..hi-1 form an unbroken chain of supported layers."""
        for k in reversed(range(lo, hi)):
            step = self.steps[k]
            if step.kind == "break":
                above = sorted((pos, n) for n, pos in self.ends.items() if k < pos < hi)
                hint = f" (the lowest here is '{above[0][1]}')" if above else ""
                raise ValueError(f"the forward pass is not a chain of layers at {step.name}: the input of the "
                                 "second is not the output of the first (a residual addition, concatenation or "
                                 "other functional operation). Excitation backprop walks chains only: stop at a "
                                 f"layer above it{hint}, or pick a network without such operations")
            if step.kind == "unsupported":
                raise ValueError(step.problem or f"layer '{step.name}' ({type(step.module).__name__}) is not "
                                 f"supported; supported: {', '.join(sorted({t.__name__ for t in KINDS}))}")


def _bn_scale(m: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    if m.training or m.running_var is None:
        raise ValueError(f"{type(m).__name__} without running statistics (or in training mode) is not a fixed "
                         "affine map; call model.eval() and use batch norm with track_running_stats=True")
    scale = torch.rsqrt(m.running_var + m.eps)
    return scale * m.weight if m.weight is not None else scale


def _link(prev: torch.Tensor, inp: torch.Tensor) -> list[str]:
    """Steps to insert so that `inp` follows from `prev`: [], ["reshape"], ["relu"], ["relu", "reshape"], or
    ["break"]."""
    if prev.shape == inp.shape and torch.equal(prev, inp):
        return []
    if prev.numel() == inp.numel():
        if torch.equal(prev.reshape(inp.shape), inp):
            return ["reshape"]
        if torch.equal(prev.clamp(min=0).reshape(inp.shape), inp):
            return ["relu"] if prev.shape == inp.shape else ["relu", "reshape"]
    return ["break"]


def _record_calls(model: nn.Module, root: nn.Module, x: torch.Tensor) -> tuple[list, dict, list]:
    """Run model(x) once (no gradients) with hooks on every module: (leaf calls [(name, module, input, output)],
    {module name: number of leaf calls when it finished}, [the root module's input] or [])."""
    names = {m: n for n, m in root.named_modules()}
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    ends: dict[str, int] = {}
    root_input: list[torch.Tensor] = []
    pending: dict[int, torch.Tensor] = {}
    handles = []

    def pre_hook(module, inputs):
        if module is root and not root_input:
            root_input.append(inputs[0].detach().clone())
        if not any(True for _ in module.children()):
            pending[id(module)] = inputs[0].detach().clone() if inputs and torch.is_tensor(inputs[0]) else None

    def hook(module, inputs, output):
        name = names[module]
        if not any(True for _ in module.children()) and torch.is_tensor(output):
            calls.append((name, module, pending.pop(id(module)), output.detach().clone()))
        if name and name not in ends:
            ends[name] = len(calls)

    try:
        for m in names:
            handles.append(m.register_forward_pre_hook(pre_hook))
            handles.append(m.register_forward_hook(hook))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls, ends, root_input


def record_chain(model: nn.Module, x: torch.Tensor) -> Chain:
    """Run model(x) once (no gradients) and return its chain of leaf-module calls. x: the model's input, (B, ...)."""
    root = _root(model)
    calls, ends, root_input = _record_calls(model, root, x)
    steps: list[Step] = []
    spec = getattr(model, "input_spec", None)
    prev = x.detach()
    if root is not model and spec is not None and root_input:
        std = torch.tensor(spec.std, dtype=x.dtype, device=x.device)
        per_channel = getattr(spec, "order", "rgb") == "rgb"  # a BGR input reorders channels: not per channel
        if per_channel and torch.allclose(spec.normalize(prev), root_input[0]):
            steps.append(Step("input normalization", "affine", prev, root_input[0],
                              scale=getattr(spec, "scale", 1.0) / std))
        else:
            steps.append(Step("'input' -> the network's input", "break", prev, root_input[0]))
        prev = root_input[0]
    offset, count_map = len(steps), {}
    for i, (name, module, inp, out) in enumerate(calls):
        if inp is None:  # called without a tensor argument
            steps.append(Step(f"'{calls[i - 1][0] if i else 'input'}' -> '{name}'", "break", prev, prev))
        else:
            for kind in _link(prev, inp):
                before = calls[i - 1][0] if i else "input"
                label = f"'{before}' -> '{name}'" if kind == "break" else f"{kind} before '{name}'"
                value = inp if kind != "relu" or prev.shape == inp.shape else prev.clamp(min=0)
                steps.append(Step(label, kind, prev, value))
                prev = value
            kind = next((k for t, k in KINDS.items() if isinstance(module, t)), "unsupported")
            scale, problem = None, ""
            if kind == "affine":
                try:
                    scale = _bn_scale(module)
                except ValueError as e:
                    kind, problem = "unsupported", f"layer '{name}': {e}"
            steps.append(Step(name, kind, inp, out, module=module, scale=scale, problem=problem))
        prev = out
        count_map[i + 1] = len(steps)
    chain_ends = {n: (count_map[k] if k else offset) for n, k in ends.items()}
    return Chain(steps, chain_ends)
