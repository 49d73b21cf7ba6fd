"""Fast style transfer: the network's shape and range, its loss equal to Gatys' objective (dgn_am.texture) plus TV,
training lowers it, and files round-trip."""

from __future__ import annotations

import pytest
import torch

from dgn_am.fast_style import (Stylizer, StylizerConfig, TransferLoss, TransferLossConfig, load_stylizer,
                               save_stylizer, stylize)
from dgn_am.layers import run
from dgn_am.models.loading import write_state_dict
from dgn_am.penalties import TotalVariation
from dgn_am.texture import style_objective
from tests.helpers import random_caffenet


def test_stylizer_keeps_the_size_and_range():
    torch.manual_seed(0)
    net = Stylizer(StylizerConfig(channels=3, width=4, blocks=1))
    with torch.no_grad():
        y = net(torch.rand(2, 3, 28, 20))
    assert y.shape == (2, 3, 28, 20) and float(y.min()) > 0 and float(y.max()) < 1
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 3, 30, 28))
    with pytest.raises(ValueError, match="channels 1 or 3"):
        StylizerConfig(channels=2)


def test_an_untrained_stylizer_returns_the_content():
    """The last convolution starts at zero, so y = sigmoid(logit(clamped x)): x within the clamp's 1e-3."""
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # the ends, where the clamp acts
    with torch.no_grad():
        y = Stylizer(StylizerConfig(width=4, blocks=1))(x)
    assert float((y - x).abs().max()) <= 1e-3 + 1e-6


def test_the_loss_is_gatys_objective_plus_total_variation():
    model = random_caffenet()
    gen = torch.Generator().manual_seed(0)
    content, style, out = (torch.rand(1, 1, 28, 28, generator=gen) for _ in range(3))
    config = TransferLossConfig("conv4", ("conv1", "conv2"), content_weight=0.3, style_weight=2.0, tv_weight=0.01)
    got = TransferLoss(model, style, config)(out, content)
    gatys = style_objective(model, content, style, "conv4", ["conv1", "conv2"], 0.3, 2.0)
    want = -gatys(run(model, out, list(gatys.layers))) + 0.01 * TotalVariation()(out, out)
    torch.testing.assert_close(got["total"], want)
    torch.testing.assert_close(got["total"], 0.3 * got["content"] + 2.0 * got["style"] + 0.01 * got["tv"])
    # a batch: each item's content target is its own content image
    both = TransferLoss(model, style, config)(torch.cat([out, content]), torch.cat([content, content]))
    torch.testing.assert_close(both["total"][:1], got["total"])
    assert float(both["content"][1]) == 0.0  # the content image is its own content target


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    model = random_caffenet()
    contents = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    loss = TransferLoss(model, torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(2)))
    net = Stylizer(StylizerConfig(width=4, blocks=1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with torch.no_grad():
        start = float(loss(net(contents), contents)["total"].mean())
    for _ in range(40):
        opt.zero_grad()
        loss(net(contents), contents)["total"].mean().backward()
        opt.step()
    with torch.no_grad():
        assert float(loss(net(contents), contents)["total"].mean()) < 0.9 * start  # measured: 0.86x


def test_a_stylizer_file_round_trips(tmp_path):
    torch.manual_seed(0)
    net = Stylizer(StylizerConfig(width=4, blocks=2))
    save_stylizer(tmp_path / "s.safetensors", net, {"style": "x.png", "steps": 7})
    again, meta = load_stylizer(tmp_path / "s.safetensors")
    assert meta["config"] == {"channels": 1, "width": 4, "blocks": 2}
    assert meta["steps"] == 7 and meta["style"] == "x.png"
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        want = net.eval()(x)
    assert torch.equal(stylize(again, x), want)  # the same weights and the same batch: the same bits
    torch.testing.assert_close(stylize(again, x, batch=2), want)  # instance norm: items do not mix
    write_state_dict(tmp_path / "other.safetensors", {"w": torch.zeros(1)}, {"arch": "x"})
    with pytest.raises(ValueError, match="not a stylizer"):
        load_stylizer(tmp_path / "other.safetensors")
