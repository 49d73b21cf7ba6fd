"""dgn_am.inversion: the feature-match objective by hand, an inversion whose answer is known exactly (one SGD step
through an orthogonal linear layer), the encoder mode checked against an independent computation, and the modes'
errors."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import pytest
import torch
from torch import nn

from dgn_am.inversion import INVERSION_METHODS, features, invert
from dgn_am.layers import run
from dgn_am.models.loading import TargetModel, load_model
from dgn_am.objectives import FeatureMatch
from dgn_am.priors import encode, load_prior
from dgn_am.steps import StepRule
from tests.helpers import TINY_SPEC


def orthogonal_model() -> TargetModel:
    """flatten -> `lin` (16 -> 16, an orthogonal matrix, no bias): features W x, with ||W v|| = ||v||."""
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))
    lin = nn.Linear(16, 16, bias=False)
    with torch.no_grad():
        lin.weight.copy_(q)
    net = nn.Sequential(OrderedDict(flatten=nn.Flatten(), lin=lin))
    return TargetModel(net, TINY_SPEC, name="orthogonal").eval().requires_grad_(False)


def test_feature_match_by_hand():
    acts = {"f": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}
    target = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # item 0: -((0)^2 + (2)^2) / 1 = -4; item 1: -((3)^2 + (2)^2) / 4 = -13 / 4
    assert FeatureMatch("f", target)(acts).tolist() == pytest.approx([-4.0, -13 / 4])


def test_one_sgd_step_through_an_orthogonal_layer_lands_on_the_image():
    """The model sees z = (x - 0.5) / 0.25 (TINY_SPEC), so phi = W z and loss = ||W (z - z0)||^2 / ||W z0||^2 =
    ||x - x0||^2 / ||x0 - 0.5||^2: its ascent direction is -2 (x - x0) / ||x0 - 0.5||^2, and one SGD step of
    lr = ||x0 - 0.5||^2 / 2 from any start reaches x0 exactly."""
    model = orthogonal_model()
    x0 = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    norms = (x0 - 0.5).flatten(1).pow(2).sum(1)
    for b in range(2):  # one item at a time: lr differs per item
        method = dataclasses.replace(INVERSION_METHODS["pixels"], penalties=(), transforms=(), steps=1,
                                     step_rule=StepRule("sgd", lr=float(norms[b]) / 2))
        out = invert(model, x0[b: b + 1], "lin", "pixels", method=method)
        assert torch.allclose(out.images, x0[b: b + 1], atol=1e-5)
        assert out.loss.item() == pytest.approx(0.0, abs=1e-9)


def test_pixel_inversion_lowers_the_feature_loss_and_repeats():
    model = orthogonal_model()
    x0 = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    # without the jitter: a 1-px shift of a 4x4 image is a quarter of it, and a pixel-exact feature cannot match
    method = dataclasses.replace(INVERSION_METHODS["pixels"], transforms=())
    short = invert(model, x0, "lin", "pixels", steps=1, method=method)
    longer = invert(model, x0, "lin", "pixels", steps=40, method=method)
    assert (longer.loss < short.loss).all()
    again = invert(model, x0, "lin", "pixels", steps=40, method=method)
    assert torch.equal(longer.images, again.images)
    assert longer.settings["reading"] == "lin" and longer.settings["method"]["steps"] == 40


@pytest.fixture(scope="module")
def shipped():
    return load_model("fmnist-caffenet"), load_prior("fmnist-fc6")


def test_encoder_mode_matches_an_independent_computation(shipped):
    model, prior = shipped
    from dgn_am.data import load_fashion_mnist

    x = load_fashion_mnist("test")[0][:3]
    out = invert(model, x, "fc6", "encoder", prior)
    with torch.no_grad():
        image = prior.generator(encode(prior, x)).clamp(0, 1)  # 28-px grayscale generator: no conversion needed
        phi0 = run(model, x, ["fc6"], raw=True)["fc6"]  # the Sequential's output: after its ReLU
        phi = run(model, image, ["fc6"], raw=True)["fc6"]
    assert torch.allclose(out.images, image, atol=1e-6)
    expected = (phi - phi0).pow(2).sum(1) / phi0.pow(2).sum(1)
    assert torch.allclose(out.loss, expected, rtol=1e-4)
    assert torch.equal(features(model, x, "fc6"), phi0)


def test_prior_mode_moves_the_code_toward_the_features(shipped):
    model, prior = shipped
    from dgn_am.data import load_fashion_mnist

    x = load_fashion_mnist("test")[0][:2]
    start = invert(model, x, "conv5", "prior", prior, steps=1)
    later = invert(model, x, "conv5", "prior", prior, steps=15)
    assert (later.loss < start.loss).all()
    assert later.settings["parameterization"]["name"] == "code"


def test_mode_errors(shipped):
    model, prior = shipped
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ValueError, match="prior's own code layer"):
        invert(model, x, "conv5", "encoder", prior)
    with pytest.raises(ValueError, match="needs a generator prior"):
        invert(model, x, "fc6", "prior")
    with pytest.raises(ValueError, match="unknown inversion mode"):
        invert(model, x, "fc6", "magic", prior)
