"""Feature accentuation: the representation distance, the start from the seed image, the pull toward it, the panel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dgn_am.accentuation import keep_close, middle_layer, panel, seed_images
from dgn_am.layers import parse_units, run
from dgn_am.models.loading import checkpoints_dir
from dgn_am.methods import get_method, synthesize
from dgn_am.objectives import RepresentationDistance
from dgn_am.parameterizations import FourierParam


def test_representation_distance_by_hand():
    ref = torch.tensor([[3.0, 4.0]])  # |ref|^2 = 25
    acts = {"l": torch.tensor([[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]])}
    d = RepresentationDistance("l", ref)(acts)
    assert torch.allclose(d, torch.tensor([0.0, 1.0, 1.0]))
    per_item = RepresentationDistance("l", torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))(acts)
    assert torch.allclose(per_item, torch.tensor([(4 + 16) / 1, (0 + 4) / 4, (25 + 49) / 2]))


def test_middle_layer_of_caffenet_is_conv3(caffenet):
    assert middle_layer(caffenet) == "conv3"


def test_fourier_starts_exactly_at_each_items_seed_image():
    g = torch.Generator().manual_seed(0)
    seeds = torch.rand(3, 1, 6, 6, generator=g) * 0.9 + 0.05
    param = FourierParam((1, 6, 6), init=seeds, init_std=0.0)
    x = param.to_image(param.init([0, 1, 2], torch.device("cpu"), torch.float32))
    assert torch.allclose(x, seeds, atol=1e-5)


def _method(caffenet, weight: float, steps: int = 15):
    seed = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    base = get_method("accentuation")
    return dataclasses.replace(base, steps=steps, options=(("keep_weight", weight), ("keep_layer", None),
                                                          ("init_images", seed))), seed


TRAINED = checkpoints_dir() / "fmnist-caffenet.safetensors"


@pytest.mark.skipif(not TRAINED.is_file(), reason=f"trained checkpoint {TRAINED} absent (see checkpoints/MANIFEST)")
def test_accentuation_raises_the_unit_and_the_weight_keeps_it_near_the_seed():
    from dgn_am.imageio import load_image
    from dgn_am.models.loading import load_model

    net = load_model("fmnist-caffenet")
    seed = load_image(Path(__file__).parents[1] / "docs" / "img" / "fmnist-test-0.png", net.input_spec)
    units = parse_units("fc8:4")
    out = {}
    for weight in (0.0, 10.0, 1000.0):
        method = dataclasses.replace(get_method("accentuation"), steps=15,
                                     options=(("keep_weight", weight), ("init_images", seed)))
        result, _ = synthesize(net, units, [0], method)
        acts = run(net, torch.cat([seed, result.images]), ["conv3"])["conv3"]
        out[weight] = (float(result.saved_activations[0]), float(RepresentationDistance("conv3", acts[:1])(
            {"conv3": acts[1:]})[0]))
    with torch.no_grad():
        start = float(net(seed)[0, 4])
    assert out[0.0][0] > out[10.0][0] > start  # the default weight still raises the unit
    assert out[1000.0][1] < out[10.0][1] < out[0.0][1]  # and the weight holds the representation near the seed
    assert out[1000.0][1] < 0.01


def test_keep_close_is_weight_times_the_distance_to_the_seed(caffenet):
    method, seed = _method(caffenet, 7.0)
    term = keep_close(method, caffenet, 2)
    acts = run(caffenet, torch.cat([seed, torch.zeros_like(seed)]), ["conv3"])
    value = term(acts)
    ref = acts["conv3"][0]
    assert value[0] == pytest.approx(0.0, abs=1e-6)
    expected = 7.0 * ((acts["conv3"][1] - ref) ** 2).sum() / (ref ** 2).sum()
    assert value[1] == pytest.approx(float(expected), rel=1e-5)
    assert keep_close(get_method("simonyan"), caffenet, 2) is None


def test_accentuation_without_a_seed_image_says_how_to_give_one(caffenet):
    with pytest.raises(ValueError, match="--init-image"):
        synthesize(caffenet, parse_units("fc8:0"), [0], get_method("accentuation"))
    with pytest.raises(ValueError, match="init_images must be"):
        seed_images(dataclasses.replace(get_method("accentuation"),
                                        options=(("init_images", torch.zeros(3, 1, 28, 28)),)), 2)


def test_panel_shows_seed_accentuation_and_signed_difference():
    seed = torch.full((1, 2, 2), 0.4)
    acc = torch.tensor([[[0.4, 0.8], [0.0, 0.4]]])
    out = panel(seed, acc, gap=1)
    assert out.shape == (1, 2, 8)
    assert torch.equal(out[..., :2], seed) and torch.equal(out[..., 3:5], acc)
    assert torch.equal(out[..., 2], torch.ones(1, 2)) and torch.equal(out[..., 5], torch.ones(1, 2))
    assert torch.allclose(out[..., 6:], torch.tensor([[[0.5, 0.7], [0.3, 0.5]]]))
