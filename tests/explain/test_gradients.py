"""Saliency, gradient x input, guided backprop and deconvnet: autograd equivalence, hand-derived values on tiny
networks, and ReLUs that are in-place, shared or functional."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgn_am.explain import deconvnet, gradient, gradient_x_input, guided_backprop, relu_rule, saliency
from dgn_am.layers import parse_units, read_units, run


def two_layer_net() -> nn.Sequential:
    """x (1, 1, 1, 3) -> flatten -> W1 x + b1 (3 hidden) -> ReLU -> W2 h + b2 (1 output), layers '0'..'3'."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.5, 1.0, -1.0], [1.0, 0.0, 1.0]]))
        net[1].bias.copy_(torch.tensor([0.0, -2.0, 0.0]))
        net[3].weight.copy_(torch.tensor([[2.0, 3.0, -1.0]]))
        net[3].bias.copy_(torch.tensor([0.5]))
    return net


X3 = torch.tensor([1.0, 2.0, 1.0]).view(1, 1, 1, 3)
# Hand derivation. Hidden pre-activations W1 x + b1 = [1, -0.5, 2]: positive, negative, positive.
# The signal arriving at the ReLU from the output is W2 = [2, 3, -1].
#   gradient:  [2, 3, -1] * [1, 0, 1]        = [2, 0, -1] -> W1^T [2, 0, -1] = 2 r1 - r3       = [1, -2, 3]
#   guided:    max([2, 3, -1], 0) * [1, 0, 1] = [2, 0, 0]  -> 2 r1                              = [2, -2, 4]
#   deconvnet: max([2, 3, -1], 0)            = [2, 3, 0]  -> 2 r1 + 3 r2 = [2, -2, 4] + [1.5, 3, -3] = [3.5, 1, 1]
#   gradient x input: [1, 2, 1] * [1, -2, 3] = [1, -4, 3]


def test_hand_derived_values_on_a_two_layer_relu_network():
    net = two_layer_net()
    assert torch.allclose(gradient(net, X3, "3:0").flatten(), torch.tensor([1.0, -2.0, 3.0]))
    assert torch.allclose(gradient_x_input(net, X3, "3:0").flatten(), torch.tensor([1.0, -4.0, 3.0]))
    assert torch.allclose(guided_backprop(net, X3, "3:0").flatten(), torch.tensor([2.0, -2.0, 4.0]))
    assert torch.allclose(deconvnet(net, X3, "3:0").flatten(), torch.tensor([3.5, 1.0, 1.0]))
    assert torch.allclose(saliency(net, X3, "3:0").flatten(), torch.tensor([1.0, 2.0, 3.0]))


def test_deconvnet_unpools_through_switches_and_uses_transposed_filters():
    # conv 2x2 (no bias) on a 3x3 image -> [[1, 4], [-1, 2]] -> ReLU -> [[1, 4], [0, 2]] -> max pool: switch (0, 1)
    net = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False), nn.ReLU(), nn.MaxPool2d(2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0]]).view(1, 1, 2, 2))
    x = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.0]]).view(1, 1, 3, 3)
    assert run(net, x, ["0"])["0"].flatten().tolist() == [1.0, 4.0, -1.0, 2.0]
    # the signal 1 goes to the switch (0, 1), then the filter is pasted there: the transposed convolution
    expected = torch.tensor([[0.0, 1.0, -1.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    for method in (deconvnet, guided_backprop, gradient):
        assert torch.equal(method(net, x, "2:0@0,0")[0, 0], expected)


def test_saliency_equals_the_autograd_gradient(caffenet, images):
    for address in ("fc8:3", "conv5:12", "conv3:4@2,5", "conv2:1@mean"):
        x = images.clone().requires_grad_(True)
        value = read_units(run(caffenet, x, [address.split(":")[0]])[address.split(":")[0]],
                           parse_units(address) * 2)
        (g,) = torch.autograd.grad(value.sum(), x)
        assert torch.allclose(saliency(caffenet, images, address), g.abs().amax(1))
        assert torch.allclose(gradient_x_input(caffenet, images, address), images * g)


def test_each_image_gets_the_gradient_of_its_own_unit(caffenet, images):
    units = parse_units("fc8:2") + parse_units("fc8:7")
    both = gradient(caffenet, images, units)
    assert torch.allclose(both[0], gradient(caffenet, images[:1], "fc8:2")[0], atol=1e-7)
    assert torch.allclose(both[1], gradient(caffenet, images[1:], "fc8:7")[0], atol=1e-7)


class SharedInplace(nn.Module):
    """One in-place ReLU module used three times, and a functional ReLU."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 5)
        self.head = nn.Linear(5, 3)
        self.shared = shared
        self.relu = nn.ReLU(inplace=True)
        self.relus = nn.ModuleList([nn.ReLU() for _ in range(3)])

    def act(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return self.relu(x) if self.shared else self.relus[i](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv1(x), 0))
        x = self.act(self.conv2(x), 1)
        x = self.act(self.fc(x.flatten(1)), 2)
        return self.head(x)


def reference(net: SharedInplace, x: torch.Tensor, cls: int, rule: str) -> torch.Tensor:
    """An independent implementation on separate, out-of-place ReLU modules: full backward hooks."""
    def hook(module, grad_input, grad_output):
        return (grad_input[0].clamp(min=0),) if rule == "guided" else (grad_output[0].clamp(min=0),)

    handles = [r.register_full_backward_hook(hook) for r in net.relus]
    try:
        x = x.clone().requires_grad_(True)
        net(x)[:, cls].sum().backward()
    finally:
        for h in handles:
            h.remove()
    return x.grad


def test_inplace_and_shared_relus_give_the_same_maps_as_separate_ones():
    torch.manual_seed(6)  # a seed where every map is non-zero
    separate = SharedInplace(shared=False).eval()
    shared = SharedInplace(shared=True).eval()
    shared.load_state_dict(separate.state_dict())
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    for rule, method in (("guided", guided_backprop), ("deconvnet", deconvnet)):
        expected = reference(separate, x, 1, rule)
        assert expected.abs().sum() > 0
        assert torch.allclose(method(separate, x, "head:1"), expected, atol=1e-6)
        assert torch.allclose(method(shared, x, "head:1"), expected, atol=1e-6)
    # the forward pass under the rule is unchanged, in-place ReLUs included
    with relu_rule("guided"):
        assert torch.allclose(shared(x.requires_grad_(True)), separate(x))


class FunctionalReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def test_functional_relu_gets_the_rule():
    torch.manual_seed(5)
    net = FunctionalReLU().eval()
    x = torch.rand(1, 1, 2, 2, generator=torch.Generator().manual_seed(6))
    h = net.fc1(x.flatten(1))[0]
    signal = net.fc2.weight[0]
    guided = ((signal.clamp(min=0) * (h > 0)) @ net.fc1.weight).view(1, 1, 2, 2)
    deconv = (signal.clamp(min=0) @ net.fc1.weight).view(1, 1, 2, 2)
    assert torch.allclose(guided_backprop(net, x, "fc2:0"), guided, atol=1e-6)
    assert torch.allclose(deconvnet(net, x, "fc2:0"), deconv, atol=1e-6)


def test_the_rule_is_removed_after_the_block_even_on_error(caffenet, images):
    plain = gradient(caffenet, images, "fc8:1")
    with pytest.raises(RuntimeError):
        with relu_rule("deconvnet"):
            raise RuntimeError("boom")
    assert torch.equal(gradient(caffenet, images, "fc8:1"), plain)
    assert not torch.allclose(deconvnet(caffenet, images, "fc8:1"), plain)


def test_other_activations_warn_and_bad_requests_are_clear_errors(caffenet, images):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 1)).eval()
    with pytest.warns(UserWarning, match="gelu"):
        guided_backprop(net, torch.rand(1, 1, 2, 2), "3:0")
    with pytest.raises(ValueError, match="one unit at a time"):
        saliency(caffenet, images, "fc8:0-3")
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        saliency(caffenet, images, "fc9:0")
    with pytest.raises(ValueError, match="out of range"):
        saliency(caffenet, images, "fc8:10")
    with pytest.raises(ValueError, match="model.eval"):
        saliency(nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4)), torch.rand(2, 1, 2, 2), "1:0")
    with pytest.raises(ValueError, match="unknown ReLU rule"):
        with relu_rule("smooth"):
            pass
