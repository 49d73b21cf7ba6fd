"""dgn_am.steps: each step rule by hand on tiny tensors, and StepRule building the right rule with its options."""

import pytest
import torch

from dgn_am.steps import RULES, SGD, Adam, Momentum, Normalized, Progress, StepRule, usage

P = torch.tensor([[1.0, 2.0], [0.0, 0.0]])  # two items, two units each
D = torch.tensor([[1.0, -3.0], [0.5, 0.5]])


def _step(rule: StepRule, lr: float) -> torch.Tensor:
    p = P.clone().requires_grad_(True)
    with torch.no_grad():
        rule.start(p)(p, D, lr)
    return p.detach()


def test_sgd_adds_lr_times_d():
    assert _step(StepRule("sgd"), 0.5).tolist() == [[1.5, 0.5], [0.25, 0.25]]


def test_normalized_moves_each_item_by_lr_on_average():
    # item 0: mean |d| = 2 -> p += d; item 1: mean |d| = 0.5 -> p += 4 d
    assert _step(StepRule("normalized"), 2.0).tolist() == [[2.0, -1.0], [2.0, 2.0]]


def test_progress_step_is_lr_over_squared_norm_capped_at_lr_max():
    # item 0: ||d||^2 = 10 -> size 1; item 1: ||d||^2 = 0.5 -> size 20, capped at 2
    assert _step(StepRule("progress", lr_max=2.0), 10.0).tolist() == [[2.0, -1.0], [1.0, 1.0]]
    assert _step(StepRule("progress"), 10.0)[1].tolist() == [10.0, 10.0]


def test_momentum_and_adam_match_their_torch_optimizers():
    for rule, make in ((StepRule("momentum", momentum=0.5), lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.5)),
                       (StepRule("adam"), lambda q: torch.optim.Adam([q], lr=0.1))):
        p, q = P.clone().requires_grad_(True), P.clone().requires_grad_(True)
        step, opt = rule.start(p), make(q)
        for _ in range(3):
            with torch.no_grad():
                step(p, D, 0.1)
            q.grad = -D
            opt.step()
        assert torch.equal(p.detach(), q.detach())


def test_each_rule_holds_only_its_own_options():
    p = P.clone().requires_grad_(True)
    assert isinstance(StepRule("sgd").start(p), SGD) and isinstance(StepRule("normalized").start(p), Normalized)
    assert StepRule("progress", lr_max=3.0).start(p) == Progress(lr_max=3.0)
    assert StepRule("momentum", momentum=0.7).start(p).optimizer.defaults["momentum"] == 0.7
    assert isinstance(StepRule("adam").start(p), Adam) and Momentum.options == ("momentum",)
    assert {k: r.options for k, r in RULES.items()} == {"sgd": (), "momentum": ("momentum",), "adam": (),
                                                         "normalized": (), "progress": ("lr_max",)}
    assert usage().startswith("sgd:lr=, momentum:lr=,momentum=, adam:lr=, normalized:lr=, progress:lr=,lr_max=")
    with pytest.raises(ValueError, match="unknown step rule 'rmsprop'"):
        StepRule("rmsprop")
