"""Addressing layers and units by name, listing layers, and capturing activations with hooks that remove themselves.

Unit addresses:
  fc8:3            unit 3 of a fc layer
  conv5:12         channel 12 of a conv layer at its spatial centre (the default, as the reference code)
  conv5:12@mean    channel 12 averaged over all positions
  conv5:12@3,4     channel 12 at row 3, column 4
  fc8:0-9          a range (inclusive); fc8:1,5,7 a list; conv5:0-3@mean a range at one spatial mode
  conv5+relu:12    the same unit read AFTER its ReLU (see below)
  conv5:all        every channel of the layer (needs the model: units_of(model, addresses))

How a layer is read (the reference's way). Caffe's ReLUs run in place, so the reference reads a conv or fc unit
before its ReLU, and a unit that is 0 after its ReLU still has a gradient. Here, when the module a name addresses
ends in an nn.ReLU (a Sequential whose last call is a ReLU, a residual block whose output is its ReLU's output),
its unit reading is that ReLU's INPUT: the pre-activation. `NAME+relu` reads the module's output instead (after the
ReLU), and naming a ReLU module itself reads its output. Modules that do not end in an nn.ReLU module (a Linear,
a Conv2d whose ReLU is a sibling, a functional F.relu) are read as they output. Features (a prior's code, an
evaluator's penultimate layer) are read with raw=True: every module's output as it is.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterator, Union

import torch
from torch import nn

Spatial = Union[str, tuple[int, int], None]  # "centre", "mean", (row, col), or None for fc layers
POST_RELU = "+relu"  # layer-name suffix: read the module's output after its final ReLU


def split_reading(name: str) -> tuple[str, bool]:
    """'conv5+relu' -> ('conv5', True): the module's name and whether the name asks for the post-ReLU output."""
    if name.endswith(POST_RELU):
        return name[: -len(POST_RELU)], True
    return name, False


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


def units_of(model: nn.Module, addresses: list[str]) -> list[Unit]:
    """Parse addresses for `model`; 'LAYER:all' (with any @position) names every channel of that layer."""
    sizes: dict[str, int] = {}
    units: list[Unit] = []
    for address in addresses:
        layer, _, rest = address.rpartition(":")
        index, at, where = rest.partition("@")
        if index.strip() == "all" and layer:
            if not sizes:
                sizes = {name: shape[0] for name, _, shape in list_layers(model) if shape}
            name = split_reading(layer)[0]
            if name not in sizes:
                get_layer(model, name)  # raises the unknown-layer error
                raise ValueError(f"layer '{name}' produced no tensor output; pick another layer")
            address = f"{layer}:0-{sizes[name] - 1}{at}{where}"
        units.extend(parse_units(address))
    return units


def _root(model: nn.Module) -> nn.Module:
    """Layer names refer to the raw network inside a TargetModel, or to the module itself."""
    return getattr(model, "net", model)


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module a layer name addresses (a '+relu' suffix names the same module)."""
    name = split_reading(name)[0]
    modules = dict(_root(model).named_modules())
    if name not in modules or name == "":
        top = [n for n, _ in _root(model).named_children()]
        raise ValueError(f"unknown layer '{name}'; available: {' '.join(top)} (dgn-am layers MODEL lists all)")
    return modules[name]


class _Stop(Exception):
    """Raised by a hook once every requested layer has been captured, so later layers are not computed."""


class Activations(dict):
    """{layer name: captured tensor}; `pre_relu` maps each name that was read before a ReLU to that ReLU's name."""

    def __init__(self) -> None:
        super().__init__()
        self.pre_relu: dict[str, str] = {}


@contextlib.contextmanager
def capture(model: nn.Module, layers: list[str], stop: bool = True, raw: bool = False) -> Iterator[Activations]:
    """Within the block, a forward pass fills the yielded dict with {layer: activation}; hooks are always removed.

    raw=False: the unit reading (module docstring): a module ending in an nn.ReLU gives that ReLU's input, unless
    its name ends in '+relu'. raw=True: every module's output as it is (features, codes).
    With stop=True the forward pass is cut short after the last needed layer; use `run(model, x, layers)`.
    """
    acts = Activations()
    wanted = set(layers)
    root = _root(model)
    names = {n: m for n, m in root.named_modules()}
    # an in-place op after a layer (torchvision's ReLU(inplace=True)) would change a captured output: keep a copy
    inplace = any(getattr(m, "inplace", False) for m in names.values())
    last_relu: list = [None, None, None]  # module, input, output of the latest ReLU call (unit reading only)
    handles = []

    def relu_pre(module, inputs):
        last_relu[0], last_relu[1] = module, inputs[0].clone() if getattr(module, "inplace", False) else inputs[0]

    def relu_post(module, inputs, output):
        last_relu[2] = output

    def make_hook(name: str, relus: set, post: bool):
        def hook(module, inputs, output):
            if name in acts:  # a module called twice (shared ReLU) keeps its first output
                return
            ends_in_relu = bool(relus) and last_relu[0] in relus and output is last_relu[2]
            if post and not raw and not ends_in_relu:  # raw reads every module's output, '+relu' or not
                raise ValueError(f"layer '{name}': '{split_reading(name)[0]}' does not end in an nn.ReLU, so it has "
                                 f"no after-ReLU reading; drop '{POST_RELU}'")
            if ends_in_relu and not post:
                acts[name] = last_relu[1]
                acts.pre_relu[name] = next(n for n, m in names.items() if m is last_relu[0])
            else:
                acts[name] = output.clone() if inplace and isinstance(output, torch.Tensor) else output
            if stop and wanted.issubset(acts):
                raise _Stop

        return hook

    try:
        hooked: set = set()
        for name in wanted:
            module = get_layer(model, name)
            post = split_reading(name)[1]
            relus = set()
            if not raw:
                relus = {m for m in module.modules() if isinstance(m, nn.ReLU) and m is not module}
                for m in relus - hooked:
                    handles.append(m.register_forward_pre_hook(relu_pre))
                    handles.append(m.register_forward_hook(relu_post))
                hooked |= relus
            handles.append(module.register_forward_hook(make_hook(name, relus, post)))
        yield acts
    finally:
        for h in handles:
            h.remove()


def run(model: nn.Module, x: torch.Tensor, layers: list[str], raw: bool = False) -> Activations:
    """Forward x and return {layer: activation} for the requested layers, computing nothing after the deepest one.

    raw=False reads units the reference's way (pre-ReLU where a layer ends in a ReLU); raw=True reads module outputs.
    """
    with capture(model, layers, raw=raw) as acts:
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
            device, dtype = device_and_dtype(model)
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return order


def device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of the model's first parameter: where its inputs go. (cpu, float32) without any."""
    ref = next(model.parameters(), None)
    return (ref.device, ref.dtype) if ref is not None else (torch.device("cpu"), torch.float32)


def relu_readings(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> dict[str, str]:
    """{layer: the ReLU whose input is its unit reading} for every named module that ends in an nn.ReLU (so it is
    read before that ReLU by default, and NAME+relu reads after it). Found with one forward pass of zeros."""
    if input_shape is None:
        spec = model.input_spec
        input_shape = (spec.channels, *spec.size)
    names = [n for n, m in _root(model).named_modules() if n and not isinstance(m, nn.ModuleList)]
    device, dtype = device_and_dtype(model)
    with torch.no_grad(), capture(model, names, stop=False) as acts:
        model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    return dict(acts.pre_relu)


def output_reading(model: nn.Module, layer: str) -> str:
    """The name that reads `layer` as its module outputs it: LAYER+relu where the module ends in an nn.ReLU (the
    representation the next layer sees), else the name itself."""
    name, post = split_reading(layer)
    return f"{name}{POST_RELU}" if not post and name in relu_readings(model) else layer


def check_units(model: nn.Module, units: list[Unit]) -> dict[str, tuple]:
    """Validate units against the layers' output shapes; returns {layer: shape without batch} (module names)."""
    shapes = {name: shape for name, _, shape in list_layers(model)}
    readings = relu_readings(model) if any(split_reading(u.layer)[1] for u in units) else {}
    for u in units:
        layer, post = split_reading(u.layer)
        if layer not in shapes:
            get_layer(model, layer)  # raises the unknown-layer error
            raise ValueError(f"layer '{layer}' produced no tensor output; pick another layer")
        if post and layer not in readings:
            raise ValueError(f"unit {u}: '{layer}' does not end in an nn.ReLU, so it has no after-ReLU reading; "
                             f"drop '{POST_RELU}' (dgn-am layers shows each layer's reading)")
        shape = shapes[layer]
        if u.index >= shape[0]:
            raise ValueError(f"unit {u} out of range: layer '{layer}' has {shape[0]} channels (0-{shape[0] - 1})")
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
