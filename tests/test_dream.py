"""dgn_am.dream: octave sizes and the octave parameterization by hand, one DeepDream step whose answer is known
(a unit that reads one pixel), and the prior variant."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from dgn_am.dream import DreamConfig, dream, octave_sizes
from dgn_am.models.loading import TargetModel
from dgn_am.parameterizations.octave import OctaveParam
from tests.helpers import TINY_SPEC


def pixel_model() -> TargetModel:
    """flatten -> `body` (identity): unit body:k is pixel k of the 4x4 image."""
    net = nn.Sequential(OrderedDict(flatten=nn.Flatten(), body=nn.Identity()))
    return TargetModel(net, TINY_SPEC, name="pixels").eval()


def test_octave_sizes():
    assert octave_sizes((28, 28), 3, 1.4) == [(14, 14), (20, 20), (28, 28)]  # 28 / 1.96 = 14.3, 28 / 1.4 = 20
    assert octave_sizes((4, 6), 1, 2.0) == [(4, 6)]
    assert octave_sizes((4, 4), 4, 2.0) == [(1, 1), (1, 1), (2, 2), (4, 4)]  # 4 / 8 rounds to 0: kept at 1


def test_octave_param_adds_resizes_and_projects():
    base = torch.full((1, 1, 2, 2), 0.5)
    param = OctaveParam(base, (4, 4), start=torch.full((1, 1, 2, 2), 0.25))
    p = param.init([0], torch.device("cpu"), torch.float32)
    assert torch.allclose(param.to_image(p), torch.full((1, 1, 4, 4), 0.75))  # a constant stays constant
    p.fill_(0.9)
    param.project(p)
    assert torch.allclose(p, torch.full_like(p, 0.5))  # base + p clipped to 1


def test_one_step_on_a_one_pixel_unit():
    """body:5 reads pixel 5; its gradient is one-hot, so a normalized step (mean |g| = 1/16) moves pixel 5 by
    lr * 16 and nothing else (one octave, no jitter)."""
    x = torch.full((1, 1, 4, 4), 0.2)
    out = dream(pixel_model(), x, "body:5", DreamConfig(octaves=1, steps=1, lr=0.01, jitter=0))
    expected = x.clone().flatten()
    expected[5] += 0.16
    assert torch.allclose(out.images.flatten(), expected)
    # the model reads (x - 0.5) / 0.25 (TINY_SPEC)
    assert out.before.item() == pytest.approx(-1.2) and out.after.item() == pytest.approx(-0.56, abs=1e-6)


def test_octaves_raise_a_layer_and_repeat():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 3, 3, padding=1), relu=nn.ReLU()))
    model = TargetModel(net, TINY_SPEC, name="conv").eval().requires_grad_(False)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    config = DreamConfig(octaves=2, octave_scale=2.0, steps=5, lr=0.02, jitter=1)
    a = dream(model, x, "layer:relu", config, seed=4)
    b = dream(model, x, "layer:relu", config, seed=4)
    assert torch.equal(a.images, b.images)
    assert (a.after > a.before).all()
    assert a.images.min() >= 0 and a.images.max() <= 1


def test_prior_dream_raises_the_layer():
    from dgn_am.data import load_fashion_mnist
    from dgn_am.models.loading import load_model
    from dgn_am.priors import load_prior

    x = load_fashion_mnist("test")[0][:2]
    out = dream(load_model("fmnist-caffenet"), x, "layer:conv4+relu", DreamConfig(steps=5, octaves=1,
                                                                                   parameterization="prior"),
                prior=load_prior("fmnist-fc6"))
    assert (out.after > out.before).all()
    with pytest.raises(ValueError, match="needs a generator prior"):
        dream(pixel_model(), torch.zeros(1, 1, 4, 4), "body:0", DreamConfig(parameterization="prior"))


def test_bad_configs():
    for bad in (dict(octaves=0), dict(octave_scale=0.5), dict(lr=0), dict(parameterization="fourier")):
        with pytest.raises(ValueError):
            DreamConfig(**bad)
