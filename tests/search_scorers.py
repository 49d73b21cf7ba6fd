"""Scorers for the search tests, importable as `tests.search_scorers:NAME` (the package.module:function path)."""

from __future__ import annotations

import torch


def brightness(images: torch.Tensor) -> torch.Tensor:
    """images (N, C, H, W) in [0, 1] -> (N,) mean pixel value: a stand-in for a recorded neuron."""
    return images.mean((1, 2, 3))
