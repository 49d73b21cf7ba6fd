"""Occlusion maps on a model with a known region, and receptive fields of known architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgn_am.explain import occlusion, receptive_field
from dgn_am.explain.occlusion import window_positions
from dgn_am.models import load_model


class RegionSum(nn.Module):
    """Output 0: the sum of rows 4..7, columns 8..11 of every channel; output 1: a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, :, 4:8, 8:12].sum((1, 2, 3))
        return self.head(torch.stack([region, torch.ones_like(region)], 1))


MASK = torch.zeros(16, 16)
MASK[4:8, 8:12] = 1


def test_occlusion_highlights_exactly_the_region_the_output_depends_on():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    m = occlusion(RegionSum(), x, "head:0", patch=1, stride=1, baseline=0.0, batch_size=50)
    assert m.shape == (2, 16, 16)
    assert torch.allclose(m, x.sum(1) * MASK)  # each pixel's drop is its own value, only inside the region
    # 4x4 windows on a 4-pixel grid: one window is exactly the region and takes all of its drop
    m = occlusion(RegionSum(), x, "head:0", patch=4, stride=4, baseline=0.0)
    assert torch.allclose(m, x[:, :, 4:8, 8:12].sum((1, 2, 3)).view(2, 1, 1) * MASK)
    assert torch.equal((m > 0).float(), MASK.expand(2, 16, 16))


def test_occlusion_baseline_averaging_and_constant_outputs():
    x = torch.full((1, 1, 16, 16), 0.25)
    # baseline 1 raises the region: a negative drop; 2x2 windows with stride 1 are averaged over the windows
    m = occlusion(RegionSum(), x, "head:0", patch=2, stride=1, baseline=1.0)
    assert m[0, 5, 9] == pytest.approx(-0.75 * 4)  # every window covering (5, 9) lies inside the region
    # (4, 7) is covered by the windows at (3, 6), (3, 7), (4, 6), (4, 7), which hide 0, 1, 0, 2 region pixels
    assert m[0, 0, 0] == 0 and m[0, 4, 7] == pytest.approx(-0.75 * 3 / 4)
    assert torch.equal(occlusion(RegionSum(), x, "head:1", patch=3, stride=2), torch.zeros(1, 16, 16))
    assert window_positions((5, 5), 2, 2) == [(0, 0), (0, 2), (2, 0), (2, 2)]
    with pytest.raises(ValueError, match="larger than the image"):
        occlusion(RegionSum(), x, "head:0", patch=17)
    with pytest.raises(ValueError, match="baseline has 3 values"):
        occlusion(RegionSum(), x, "head:0", baseline=(0.0, 0.5, 1.0))


def test_occlusion_batches_do_not_change_the_map(caffenet, images):
    a = occlusion(caffenet, images, "fc8:2", patch=6, stride=3, batch_size=1)
    b = occlusion(caffenet, images, "fc8:2", patch=6, stride=3, batch_size=1000)
    assert torch.allclose(a, b, atol=1e-6) and a.abs().sum() > 0


def test_receptive_fields_of_fmnist_caffenet(caffenet):
    # conv1 3x3 pad 1 -> [i-1, i+1]; pool1 2/2 -> [2i-1, 2i+2]; conv2 -> [2i-3, 2i+4]; pool2 -> [4i-3, 4i+6];
    # conv3 -> [4i-7, 4i+10]; conv4 -> [4i-11, 4i+14]; conv5 -> [4i-15, 4i+18]; pool5 -> [8i-15, 8i+22]
    expected = {"conv1": (3, 1, -1), "pool1": (4, 2, -1), "conv2": (8, 2, -3), "pool2": (10, 4, -3),
                "conv3": (18, 4, -7), "conv4": (26, 4, -11), "conv5": (34, 4, -15), "pool5": (38, 8, -15)}
    for layer, (size, stride, offset) in expected.items():
        rf = receptive_field(caffenet, layer)
        assert (rf.size, rf.stride, rf.offset) == ((size, size), (stride, stride), (offset, offset)), layer
    rf = receptive_field(caffenet, "conv3")
    assert rf.box(0, 0) == (-7, -7, 11, 11) and rf.box(0, 0, (28, 28)) == (0, 0, 11, 11)
    assert rf.box(6, 3, (28, 28)) == (17, 5, 28, 23)
    with pytest.raises(ValueError, match="no spatial positions"):
        receptive_field(caffenet, "fc6")


def test_receptive_field_with_stride_dilation_and_residual_blocks():
    # conv k5 s2 p1: [2i-1, 2i+3]; max pool k3 s2: [4i-1, 4i+7]; conv k3 dilation 2: [4i-1, 4i+23] -> 25, 4, -1
    net = nn.Sequential(nn.Conv2d(1, 2, 5, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                        nn.Conv2d(2, 2, 3, dilation=2))
    rf = receptive_field(net, "3")
    assert (rf.size, rf.stride, rf.offset) == ((25, 25), (4, 4), (-1, -1))
    # rectangular kernels give rectangular fields
    rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, (3, 5), padding=(1, 0))), "0")
    assert (rf.size, rf.stride, rf.offset) == ((3, 5), (1, 1), (-1, 0))
    # fmnist-resnet: stem 3x3, then a block of two 3x3 convs beside an identity shortcut -> 7x7
    resnet = load_model("fmnist-resnet", weights="random")
    rf = receptive_field(resnet, "layer1")
    assert (rf.size, rf.stride, rf.offset) == ((7, 7), (1, 1), (-3, -3))
