"""Decoding 16-bit colour PNGs at full depth. Pillow reads 16-bit grayscale PNGs as 16 bits (mode "I;16") but
reduces 16-bit RGB, RGBA and grayscale+alpha to 8 bits, so those are decoded here from the PNG chunks (zlib and the
five row filters of the PNG specification, section 9).

    header(path)            -> PngHeader(width, height, bit_depth, colour_type, interlace), or None if not a PNG
    decode_16bit(path)      -> (H, W, C) uint16, C = 2 (grey, alpha), 3 (RGB) or 4 (RGBA)
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (3, palette, is never 16-bit)


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int  # bits per sample: 1, 2, 4, 8 or 16
    colour_type: int  # 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA
    interlace: int  # 0 none, 1 Adam7


def header(path: str | Path) -> PngHeader | None:
    """The IHDR fields of a PNG file, or None when the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return PngHeader(width, height, depth, colour, interlace)


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos: pos + 4])
        kind = data[pos + 4: pos + 8]
        body = data[pos + 8: pos + 8 + length]
        if len(body) != length:
            raise ValueError("truncated PNG chunk")
        yield kind, body
        pos += 12 + length
        if kind == b"IEND":
            return


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """raw: height rows of (1 filter byte + stride bytes) -> (height, stride) uint8, the PNG row filters undone.
    bpp: bytes per complete pixel, the distance to the 'left' byte."""
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 2:  # Up
            cur = (line + prev) % 256
        elif kind == 1:  # Sub: a running sum, per byte position within the pixel
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) % 256
        elif kind in (3, 4):  # Average, Paeth: each pixel needs the one reconstructed before it
            cur = line.copy()
            left = np.zeros(bpp, dtype=np.int64)
            up_left = np.zeros(bpp, dtype=np.int64)
            for x in range(0, stride, bpp):
                up = prev[x: x + bpp]
                pred = (left + up) // 2 if kind == 3 else _paeth(left, up, up_left)
                cur[x: x + bpp] = (line[x: x + bpp] + pred) % 256
                left, up_left = cur[x: x + bpp], up
        else:
            raise ValueError(f"unknown PNG filter type {kind} in row {y}")
        out[y] = cur
        prev = cur
    return out.astype(np.uint8)


def decode_16bit(path: str | Path) -> np.ndarray:
    """A non-interlaced 16-bit PNG of colour type 0, 2, 4 or 6 -> (H, W, C) uint16 samples."""
    data = Path(path).read_bytes()
    head = header(path)
    if head is None or head.bit_depth != 16 or head.colour_type not in CHANNELS or head.interlace:
        raise ValueError(f"{path} is not a non-interlaced 16-bit grey/RGB/RGBA PNG")
    channels = CHANNELS[head.colour_type]
    compressed = b"".join(body for kind, body in _chunks(data) if kind == b"IDAT")
    try:
        raw = np.frombuffer(zlib.decompress(compressed), dtype=np.uint8)
    except zlib.error as e:
        raise ValueError(f"corrupt PNG data in {path}: {e}") from None
    stride = head.width * channels * 2
    if raw.size != head.height * (stride + 1):
        raise ValueError(f"{path} is truncated: expected {head.height} rows of {stride} bytes")
    rows = _unfilter(raw, head.height, stride, channels * 2)
    return rows.view(">u2").reshape(head.height, head.width, channels).astype(np.uint16)
