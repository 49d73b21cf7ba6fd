"""Reading Caffe weight files (.caffemodel) without Caffe, and mapping the DeePSiM fc6 generator's weights.

A .caffemodel is a serialized `NetParameter` protocol buffer. This module decodes the protobuf wire format directly
(no code is executed and nothing is generated from a .proto file) and reads only what weights need:

    NetParameter       layer = 100 (LayerParameter), layers = 2 (legacy V1LayerParameter)
    LayerParameter     name = 1, blobs = 7
    V1LayerParameter   name = 4, blobs = 6
    BlobProto          shape = 7 (BlobShape: dim = 1), data = 5 (float), double_data = 8,
                       legacy num = 1, channels = 2, height = 3, width = 4

Caffe's weight layouts equal PyTorch's: InnerProduct (out, in) as nn.Linear, Convolution (out, in, kh, kw) as
nn.Conv2d, Deconvolution (in, out, kh, kw) as nn.ConvTranspose2d; blobs[0] is the weight and blobs[1] the bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from dgn_am.models.caffenet import CAFFENET_LAYERS, CaffeNet, CaffeNetConfig
from dgn_am.models.generators import DEEPSIM_NAMES, Generator, GeneratorConfig

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at buf[pos]."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf: a varint runs past the end of the data")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("corrupt protobuf: a varint longer than 10 bytes")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every field of one message; length-delimited values are bytes,
    fixed32/fixed64 values are their raw 4/8 bytes, varints are ints."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _BYTES:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError(f"truncated protobuf: field {number} claims {n} bytes past the end of the data")
            value, pos = buf[pos: pos + n], pos + n
        elif wire in (_FIXED32, _FIXED64):
            size = 4 if wire == _FIXED32 else 8
            value, pos = buf[pos: pos + size], pos + size
        else:
            raise ValueError(f"not a Caffe protobuf: unsupported wire type {wire} in field {number}")
        yield number, wire, value


def _packed_ints(value: int | bytes) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def read_blob(buf: bytes) -> np.ndarray:
    """A BlobProto -> float32 array of its shape (the `shape` field, else the legacy num/channels/height/width,
    with leading 1s dropped for fc weights and biases only as Caffe stored them)."""
    shape: list[int] = []
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    chunks: list[np.ndarray] = []
    for number, wire, value in fields(buf):
        if number == 7:
            shape = [d for n, w, v in fields(value) if n == 1 for d in _packed_ints(v)]
        elif number in legacy and wire == _VARINT:
            legacy[number] = int(value)
        elif number == 5:
            chunks.append(np.frombuffer(value, dtype="<f4") if wire in (_BYTES, _FIXED32) else np.array([]))
        elif number == 8:
            chunks.append(np.frombuffer(value, dtype="<f8").astype(np.float32))
    data = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not shape:
        shape = [legacy[1], legacy[2], legacy[3], legacy[4]]
    if int(np.prod(shape)) != data.size:
        raise ValueError(f"corrupt blob: shape {shape} holds {int(np.prod(shape))} values, the data {data.size}")
    return data.reshape(shape)


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """{layer name: [blob arrays]} for every layer of a .caffemodel that has blobs, new or legacy format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Caffe weights file not found: {path}")
    buf = path.read_bytes()
    layers: dict[str, list[np.ndarray]] = {}
    for number, wire, value in fields(buf):
        if wire != _BYTES or number not in (100, 2):
            continue
        name_field, blob_field = (1, 7) if number == 100 else (4, 6)
        name, blobs = None, []
        for n, w, v in fields(value):
            if n == name_field and w == _BYTES:
                name = v.decode("utf-8", "replace")
            elif n == blob_field and w == _BYTES:
                blobs.append(read_blob(v))
        if name is not None and blobs:
            layers[name] = blobs
    if not layers:
        raise ValueError(f"{path} holds no layer with weights; is it a .caffemodel (not a .prototxt)?")
    return layers


def fit_blob(blob: np.ndarray, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """The blob as a tensor of `shape`: as it is, or a legacy 4-D blob (1, 1, out, in) / (1, 1, 1, n) whose leading
    1s drop to give `shape`. Anything else is an error naming the layer."""
    dims = list(blob.shape)
    while len(dims) > len(shape) and dims[0] == 1:
        dims.pop(0)
    if tuple(dims) != tuple(shape):
        raise ValueError(f"layer {what}: the Caffe blob is {tuple(blob.shape)}, the network needs {tuple(shape)}")
    return torch.from_numpy(np.ascontiguousarray(blob, dtype=np.float32).reshape(shape).copy())


def _out_dim(blob: np.ndarray) -> int:
    """Output width of a weight blob: dim 0, or dim 2 of a legacy (1, 1, out, in) fc weight."""
    return int(blob.shape[2]) if blob.ndim == 4 and blob.shape[0] == blob.shape[1] == 1 else int(blob.shape[0])


def caffenet_from_caffe(layers: dict[str, list[np.ndarray]]) -> CaffeNet:
    """A CaffeNet whose conv1..fc8 take the Caffe blobs (weight, bias) by layer name. The widths come from the
    blobs (the published file gives the full-size net), and every blob's shape is checked against the network."""
    missing = [n for n in CAFFENET_LAYERS if n not in layers]
    if missing:
        raise ValueError(f"the Caffe file lacks CaffeNet layers {missing}; is it bvlc_reference_caffenet?")
    out = {n: _out_dim(layers[n][0]) for n in CAFFENET_LAYERS}
    config = CaffeNetConfig(convs=tuple(out[f"conv{i}"] for i in range(1, 6)), fcs=(out["fc6"], out["fc7"]),
                            num_classes=out["fc8"])
    net = CaffeNet(config)
    state = {}
    for name in CAFFENET_LAYERS:
        module, blobs = getattr(net, name), layers[name]
        if len(blobs) != 2:
            raise ValueError(f"layer {name} has {len(blobs)} blobs in the Caffe file; CaffeNet's have 2 "
                             "(weight, bias)")
        for key, blob in zip(("weight", "bias"), blobs):
            state[f"{name}.{key}"] = fit_blob(blob, tuple(getattr(module, key).shape), f"{name} {key}")
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def generator_config_from_caffe(layers: dict[str, list[np.ndarray]]) -> GeneratorConfig:
    """The DeePSiM-family GeneratorConfig whose layers have the blobs' shapes: the published fc6 generator gives
    PRESETS["deepsim-fc6"], a reduced-width file (tests) its own; output convention "caffe"."""
    missing = [n for n in ("defc7", "defc6", "defc5", "deconv0") if n not in layers]
    if missing:
        raise ValueError(f"the Caffe file lacks generator layers {missing}; is it the DeePSiM fc6 generator?")
    code_dim = int(layers["defc7"][0].shape[-1])
    fc_dims = (_out_dim(layers["defc7"][0]), _out_dim(layers["defc6"][0]))
    ups = [k for k in range(9, -1, -1) if f"deconv{k}" in layers]
    start_channels = int(layers[f"deconv{ups[0]}"][0].shape[0])  # ConvTranspose weight: (in, out, kh, kw)
    start = int(round((_out_dim(layers["defc5"][0]) / start_channels) ** 0.5))
    up_channels = tuple(int(layers[f"deconv{k}"][0].shape[1]) for k in ups)
    refine = tuple(int(layers[f"conv{k}_1"][0].shape[0]) if f"conv{k}_1" in layers else 0 for k in ups)
    return GeneratorConfig(code_dim=code_dim, size=start * 2 ** len(ups), channels=up_channels[-1], fc_dims=fc_dims,
                           start=start, start_channels=start_channels, up_channels=up_channels, refine=refine,
                           output="caffe")


def generator_from_caffe(layers: dict[str, list[np.ndarray]],
                         config: GeneratorConfig | str = "deepsim-fc6") -> Generator:
    """A Generator whose DeePSiM layers (defc7 ... deconv0, by name) take the Caffe blobs; every shape is checked."""
    g = Generator(config)
    modules = {name.split(".")[-1]: m for name, m in g.named_modules()}
    missing = [n for n in DEEPSIM_NAMES if n in modules and n not in layers]
    if missing:
        raise ValueError(f"the Caffe file lacks generator layers {missing}; is it the DeePSiM fc6 generator?")
    state = {}
    for name, module in g.named_modules():
        short = name.split(".")[-1]
        if short not in layers or not hasattr(module, "weight"):
            continue
        blobs = layers[short]
        for key, blob in zip(("weight", "bias"), blobs):
            state[f"{name}.{key}"] = fit_blob(blob, tuple(getattr(module, key).shape), f"{short} {key}")
    expected = {k for k in g.state_dict()}
    if set(state) != expected:
        raise ValueError(f"the Caffe file does not cover the generator: missing {sorted(expected - set(state))[:4]}")
    g.load_state_dict(state)
    return g.eval().requires_grad_(False)


def read_bounds(path: str | Path) -> torch.Tensor:
    """The reference's act_range files (act_range/3x/fc6.txt): one upper bound per code unit, whitespace-separated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bounds file not found: {path}")
    try:
        values = [float(v) for v in path.read_text().split()]
    except ValueError as e:
        raise ValueError(f"{path} is not a list of numbers: {e}") from None
    if not values or not all(np.isfinite(values)):
        raise ValueError(f"{path} holds no finite bounds")
    return torch.tensor(values, dtype=torch.float32)

