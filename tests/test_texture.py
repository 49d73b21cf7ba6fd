"""Gram-matrix texture and style objectives (dgn_am.texture), against losses worked out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgn_am.layers import run
from dgn_am.models.spec import InputSpec
from dgn_am.texture import (ContentMatch, GramMatch, feature_reading, gram, layer_style_loss, part_losses, pixel_start,
                            run_texture, style_losses, style_objective, style_parts, texture_objective)


class OneByOne(nn.Module):
    """(B, 1, 2, 2) -> `conv`: a 1x1 convolution to 2 channels with weights w, no bias, then a ReLU when relu."""

    def __init__(self, w=(1.0, 2.0), relu: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(w).view(2, 1, 1, 1))
        self.conv = nn.Sequential(conv, nn.ReLU()) if relu else conv
        self.fc = nn.Linear(8, 2)
        self.input_spec = InputSpec((2, 2), 1, (0.0,), (1.0,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


X = torch.tensor([[[[1.0, 2.0], [3.0, 0.0]]]])  # features (1, 2, 4 positions): [1, 2, 3, 0] and [2, 4, 6, 0]
Y = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])  # features [0, 1, 0, 0] and [0, 2, 0, 0]


@torch.no_grad()  # values only: no graph to read a number from
def test_gram_and_style_loss_by_hand():
    net = OneByOne()
    a = run(net, X, ["conv"])["conv"].detach()
    assert torch.equal(gram(a)[0], torch.tensor([[14.0, 28.0], [28.0, 56.0]]))
    # E = sum (G - A)^2 / (4 N^2 M^2), N = 2 channels, M = 4 positions: 4 N^2 M^2 = 256
    assert float(layer_style_loss(a, torch.zeros(2, 2))) == pytest.approx(4900 / 256)
    objective = texture_objective(net, Y, ["conv"])  # A = [[1, 2], [2, 4]]: G - A = [[13, 26], [26, 52]]
    assert float(objective(run(net, X, ["conv"]))) == pytest.approx(-4225 / 256)
    assert float(objective(run(net, Y, ["conv"]))) == 0.0


@torch.no_grad()  # values only: no graph to read a number from
def test_gram_reads_the_layer_after_its_relu():
    net = OneByOne(w=(1.0, -1.0), relu=True)
    assert feature_reading(net, "conv") == "conv+relu"
    a = run(net, X, ["conv+relu"])["conv+relu"]  # channel 1 is -X, zeroed by the ReLU
    assert torch.equal(gram(a)[0], torch.tensor([[14.0, 0.0], [0.0, 0.0]]))
    assert float(texture_objective(net, Y, ["conv"])(run(net, X, ["conv+relu"]))) == pytest.approx(-(13 ** 2) / 256)


@torch.no_grad()  # values only: no graph to read a number from
def test_layer_weights_and_content_loss_by_hand():
    net = OneByOne()
    acts = run(net, X, ["conv"])
    assert float(GramMatch({"conv": torch.zeros(2, 2)}, {"conv": 0.5})(acts)) == pytest.approx(-0.5 * 4900 / 256)
    content = ContentMatch("conv", run(net, Y, ["conv"])["conv"][0])  # F - P: [1, 1, 3, 0] and [2, 2, 6, 0]
    assert float(content(acts)) == pytest.approx(-0.5 * (1 + 1 + 9 + 4 + 4 + 36))
    both = style_objective(net, Y, Y, "conv", ["conv"], content_weight=0.1, style_weight=2.0)
    assert float(both(acts)) == pytest.approx(-0.1 * 0.5 * 55 - 2.0 * 4225 / 256)


def test_non_spatial_layer_and_missing_layers_are_rejected():
    net = OneByOne()
    with pytest.raises(ValueError, match="spatial layer"):
        texture_objective(net, X, ["fc"])
    with pytest.raises(ValueError, match="at least one layer"):
        texture_objective(net, X, [])
    with pytest.raises(ValueError, match="one weight per layer"):
        texture_objective(net, X, ["conv"], weights=[1.0, 2.0])


def test_texture_synthesis_lowers_the_loss_and_repeats_by_seed():
    torch.manual_seed(3)
    net = OneByOne()
    example = torch.rand(1, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    objective = texture_objective(net, example, ["conv"])
    a = run_texture(net, objective, pixel_start(net), [0, 1], steps=100, lr=0.02)
    b = run_texture(net, objective, pixel_start(net), [0, 1], steps=100, lr=0.02)
    assert torch.equal(a.images, b.images)
    start = style_losses(net, pixel_start(net).to_image(pixel_start(net).init([0, 1], X.device, X.dtype)), objective)
    end = style_losses(net, a.images, objective)
    assert all(e < s / 10 for e, s in zip(end["total"], start["total"]))
    assert end["total"] == pytest.approx(end["conv"])  # one layer, weight 1


def test_style_parts_and_their_losses_by_hand():
    net = OneByOne()
    content, style = style_parts(net, Y, Y, "conv", ["conv"])
    assert part_losses(net, X, [content, style]) == [[pytest.approx(0.5 * 55)], [pytest.approx(4225 / 256)]]
