"""The engine's non-finite check: an item whose objective, gradient or update stops being finite is frozen at its
last finite point and named in Result.failed; the other items run on exactly as without it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgn_am.engine import StepRule, maximize, non_finite_items
from dgn_am.objectives import Objective
from dgn_am.parameterizations import PixelParam
from tests.helpers import probe_model

CPU = torch.device("cpu")


class Quadratic(Objective):
    """-(x - 1)^2 summed per item, on the raw pixels of the probe model; with `poison` = {item: step}, that item's
    objective becomes `value` (NaN or inf) from that step on."""

    layers = ("body",)

    def __init__(self, poison: dict[int, int] | None = None, value: float = float("nan")) -> None:
        self.poison, self.value, self.calls = poison or {}, value, 0

    def __call__(self, acts):
        score = -(acts["body"] - 1.0).pow(2).sum(1)
        for item, step in self.poison.items():
            if self.calls >= step:
                score = score.clone()
                score[item] = self.value
        self.calls += 1
        return score


def param() -> PixelParam:
    return PixelParam((1, 2, 2), centre=0.0, init="randn", init_std=1.0, box=False)


def run(objective, steps=6, seeds=(0, 1, 2), **kw):
    return maximize(probe_model(), objective, param(), list(seeds), steps, StepRule("sgd", lr=0.1), **kw)


def test_healthy_run_has_no_failures():
    result = run(Quadratic())
    assert result.failed == [None, None, None]
    assert torch.isfinite(result.history).all()


@pytest.mark.parametrize("value, what", [(float("nan"), "objective"), (float("inf"), "objective")])
def test_a_non_finite_objective_freezes_that_item_only(value, what):
    healthy = run(Quadratic())
    bad = run(Quadratic(poison={1: 3}, value=value))
    assert bad.failed == [None, f"non-finite {what} at step 3", None]
    # the other items ran on exactly as before, bit for bit
    assert torch.equal(bad.params[[0, 2]], healthy.params[[0, 2]])
    assert torch.equal(bad.history[:, [0, 2]], healthy.history[:, [0, 2]])
    # item 1 stopped at its last finite point: where a 3-step run leaves it
    three = run(Quadratic(), steps=3)
    assert torch.equal(bad.params[1], three.params[1])
    assert torch.isfinite(bad.images[1]).all()
    assert torch.equal(bad.history[:3, 1], healthy.history[:3, 1]) and torch.isnan(bad.history[3:, 1]).all()


def test_a_non_finite_gradient_with_a_finite_objective_is_caught():
    """sqrt(p^2) at p = 0 has value 0 and gradient 0 * inf = NaN."""
    def penalty(x, p):  # (B,): item 0's term is sqrt((0 * p)^2), the others 0
        return torch.stack([(p[0].flatten()[0] * 0).pow(2).sqrt(), p.new_zeros(()), p.new_zeros(())])

    result = run(Quadratic(), penalties=(penalty,))
    assert result.failed == ["non-finite gradient at step 0", None, None]
    assert torch.equal(result.params[0], param().init([0], CPU, torch.float32)[0])  # never moved


def test_an_update_that_overflows_is_undone():
    def overflow(p, ctx):  # an operator whose step leaves item 1 infinite at step 2
        if ctx.step == 2:
            p[1] = p[1] * 1e38 * 1e38

    result = run(Quadratic(), operators=(overflow,))
    assert result.failed == [None, "non-finite update at step 2", None]
    assert torch.equal(result.params[1], run(Quadratic(), steps=2).params[1])  # back where step 2 started
    assert torch.equal(result.params[[0, 2]], run(Quadratic()).params[[0, 2]])


def test_the_loop_stops_when_every_item_failed():
    calls = []
    result = run(Quadratic(poison={0: 2, 1: 2, 2: 2}), steps=50, progress=lambda i, n, s: calls.append(i))
    assert calls == [0, 1, 2]  # step 2 found the NaN for all three; no step after it
    assert all(f == "non-finite objective at step 2" for f in result.failed)
    assert torch.isnan(result.history[2:]).all()


def test_non_finite_items_names_objective_before_gradient():
    total = torch.tensor([1.0, float("nan"), 2.0, 3.0])
    grad = torch.tensor([[0.0, 1.0], [float("inf"), 0.0], [float("-inf"), 1.0], [1.0, 1.0]])
    assert non_finite_items(total, grad) == [(1, "objective"), (2, "gradient")]


class NoGrad(nn.Module):
    """A model whose forward runs under torch.no_grad: its output carries no gradient. body: flatten, or
    flatten then a linear layer."""

    def __init__(self, linear: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 4)) if linear else nn.Flatten()

    def forward(self, x):
        with torch.no_grad():
            return self.body(x)


@pytest.mark.parametrize("linear", [True, False])  # False: a view of p without a graph back to it
def test_a_model_without_gradient_is_a_clear_error(linear):
    with pytest.raises(ValueError, match="carries no gradient back to the image.*torch.no_grad"):
        maximize(NoGrad(linear), Quadratic(), param(), [0], 2, StepRule("sgd", lr=0.1))
