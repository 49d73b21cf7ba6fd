"""Path similarity (Geirhos et al. 2024): Spearman's rho, the path's layers, reference paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgn_am.evaluation.paths import PathReference, activation_path, path_layers, spearman_rows
from dgn_am.layers import parse_units


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    g = np.random.default_rng(0)
    a = g.integers(0, 5, size=(6, 12)).astype(float)  # many ties
    ref = g.integers(0, 4, size=12).astype(float)
    expected = [stats.spearmanr(row, ref)[0] for row in a]
    assert np.allclose(spearman_rows(a, ref), expected)


def test_spearman_by_hand():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    rows = np.array([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    assert np.allclose(spearman_rows(rows, ref), [1.0, -1.0, 0.0])  # monotone, reversed, no order


def test_path_layers_of_caffenet_skip_pools_flatten_and_dropout(caffenet):
    assert path_layers(caffenet, "fc8") == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    assert path_layers(caffenet, "conv3") == ["conv1", "conv2"]
    with pytest.raises(ValueError):
        path_layers(caffenet, "nope")


def test_activation_path_averages_conv_maps(caffenet, images):
    from dgn_am.layers import run

    conv1, fc6 = activation_path(caffenet, images, ["conv1", "fc6"])
    acts = run(caffenet, images, ["conv1", "fc6"], raw=True)
    assert np.allclose(conv1, acts["conv1"].mean((2, 3)).double().numpy())
    assert np.allclose(fc6, acts["fc6"].double().numpy()) and conv1.shape == (2, 32)


def test_an_image_that_is_its_units_only_reference_has_similarity_one(caffenet):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(6, 1, 28, 28, generator=g)
    units = parse_units("fc8:0-1")
    ref = PathReference.build(caffenet, units, real, top=1)
    acts = caffenet(real).detach()
    best = [int(acts[:, u.index].argmax()) for u in units]
    sims = ref.similarity(caffenet, real[best], units)
    assert np.allclose(sims, 1.0)
    noise = torch.rand(2, 1, 28, 28, generator=g) * 0 + 0.5  # a flat grey image: a different path
    assert (ref.similarity(caffenet, noise, units) < 1.0).all()
    assert ref.top == 1 and ref.layers == path_layers(caffenet, "fc8")
