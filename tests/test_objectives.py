"""dgn_am.objectives on hand-made activations: every value below is computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dgn_am.layers import Unit
from dgn_am.objectives import Diversity, Direction, LayerObjective, LogProb, Objective, UnitObjective


@pytest.fixture()
def acts():
    fc8 = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])  # (B=3, C=3)
    conv3 = torch.zeros(3, 2, 3, 3)  # (B, C, H, W)
    conv3[:, 0] = torch.arange(9, dtype=torch.float32).view(3, 3)  # channel 0: mean 4, centre 4, (0, 2) = 2
    conv3[:, 1] = 10.0
    conv3[1, 0, 1, 1] = 40.0  # item 1's centre: channel-0 mean becomes (36 - 4 + 40) / 9 = 8
    return {"fc8": fc8, "conv3": conv3}


def test_unit_objective_one_layer(acts):
    obj = UnitObjective([Unit("fc8", 2), Unit("fc8", 0), Unit("fc8", 1)])
    assert obj.layers == ("fc8",)
    assert obj(acts).tolist() == [2.0, 3.0, 7.0]


def test_unit_objective_mixed_layers(acts):
    obj = UnitObjective([Unit("fc8", 1), Unit("conv3", 0, "mean"), Unit("conv3", 0, (0, 2))])
    assert obj.layers == ("fc8", "conv3")
    assert obj(acts).tolist() == [1.0, 8.0, 2.0]
    obj = UnitObjective([Unit("conv3", 0, "centre"), Unit("fc8", 2), Unit("conv3", 0, "centre")])
    assert obj.layers == ("conv3", "fc8")
    assert obj(acts).tolist() == [4.0, 5.0, 4.0]


def test_unit_objective_gradient_reaches_only_the_targets(acts):
    fc8 = acts["fc8"].clone().requires_grad_(True)
    conv3 = acts["conv3"].clone().requires_grad_(True)
    UnitObjective([Unit("fc8", 1), Unit("conv3", 1, "mean"), Unit("fc8", 0)])({"fc8": fc8, "conv3": conv3}).sum().backward()
    expected_fc8 = torch.zeros(3, 3)
    expected_fc8[0, 1] = expected_fc8[2, 0] = 1.0
    expected_conv3 = torch.zeros(3, 2, 3, 3)
    expected_conv3[1, 1] = 1 / 9
    assert torch.allclose(fc8.grad, expected_fc8) and torch.allclose(conv3.grad, expected_conv3)


def test_log_prob():
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, 5.0]])  # softmax [1/4, 3/4] and [1/2, 1/2]
    out = LogProb("fc8", [1, 0])({"fc8": logits})
    assert torch.allclose(out, torch.tensor([math.log(0.75), math.log(0.5)]))
    assert LogProb("fc8", [0, 0])({"fc8": logits})[0].item() == pytest.approx(math.log(0.25))


def test_log_prob_is_shift_invariant_unlike_the_logit():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    a = LogProb("fc8", [2])({"fc8": logits})
    b = LogProb("fc8", [2])({"fc8": logits + 100.0})
    assert torch.allclose(a, b)
    assert not torch.allclose(UnitObjective([Unit("fc8", 2)])({"fc8": logits}),
                              UnitObjective([Unit("fc8", 2)])({"fc8": logits + 100.0}))


def test_layer_objective():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, -2.0, 0.0]])
    assert LayerObjective("fc7")({"fc7": a}).tolist() == pytest.approx([14 / 3, 4 / 3])
    conv = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]]]])  # (1, 1, 2, 2)
    assert LayerObjective("c")({"c": conv}).tolist() == pytest.approx([6 / 4])


def test_direction():
    conv = torch.tensor([[[[1.0, 3.0]], [[-2.0, 0.0]]],
                         [[[0.0, 0.0]], [[4.0, 4.0]]]])  # (2, 2, 1, 2): channel means [2, -1] and [0, 4]
    assert Direction("c", torch.tensor([1.0, 2.0]))({"c": conv}).tolist() == [0.0, 8.0]
    per_item = torch.tensor([[1.0, 0.0], [0.0, -0.5]])  # (B, C): one direction per item
    assert Direction("c", per_item)({"c": conv}).tolist() == [2.0, -2.0]
    fc = torch.tensor([[1.0, 2.0, 3.0]])
    assert Direction("fc", torch.tensor([0.0, 1.0, -1.0]))({"fc": fc}).tolist() == [-1.0]


def test_diversity_values():
    # (B, C) activations: Gram matrices a a^T. Items 0, 1 in group 0; item 2 alone in group 1.
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    # gram0 = [1, 0, 0, 0], gram1 = [1, 1, 1, 1]: cosine 1/2
    out = Diversity("fc", [0, 0, 1])({"fc": a})
    assert out.tolist() == pytest.approx([-0.5, -0.5, 0.0])
    # all three together: sim(1, 2) = 1 (Gram is scale-invariant after normalizing), sim(0, 2) = 1/2
    out = Diversity("fc", [0, 0, 0])({"fc": a})
    assert out.tolist() == pytest.approx([-(0.5 + 0.5) / 2, -(0.5 + 1.0) / 2, -(0.5 + 1.0) / 2])


def test_diversity_orthogonal_and_identical_conv_items():
    conv = torch.zeros(3, 2, 2, 2)
    conv[0, 0] = 1.0  # only channel 0 active
    conv[1, 1] = 1.0  # only channel 1 active: Gram orthogonal to item 0's
    conv[2] = conv[0] * 3  # the same pattern as item 0, scaled
    out = Diversity("c", [0, 0, 0])({"c": conv})
    assert out.tolist() == pytest.approx([-(0 + 1) / 2, -(0 + 0) / 2, -(1 + 0) / 2])


def test_composition(acts):
    a = UnitObjective([Unit("fc8", 0), Unit("fc8", 1), Unit("fc8", 2)])  # [0, 4, 8]
    b = LayerObjective("conv3")
    va, vb = a(acts), b(acts)
    assert va.tolist() == [0.0, 4.0, 8.0]
    assert torch.allclose((a + 0.5 * b)(acts), va + 0.5 * vb)
    assert torch.allclose((a + b * 0.5)(acts), va + 0.5 * vb)
    assert torch.allclose((a - b)(acts), va - vb)
    assert (-a)(acts).tolist() == [0.0, -4.0, -8.0]
    assert torch.allclose((2 * a - (-b))(acts), 2 * va + vb)
    assert (a + 0.5 * b).layers == ("fc8", "conv3")
    assert (a - a).layers == ("fc8",) and (a - a)(acts).tolist() == [0.0, 0.0, 0.0]
    assert isinstance(-a, Objective) and (-a).layers == ("fc8",)


def test_base_objective_is_abstract():
    with pytest.raises(NotImplementedError):
        Objective()({})
