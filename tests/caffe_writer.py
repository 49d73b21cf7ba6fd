"""A writer of Caffe files in the protobuf wire format, byte by byte, for the tests of the Caffe reader: NetParameter
messages with new (`layer`, LayerParameter) or legacy (`layers`, V1LayerParameter) layers, and BlobProto blobs with
the new `shape` or the legacy num/channels/height/width fields, float, double or unpacked data."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(number: int, payload: bytes | int, wire: int = 2) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(payload) if wire == 0 else _varint(len(payload)) + payload)


def _blob(a: np.ndarray, legacy: bool = False, double: bool = False, unpacked: bool = False) -> bytes:
    a = np.asarray(a)
    if legacy:
        dims = [1] * (4 - a.ndim) + list(a.shape)
        head = b"".join(_field(n, d, wire=0) for n, d in zip((1, 2, 3, 4), dims))
    else:
        head = _field(7, _field(1, b"".join(_varint(d) for d in a.shape)))
    if double:
        return head + _field(8, a.astype("<f8").tobytes())
    if unpacked:  # repeated float without packing: one fixed32 field per value
        return head + b"".join(_varint(5 << 3 | 5) + struct.pack("<f", v) for v in a.ravel())
    return head + _field(5, a.astype("<f4").tobytes())  # packed repeated float: little-endian float32s


def _layer(name: str, blobs: list[bytes], legacy: bool = False) -> bytes:
    if legacy:  # V1LayerParameter: name = 4, blobs = 6, inside NetParameter.layers = 2
        return _field(2, _field(4, name.encode()) + b"".join(_field(6, b) for b in blobs))
    return _field(100, _field(1, name.encode()) + _field(2, b"Convolution") + b"".join(_field(7, b) for b in blobs))


def write_caffemodel(path: str | Path, layers: dict[str, list[np.ndarray]], legacy: bool = False) -> Path:
    """Write {layer name: [blob arrays]} as a .caffemodel (legacy: V1 layers and 4-D num/channels/height/width
    blobs) and return the path."""
    body = _field(1, b"written-by-the-tests") + _layer("data", [], legacy)
    for name, blobs in layers.items():
        body += _layer(name, [_blob(np.asarray(b, np.float32), legacy=legacy) for b in blobs], legacy)
    Path(path).write_bytes(body)
    return Path(path)


def module_blobs(net: torch.nn.Module) -> dict[str, list[np.ndarray]]:
    """{short layer name: [weight, bias]} of every module of `net` with a weight, as Caffe would store them."""
    out: dict[str, list[np.ndarray]] = {}
    for name, module in net.named_modules():
        if isinstance(getattr(module, "weight", None), torch.Tensor):
            out[name.split(".")[-1]] = [module.weight.detach().numpy(), module.bias.detach().numpy()]
    return out
