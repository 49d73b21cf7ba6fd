"""Excitation backprop: hand-computed marginal winning probabilities, the contrastive variant, batch-norm folding,
pooling rules, and the invariants (non-negative, summing to 1) at every layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgn_am.explain import excitation_backprop, excitation_maps
from dgn_am.models import load_model


def mlp() -> nn.Sequential:
    """x (1, 1, 1, 3) -> flatten -> W1 (2 x 3, no bias) -> ReLU -> W2 (2 x 2): layers '0'..'3'."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.5, 1.0, -1.0]]))
        net[3].weight.copy_(torch.tensor([[2.0, -1.0], [1.0, 1.0]]))
        net[3].bias.copy_(torch.tensor([-5.0, 3.0]))  # biases are ignored by the rule
    return net


X = torch.tensor([1.0, 2.0, 1.0]).view(1, 1, 1, 3)
# Hand computation. Hidden a = relu(W1 x) = relu([1 - 2 + 2, 0.5 + 2 - 1]) = [1, 1.5].  W1+ = [[1, 0, 2], [.5, 1, 0]].
# Output 0, W2+ row [2, 0]: z = 2 -> P(hidden) = a * [2, 0] / 2 = [1, 0].
#   Input: z = W1+ x = [3, 2.5]; P / z = [1/3, 0]; W1+^T [1/3, 0] = [1/3, 0, 2/3]; times x -> [1/3, 0, 2/3].
# Output 1, W2+ row [1, 1]: z = 2.5 -> P(hidden) = [1, 1.5] / 2.5 = [0.4, 0.6].
#   Input: P / z = [0.4 / 3, 0.6 / 2.5]; W1+^T that = [0.13333 + 0.12, 0.24, 0.26667];
#   times x -> [0.25333, 0.48, 0.26667].
# Contrastive, output 0: the dual has weights -[2, -1], positive part [0, 1]: P_dual(hidden) = [0, 1].
#   Difference [1, -1] / z = [1/3, -0.4]; W1+^T -> [0.13333, -0.4, 0.66667]; times x -> [0.13333, -0.8, 0.66667];
#   clipped at 0 and normalized -> [1/6, 0, 5/6].


def test_hand_computed_probabilities_at_every_layer():
    maps = excitation_maps(mlp(), X, "3:0", ["input", "2"])
    assert torch.allclose(maps["2"], torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(maps["input"].flatten(), torch.tensor([1 / 3, 0.0, 2 / 3]))
    maps = excitation_maps(mlp(), X, "3:1", ["input", "2", "1"])
    assert torch.allclose(maps["2"], torch.tensor([[0.4, 0.6]]))
    assert torch.allclose(maps["1"], maps["2"])  # a ReLU passes probabilities unchanged
    assert torch.allclose(maps["input"].flatten(), torch.tensor([0.13333 + 0.12, 0.48, 0.26667]), atol=1e-5)


def test_hand_computed_contrastive_map():
    p = excitation_backprop(mlp(), X, "3:0", contrastive=True)
    assert torch.allclose(p.flatten(), torch.tensor([1 / 6, 0.0, 5 / 6]), atol=1e-6)


def test_max_pool_passes_to_the_switch_and_average_pool_in_proportion():
    x = torch.tensor([[1.0, 3.0], [0.0, 4.0]]).view(1, 1, 2, 2)
    maxnet = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 1)).eval()
    avgnet = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(1, 1)).eval()
    with torch.no_grad():
        maxnet[2].weight.fill_(1.0)
        avgnet[2].weight.fill_(1.0)
    assert torch.equal(excitation_backprop(maxnet, x, "2:0")[0, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(excitation_backprop(avgnet, x, "2:0")[0, 0], x[0, 0] / 8)


def test_batch_norm_is_folded_into_the_layer_before_it():
    torch.manual_seed(0)
    bn_net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                           nn.Linear(3 * 4 * 4, 2)).eval()
    with torch.no_grad():
        bn_net[1].weight.copy_(torch.tensor([1.5, -0.7, 0.3]))  # a negative scale flips which weights excite
        bn_net[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.0]))
        bn_net[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
    scale = bn_net[1].weight / torch.sqrt(bn_net[1].running_var + bn_net[1].eps)
    folded = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    with torch.no_grad():
        folded[0].weight.copy_(bn_net[0].weight * scale.view(-1, 1, 1, 1))
        folded[0].bias.copy_((bn_net[0].bias - bn_net[1].running_mean) * scale + bn_net[1].bias)
        folded[3].load_state_dict(bn_net[4].state_dict())
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(bn_net(x), folded(x), atol=1e-6)
    for contrastive in (False, True):
        a = excitation_backprop(bn_net, x, "4:1", contrastive=contrastive)
        b = excitation_backprop(folded, x, "3:1", contrastive=contrastive)
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("contrastive", [False, True])
def test_maps_are_non_negative_and_sum_to_one_at_every_layer(caffenet, images, contrastive):
    layers = ["input", "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7"]
    maps = excitation_maps(caffenet, images, "fc8:3", layers, contrastive=contrastive)
    for name in layers:
        p = maps[name]
        assert p.min() >= 0, name
        assert torch.allclose(p.flatten(1).sum(1), torch.ones(2), atol=1e-5), name
    assert maps["input"].shape == images.shape and maps["conv3"].shape == (2, 96, 7, 7)
    stop = excitation_backprop(caffenet, images, "fc8:3", stop_layer="conv3", contrastive=contrastive)
    assert torch.allclose(stop, maps["conv3"])


def test_conv_units_start_where_the_address_says(caffenet, images):
    p = excitation_backprop(caffenet, images, "conv5:7@2,3", stop_layer="conv5")
    assert p[:, 7, 2, 3].tolist() == [1.0, 1.0] and p.sum() == 2
    p = excitation_backprop(caffenet, images, "conv3:4", stop_layer="pool2")
    assert torch.allclose(p.flatten(1).sum(1), torch.ones(2))


def test_unsupported_networks_and_inputs_are_clear_errors(caffenet, images):
    resnet = load_model("fmnist-resnet", weights="random")
    with pytest.raises(ValueError, match="not a chain"):
        excitation_backprop(resnet, images, "fc:0")
    with pytest.raises(ValueError, match="non-negative"):
        excitation_backprop(mlp(), -X, "3:0")
    with pytest.raises(ValueError, match="comes after"):
        excitation_backprop(caffenet, images, "conv3:0", stop_layer="conv5")
    with pytest.raises(ValueError, match="not supported"):
        excitation_backprop(nn.Sequential(nn.Flatten(), nn.Linear(3, 2), nn.GELU(), nn.Linear(2, 1)), X, "3:0")
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2), nn.ReLU(), nn.MaxPool1d(1), nn.Linear(2, 1)).eval()
    assert excitation_backprop(net, X, "4:0", stop_layer="3").sum() == 1  # fine above the unsupported layer
