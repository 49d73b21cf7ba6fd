"""Multifaceted visualization (dgn_am.facets) on a tiny network: top images, clusters and starts checked against
values computed independently."""

from __future__ import annotations

import pytest
import torch

from dgn_am.facets import (Facets, kmeans_clusters, layer_features, own_cluster_rate, unit_facets, unit_values)
from dgn_am.layers import Unit
from dgn_am.methods import Method
from dgn_am.steps import StepRule
from tests.helpers import factory

PIXELS = Method(name="facet-test", parameterization="pixels", init="mean-image", init_std=0.0, steps=5,
                step_rule=StepRule("sgd", lr=0.01))


def pool_of_two_kinds(n: int = 12) -> torch.Tensor:
    """n images (n, 1, 4, 4): even rows bright on the left half, odd rows bright on the right, varying strength."""
    gen = torch.Generator().manual_seed(0)
    pool = 0.05 * torch.rand(n, 1, 4, 4, generator=gen)
    for i in range(n):
        side = slice(0, 2) if i % 2 == 0 else slice(2, 4)
        pool[i, 0, :, side] += 0.5 + 0.04 * i
    return pool


def test_kmeans_separates_two_groups_largest_first():
    f = torch.tensor([[0.0, 0.0], [10.0, 10.0], [0.1, 0.0], [10.0, 10.1], [0.0, 0.2]])
    assert kmeans_clusters(f, 2) == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError, match="k must be between 1"):
        kmeans_clusters(f, 6)


def test_unit_facets_top_images_clusters_and_starts():
    net, pool = factory(), pool_of_two_kinds()
    unit = Unit("fc", 0, None)
    values = unit_values(net, pool, [unit])[:, 0]
    with torch.no_grad():
        expected = net(pool)[:, 0]  # fc is the output layer: the unit is the logit itself
    assert torch.allclose(values, expected, atol=1e-6)
    f = unit_facets(net, unit, pool, values, k=2, top=8, cluster_layer="conv", method=PIXELS)
    assert f.top == expected.argsort(descending=True)[:8].tolist()
    assert f.top_values == pytest.approx(expected[f.top].tolist())
    assert sorted(sum(f.clusters, [])) == sorted(f.top)
    assert {frozenset(i % 2 for i in g) for g in f.clusters} == {frozenset({0}), frozenset({1})}  # by side
    for g, start in zip(f.clusters, f.starts):
        assert torch.allclose(start, pool[g].mean(0))
        assert g == sorted(g, key=lambda i: -float(expected[i]))  # members best first
    with torch.no_grad():
        start_values = net(f.starts)[:, 0]
    assert all(a > float(s) for a, s in zip(f.activations, start_values))  # the facets raise the unit
    assert own_cluster_rate(net, f, pool, "conv") == 1.0
    again = unit_facets(net, unit, pool, values, k=2, top=8, cluster_layer="conv", method=PIXELS)
    assert torch.equal(again.images, f.images) and again.clusters == f.clusters


def test_own_cluster_rate_counts_swapped_facets():
    net, pool = factory(), pool_of_two_kinds()
    groups = [[0, 2, 4], [1, 3, 5]]
    means = torch.stack([pool[g].mean(0) for g in groups])
    same = Facets(Unit("fc", 0, None), means, means, [0.0, 0.0], groups, [0, 1, 2, 3, 4, 5])
    swapped = Facets(Unit("fc", 0, None), means.flip(0), means, [0.0, 0.0], groups, [0, 1, 2, 3, 4, 5])
    assert own_cluster_rate(net, same, pool, "conv") == 1.0
    assert own_cluster_rate(net, swapped, pool, "conv") == 0.0
    assert layer_features(net, pool, "conv").shape == (12, 2 * 4 * 4)


def test_facets_need_a_code_or_pixels_method_and_a_prior_for_codes():
    net, pool = factory(), pool_of_two_kinds()
    values = torch.arange(12.0)
    import dataclasses

    with pytest.raises(ValueError, match="code or pixels method"):
        unit_facets(net, Unit("fc", 0, None), pool, values, 2, 6, "conv", dataclasses.replace(PIXELS,
                    parameterization="fourier"))
    with pytest.raises(ValueError, match="needs a generator prior"):
        unit_facets(net, Unit("fc", 0, None), pool, values, 2, 6, "conv", dataclasses.replace(PIXELS,
                    parameterization="code"))
    with pytest.raises(ValueError, match="top must be between"):
        unit_facets(net, Unit("fc", 0, None), pool, values, 2, 13, "conv", PIXELS)
