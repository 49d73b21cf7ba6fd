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
            target = getattr(module, key)
            if tuple(blob.shape) != tuple(target.shape):
                raise ValueError(f"layer {short} {key}: the Caffe blob is {tuple(blob.shape)}, the generator "
                                 f"needs {tuple(target.shape)}")
            state[f"{name}.{key}"] = torch.from_numpy(blob.copy())
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

