"""Units are read the reference's way: before the ReLU a layer ends in (Caffe's in-place ReLU), NAME+relu after."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgn_am.layers import check_units, parse_units, relu_readings, run
from dgn_am.models.loading import load_model
from dgn_am.models.spec import InputSpec


class _Block(nn.Module):
    """A residual block whose output is its (shared, in-place) ReLU's output, as torchvision's BasicBlock."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.lin(self.relu(x)) + x)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Sequential(nn.Linear(4, 3), nn.ReLU())  # a layer that ends in a ReLU
        self.block = _Block()
        self.fc2 = nn.Linear(3, 3)  # followed by a sibling in-place ReLU, as torchvision's conv layers
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Linear(3, 2)
        self.input_spec = InputSpec(size=(2, 2), channels=1, mean=(0.0,), std=(1.0,))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.linspace(-1, 1, p.numel()).view_as(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc2(self.block(self.fc1(x.flatten(1))))))


@pytest.fixture()
def net() -> _Net:
    return _Net().eval()


def test_reading_is_before_the_relu_and_plus_relu_after(net):
    x = torch.tensor([[[[0.3, -0.7], [0.9, 0.1]]]])
    h = x.flatten(1)
    pre1 = net.fc1[0](h)
    assert (pre1 < 0).any()  # the known answer has a unit that the ReLU zeroes
    post1 = pre1.clamp(min=0)
    z = net.block.lin(post1) + post1  # the block's input is post1 >= 0, so its first ReLU is the identity
    pre2 = net.fc2(z.clamp(min=0))
    acts = run(net, x, ["fc1", "fc1+relu", "block", "block+relu", "fc2", "act", "out"])
    torch.testing.assert_close(acts["fc1"], pre1)
    torch.testing.assert_close(acts["fc1+relu"], post1)
    torch.testing.assert_close(acts["block"], z)  # the input of the block's LAST ReLU call
    torch.testing.assert_close(acts["block+relu"], z.clamp(min=0))
    torch.testing.assert_close(acts["fc2"], pre2)  # not changed by the in-place ReLU that runs after it
    torch.testing.assert_close(acts["act"], pre2.clamp(min=0))  # naming a ReLU reads its output
    assert acts.pre_relu == {"fc1": "fc1.1", "block": "block.relu"}
    raw = run(net, x, ["fc1", "block"], raw=True)  # features: module outputs as they are
    torch.testing.assert_close(raw["fc1"], post1)
    torch.testing.assert_close(raw["block"], z.clamp(min=0))


def test_gradient_flows_through_a_unit_that_is_zero_after_its_relu(net):
    x = torch.tensor([[[[0.3, -0.7], [0.9, 0.1]]]], requires_grad=True)
    k = int(net.fc1[0](x.flatten(1)).argmin())
    pre = run(net, x, ["fc1"])["fc1"][0, k]
    (g,) = torch.autograd.grad(pre, x)
    assert pre < 0 and g.abs().sum() > 0
    post = run(net, x, ["fc1+relu"])["fc1+relu"][0, k]
    (g0,) = torch.autograd.grad(post, x)
    assert post == 0 and g0.abs().sum() == 0


def test_relu_readings_and_plus_relu_checks(net):
    assert relu_readings(net) == {"fc1": "fc1.1", "block": "block.relu"}
    check_units(net, parse_units("fc1+relu:0-2") + parse_units("block+relu:1"))
    with pytest.raises(ValueError, match="does not end in an nn.ReLU.*drop '\\+relu'"):
        check_units(net, parse_units("out+relu:0"))
    with pytest.raises(ValueError, match="does not end in an nn.ReLU"):
        run(net, torch.zeros(1, 1, 2, 2), ["fc2+relu"])


def test_shipped_models_read_conv_and_fc_before_relu():
    caffenet = load_model("fmnist-caffenet")
    readings = relu_readings(caffenet)
    assert {k: readings[k] for k in ("conv5", "fc6", "fc7")} == {"conv5": "conv5.2", "fc6": "fc6.1", "fc7": "fc7.1"}
    assert "fc8" not in readings and "pool5" not in readings
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = run(caffenet, x, ["conv5", "conv5+relu", "fc6"])
    assert a["conv5"].min() < 0 and a["fc6"].min() < 0  # pre-activations take both signs
    torch.testing.assert_close(a["conv5"].clamp(min=0), a["conv5+relu"])
    resnet = relu_readings(load_model("fmnist-resnet"))
    assert resnet == {"stem": "stem.2", "layer1": "layer1.relu2", "layer2": "layer2.relu2", "layer3": "layer3.relu2"}


def test_all_names_every_channel_of_a_layer(net):
    from dgn_am.layers import units_of

    caffenet = load_model("fmnist-caffenet")
    units = units_of(caffenet, ["conv5:all@mean", "fc8:2", "fc6+relu:all"])
    assert [str(u) for u in units[:2]] == ["conv5:0@mean", "conv5:1@mean"] and str(units[63]) == "conv5:63@mean"
    assert str(units[64]) == "fc8:2" and len(units) == 64 + 1 + 512
    assert units[65].layer == "fc6+relu" and units[-1].index == 511
    assert [u.index for u in units_of(net, ["block:all"])] == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        units_of(caffenet, ["fc9:all"])


def test_raw_reads_module_outputs_whatever_the_name(net):
    x = torch.tensor([[[[0.3, -0.7], [0.9, 0.1]]]])
    raw = run(net, x, ["fc1+relu", "out+relu"], raw=True)
    torch.testing.assert_close(raw["fc1+relu"], net.fc1(x.flatten(1)))
    assert raw["out+relu"].shape == (1, 2)
