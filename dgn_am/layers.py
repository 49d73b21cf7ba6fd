"""Addressing layers and units by name, listing layers, and capturing activations with hooks that remove themselves.

Unit addresses:
  fc8:3            unit 3 of a fc layer
  conv5:12         channel 12 of a conv layer at its spatial centre (the default, as the reference code)
  conv5:12@mean    channel 12 averaged over all positions
  conv5:12@3,4     channel 12 at row 3, column 4
  fc8:0-9          a range (inclusive); fc8:1,5,7 a list; conv5:0-3@mean a range at one spatial mode
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterator, Union

import torch
from torch import nn

Spatial = Union[str, tuple[int, int], None]  # "centre", "mean", (row, col), or None for fc layers


@dataclass(frozen=True)
class Unit:
    """One addressable unit: a layer name, a channel index, and how to read a conv channel spatially."""

    layer: str
    index: int
    spatial: Spatial = "centre"  # ignored for (B, C) layers

    def __str__(self) -> str:
        if isinstance(self.spatial, tuple):
            return f"{self.layer}:{self.index}@{self.spatial[0]},{self.spatial[1]}"
        if self.spatial == "mean":
            return f"{self.layer}:{self.index}@mean"
        return f"{self.layer}:{self.index}"


MAX_UNITS = 100_000  # units one address may name: more than any layer has; checked before a range is expanded


def _indices(text: str, address: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"bad unit list '{text}' in '{address}'; use N, N-M or N,M,K (e.g. fc8:0-9)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"empty range '{part}' in '{address}': the end must be >= the start")
        if len(out) + hi - lo + 1 > MAX_UNITS:
            raise ValueError(f"'{address}' names more than {MAX_UNITS} units, more than any layer has; give a range "
                             "within the layer (dgn-am layers MODEL shows its size)")
        out.extend(range(lo, hi + 1))
    return out


def parse_units(address: str) -> list[Unit]:
    """'conv5:0-3@2,2' -> [Unit('conv5', 0, (2, 2)), ...]. Raises ValueError with the expected syntax."""
    if ":" not in address:
        raise ValueError(f"bad unit address '{address}'; expected LAYER:INDEX such as fc8:3, conv5:12@3,4, fc8:0-9")
    layer, rest = address.rsplit(":", 1)
    spatial: Spatial = "centre"
    if "@" in rest:
        rest, where = rest.split("@", 1)
        if where in ("mean", "centre", "center"):
            spatial = "centre" if where == "center" else where
        else:
            m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", where)
            if not m:
                raise ValueError(f"bad position '@{where}' in '{address}'; use @ROW,COL, @centre or @mean")
            spatial = (int(m.group(1)), int(m.group(2)))
    return [Unit(layer, i, spatial) for i in _indices(rest, address)]


def _root(model: nn.Module) -> nn.Module:
    """Layer names refer to the raw network inside a TargetModel, or to the module itself."""
    return getattr(model, "net", model)


def get_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(_root(model).named_modules())
    if name not in modules or name == "":
        top = [n for n, _ in _root(model).named_children()]
        raise ValueError(f"unknown layer '{name}'; available: {' '.join(top)} (dgn-am layers MODEL lists all)")
    return modules[name]


class _Stop(Exception):
    """Raised by a hook once every requested layer has been captured, so later layers are not computed."""


@contextlib.contextmanager
def capture(model: nn.Module, layers: list[str], stop: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, a forward pass fills the yielded dict with {layer: output}; hooks are always removed.

    With stop=True the forward pass is cut short after the last needed layer; use `run(model, x, layers)`.
    """
    acts: dict[str, torch.Tensor] = {}
    wanted = set(layers)
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            if name not in acts:  # a module called twice (shared ReLU) keeps its first output
                acts[name] = output
            if stop and wanted.issubset(acts):
                raise _Stop

        return hook

    try:
        for name in wanted:
            handles.append(get_layer(model, name).register_forward_hook(make_hook(name)))
        yield acts
    finally:
        for h in handles:
            h.remove()


def run(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Forward x and return {layer: output} for the requested layers, computing nothing after the deepest one."""
    with capture(model, layers) as acts:
        try:
            model(x)
        except _Stop:
            pass
    missing = set(layers) - set(acts)
    if missing:
        raise RuntimeError(f"layers {sorted(missing)} were never called during the forward pass")
    return acts


def list_layers(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[tuple[str, str, tuple]]:
    """[(name, module type, output shape without batch)] for every named module, in call order.

    input_shape: (C, H, W); defaults to the model's input_spec.
    """
    if input_shape is None:
        spec = model.input_spec
        input_shape = (spec.channels, *spec.size)
    root = _root(model)
    order: list[tuple[str, str, tuple]] = []
    handles = []
    for name, module in root.named_modules():
        if name:
            def hook(m, i, o, name=name):
                if isinstance(o, torch.Tensor) and name not in {n for n, _, _ in order}:
                    order.append((name, m.__class__.__name__, tuple(o.shape[1:])))
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            model(torch.zeros(1, *input_shape, device=p.device if p is not None else "cpu"))
    finally:
        for h in handles:
            h.remove()
    return order


def check_units(model: nn.Module, units: list[Unit]) -> dict[str, tuple]:
    """Validate units against the layers' output shapes; returns {layer: shape without batch}."""
    shapes = {name: shape for name, _, shape in list_layers(model)}
    for u in units:
        if u.layer not in shapes:
            get_layer(model, u.layer)  # raises the unknown-layer error
            raise ValueError(f"layer '{u.layer}' produced no tensor output; pick another layer")
        shape = shapes[u.layer]
        if u.index >= shape[0]:
            raise ValueError(f"unit {u} out of range: layer '{u.layer}' has {shape[0]} channels (0-{shape[0] - 1})")
        if isinstance(u.spatial, tuple):
            if len(shape) != 3:
                raise ValueError(f"unit {u}: layer '{u.layer}' has shape {shape}, no spatial positions")
            if not (u.spatial[0] < shape[1] and u.spatial[1] < shape[2]):
                raise ValueError(f"unit {u}: position out of range; '{u.layer}' is {shape[1]}x{shape[2]} (rows x cols)")
    return shapes


def read_layer(act: torch.Tensor, unit: Unit) -> torch.Tensor:
    """Every channel of unit's layer read the way unit is read: (B, C) from act (B, C) or (B, C, H, W); column
    unit.index is read_units(act, [unit] * B)."""
    if act.dim() == 2:
        return act
    if act.dim() != 4:
        raise ValueError(f"layer output of shape {tuple(act.shape)} is neither (B, C) nor (B, C, H, W)")
    if unit.spatial == "mean":
        return act.mean((2, 3))
    h, w = act.shape[2:]
    y, x = unit.spatial if isinstance(unit.spatial, tuple) else (h // 2, w // 2)
    return act[:, :, y, x]


def read_units(act: torch.Tensor, units: list[Unit]) -> torch.Tensor:
    """act: (B, C) or (B, C, H, W) for one layer; units: B units of that layer -> (B,) activations."""
    b = torch.arange(act.shape[0], device=act.device)
    idx = torch.tensor([u.index for u in units], device=act.device)
    if act.dim() == 2:
        return act[b, idx]
    if act.dim() != 4:
        raise ValueError(f"layer output of shape {tuple(act.shape)} is neither (B, C) nor (B, C, H, W)")
    h, w = act.shape[2:]
    chan = act[b, idx]  # (B, H, W)
    pos = [u.spatial if isinstance(u.spatial, tuple) else (h // 2, w // 2) for u in units]
    rows = torch.tensor([p[0] for p in pos], device=act.device)
    cols = torch.tensor([p[1] for p in pos], device=act.device)
    is_mean = torch.tensor([u.spatial == "mean" for u in units], device=act.device)
    return torch.where(is_mean, chan.mean((1, 2)), chan[b, rows, cols])
