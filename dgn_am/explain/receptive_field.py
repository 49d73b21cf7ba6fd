"""Receptive fields of conv units, computed from the network itself by a structural gradient probe.

Inside `_StructuralMode` every convolution and linear layer averages its inputs with equal positive weights, every
activation and normalization is the identity, and max pooling becomes average pooling over the same windows. The
gradient of a unit with respect to the input is then positive exactly on the pixels the unit is connected to, with
no cancellation and no ReLU or max-pool switch cutting paths: that support is the receptive field. It works for any
architecture built from these operations (chains, residual blocks, concatenations).

The probe runs on a blank canvas larger than the field, so the field is measured unclipped, once for a unit and
once for its diagonal neighbour, which gives the field's size, its stride (input pixels between neighbouring
units) and its offset (where unit (0, 0)'s field starts; negative with padding). `ReceptiveField.box` then gives
any unit's field, clipped to an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dgn_am.layers import _root, device_and_dtype, get_layer, run

_IDENTITY = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.gelu, F.silu,
             F.mish, F.elu, F.selu, F.celu, F.leaky_relu, F.hardtanh, F.relu6, F.hardswish, F.hardsigmoid,
             F.softplus, F.prelu, torch.sigmoid, torch.tanh, torch.Tensor.sigmoid, torch.Tensor.tanh, F.sigmoid,
             F.tanh, F.batch_norm, F.instance_norm, F.group_norm, F.layer_norm, F.local_response_norm, F.dropout,
             F.dropout2d, F.alpha_dropout}
_MAXPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


class _StructuralMode(TorchFunctionMode):
    """Positive averaging weights, identity activations and norms, max pooling -> average pooling."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (F.conv2d, F.linear):
            args = list(args)
            w = args[1] if len(args) > 1 else kwargs["weight"]
            fan_in = w[0].numel()
            ones = torch.full_like(w, 1.0 / fan_in, dtype=args[0].dtype)
            if len(args) > 1:
                args[1] = ones
            else:
                kwargs["weight"] = ones
            if len(args) > 2:
                args[2] = None
            kwargs.pop("bias", None)
            return func(*args, **kwargs)
        if func in _IDENTITY:
            return args[0] if args else kwargs["input"]
        if func is F.max_pool2d:
            a = dict(zip(_MAXPOOL_ARGS, args), **kwargs)
            if a.get("dilation", 1) not in (1, (1, 1)) or a.get("return_indices"):
                raise ValueError("receptive fields through dilated max pooling or return_indices are not supported")
            return F.avg_pool2d(a["input"], a["kernel_size"], a.get("stride"), a.get("padding", 0),
                                ceil_mode=a.get("ceil_mode", False), count_include_pad=True)
        if func is F.adaptive_max_pool2d:
            return F.adaptive_avg_pool2d(args[0], args[1] if len(args) > 1 else kwargs["output_size"])
        return func(*args, **kwargs)


@dataclass(frozen=True)
class ReceptiveField:
    """Where a conv layer's units look in the input, in input pixels, as (rows, cols) pairs."""

    layer: str
    size: tuple[int, int]  # extent of one unit's field before clipping to the image
    stride: tuple[int, int]  # shift of the field between neighbouring units
    offset: tuple[int, int]  # top-left input pixel of unit (0, 0)'s field; negative where padding is seen

    def box(self, row: int, col: int, image_size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom/right exclusive, of unit (row, col)'s field; clipped to
        image_size (H, W) when given."""
        top, left = self.offset[0] + row * self.stride[0], self.offset[1] + col * self.stride[1]
        bottom, right = top + self.size[0], left + self.size[1]
        if image_size is not None:
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, image_size[0]), min(right, image_size[1])
        return top, left, bottom, right


def _support(net: nn.Module, layer: str, canvas: torch.Tensor, units: list[tuple[int, int]]) -> list[tuple]:
    """Bounding boxes (top, left, bottom, right) of the input support of the given units of `layer`."""
    boxes = []
    for r, c in units:
        x = canvas.clone().requires_grad_(True)
        with torch.enable_grad(), _StructuralMode():
            out = run(net, x, [layer])[layer]
            (g,) = torch.autograd.grad(out[0, :, r, c].sum(), x)
        g = g.abs().sum((0, 1))  # (H, W)
        rows, cols = g.sum(1).nonzero().flatten(), g.sum(0).nonzero().flatten()
        if len(rows) == 0:
            raise ValueError(f"units of '{layer}' do not depend on the input; is it a conv layer of this model?")
        boxes.append((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
    return boxes


def _channels(model: nn.Module, net: nn.Module) -> int:
    spec = getattr(model, "input_spec", None)
    if spec is not None:
        return spec.channels
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError("cannot tell the number of input channels: give channels=C")
    return first.in_channels


def receptive_field(model: nn.Module, layer: str, channels: int | None = None, start_size: int | None = None,
                    max_size: int = 2048) -> ReceptiveField:
    """The receptive field of the units of a conv layer (output (B, C, H, W)).

    The probe runs the network up to `layer` on blank canvases of start_size (default: the model's input size,
    else 64) doubling up to max_size pixels until the field fits inside, so the network must accept other input
    sizes up to that layer (any fully convolutional stretch does). Raises ValueError for layers without spatial
    positions (their units see the whole image) and for unsupported operations.
    """
    net = _root(model)
    get_layer(model, layer)  # a clear error for unknown names
    channels = channels or _channels(model, net)
    spec = getattr(model, "input_spec", None)
    size = start_size or (max(spec.size) if spec is not None else 64)
    device = device_and_dtype(net)[0]
    while size <= max_size:
        canvas = torch.zeros(1, channels, size, size, dtype=torch.float64, device=device)
        with torch.no_grad(), _StructuralMode():
            shape = run(net, canvas, [layer])[layer].shape
        if len(shape) != 4:
            raise ValueError(f"layer '{layer}' has output shape {tuple(shape[1:])}, no spatial positions: each of "
                             "its units sees the whole image")
        r, c = shape[2] // 2, shape[3] // 2
        if r + 1 < shape[2] and c + 1 < shape[3]:
            a, b = _support(net, layer, canvas, [(r, c), (r + 1, c + 1)])
            if min(a[0], a[1], b[0], b[1]) > 0 and max(a[2], a[3], b[2], b[3]) < size:
                stride = (b[0] - a[0], b[1] - a[1])
                return ReceptiveField(layer, size=(a[2] - a[0], a[3] - a[1]), stride=stride,
                                      offset=(a[0] - r * stride[0], a[1] - c * stride[1]))
        size *= 2
    raise ValueError(f"the receptive field of '{layer}' did not fit in a {max_size}x{max_size} canvas; "
                     "raise max_size")
