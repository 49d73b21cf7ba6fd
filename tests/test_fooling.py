"""Fooling images (dgn_am.fooling) and the CPPN encoding (dgn_am.cppn), on tiny networks with answers worked out by
hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dgn_am.cppn import CPPN
from dgn_am.fooling import (class_probabilities, fool_evolution, fool_gradient, fooling_table, output_layer,
                            summarize)
from dgn_am.models.spec import InputSpec


class PixelLogits(nn.Module):
    """(B, 1, 2, 2) -> logits (B, 3): scale * (pixel 0, pixel 1, pixel 2): class c is pixel c, made sharp."""

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(scale * torch.eye(3, 4))
        self.input_spec = InputSpec((2, 2), 1, (0.0,), (1.0,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(x))


def softmax3(a: float, b: float, c: float) -> list[float]:
    z = [math.exp(a), math.exp(b), math.exp(c)]
    return [v / sum(z) for v in z]


def test_cppn_pixels_by_hand():
    cppn = CPPN((1, 3, 5), hidden=4)  # genome: W1 (4, 4) | W2 (4, 4) | b2 (4) | W3 (4, 1) | b3 (1)
    assert cppn.genome_size == 16 + 16 + 4 + 4 + 1
    w1 = torch.zeros(4, 4)
    w1[0, 0] = 1.0  # hidden-1 unit 0 (sin) reads x only
    w3 = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the output reads hidden-2 unit 0 (sin) only
    genome = torch.cat([w1.flatten(), torch.eye(4).flatten(), torch.zeros(4), w3, torch.zeros(1)])
    image = cppn.images(genome.view(1, -1))[0, 0]  # (3, 5)
    for col, x in enumerate([-1.0, -0.5, 0.0, 0.5, 1.0]):
        expected = 1 / (1 + math.exp(-math.sin(math.sin(x))))  # sigmoid(sin(sin(x))), the same on every row
        assert image[:, col].tolist() == pytest.approx([expected] * 3, abs=1e-6)
    assert torch.equal(cppn.images(torch.zeros(2, cppn.genome_size)), torch.full((2, 1, 3, 5), 0.5))
    with pytest.raises(ValueError, match="genomes must be"):
        cppn.images(torch.zeros(1, 3))


def test_fooling_table_by_hand():
    net = PixelLogits()
    images = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.2, 0.0]]).view(2, 1, 2, 2)
    rows = fooling_table(net, PixelLogits(scale=1.0), images, [0, 2], threshold=0.996)
    p0 = softmax3(10, 0, 0)[0]  # 0.99991
    assert rows[0] == {"class": 0, "target_conf": pytest.approx(p0), "fooled": True, "judge_class": 0,
                       "judge_agrees": True, "judge_conf": pytest.approx(softmax3(1, 0, 0)[0])}
    assert rows[1]["target_conf"] == pytest.approx(softmax3(0, 0, 2)[2]) and not rows[1]["fooled"]
    assert rows[1]["judge_class"] == 2 and rows[1]["judge_conf"] == pytest.approx(softmax3(0, 0, 0.2)[2])
    s = summarize(rows)
    assert s["fooled"] == 0.5 and s["n"] == 2 and s["judge_agrees"] == 1.0
    assert s["target_conf"] == pytest.approx((p0 + softmax3(0, 0, 2)[2]) / 2)
    assert output_layer(net) == "fc"


def test_gradient_fooling_reaches_the_threshold_and_repeats():
    net = PixelLogits()
    a = fool_gradient(net, [0, 1, 2], [0, 1], steps=60, lr=0.05)
    b = fool_gradient(net, [0, 1, 2], [0, 1], steps=60, lr=0.05)
    assert torch.equal(a.images, b.images)
    assert a.classes == [0, 0, 1, 1, 2, 2] and a.seeds == [0, 1, 0, 1, 0, 1]
    probs = class_probabilities(net, a.images)
    assert a.confidence == pytest.approx([float(probs[i, c]) for i, c in enumerate(a.classes)])
    assert min(a.confidence) >= 0.996  # the best a pixel in [0, 1] can do is 1 / (1 + 2 e^-10) = 0.99991
    assert a.images.min() >= 0 and a.images.max() <= 1


@pytest.mark.parametrize("encoding", ["cppn", "direct"])
def test_evolution_stops_at_the_threshold_and_repeats(encoding):
    net = PixelLogits()
    a = fool_evolution(net, [1, 2], [3], encoding, generations=100, popsize=8)
    b = fool_evolution(net, [1, 2], [3], encoding, generations=100, popsize=8)
    assert torch.equal(a.images, b.images) and a.cost == b.cost
    assert min(a.confidence) >= 0.996
    assert all(n < 100 * 8 for n in a.cost)  # stopped at the threshold, before the last generation
    probs = class_probabilities(net, a.images)
    assert a.confidence == pytest.approx([float(probs[0, 1]), float(probs[1, 2])])


def test_bad_classes_and_encodings_are_rejected():
    net = PixelLogits()
    with pytest.raises(ValueError, match="outside the model's 3 outputs"):
        fool_gradient(net, [3], [0], steps=1)
    with pytest.raises(ValueError, match="unknown encoding"):
        fool_evolution(net, [0], [0], "genes", generations=1)
