"""Dataset views: top-k images and patches, neighbours, embeddings, filters, and the map helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dgn_am.explain import (embed_2d, filter_tiles, first_conv, first_layer_filters, heatmap, layer_features,
                            nearest_neighbours, overlay, plot_embedding, reduce_channels, top_k_images,
                            top_k_patches)
from dgn_am.explain.dataset_views import fit_images
from dgn_am.explain.plots import plot_panel


def box_filter() -> nn.Sequential:
    """'0': the 3x3 sum with zero padding (receptive field 3, stride 1, offset -1); '2': the image mean."""
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    return net


def blobs() -> torch.Tensor:
    """Three 8x8 images: a 3x3 block at rows 2-4, cols 5-7; a 2x2 block in the top-left corner; blank."""
    x = torch.zeros(3, 1, 8, 8)
    x[0, 0, 2:5, 5:8] = 1
    x[1, 0, 0:2, 0:2] = 1
    return x


def test_top_k_images_strongest_first_ties_to_the_lower_index():
    x = torch.stack([torch.full((1, 4, 4), v) for v in (0.2, 0.9, 0.5, 0.9, 0.1)])
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    top = top_k_images(net, x, "1:0", k=3, batch_size=2)
    assert top.indices.tolist() == [1, 3, 2]
    assert torch.allclose(top.values, torch.tensor([0.9, 0.9, 0.5]))
    assert layer_features(net, x, "1", batch_size=3).shape == (5, 1)


def test_top_k_patches_crop_the_receptive_field_at_the_strongest_position():
    p = top_k_patches(box_filter(), blobs(), "0:0", k=2, fill=-1.0)
    assert p.indices.tolist() == [0, 1] and p.values.tolist() == [9.0, 4.0]
    assert p.positions.tolist() == [[3, 6], [0, 0]]  # image 1 ties at (0, 0) and (1, 1): the first wins
    assert p.boxes.tolist() == [[2, 5, 5, 8], [0, 0, 2, 2]]
    assert torch.equal(p.crops[0, 0], torch.ones(3, 3))
    assert torch.equal(p.crops[1, 0], torch.tensor([[-1.0, -1, -1], [-1, 1, 1], [-1, 1, 1]]))  # beyond the border
    fixed = top_k_patches(box_filter(), blobs(), "0:0@4,7", k=1)  # rows 3-5, cols 6-8: 4 pixels of the block
    assert fixed.indices.tolist() == [0] and fixed.values.tolist() == [4.0] and fixed.boxes.tolist() == [[3, 6, 6, 8]]
    with pytest.raises(ValueError, match="no spatial positions"):
        top_k_patches(box_filter(), blobs(), "2:0")


def test_nearest_neighbours_by_hand():
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    idx, dist = nearest_neighbours(torch.tensor([[0.9, 0.0]]), feats, k=3)
    assert idx.tolist() == [[1, 0, 2]]
    assert torch.allclose(dist, torch.tensor([[0.1, 0.9, (0.81 + 4) ** 0.5]]))
    idx, _ = nearest_neighbours(feats[1:2], feats, k=2, exclude=torch.tensor([1]))
    assert idx.tolist() == [[0, 2]]  # itself skipped
    idx, dist = nearest_neighbours(torch.tensor([[2.0, 2.0]]), feats[1:], k=3, metric="cosine")
    assert idx.tolist() == [[2, 0, 1]] and torch.allclose(dist[0, 0], torch.tensor(0.0), atol=1e-7)
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(feats[:1], feats, k=5)


def test_pca_recovers_a_plane_and_tsne_repeats_with_its_seed():
    g = torch.Generator().manual_seed(0)
    plane = torch.randn(30, 2, generator=g) * torch.tensor([3.0, 1.0])
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    feats = torch.cat([plane.double(), torch.zeros(30, 4, dtype=torch.float64)], 1) @ rotation.T
    xy = embed_2d(feats, "pca")
    d = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    assert xy.shape == (30, 2) and np.allclose(d(xy), d(plane.double().numpy()), atol=1e-8)
    a, b = embed_2d(feats, "tsne", seed=3, threads=1), embed_2d(feats, "tsne", seed=3, threads=1)
    assert a.shape == (30, 2) and np.array_equal(a, b)
    with pytest.raises(ValueError, match="unknown embedding"):
        embed_2d(feats, "umap")


def test_first_layer_filters_and_tiles(caffenet):
    assert first_conv(caffenet)[0] == "conv1.0"
    assert first_layer_filters(caffenet).shape == (32, 1, 3, 3)
    w = torch.tensor([[[[2.0, -1.0], [0.0, -4.0]]]])
    assert torch.equal(filter_tiles(w), torch.tensor([[[[0.75, 0.375], [0.5, 0.0]]]]))
    assert filter_tiles(torch.randn(4, 5, 3, 3)).shape == (20, 1, 3, 3)  # one grey tile per channel


def test_map_helpers():
    a = torch.tensor([[[[1.0, -3.0]], [[2.0, 1.0]]]])  # (1, 2, 1, 2)
    assert reduce_channels(a, "sum").tolist() == [[[3.0, -2.0]]]
    assert reduce_channels(a, "abs-max").tolist() == [[[2.0, 3.0]]]
    rgb = heatmap(torch.tensor([[0.0, 1.0]]))
    assert rgb.shape == (3, 1, 2) and rgb.min() >= 0 and rgb.max() <= 1
    assert torch.allclose(heatmap(torch.tensor([[-1.0, 0.0, 1.0]]))[:, 0, 1], torch.ones(3), atol=0.05)  # 0 ~ white
    image = torch.full((1, 4, 4), 0.3)
    out = overlay(image, torch.zeros(2, 2))
    assert torch.allclose(out, torch.full((3, 4, 4), 0.3))  # an empty map leaves the image as it is


def test_fit_images_and_figures():
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = fit_images(x, 3, (56, 40))
    assert y.shape == (2, 3, 56, 40) and torch.equal(y[:, 0], y[:, 2])
    assert torch.equal(fit_images(x, 1, (28, 28)), x)
    coords = np.random.default_rng(0).normal(size=(12, 2))
    fig = plot_embedding(coords, labels=[i % 3 for i in range(12)], class_names=["a", "b", "c"],
                         images=torch.rand(12, 1, 8, 8), thumbnails=4)
    assert len(fig.axes) == 1 and len(fig.axes[0].artists) >= 1
    assert len(plot_panel([torch.rand(3, 4, 4)] * 3, ["x", "y", "z"]).axes) == 3
    with pytest.raises(ValueError, match="one image per point"):
        plot_embedding(coords, thumbnails=3)
