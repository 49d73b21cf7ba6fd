"""CaffeNet: grouped convolutions and Caffe's LRN against independent computations, the mapping from Caffe blobs
(new and legacy layouts, the published shapes), and Caffe's input convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgn_am.caffe import caffenet_from_caffe, read_caffemodel
from dgn_am.models.caffenet import LRN, CaffeNet, CaffeNetConfig, CrossChannelLRN
from dgn_am.models.spec import caffe_input_spec
from dgn_am.priors import to_target
from tests.caffe_writer import module_blobs, write_caffemodel

SMALL = CaffeNetConfig(convs=(8, 12, 16, 12, 8), fcs=(24, 20), num_classes=1000)


def caffe_lrn_loop(x: np.ndarray, n: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """Caffe's LRNLayer, ACROSS_CHANNELS, one value at a time: scale = k + alpha / n * sum of squares over the
    channels c - (n - 1) / 2 .. c + (n - 1) / 2 that exist; out = x * scale^-beta (lrn_layer.cpp)."""
    out = np.empty_like(x, dtype=np.float64)
    b, c, h, w = x.shape
    half = (n - 1) // 2
    for i in range(b):
        for ch in range(c):
            for y in range(h):
                for z in range(w):
                    sq = sum(float(x[i, j, y, z]) ** 2 for j in range(max(0, ch - half), min(c, ch + half + 1)))
                    out[i, ch, y, z] = x[i, ch, y, z] * (k + alpha / n * sq) ** -beta
    return out


def test_lrn_is_caffes_across_channel_normalization():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 60, size=(2, 7, 3, 2)).astype(np.float32)  # large values, so the normalization matters
    net = CaffeNet(SMALL)
    got = net.norm1(torch.from_numpy(x)).double().numpy()
    want = caffe_lrn_loop(x, LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.abs(want - x).max() > 1.0  # the test can tell a missing normalization
    # alpha / n, not alpha: with alpha undivided the loop differs
    assert np.abs(caffe_lrn_loop(x, 5, 5e-4, 0.75, 1.0) - want).max() > 1.0
    wide = CrossChannelLRN(3, alpha=0.01, beta=0.5, k=2.0)(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(wide, caffe_lrn_loop(x, 3, 0.01, 0.5, 2.0), rtol=1e-5)
    for n in (1, 2, 3, 4, 5, 8):  # odd and even windows against torch's module (the same zero padding)
        torch.testing.assert_close(CrossChannelLRN(n, 0.01, 0.5, 2.0)(torch.from_numpy(x)),
                                   torch.nn.LocalResponseNorm(n, 0.01, 0.5, 2.0)(torch.from_numpy(x)))


def test_lrn_backward_matches_torchs():
    """The gradient through CrossChannelLRN is LocalResponseNorm's (gradcheck in float64, and the two agree)."""
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 30
    x.requires_grad_(True)
    lrn = CrossChannelLRN(5, 1e-3, 0.75, 1.0)
    assert torch.autograd.gradcheck(lrn, (x,))
    (ours,) = torch.autograd.grad(lrn(x).pow(2).sum(), x)
    (torchs,) = torch.autograd.grad(torch.nn.LocalResponseNorm(5, 1e-3, 0.75, 1.0)(x).pow(2).sum(), x)
    torch.testing.assert_close(ours, torchs)


def grouped_conv_loop(x: np.ndarray, w: np.ndarray, b: np.ndarray, groups: int, pad: int) -> np.ndarray:
    """Caffe's grouped convolution by hand: output channel o sees only the input channels of its group."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    per_out = o // groups
    for oc in range(o):
        g = oc // per_out
        patch_c = slice(g * ci, (g + 1) * ci)
        for y in range(out.shape[2]):
            for z in range(out.shape[3]):
                out[:, oc, y, z] = (x[:, patch_c, y: y + kh, z: z + kw] * w[oc]).sum((1, 2, 3)) + b[oc]
    return out


@pytest.mark.parametrize("layer", ["conv2", "conv4", "conv5"])
def test_grouped_convolutions_match_a_hand_loop(layer):
    torch.manual_seed(0)
    net = CaffeNet(SMALL)
    conv = getattr(net, layer)
    assert conv.groups == 2
    x = torch.randn(1, conv.in_channels, 6, 5)
    want = grouped_conv_loop(x.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(), 2,
                             conv.padding[0])
    np.testing.assert_allclose(conv(x).double().detach().numpy(), want, rtol=1e-4, atol=1e-5)
    ungrouped = F.conv2d(x, conv.weight.repeat(1, 2, 1, 1), conv.bias, padding=conv.padding)
    assert (ungrouped - conv(x)).abs().max() > 1e-2  # the groups change the result: the test would see them lost


def reference_forward(blobs: dict[str, list[np.ndarray]], x: torch.Tensor) -> torch.Tensor:
    """CaffeNet from the raw blobs with functional ops: each group convolved apart and concatenated, LRN by the loop."""
    def conv(name, x, stride, pad, groups):
        w, b = (torch.from_numpy(a) for a in blobs[name])
        xs, ws, bs = x.chunk(groups, 1), w.chunk(groups, 0), b.chunk(groups, 0)
        return F.relu(torch.cat([F.conv2d(xi, wi, bi, stride, pad) for xi, wi, bi in zip(xs, ws, bs)], 1))

    def pool_norm(x):
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        return torch.from_numpy(caffe_lrn_loop(x.numpy(), 5, 1e-4, 0.75, 1.0)).float()

    x = pool_norm(conv("conv1", x, 4, 0, 1))
    x = pool_norm(conv("conv2", x, 1, 2, 2))
    x = conv("conv5", conv("conv4", conv("conv3", x, 1, 1, 1), 1, 1, 2), 1, 1, 2)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True).flatten(1)
    for name in ("fc6", "fc7"):
        x = F.relu(x @ torch.from_numpy(blobs[name][0]).T + torch.from_numpy(blobs[name][1]))
    return x @ torch.from_numpy(blobs["fc8"][0]).T + torch.from_numpy(blobs["fc8"][1])


@pytest.mark.parametrize("legacy", [False, True])
def test_caffemodel_maps_onto_caffenet(tmp_path, legacy):
    torch.manual_seed(1)
    blobs = module_blobs(CaffeNet(SMALL))
    for name in blobs:  # scale so that activations are large enough for LRN to act
        blobs[name][0] = blobs[name][0] * 4
    path = write_caffemodel(tmp_path / "caffenet.caffemodel", blobs, legacy=legacy)
    net = caffenet_from_caffe(read_caffemodel(path))
    assert net.config == SMALL
    x = torch.randn(2, 3, 227, 227) * 50
    torch.testing.assert_close(net(x), reference_forward(blobs, x), rtol=1e-3, atol=1e-3)
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_missing_layer_and_wrong_shape_are_named():
    torch.manual_seed(0)
    blobs = module_blobs(CaffeNet(SMALL))
    del blobs["conv3"]
    with pytest.raises(ValueError, match="lacks CaffeNet layers \\['conv3'\\]"):
        caffenet_from_caffe(blobs)
    blobs = module_blobs(CaffeNet(SMALL))
    blobs["conv4"][0] = blobs["conv4"][0].repeat(2, axis=1)  # as if conv4 had no groups
    with pytest.raises(ValueError, match="layer conv4 weight: the Caffe blob is \\(12, 16, 3, 3\\)"):
        caffenet_from_caffe(blobs)


# the blobs of bvlc_reference_caffenet.caffemodel (its deploy.prototxt: groups halve conv2/4/5's input channels)
PUBLISHED_SHAPES = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
                    "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216),
                    "fc7": (4096, 4096), "fc8": (1000, 4096)}


def test_the_published_shapes_map_onto_the_full_network():
    """Shapes only (no 240 MB file): zero blobs of the published shapes load, and the net runs 227 -> 1000."""
    layers = {n: [np.broadcast_to(np.float32(0), s), np.broadcast_to(np.float32(0.5), (s[0],))]
              for n, s in PUBLISHED_SHAPES.items()}
    net = caffenet_from_caffe(layers)
    assert net.config == CaffeNetConfig()
    assert CaffeNet.pool5_side(227) == 6
    out = net(torch.zeros(1, 3, 227, 227))
    assert out.shape == (1, 1000) and torch.allclose(out, torch.full((1, 1000), 0.5))


def test_caffe_input_convention():
    rng = np.random.default_rng(0)
    mean256 = torch.from_numpy(rng.uniform(90, 130, size=(3, 256, 256)).astype(np.float32))  # BGR, 0..255
    spec = caffe_input_spec(mean256)
    assert spec.crop_offset() == (14, 14) and spec.size == (227, 227)
    x = torch.rand(2, 3, 227, 227)  # RGB in [0, 1]
    want = x.flip(1) * 255 - mean256[:, 14:241, 14:241]
    torch.testing.assert_close(spec.normalize(x), want)
    flat = caffe_input_spec()
    torch.testing.assert_close(flat.normalize(x), x.flip(1) * 255 - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1))
    r, g, b = flat.unit_mean()
    assert (r, g, b) == pytest.approx((123 / 255, 117 / 255, 104 / 255))
    # the generator's Caffe output reaches CaffeNet unchanged, cropped at 14, as the reference fed it
    raw = torch.randn(2, 3, 256, 256) * 60  # BGR, mean subtracted, 0..255
    torch.testing.assert_close(flat.normalize(to_target(raw, "caffe", flat, clip=False)), raw[:, :, 14:241, 14:241],
                               rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="smaller than the 227x227"):
        caffe_input_spec(torch.zeros(3, 200, 200))


def test_an_image_file_reaches_caffenet_as_caffe_prepared_it(tmp_path):
    """Resized to 256x256 (Caffe's data layer) and cropped to 227 at offset 14."""
    from PIL import Image

    from dgn_am.imageio import load_image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), "RGB").save(tmp_path / "x.png")
    x = load_image(tmp_path / "x.png", caffe_input_spec())
    with Image.open(tmp_path / "x.png") as im:
        want = np.asarray(im.resize((256, 256), Image.BILINEAR), dtype=np.float32)[14:241, 14:241] / 255
    assert x.shape == (1, 3, 227, 227)
    np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), want)
