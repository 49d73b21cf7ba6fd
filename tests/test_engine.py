"""dgn_am.engine (with the simonyan method and PixelParam): the loop's behaviour and known one-step answers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dgn_am.engine import StepRule, centre_crop, maximize
from dgn_am.layers import Unit, parse_units
from dgn_am.methods import get_method, synthesize
from dgn_am.objectives import Objective, UnitObjective
from dgn_am.parameterizations import PixelParam
from dgn_am.penalties import L2Penalty
from tests.helpers import linear_model, probe_model


@dataclasses.dataclass(frozen=True)
class RecordRange:
    """An operator that records the image's min and max after every step (after the projection)."""

    log: list

    def __call__(self, p, ctx) -> None:
        x = ctx.param.to_image(p)
        self.log.append((ctx.step, float(x.min()), float(x.max())))


class Quadratic(Objective):
    """-(x - t)^2 summed per item, read from the probe model's `body` (the raw pixels): gradient -2 (x - t)."""

    layers = ("body",)

    def __init__(self, target: torch.Tensor) -> None:
        self.target = target

    def __call__(self, acts):
        return -(acts["body"] - self.target).pow(2).sum(1)


def simonyan(steps: int, **changes):
    return dataclasses.replace(get_method("simonyan"), steps=steps, **changes)


# ---- behaviour on the random caffenet ----

def test_simonyan_raises_fc8_units(caffenet):
    # The random network's gradients are tiny (~1e-4 per pixel): simonyan's own lambda = 0.05 would put the optimum
    # 1e-5 above the start. So: a large step, and a lambda small enough that lr * 2 lambda < 2 keeps it stable.
    method = simonyan(5, penalties=(L2Penalty(weight=1e-4),)).with_overrides(lr=1000.0)
    result, items = synthesize(caffenet, parse_units("fc8:0-2"), [0], method)
    assert [(str(u), s) for u, s in items] == [("fc8:0", 0), ("fc8:1", 0), ("fc8:2", 0)]
    assert result.history.shape == (5, 3)
    assert (result.history[-1] > result.history[0] + 1e-3).all()
    assert (result.activations > result.history[0] + 1e-3).all()
    # the final activations are the model's logits of the returned images at the target units
    with torch.no_grad():
        logits = caffenet(result.images)
    assert torch.allclose(result.activations, logits[[0, 1, 2], [0, 1, 2]], atol=1e-6)


def test_same_seeds_reproduce_bit_identical_images(caffenet):
    method = simonyan(3, init="randn", init_std=0.1).with_overrides(lr=100.0)
    units = parse_units("fc8:1")
    a, _ = synthesize(caffenet, units, [3, 4], method)
    torch.manual_seed(12345)  # the global RNG must not matter
    _ = torch.rand(10)
    b, _ = synthesize(caffenet, units, [3, 4], method)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.history, b.history)
    assert torch.equal(a.activations, b.activations)


def test_different_seeds_differ_for_randn_init(caffenet):
    method = simonyan(2, init="randn", init_std=0.1)
    result, _ = synthesize(caffenet, parse_units("fc8:1"), [3, 4], method)
    assert not torch.equal(result.images[0], result.images[1])
    # and an item's start depends on its own seed only, not on its batch neighbours
    alone, _ = synthesize(caffenet, parse_units("fc8:1"), [4], method)
    assert torch.allclose(alone.images[0], result.images[1], atol=1e-6)


def test_zeros_init_starts_at_the_normalization_mean(caffenet):
    result, _ = synthesize(caffenet, parse_units("fc8:0"), [0, 1], simonyan(1).with_overrides(lr=1e-9))
    assert torch.allclose(result.images, torch.full((2, 1, 28, 28), 0.2860), atol=1e-6)


def test_pixel_box_keeps_images_in_range_at_every_step(caffenet):
    log: list = []
    method = simonyan(4, init="randn", init_std=1.0, operators=(RecordRange(log),)).with_overrides(lr=1e4)
    result, _ = synthesize(caffenet, parse_units("fc8:3"), [0, 1], method)
    assert [step for step, _, _ in log] == [0, 1, 2, 3]
    assert all(lo >= 0.0 and hi <= 1.0 for _, lo, hi in log)
    assert any(lo == 0.0 for _, lo, _ in log) and any(hi == 1.0 for _, _, hi in log)  # the box was active
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0


def test_without_the_box_images_leave_the_range(caffenet):
    log: list = []
    method = simonyan(2, init="randn", init_std=1.0, operators=(RecordRange(log),), options=(("box", False),))
    synthesize(caffenet, parse_units("fc8:3"), [0], method)
    assert log[0][1] < 0.0 and log[0][2] > 1.0  # so the test above can fail


# ---- step rules ----

def test_lr_schedule():
    constant = StepRule("sgd", lr=0.5)
    assert [constant.lr_at(i, 4) for i in range(4)] == [0.5] * 4
    linear = StepRule("normalized", lr=8.0, lr_end=0.0)
    assert [linear.lr_at(i, 4) for i in range(4)] == [8.0, 6.0, 4.0, 2.0]
    assert StepRule("sgd", lr=1.0, lr_end=3.0).lr_at(2, 4) == 2.0
    with pytest.raises(ValueError, match="unknown step rule 'rmsprop'"):
        StepRule("rmsprop")


def test_linear_schedule_is_applied_by_the_loop():
    """Objective w.x on a linear model: the sgd step i moves p by exactly lr_i * w."""
    w = torch.tensor([1.0, -2.0, 0.5, 0.25])
    param = PixelParam((1, 2, 2), centre=0.0, init="zeros", box=False)
    steps = []

    def record(p, ctx):
        steps.append(p.clone())

    rule = StepRule("sgd", lr=1.0, lr_end=0.0)  # lr_i = 1, 0.75, 0.5, 0.25
    result = maximize(linear_model(w), UnitObjective([Unit("lin", 0, None)]), param, [0], 4, rule,
                      operators=(record,))
    moved = torch.stack([steps[0]] + [b - a for a, b in zip(steps, steps[1:])]).view(4, 4)
    assert torch.allclose(moved, torch.tensor([1.0, 0.75, 0.5, 0.25]).view(4, 1) * w, atol=1e-6)
    assert torch.allclose(result.params.view(4), 2.5 * w, atol=1e-6)
    assert torch.allclose(result.history[:, 0], torch.tensor([0.0, 1.0, 1.75, 2.25]) * w.pow(2).sum(), atol=1e-5)


def test_normalized_step_moves_each_item_by_lr_on_average():
    torch.manual_seed(0)
    target = torch.randn(2, 6)
    target[1] *= 50.0  # very different gradient scales per item
    param = PixelParam((1, 2, 3), centre=0.0, init="randn", init_std=1.0, box=False)
    p0 = param.init([5, 6], torch.device("cpu"), torch.float32)
    result = maximize(probe_model(), Quadratic(target), param, [5, 6], 1, StepRule("normalized", lr=0.3))
    change = (result.params - p0).view(2, 6)
    assert torch.allclose(change.abs().mean(1), torch.tensor([0.3, 0.3]), atol=1e-6)
    grad = -2 * (p0.view(2, 6) - target)  # ascent direction of -(x - t)^2
    expected = 0.3 * grad / grad.abs().mean(1, keepdim=True)
    assert torch.allclose(change, expected, atol=1e-6)


def test_adam_first_step_is_lr_times_sign_of_the_gradient():
    w = torch.tensor([3.0, -0.01, 0.5, -7.0])
    param = PixelParam((1, 2, 2), centre=0.0, init="randn", init_std=1.0, box=False)
    p0 = param.init([1, 2], torch.device("cpu"), torch.float32)
    result = maximize(linear_model(w), UnitObjective([Unit("lin", 0, None)] * 2), param, [1, 2], 1,
                      StepRule("adam", lr=0.05))
    change = (result.params - p0).view(2, 4)
    assert torch.allclose(change, 0.05 * torch.sign(w).expand(2, 4), atol=1e-5)


def test_adam_path_raises_the_objective(caffenet):
    method = simonyan(6, step_rule=StepRule("adam", lr=0.05), penalties=())
    result, _ = synthesize(caffenet, parse_units("fc8:0-1"), [0], method)
    assert torch.isfinite(result.images).all()
    assert (result.history[-1] > result.history[0]).all()
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0


def test_penalty_is_subtracted():
    """Objective w.x with penalty lambda ||p||^2: one sgd step is p1 = p0 + lr (w - 2 lambda p0)."""
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    lam, lr = 0.3, 0.1
    param = PixelParam((1, 2, 2), centre=0.0, init="randn", init_std=1.0, box=False)
    p0 = param.init([7], torch.device("cpu"), torch.float32)
    result = maximize(linear_model(w), UnitObjective([Unit("lin", 0, None)]), param, [7], 1,
                      StepRule("sgd", lr=lr), penalties=(L2Penalty(weight=lam),))
    expected = p0.view(4) + lr * (w - 2 * lam * p0.view(4))
    assert torch.allclose(result.params.view(4), expected, atol=1e-6)
    # history holds the objective alone (not objective - penalty), at the pre-step point
    assert torch.allclose(result.history[0, 0], (w * p0.view(4)).sum(), atol=1e-6)


# ---- batching ----

def test_mixed_layers_in_one_batch_match_separate_runs(caffenet):
    method = simonyan(3, init="randn", init_std=0.1).with_overrides(lr=100.0)
    fc8, conv3 = parse_units("fc8:4"), parse_units("conv3:2@mean")
    mixed, items = synthesize(caffenet, fc8 + conv3, [0, 1], method)
    assert [(str(u), s) for u, s in items] == [("fc8:4", 0), ("fc8:4", 1), ("conv3:2@mean", 0), ("conv3:2@mean", 1)]
    a, _ = synthesize(caffenet, fc8, [0, 1], method)
    b, _ = synthesize(caffenet, conv3, [0, 1], method)
    assert torch.allclose(mixed.activations, torch.cat([a.activations, b.activations]), atol=1e-5)
    assert torch.allclose(mixed.history, torch.cat([a.history, b.history], 1), atol=1e-5)
    assert torch.allclose(mixed.images, torch.cat([a.images, b.images]), atol=1e-5)
    # and the conv3 rows really read the channel mean of conv3
    from dgn_am.layers import run
    with torch.no_grad():
        direct = run(caffenet, mixed.images[2:], ["conv3"])["conv3"][:, 2].mean((1, 2))
    assert torch.allclose(mixed.activations[2:], direct, atol=1e-6)


def test_score_reads_multiples_of_the_batch():
    """StepContext.score takes k * B images and scores row n with item (n % B)'s objective."""
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.0, 10.0]])  # two outputs: item 0 reads 0, item 1 reads 1
    x = torch.arange(24, dtype=torch.float32).view(6, 1, 2, 2)  # k = 3 blocks of B = 2
    seen = []

    def op(p, ctx):
        seen.append(ctx.score(x))
        with pytest.raises(ValueError, match="multiple of the batch size 2"):
            ctx.score(x[:3])

    param = PixelParam((1, 2, 2), centre=0.0, box=False)
    maximize(linear_model(w), UnitObjective([Unit("lin", 0, None), Unit("lin", 1, None)]), param, [0, 1], 1,
             StepRule(), operators=(op,))
    flat = x.view(6, 4)
    expected = torch.stack([flat[n] @ w[n % 2] for n in range(6)])
    assert torch.allclose(seen[0], expected)


def test_maximize_rejects_zero_steps():
    param = PixelParam((1, 2, 2), centre=0.0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        maximize(probe_model(), Quadratic(torch.zeros(4)), param, [0], 0)


def test_centre_crop():
    x = torch.arange(5 * 6, dtype=torch.float32).view(1, 1, 5, 6)
    out = centre_crop(x, (3, 2))
    assert out.tolist() == [[[[8.0, 9.0], [14.0, 15.0], [20.0, 21.0]]]]  # rows 1-3, cols 2-3
    assert centre_crop(x, (5, 6)) is x
    with pytest.raises(ValueError, match="never shrink"):
        centre_crop(x, (6, 6))


class ScaleCopies:
    """A transform that multiplies copy k of the batch (rows k*B .. k*B + B - 1) by k + 1: known gradients."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        k = torch.arange(x.shape[0]) // self.batch + 1.0
        return x * k.view(-1, 1, 1, 1)


def test_samples_average_the_score_over_transformed_copies():
    # score of copy k is (k + 1) w.x; the mean over 4 copies is 2.5 w.x, so one sgd step moves p by lr * 2.5 * w
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    param = PixelParam((1, 2, 2), centre=0.0, init="randn", init_std=0.1, box=False)
    units = UnitObjective([Unit("lin", 0, None)] * 2)
    p0 = param.init([3, 4], torch.device("cpu"), torch.float32)
    out = maximize(linear_model(w), units, param, [3, 4], 1, StepRule("sgd", lr=0.1), transforms=(ScaleCopies(2),),
                   samples=4)
    assert torch.allclose(out.params.flatten(1), p0.flatten(1) + 0.1 * 2.5 * w, atol=1e-6)
    assert torch.allclose(out.history[0], 2.5 * (p0.flatten(1) @ w))  # the recorded score is the mean too
    with pytest.raises(ValueError, match="only with transforms"):
        maximize(linear_model(w), units, param, [3, 4], 1, samples=2)


def test_samples_one_is_the_plain_loop(caffenet):
    method = dataclasses.replace(get_method("mahendran"), steps=3)
    a, _ = synthesize(caffenet, parse_units("fc8:1"), [0], method)
    b, _ = synthesize(caffenet, parse_units("fc8:1"), [0], dataclasses.replace(method, samples=1))
    c, _ = synthesize(caffenet, parse_units("fc8:1"), [0], dataclasses.replace(method, samples=3))
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_score_each_matches_score_on_repeated_images(caffenet):
    """ctx.score_each(x)[n, b] is item b's objective on image n, as ctx.score gives it for x[n] in every row."""
    seen = {}

    def grab(p, ctx):
        if ctx.step == 0:
            x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
            seen["each"] = ctx.score_each(x)
            seen["score"] = torch.stack([ctx.score(x[n: n + 1].expand(3, -1, -1, -1)) for n in range(4)])

    units = [Unit("fc8", 1, None), Unit("conv3", 5, "mean"), Unit("conv2", 0, (2, 3))]
    param = PixelParam((1, 28, 28), centre=caffenet.input_spec.mean, init="randn", init_std=0.1)
    maximize(caffenet, UnitObjective(units), param, [0, 1, 2], 1, StepRule("sgd", lr=0.0), operators=(grab,))
    assert seen["each"].shape == (4, 3)
    torch.testing.assert_close(seen["each"], seen["score"], rtol=1e-5, atol=1e-5)
