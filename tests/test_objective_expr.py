"""dgn_am.objective_expr: the parser, the objectives it builds (values by hand), interpolation and the Share
operator."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dgn_am.engine import StepContext
from dgn_am.layers import Unit
from dgn_am.methods import get_method, synthesize
from dgn_am.objective_expr import (Interpolated, ObjectiveTarget, build_objective, check_expression, frame_weights,
                                   objective_for, parse_objective)
from dgn_am.objectives import UnitObjective
from dgn_am.operators import Share
from tests.helpers import factory


@pytest.fixture()
def acts():
    fc8 = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])  # (B=3, C=3)
    conv3 = torch.zeros(3, 2, 3, 3)  # (B, C, H, W)
    conv3[:, 0] = torch.arange(9, dtype=torch.float32).view(3, 3)  # channel 0: mean 4, centre 4
    conv3[:, 1] = 10.0
    return {"fc8": fc8, "conv3": conv3}


def value(text: str, acts: dict, **kw) -> list[float]:
    return build_objective(parse_objective(text), 3, **kw)(acts).tolist()


def test_linear_combinations_of_units(acts):
    assert value("fc8:2 - 0.5 * fc8:0", acts) == pytest.approx([2.0, 3.5, 5.0])
    assert value("2 * (fc8:1 - fc8:2) / 4", acts) == pytest.approx([-0.5] * 3)
    assert value("fc8:0 * 3 + (-fc8:0)", acts) == pytest.approx([0.0, 6.0, 12.0])
    assert value("fc8:1-fc8:0", acts) == pytest.approx([1.0] * 3)  # no spaces needed around operators
    assert value("conv3:0@mean + conv3:0@0,2", acts) == pytest.approx([4.0 + 2.0] * 3)


def test_the_other_terms(acts, tmp_path):
    # layer: mean square over 18 values, (0^2 + ... + 8^2 + 9 * 100) / 18
    assert value("layer:conv3", acts) == pytest.approx([(204 + 900) / 18] * 3)
    lse = [math.log(sum(math.exp(v) for v in row)) for row in acts["fc8"].tolist()]
    assert value("logprob:fc8:2", acts) == pytest.approx([2 - lse[0], 5 - lse[1], 8 - lse[2]])
    np.save(tmp_path / "d.npy", np.array([1.0, -1.0]))
    assert value(f"direction:conv3={tmp_path / 'd.npy'}", acts) == pytest.approx([4.0 - 10.0] * 3)
    assert value("diversity:conv3", acts) == pytest.approx([-1.0] * 3)  # identical items: cosine 1


def test_a_leading_sign_adds_to_each_unit(acts):
    units = [Unit("fc8", 0), Unit("fc8", 1), Unit("fc8", 2)]  # [0, 4, 8]
    assert value("+ 2 * fc8:0", acts, units=units) == pytest.approx([0.0 + 0.0, 4.0 + 6.0, 8.0 + 12.0])
    assert value("- fc8:0", acts, units=units) == pytest.approx([0.0, 1.0, 2.0])
    # diversity groups follow the units: each item alone in its group scores 0
    assert value("+ diversity:conv3", acts, units=units) == pytest.approx([0.0, 4.0, 8.0])
    with pytest.raises(ValueError, match="begins with \\+ or -"):
        value("+ fc8:0", acts)


def test_interpolation_weights_each_item(acts):
    a = build_objective(parse_objective("fc8:0"), 3)
    b = build_objective(parse_objective("fc8:2"), 3)
    assert Interpolated(a, b, [0.0, 0.5, 1.0])(acts).tolist() == pytest.approx([0.0, 4.0, 8.0])
    assert frame_weights(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_weights(1)


@pytest.mark.parametrize("text, column, expected", [
    ("fc8:3 - * fc8:5", 9, "expected a term"),
    ("fc8:3 * fc8:4", 9, "two terms cannot be multiplied"),
    ("(fc8:3", 7, "expected ')'"),
    ("fc8:3 fc8:4", 7, "an operator"),
    ("fc8", 1, "expected a term"),
    ("fc8:3 / fc8:4", 9, "a number to divide by"),
    ("fc8:3 / 0", 9, "non-zero"),
])
def test_syntax_errors_say_what_was_expected_where(text, column, expected):
    with pytest.raises(ValueError) as e:
        parse_objective(text)
    assert f"at column {column} " in str(e.value) and expected in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("", "empty objective"), ("fc8:3 - fc8:3", "cancel out"), ("fc8:3 + 1", "constant term")])
def test_expressions_with_nothing_to_maximize(text, message):
    with pytest.raises(ValueError, match=message):
        parse_objective(text)


def test_terms_are_checked_against_the_model(tmp_path):
    model = factory()  # conv (2, 4, 4), fc (3,)
    check_expression(parse_objective("fc:2 + layer:conv"), model)
    np.save(tmp_path / "d3.npy", np.ones(3))
    for text, message in [("fc:3", "out of range"), ("nope:0", "unknown layer"), ("logprob:fc:3", "class 3 out"),
                          (f"direction:conv={tmp_path / 'd3.npy'}", "has 2 channels"),
                          ("direction:fc=missing.npy", "not found")]:
        with pytest.raises(ValueError, match=message):
            check_expression(parse_objective(text), model)


def test_share_pulls_items_with_one_start_to_their_mean():
    start = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    p = torch.tensor([[1.0, 3.0], [3.0, 1.0], [7.0, 9.0]])
    ctx = StepContext(0, 1, torch.zeros_like(p), None, None, start=start)
    Share(weight=0.5)(p, ctx)
    assert p.tolist() == [[1.5, 2.5], [2.5, 1.5], [7.0, 9.0]]  # mean (2, 2); item 2 alone keeps its p


def test_an_expression_through_synthesize_equals_the_unit_it_names():
    model = factory()
    method = dataclasses.replace(get_method("simonyan"), steps=5, init="randn", init_std=0.1)
    by_unit, _ = synthesize(model, [Unit("fc", 1)], [3, 4], method)
    by_expr, items = synthesize(model, [], [3, 4], dataclasses.replace(method, objective="fc:1"))
    assert torch.equal(by_unit.images, by_expr.images)
    assert [str(u) for u, _ in items] == ["fc:1", "fc:1"] and by_expr.settings["objective"] == {"expression": "fc:1"}
    with pytest.raises(ValueError, match="replaces the units"):
        synthesize(model, [Unit("fc", 1)], [3], dataclasses.replace(method, objective="fc:1"))


def test_interpolation_end_frames_are_their_objectives_alone():
    """With share 0 every frame of a seed starts where a plain run of that seed starts, so the end frames equal the
    runs of objectives A and B."""
    model = factory()
    method = dataclasses.replace(get_method("simonyan"), steps=5, init="randn", init_std=0.1)
    frames = [ObjectiveTarget("fc:0", "fc:2", t) for t in frame_weights(3)]
    result, items = synthesize(model, frames, [7], method)
    a, _ = synthesize(model, [Unit("fc", 0)], [7], method)
    b, _ = synthesize(model, [Unit("fc", 2)], [7], method)
    assert torch.allclose(result.images[0], a.images[0]) and torch.allclose(result.images[2], b.images[0])
    assert not torch.allclose(result.images[1], result.images[0])
    assert result.settings["objective"] == {"interpolate": ["fc:0", "fc:2"]}
    shared = dataclasses.replace(method, operators=(Share(weight=1.0),))
    together, _ = synthesize(model, frames, [7], shared)  # weight 1: every frame is the row's mean after each step
    assert torch.allclose(together.images[0], together.images[2])


def test_objective_for_refuses_mixed_batches():
    model = factory()
    with pytest.raises(ValueError, match="mixes units"):
        objective_for(model, [Unit("fc", 0), ObjectiveTarget("fc:1")])
    with pytest.raises(ValueError, match="more than one objective"):
        objective_for(model, [ObjectiveTarget("fc:0"), ObjectiveTarget("fc:1")])
    assert isinstance(objective_for(model, [Unit("fc", 0)]), UnitObjective)
