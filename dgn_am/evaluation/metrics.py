"""Metrics on sets of images. Pure functions on tensors; no file output."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dgn_am.layers import run


@torch.no_grad()
def judge(model: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor, batch: int = 500) -> dict:
    """How an evaluator network classifies images (N, C, H, W) in [0, 1] meant to show `classes` (N,).

    Returns top1 (fraction whose argmax is the class), prob (mean softmax probability of the class), and the
    per-image correct (N,) bool and prob (N,) tensors."""
    probs = torch.cat([F.softmax(model(images[i: i + batch]), 1) for i in range(0, len(images), batch)])
    p = probs[torch.arange(len(classes)), classes.to(probs.device)]
    correct = probs.argmax(1) == classes.to(probs.device)
    return {"top1": float(correct.float().mean()), "prob": float(p.mean()), "correct": correct.cpu(), "p": p.cpu()}


@torch.no_grad()
def features(model: torch.nn.Module, images: torch.Tensor, layer: str, batch: int = 500) -> torch.Tensor:
    """A layer's activations, flattened: (N, D)."""
    return torch.cat([run(model, images[i: i + batch], [layer])[layer].flatten(1) for i in range(0, len(images), batch)])


def mean_pairwise_cosine_distance(f: torch.Tensor) -> float:
    """Mean of 1 - cos(f_i, f_j) over pairs i < j of the rows of f (N, D), N >= 2."""
    if len(f) < 2:
        raise ValueError("need at least two feature vectors")
    z = F.normalize(f.double(), dim=1)
    sim = z @ z.T
    iu = torch.triu_indices(len(f), len(f), offset=1)
    return float((1 - sim[iu[0], iu[1]]).mean())
