"""Gradient-free search over a prior's code: known optima, budgets, repeatability, black-box scorers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from dgn_am.layers import parse_units, read_units, run
from dgn_am.models.spec import InputSpec
from dgn_am.search import SearchConfig, load_scorer, search, unit_scorer

SPEC = InputSpec((2, 2), 1, (0.5,), (0.25,))
TARGET = np.array([0.3, 0.9, 0.05, 0.6])  # inside the box [0, 1]^4


@dataclass
class IdentityPrior:
    """A 'generator' that shows the code as a 2x2 image: the search's box is [0, 1]^4."""

    lower: torch.Tensor = field(default_factory=lambda: torch.zeros(4))
    upper: torch.Tensor = field(default_factory=lambda: torch.ones(4))
    mean: torch.Tensor = field(default_factory=lambda: torch.full((4,), 0.5))
    std: torch.Tensor = field(default_factory=lambda: torch.full((4,), 0.2))
    provenance: dict = field(default_factory=dict)
    code_dim: int = 4

    def image(self, h: torch.Tensor, spec) -> torch.Tensor:
        return h.view(-1, 1, 2, 2)


def peak(images: torch.Tensor) -> np.ndarray:
    """Maximal (0) exactly at TARGET: minus the squared distance of the pixels to it."""
    return -((images.flatten(1).double().numpy() - TARGET) ** 2).sum(1)


@pytest.mark.parametrize("algorithm,budget,tol", [("cmaes", 1200, 1e-6), ("ga", 4000, 2e-3)])
def test_search_finds_a_known_optimum_inside_the_box(algorithm, budget, tol):
    r = search(peak, IdentityPrior(), SPEC, seed=0, config=SearchConfig(algorithm=algorithm, budget=budget))
    assert r.score > -tol
    assert np.allclose(r.code.numpy(), TARGET, atol=np.sqrt(tol) * 2)
    assert torch.equal(r.image.flatten(), r.code)  # the best image is the best code's rendering
    assert r.calls <= budget


def test_search_clips_to_the_box_when_the_optimum_is_outside():
    def outside(images):
        return images.flatten(1).sum(1) - 10 * images.flatten(1)[:, 0]  # best: pixel 0 at 0, the others at 1

    r = search(outside, IdentityPrior(), SPEC, 0, SearchConfig("cmaes", budget=800))
    assert r.code.min() >= 0 and r.code.max() <= 1
    assert np.allclose(r.code.numpy(), [0, 1, 1, 1], atol=0.02)


@pytest.mark.parametrize("algorithm", ["cmaes", "ga"])
def test_same_seed_same_result_and_numpy_rng_untouched(algorithm):
    config = SearchConfig(algorithm=algorithm, budget=200, population=10, kept=3)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = search(peak, IdentityPrior(), SPEC, 7, config)
    assert np.array_equal(np.random.get_state()[1], before)
    b = search(peak, IdentityPrior(), SPEC, 7, config)
    c = search(peak, IdentityPrior(), SPEC, 8, config)
    assert torch.equal(a.code, b.code) and np.array_equal(a.best, b.best)
    assert not np.array_equal(a.best, c.best)


def test_budget_counts_scorer_evaluations_and_batches_per_generation():
    seen = []

    def counting(images):
        seen.append(len(images))
        return peak(images)

    r = search(counting, IdentityPrior(), SPEC, 0, SearchConfig("cmaes", budget=95, population=10, max_batch=4))
    assert r.calls == 90 == sum(seen)  # 9 whole generations; a tenth would pass the budget
    assert seen[:3] == [4, 4, 2] and max(seen) <= 4
    assert len(r.best) == len(r.mean) == len(r.generation_images) == 9
    assert np.all(r.best >= r.mean)


def test_ga_keeps_its_best_so_the_curve_never_falls():
    r = search(peak, IdentityPrior(), SPEC, 1, SearchConfig("ga", budget=400, population=20, kept=2))
    assert np.all(np.diff(r.best) >= 0)
    assert r.calls == 20 + 18 * ((400 - 20) // 18)
    assert r.score == pytest.approx(r.best[-1])


def test_bad_scorer_output_is_a_clear_error():
    with pytest.raises(ValueError, match=r"one score per image"):
        search(lambda x: np.zeros(3), IdentityPrior(), SPEC, 0, SearchConfig("ga", budget=100, population=10,
                                                                                  kept=2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        search(lambda x: np.full(len(x), np.nan), IdentityPrior(), SPEC, 0, SearchConfig("cmaes", budget=100))


def test_config_checks():
    with pytest.raises(ValueError, match="unknown search algorithm"):
        SearchConfig("random")
    with pytest.raises(ValueError, match="smaller than one generation"):
        SearchConfig("ga", budget=10)
    with pytest.raises(ValueError, match="kept"):
        SearchConfig("ga", budget=100, population=10, kept=10)


class NoGradNet(torch.nn.Module):
    """A black box: its forward runs under no_grad and rounds, so no gradient could pass."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)
        self.input_spec = SPEC
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fc((x.flatten(1) * 100).round() / 100)


def test_unit_scorer_reads_a_non_differentiable_model():
    net = NoGradNet().eval()
    score = unit_scorer(net, parse_units("fc:0")[0])
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]]).view(2, 1, 2, 2)
    assert torch.allclose(score(x), torch.tensor([2.0, 0.0]))
    r = search(score, IdentityPrior(), SPEC, 0, SearchConfig("cmaes", budget=600))
    assert r.score == pytest.approx(2.0, abs=0.02)  # the box's best: 1, 0, 1, 0


def test_unit_scorer_matches_the_unit_as_synthesize_reads_it(caffenet, images):
    unit = parse_units("conv5:3@2,4")[0]
    expected = read_units(run(caffenet, images, ["conv5"])["conv5"], [unit] * 2)
    assert torch.allclose(unit_scorer(caffenet, unit)(images), expected)


def test_load_scorer():
    fn = load_scorer("tests.search_scorers:brightness")
    assert torch.allclose(fn(torch.ones(2, 1, 3, 3)), torch.ones(2))
    with pytest.raises(ValueError, match="package.module:function"):
        load_scorer("brightness")
    with pytest.raises(ValueError, match="cannot load scorer"):
        load_scorer("tests.search_scorers:nothing_here")


def test_search_on_the_shipped_prior_raises_a_unit(caffenet):
    import dgn_am

    prior = dgn_am.load_prior("fmnist-fc6")
    score = unit_scorer(caffenet, parse_units("fc8:2")[0])
    r = search(score, prior, caffenet.input_spec, 0, SearchConfig("cmaes", budget=120))
    assert r.best[-1] > r.best[0] and r.image.shape == (1, 28, 28)
    assert r.code.min() >= 0 and bool((r.code <= prior.upper.cpu() + 1e-6).all())
    assert float(score(r.image[None])) == pytest.approx(r.score, rel=1e-5)
