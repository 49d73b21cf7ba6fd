"""The Caffe reader against files written here byte by byte in the protobuf wire format (new and legacy layouts)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from dgn_am.caffe import fields, generator_from_caffe, read_blob, read_bounds, read_caffemodel
from dgn_am.models.generators import Generator, GeneratorConfig
from tests.caffe_writer import _blob, _field, _layer, _varint


def test_blobs_in_every_layout_read_back_exactly():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7
    for kw in ({}, {"legacy": True}, {"double": True}, {"unpacked": True}):
        np.testing.assert_array_equal(read_blob(_blob(a, **kw)), a)
    fc = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    assert read_blob(_blob(fc)).shape == (2, 3)
    assert read_blob(_blob(fc, legacy=True)).shape == (1, 1, 2, 3)  # legacy blobs are always 4-D
    with pytest.raises(ValueError, match="holds 6 values, the data 5"):
        read_blob(_field(7, _field(1, _varint(2) + _varint(3))) + _field(5, struct.pack("<5f", *range(5))))


def test_caffemodel_new_and_legacy_layers(tmp_path):
    w, b = np.ones((4, 3), np.float32), np.array([0.5, -1, 2, 0], np.float32)
    net = _field(1, b"tiny") + _layer("data", []) + _layer("fc6", [_blob(w), _blob(b)]) + \
        _layer("conv1", [_blob(np.full((2, 1, 3, 3), 3.0, np.float32))], legacy=True)
    path = tmp_path / "tiny.caffemodel"
    path.write_bytes(net)
    layers = read_caffemodel(path)
    assert set(layers) == {"fc6", "conv1"}  # layers without blobs are left out
    np.testing.assert_array_equal(layers["fc6"][1], b)
    assert layers["conv1"][0].shape == (2, 1, 3, 3) and layers["conv1"][0].max() == 3.0
    path.write_bytes(net[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_caffemodel(path)
    path.write_bytes(_field(1, b"no layers"))
    with pytest.raises(ValueError, match="no layer with weights"):
        read_caffemodel(path)
    with pytest.raises(FileNotFoundError):
        read_caffemodel(tmp_path / "missing.caffemodel")


TINY_DEEPSIM = GeneratorConfig(code_dim=8, size=64, channels=3, fc_dims=(8, 8), start=1, start_channels=4,
                               up_channels=(4, 4, 4, 4, 2, 3), refine=(4, 4, 4, 0, 0, 0), output="caffe")


def test_generator_weights_map_by_the_deepsim_layer_names(tmp_path):
    """A generator with the DeePSiM layer names, written as a .caffemodel and read back, computes the same image."""
    torch.manual_seed(0)
    ref = Generator(TINY_DEEPSIM).eval()
    names = {n.split(".")[-1] for n, _ in ref.named_modules()}
    assert {"defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv0"} <= names
    blobs: dict[str, list[bytes]] = {}
    for name, t in ref.state_dict().items():
        layer = name.split(".")[-2]
        blobs.setdefault(layer, []).append(_blob(t.numpy()))
    path = tmp_path / "generator.caffemodel"
    path.write_bytes(b"".join(_layer(n, bl) for n, bl in blobs.items()))
    g = generator_from_caffe(read_caffemodel(path), TINY_DEEPSIM)
    h = torch.rand(2, 8)
    torch.testing.assert_close(g(h), ref(h), rtol=0, atol=0)
    del blobs["deconv3"]
    path.write_bytes(b"".join(_layer(n, bl) for n, bl in blobs.items()))
    with pytest.raises(ValueError, match="lacks generator layers \\['deconv3'\\]"):
        generator_from_caffe(read_caffemodel(path), TINY_DEEPSIM)


def test_generator_shape_mismatch_names_the_layer(tmp_path):
    torch.manual_seed(0)
    ref = Generator(TINY_DEEPSIM)
    blobs: dict[str, list[bytes]] = {}
    for name, t in ref.state_dict().items():
        layer = name.split(".")[-2]
        arr = t.numpy()
        if layer == "conv4_1" and name.endswith("weight"):
            arr = arr[:, :, :2, :2].copy()  # a 2x2 kernel where the generator has 3x3
        blobs.setdefault(layer, []).append(_blob(arr))
    layers = {n: [read_blob(b) for b in bl] for n, bl in blobs.items()}
    with pytest.raises(ValueError, match="layer conv4_1 weight: the Caffe blob is \\(4, 4, 2, 2\\)"):
        generator_from_caffe(layers, TINY_DEEPSIM)


def test_bounds_file(tmp_path):
    (tmp_path / "fc6.txt").write_text("3 17\n11 12\n")
    torch.testing.assert_close(read_bounds(tmp_path / "fc6.txt"), torch.tensor([3.0, 17.0, 11.0, 12.0]))
    (tmp_path / "bad.txt").write_text("3 x")
    with pytest.raises(ValueError, match="not a list of numbers"):
        read_bounds(tmp_path / "bad.txt")


def test_fields_reports_unknown_wire_types():
    with pytest.raises(ValueError, match="wire type 3"):
        list(fields(_varint(1 << 3 | 3)))
