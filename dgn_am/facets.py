"""Multifaceted feature visualization (Nguyen, Yosinski & Clune 2016): one preferred input per kind of real image a
unit responds to.

For each unit:
  1. its top real images: the n pool images on which the unit (read as `dgn_am.layers` reads units) is highest;
  2. k-means (scikit-learn) on those images' features at a chosen layer (the paper: fc7, a high layer), k facets;
  3. each facet starts from its cluster's mean: the mean image (pixels: x = mean image + p, with the method's centre
     bias, so the unoptimized border stays the mean image) or the mean of the prior encoder's codes of the cluster's
     images (code methods), and is optimized for the unit with a registered method.
Clusters are numbered by size, largest first (ties: by the cluster's best activation); a cluster's members are
listed from the unit's highest activation down.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dgn_am.layers import Unit, device_and_dtype, read_units, run
from dgn_am.methods import Method, synthesize


@dataclass
class Facets:
    """One unit's facets. images and starts (k, C, H, W) in [0, 1]: the optimized facets and the images they started
    from; activations (k,) the unit's value on each facet; clusters: for each facet, the indices into the pool of
    its cluster's members, best first; top (n,) pool indices of the unit's top images, best first; top_values (n,)
    the unit's values on them."""

    unit: Unit
    images: torch.Tensor
    starts: torch.Tensor
    activations: list[float]
    clusters: list[list[int]]
    top: list[int]
    top_values: list[float] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


@torch.no_grad()
def unit_values(model: torch.nn.Module, images: torch.Tensor, units: Sequence[Unit], batch: int = 500) -> torch.Tensor:
    """Every unit on every image: images (N, C, H, W) in [0, 1] -> (N, U), units read as dgn_am.layers reads them."""
    device = device_and_dtype(model)[0]
    layers = list(dict.fromkeys(u.layer for u in units))
    out = []
    for lo in range(0, len(images), batch):
        acts = run(model, images[lo: lo + batch].to(device), layers)
        out.append(torch.stack([read_units(acts[u.layer], [u] * len(images[lo: lo + batch])) for u in units], 1))
    return torch.cat(out).cpu()


@torch.no_grad()
def layer_features(model: torch.nn.Module, images: torch.Tensor, layer: str, batch: int = 500) -> torch.Tensor:
    """A layer's output as it is (after its ReLU), flattened: (N, D) on the CPU."""
    device = device_and_dtype(model)[0]
    return torch.cat([run(model, images[lo: lo + batch].to(device), [layer], raw=True)[layer].flatten(1).cpu()
                      for lo in range(0, len(images), batch)])


def kmeans_clusters(features: torch.Tensor, k: int, seed: int = 0) -> list[list[int]]:
    """k-means (scikit-learn, 10 restarts, seeded) on rows of features (n, D): k lists of row indices, largest
    cluster first, each in its original row order."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(features):
        raise ValueError(f"k must be between 1 and the number of top images ({len(features)}), got {k}")
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features.double().numpy())
    groups = [np.flatnonzero(labels == c).tolist() for c in range(k)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _optimize(model: torch.nn.Module, unit: Unit, method: Method, starts: torch.Tensor, seeds: list[int],
              prior: Any, progress: Callable | None) -> tuple[torch.Tensor, list[float]]:
    """Run `method` for the unit once per facet start; starts are codes (k, D) or mean images (k, C, H, W)."""
    if method.parameterization == "code":
        m = dataclasses.replace(method, init="codes", options=method.options + (("init_codes", starts),))
        result, _ = synthesize(model, [unit], seeds, m, prior=prior, progress=progress)
        return result.images.cpu(), result.activations.tolist()
    images, acts = [], []
    for seed, mean in zip(seeds, starts):  # pixels: a centre image per run
        m = dataclasses.replace(method, init="mean-image", options=method.options + (("mean_image", mean),))
        result, _ = synthesize(model, [unit], [seed], m, prior=prior, progress=progress)
        images.append(result.images[0].cpu())
        acts.append(float(result.activations[0]))
    return torch.stack(images), acts


def unit_facets(model: torch.nn.Module, unit: Unit, pool: torch.Tensor, values: torch.Tensor, k: int, top: int,
                cluster_layer: str, method: Method, prior: Any = None, seed: int = 0,
                progress: Callable | None = None) -> Facets:
    """The facets of `unit` from the pool images (N, C, H, W) in [0, 1] and the unit's values on them (N,).

    method: a registered method with the "code" parameterization (needs `prior`; each facet starts from its
    cluster's mean code) or "pixels" (each starts from its cluster's mean image). seed: k-means' and the first
    facet's seed (facet i gets seed + i)."""
    if method.parameterization not in ("code", "pixels"):
        raise ValueError(f"facets start from mean codes or mean images: method {method.name} optimizes "
                         f"{method.parameterization}; choose a code or pixels method (dgn-am methods)")
    if not 1 <= top <= len(pool):
        raise ValueError(f"top must be between 1 and the pool size ({len(pool)}), got {top}")
    order = values.argsort(descending=True)[:top].tolist()
    groups = [[order[i] for i in g] for g in kmeans_clusters(layer_features(model, pool[order], cluster_layer), k,
                                                             seed)]
    means = torch.stack([pool[g].mean(0) for g in groups])  # (k, C, H, W)
    if method.parameterization == "code":
        from dgn_am.priors import encode

        if prior is None:
            raise ValueError(f"method {method.name} needs a generator prior (--prior) for the clusters' mean codes")
        codes = torch.stack([encode(prior, pool[g]).mean(0) for g in groups]).cpu()  # (k, code_dim)
        starts_shown = prior.image(codes.to(prior.lower.device), model.input_spec).cpu()
        images, acts = _optimize(model, unit, method, codes, [seed + i for i in range(k)], prior, progress)
    else:
        starts_shown = means
        images, acts = _optimize(model, unit, method, means, [seed + i for i in range(k)], prior, progress)
    settings = {"method": method.name, "k": k, "top": top, "cluster_layer": cluster_layer, "seed": seed,
                "start": "mean code" if method.parameterization == "code" else "mean image"}
    return Facets(unit, images, starts_shown, acts, groups, order, values[order].tolist(), settings)


def own_cluster_rate(model: torch.nn.Module, facets: Facets, pool: torch.Tensor, layer: str) -> float:
    """The fraction of facets whose features at `layer` are nearer (Euclidean) to their own cluster's mean feature
    than to any other cluster's: 1.0 when every facet stays the kind of image it started from."""
    centroids = torch.stack([layer_features(model, pool[g], layer).mean(0) for g in facets.clusters])  # (k, D)
    nearest = torch.cdist(layer_features(model, facets.images, layer), centroids).argmin(1)  # (k,)
    return float((nearest == torch.arange(len(facets.clusters))).float().mean())
