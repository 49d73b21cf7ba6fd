"""The DGN-AM loop: faithful to the reference step, bounded at every step, reproducible, batched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dgn_am.engine import StepRule
from dgn_am.layers import parse_units
from dgn_am.methods import get_method, synthesize
from dgn_am.models.generators import Generator, GeneratorConfig
from dgn_am.models.loading import load_model
from dgn_am.parameterizations import CodeParam
from dgn_am.priors import Prior

TINY_G = GeneratorConfig(code_dim=16, size=8, channels=1, fc_dims=(32,), start=2, start_channels=8,
                         up_channels=(8, 4), refine=(8, 0))


@pytest.fixture()
def prior() -> Prior:
    torch.manual_seed(0)
    g = Generator(TINY_G).eval().requires_grad_(False)
    mean = torch.rand(16)
    std = torch.rand(16) * 0.5 + 0.1
    return Prior(g, torch.zeros(16), mean + 3 * std, mean, std, {"path": "tiny"})


@pytest.fixture()
def target():
    return load_model("tests.prior_helpers:tiny_net")


@dataclasses.dataclass(frozen=True)
class RecordBounds:
    """An operator that records how far p is outside [lower, upper] after every step."""

    log: list

    def __call__(self, p, ctx) -> None:
        lo, hi = ctx.param.prior.lower, ctx.param.prior.upper
        self.log.append(float(torch.maximum(lo - p, p - hi).max()))


def test_dgn_am_is_the_reference_loop(prior):
    m = get_method("dgn-am")
    assert m.steps == 200 and m.init == "randn" and m.init_std == 1.0
    assert m.step_rule == StepRule("normalized", lr=8.0, lr_end=1e-10)
    assert m.step_rule.lr_at(0, 200) == 8.0 and m.step_rule.lr_at(100, 200) == pytest.approx(4.0)
    assert [type(o).__name__ for o in m.operators] == ["Decay"] and m.operators[0].rate == pytest.approx(0.01)
    assert m.returns == "rendered" and m.stop_at_zero_grad and m.code_scale == "reference"
    assert dict(m.options)["clamp"] is False and m.image_start == (30, 1.0)


def test_one_step_matches_hand_computation(prior, target):
    method = dataclasses.replace(get_method("dgn-am"), steps=2)
    units = parse_units("fc2:1")
    result, _ = synthesize(target, units, [5], method, prior=prior)
    # redo the first step by hand: h0 ~ N(0, s^2) from the seed, gradient of the unit on the raw (unclamped)
    # image, normalized step of lr 8 s, clip, decay; the second step renders G(h1) and returns it, before its update
    s = float(prior.upper.mean()) / 11.85
    h0 = (s * torch.randn(16, generator=torch.Generator().manual_seed(5))).unsqueeze(0).requires_grad_(True)
    param = CodeParam(prior, target.input_spec, clamp=False)
    act = target(param.to_image(h0))[:, 1]
    (g,) = torch.autograd.grad(act.sum(), h0)
    h1 = h0.detach() + 8.0 * s / g.abs().mean() * g
    h1 = torch.minimum(torch.maximum(h1, prior.lower), prior.upper) * 0.99
    torch.testing.assert_close(result.params, h1)
    torch.testing.assert_close(result.images, param.to_image(h1).clamp(0, 1))


def test_code_stays_in_bounds_at_every_step(prior, target):
    log: list = []
    method = get_method("dgn-am")
    method = dataclasses.replace(method, steps=30, operators=method.operators + (RecordBounds(log),))
    result, _ = synthesize(target, parse_units("fc2:0-2") + parse_units("conv1:1@2,3"), [0, 1], method, prior=prior)
    assert len(log) == 30 and max(log) <= 0.0
    assert torch.all(result.params >= prior.lower) and torch.all(result.params <= prior.upper)
    assert result.images.min() >= 0 and result.images.max() <= 1


def test_dgn_am_raises_the_unit_and_is_reproducible(prior, target):
    method = dataclasses.replace(get_method("dgn-am"), steps=40)
    units = parse_units("fc2:0-2")
    a, items = synthesize(target, units, [0, 1, 2], method, prior=prior)
    b, _ = synthesize(target, units, [0, 1, 2], method, prior=prior)
    assert torch.equal(a.images, b.images) and torch.equal(a.params, b.params)
    assert [(u.index, s) for u, s in items] == [(i, s) for i in range(3) for s in range(3)]
    assert (a.history[-1] > a.history[0]).float().mean() >= 0.8
    # different seeds give different codes (at a small step size; lr 8 drives this tiny box into one corner)
    small = dataclasses.replace(method, step_rule=StepRule("normalized", lr=0.05, lr_end=1e-10))
    c, _ = synthesize(target, units[:1], [0, 1], small, prior=prior)
    assert not torch.equal(c.params[0], c.params[1]) and not torch.equal(c.images[0], c.images[1])


def test_adam_variant_and_stats_init(prior, target):
    method = dataclasses.replace(get_method("dgn-am-adam"), steps=20, init="stats", init_std=0.5)
    result, _ = synthesize(target, parse_units("fc2:2"), [0, 1], method, prior=prior)
    assert result.history[-1].mean() > result.history[0].mean()
    assert torch.all(result.params <= prior.upper + 1e-6)


def test_init_from_given_codes(prior, target):
    code = prior.mean.clone()
    method = dataclasses.replace(get_method("dgn-am"), steps=1, options=(("init_codes", code),))
    param_init = CodeParam(prior, target.input_spec, init=code).init([0, 1], torch.device("cpu"), torch.float32)
    assert torch.equal(param_init, code.expand(2, 16))
    result, _ = synthesize(target, parse_units("fc2:0"), [0, 1], method, prior=prior)
    assert torch.equal(result.params[0], result.params[1])  # same start, deterministic step


def test_code_method_without_prior_says_how_to_fix(target):
    with pytest.raises(ValueError, match="needs a generator prior"):
        synthesize(target, parse_units("fc2:0"), [0], get_method("dgn-am"), prior=None)


def test_bank_init_starts_from_the_real_code_picked_by_the_seed(prior, target):
    prior.bank = torch.rand(5, 16)
    p = CodeParam(prior, target.input_spec, init="bank", init_std=0.0)
    h = p.init([3, 3, 4], torch.device("cpu"), torch.float32)
    pick = lambda s: int(torch.randint(5, (1,), generator=torch.Generator().manual_seed(s)))
    assert torch.equal(h[0], prior.bank[pick(3)]) and torch.equal(h[2], prior.bank[pick(4)])
    assert torch.equal(h[0], h[1])
    prior.bank = None
    with pytest.raises(ValueError, match="code bank"):
        p.init([0], torch.device("cpu"), torch.float32)


def test_code_stats_command_recomputes_stats_and_bank(tmp_path, prior):
    import numpy as np
    from PIL import Image

    from dgn_am.cli import main
    from dgn_am.layers import run
    from dgn_am.priors import CodeStats, load_prior, save_prior

    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / "a" / f"{i}.png")
    path = tmp_path / "p.safetensors"
    save_prior(path, prior.generator, CodeStats(torch.zeros(16), torch.ones(16), 1), 3.0, True,
               {"encoder": {"model": "tests.prior_helpers:tiny_net", "layer": "fc1"}})
    assert main(["code-stats", "--prior", str(path), "--image-folder", str(tmp_path / "imgs"), "--k", "2",
                 "--bank", "4", "--quiet"]) == 0
    new = load_prior(path)
    from dgn_am.data import image_folder
    from dgn_am.imageio import load_image

    x = torch.cat([load_image(p, load_model("tests.prior_helpers:tiny_net").input_spec)
                   for p in image_folder(tmp_path / "imgs")[0]])
    codes = run(load_model("tests.prior_helpers:tiny_net"), x, ["fc1"], raw=True)["fc1"]
    torch.testing.assert_close(new.mean, codes.mean(0))
    torch.testing.assert_close(new.upper, codes.mean(0) + 2 * codes.std(0, unbiased=False), rtol=1e-4, atol=1e-5)
    assert new.bank.shape == (4, 16) and new.provenance["code_stats_command"].startswith("dgn-am code-stats")
    assert new.provenance["encoder"]["layer"] == "fc1"


@pytest.mark.skipif(not (Path(__file__).parents[1] / "checkpoints" / "prior-fmnist-fc6.safetensors").is_file(),
                    reason="shipped prior not present")
def test_cli_init_image_starts_every_seed_from_that_image(tmp_path):
    import json

    from dgn_am.cli import main
    from dgn_am.imageio import save_image

    save_image(torch.full((1, 28, 28), 0.2), tmp_path / "start.png")
    out = tmp_path / "out"
    assert main(["synthesize", "--method", "dgn-am", "--steps", "2", "--units", "fc8:7", "--seeds", "2",
                 "--init-image", str(tmp_path / "start.png"), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["settings"]["init_image"] for r in rows] == [str(tmp_path / "start.png")] * 2
    assert rows[0]["settings"]["parameterization"]["init"] == "codes"
    assert rows[0]["activation"] == rows[1]["activation"]  # same start, deterministic steps


def test_cli_init_image_runs_the_reference_script_3_for_dgn_am(tmp_path):
    """dgn-am from a real image: the image squashed (not cropped) to the encoder's input, 30 steps from lr 1 (in the
    reference's code units, times s), unless --steps/--lr say otherwise."""
    import json

    from dgn_am.cli import main
    from dgn_am.imageio import load_image, save_image
    from dgn_am.models.fmnist import FASHION_MNIST_INPUT
    from dgn_am.priors import load_prior

    wide = torch.zeros(1, 28, 56)
    wide[:, :, 14:42] = 1.0  # black | white | black, the white band exactly the centre square
    save_image(wide, tmp_path / "wide.png")
    squashed = load_image(tmp_path / "wide.png", FASHION_MNIST_INPUT, fit="squash")[0, 0]
    cropped = load_image(tmp_path / "wide.png", FASHION_MNIST_INPUT)[0, 0]
    assert cropped.min() == 1  # the centre crop sees only the white band
    assert squashed[:, :6].max() == 0 and squashed[:, 8:20].min() == 1 and squashed[:, 22:].max() == 0
    out = tmp_path / "out"
    assert main(["synthesize", "--method", "dgn-am", "--units", "fc8:7", "--seeds", "1",
                 "--init-image", str(tmp_path / "wide.png"), "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "manifest.jsonl").read_text())
    s = load_prior("fmnist-fc6").reference_scale
    assert row["steps"] == 30 and row["settings"]["method"]["steps"] == 30
    assert row["settings"]["code_scale"]["reference_lr"] == 1.0
    assert row["settings"]["code_scale"]["lr"] == pytest.approx(s)


def test_anchor_method_stays_bounded_near_its_start_and_reproduces(prior, target):
    prior.bank = torch.rand(6, 16, generator=torch.Generator().manual_seed(1)) * 3  # some codes above upper
    log: list = []
    anchor = get_method("dgn-am-anchor")
    assert anchor.init == "bank" and [type(o).__name__ for o in anchor.operators] == ["Anchor", "Decay"]
    anchor = dataclasses.replace(anchor, steps=40, operators=anchor.operators + (RecordBounds(log),))
    bank = dataclasses.replace(get_method("dgn-am-bank"), steps=40)
    units = parse_units("fc2:0-1")
    a, _ = synthesize(target, units, [0, 1, 2], anchor, prior=prior)
    assert len(log) == 40 and max(log) <= 0.0  # bounded at every step although the starts are not
    again, _ = synthesize(target, units, [0, 1, 2], anchor, prior=prior)
    assert torch.equal(a.params, again.params)
    b, _ = synthesize(target, units, [0, 1, 2], bank, prior=prior)
    start = CodeParam(prior, target.input_spec, init="bank", init_std=0.0).init([0, 1, 2] * 2, torch.device("cpu"),
                                                                              torch.float32)
    start = torch.minimum(torch.maximum(start, prior.lower), prior.upper)
    # the anchor keeps every code closer to its own (clipped) real start than the un-anchored run
    assert torch.all((a.params - start).norm(dim=1) < (b.params - start).norm(dim=1))


# ---- dgn-am-class: starts the unit wins, stopped at a fraction of the best bank image ----

def _bank_prior(prior):
    prior.bank = torch.rand(40, 16, generator=torch.Generator().manual_seed(2)) * 1.5
    return prior


def test_unit_bank_starts_pick_the_images_the_unit_wins(prior, target):
    from dgn_am.layers import read_layer, run
    from dgn_am.parameterizations import unit_bank_starts

    prior = _bank_prior(prior)
    with torch.no_grad():
        logits = run(target, prior.image(prior.bank, target.input_spec), ["fc2"])["fc2"]
    wins = {c: set((logits.argmax(1) == c).nonzero().flatten().tolist()) for c in range(3)}
    units = parse_units("fc2:0-2")
    items = [(u, s) for u in units for s in range(4)]
    starts = unit_bank_starts(target, items, prior, min_candidates=2)
    rows = [int((prior.bank == h).all(1).nonzero()) for h in starts]  # which bank code each start is
    for (u, s), row in zip(items, rows):
        if len(wins[u.index]) >= 2:
            assert row in wins[u.index]
        else:  # too few wins: the unit's most active bank images
            assert row in set(logits[:, u.index].topk(max(2, 4)).indices.tolist())
    # a seed's start depends on its unit and itself only, and seeds spread over distinct candidates
    alone = unit_bank_starts(target, [(units[1], 3)], prior, min_candidates=2)
    assert torch.equal(alone[0], starts[items.index((units[1], 3))])
    for u in units:
        picked = [rows[i] for i, (v, _) in enumerate(items) if v == u]
        n = len(wins[u.index]) if len(wins[u.index]) >= 2 else 4
        assert len(set(picked)) == min(4, n)
    # read_layer reads a conv layer the way the unit is read
    conv = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert torch.equal(read_layer(conv, parse_units("c:1@1,2")[0]), conv[:, :, 1, 2])
    assert torch.equal(read_layer(conv, parse_units("c:1@mean")[0]), conv.mean((2, 3)))
    assert torch.equal(read_layer(conv, parse_units("c:1")[0]), conv[:, :, 2, 2])


def test_stop_at_undoes_steps_past_the_bank_reference(prior, target):
    from types import SimpleNamespace

    from dgn_am.operators import StopAt

    prior = _bank_prior(prior)
    param = CodeParam(prior, target.input_spec)
    scores = iter([torch.tensor([5.0, 0.9])])
    bank_best = torch.tensor([4.0, 2.0])
    ctx = SimpleNamespace(memo={}, param=param, start=torch.zeros(2, 16),
                          score=lambda images: next(scores) if len(images) == 2 else None)
    stop = StopAt(fraction=0.5)
    p0 = torch.full((2, 16), 0.1)
    ctx.memo[("StopAt", id(stop))] = {"reference": bank_best, "previous": p0.clone()}  # as after the first step
    p1 = torch.full((2, 16), 0.3)
    stop(p1, ctx)  # item 0: 5 >= 0.5 * 4, undone; item 1: 0.9 < 0.5 * 2, kept
    assert torch.equal(p1[0], p0[0]) and torch.equal(p1[1], torch.full((16,), 0.3))
    with pytest.raises(ValueError, match="> 0"):
        StopAt(fraction=0.0)
    # a unit that no bank image excites (best <= 0, a hidden unit read before its ReLU) has nothing to stop at
    scores = iter([torch.tensor([5.0, -0.1])])
    ctx.memo[("StopAt", id(stop))] = {"reference": torch.tensor([-1.0, -0.5]), "previous": p0.clone()}
    p2 = torch.full((2, 16), 0.3)
    stop(p2, ctx)  # 5 >= 0.5 * -1 and -0.1 >= 0.5 * -0.5, yet neither is undone
    assert torch.equal(p2, torch.full((2, 16), 0.3))


def test_bank_reference_is_the_best_bank_image_per_item(prior, target):
    from types import SimpleNamespace

    from dgn_am.objectives import UnitObjective
    from dgn_am.operators import bank_reference

    prior = _bank_prior(prior)
    units = parse_units("fc2:0-2")
    objective = UnitObjective(units)
    param = CodeParam(prior, target.input_spec)

    def score_each(x):  # every image against every item's objective, as the engine's ctx.score_each
        return torch.stack([objective({"fc2": target(x[n: n + 1]).expand(3, -1)}) for n in range(len(x))])

    ref = bank_reference(SimpleNamespace(param=param, score_each=score_each), chunk=7)
    with torch.no_grad():
        logits = target(prior.image(prior.bank, target.input_spec))
    torch.testing.assert_close(ref, logits.max(0).values)
    prior.bank = None
    with pytest.raises(ValueError, match="code bank"):
        bank_reference(SimpleNamespace(param=param, score_each=score_each))


def test_class_method_runs_bounded_and_reproducible(prior, target):
    prior = _bank_prior(prior)
    log: list = []
    method = get_method("dgn-am-class")
    method = dataclasses.replace(method, steps=15, operators=method.operators + (RecordBounds(log),))
    units = parse_units("fc2:0-2")
    a, _ = synthesize(target, units, [0, 1], method, prior=prior)
    assert len(log) == 15 and max(log) <= 0.0  # in bounds after every step, StopAt's undoing included
    b, _ = synthesize(target, units, [0, 1], method, prior=prior)
    assert torch.equal(a.params, b.params)
    assert a.settings["parameterization"]["init"] == "bank-unit"
    with pytest.raises(ValueError, match="synthesize"):
        CodeParam(prior, target.input_spec, init="bank-unit").init([0], torch.device("cpu"), torch.float32)


def test_stats_method_needs_no_bank_and_starts_from_the_code_statistics(prior, target):
    assert prior.bank is None  # no code bank, no real image
    method = dataclasses.replace(get_method("dgn-am-stats"), steps=15)
    assert method.init == "stats" and method.init_std == 1.0
    a, _ = synthesize(target, parse_units("fc2:0-1"), [0, 1], method, prior=prior)
    b, _ = synthesize(target, parse_units("fc2:0-1"), [0, 1], method, prior=prior)
    assert torch.equal(a.images, b.images)
    assert torch.all(a.params >= prior.lower - 1e-6) and torch.all(a.params <= prior.upper + 1e-6)
    start = CodeParam(prior, target.input_spec, init="stats", init_std=1.0).init([0], torch.device("cpu"),
                                                                                 torch.float32)
    torch.testing.assert_close(start[0], prior.mean + torch.randn(16, generator=torch.Generator().manual_seed(0))
                               * prior.std)
    assert not torch.equal(a.params[0], a.params[1])  # seeds 0 and 1 of one unit end apart


def test_stats_method_raises_output_units_of_the_shipped_model_from_random_codes():
    from dgn_am.priors import load_prior

    model, shipped = load_model("fmnist-caffenet"), load_prior("fmnist-fc6")
    method = dataclasses.replace(get_method("dgn-am-stats"), steps=40)
    units = parse_units("fc8:0,5")
    result, items = synthesize(model, units, [0, 1], method, prior=shipped)
    param = CodeParam(shipped, model.input_spec, init="stats", init_std=1.0)
    start = model(param.to_image(param.init([0, 1, 0, 1], torch.device("cpu"), torch.float32)))
    before = start[torch.arange(4), torch.tensor([u.index for u, _ in items])]
    assert (result.activations > before + 1.0).all()
