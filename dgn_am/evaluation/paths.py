"""The path-similarity sanity check of Geirhos et al. (ICML 2024, "Don't trust your eyes"): does a synthesized image
reach the unit along the same activation path as the real images that drive it?

An image's path is its per-layer activation pattern on the way to the unit: for every top-level layer before the
unit's (pass-through and pooling modules skipped), the vector of channel activations (a conv map averaged over
positions; a fc layer as it is), as the module outputs it. A unit's reference path is the mean path of the `top` real images that
drive it most. An image's path similarity is the Spearman rank correlation between its pattern and the reference
pattern, layer by layer, averaged over the layers: 1 when it excites the channels in the same order as the unit's
best real images, about 0 for an unrelated pattern. Returns data only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dgn_am.layers import Unit, list_layers, read_units, run

SKIP = ("Dropout", "Flatten", "Identity", "MaxPool", "AvgPool", "AdaptiveAvgPool")  # pass-through or pooled copies
TOP_IMAGES = 20  # real images that define a unit's reference path


def path_layers(model: torch.nn.Module, layer: str) -> list[str]:
    """The top-level layers that run before `layer` (excluded), pass-through and pooling modules skipped."""
    names = []
    for name, kind, _ in list_layers(model):
        if name == layer:
            return names
        if "." not in name and not any(kind.startswith(s) for s in SKIP):
            names.append(name)
    raise ValueError(f"layer '{layer}' is not a top-level layer of the model")


@torch.no_grad()
def activation_path(model: torch.nn.Module, images: torch.Tensor, layers: list[str],
                    batch: int = 500) -> list[np.ndarray]:
    """Per layer, the channel pattern of each image: [(N, C_l) float64], conv maps averaged over positions."""
    out: dict[str, list] = {name: [] for name in layers}
    device = next(model.parameters()).device
    for lo in range(0, len(images), batch):
        acts = run(model, images[lo: lo + batch].to(device), layers, raw=True)
        for name in layers:
            a = acts[name]
            out[name].append((a.mean((2, 3)) if a.dim() == 4 else a.flatten(1)).double().cpu())
    return [torch.cat(out[name]).numpy() for name in layers]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties given their mean rank (as Spearman's rho needs), float64."""
    order = np.argsort(x, axis=-1, kind="stable")
    ranks = np.empty_like(x, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(x.shape[-1], dtype=np.float64)[None].repeat(len(x), 0), axis=-1)
    for i in range(len(x)):  # average the ranks of tied values
        vals, inverse, counts = np.unique(x[i], return_inverse=True, return_counts=True)
        if len(vals) < x.shape[-1]:
            sums = np.bincount(inverse, weights=ranks[i])
            ranks[i] = (sums / counts)[inverse]
    return ranks


def spearman_rows(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Spearman's rho between each row of a (N, C) and ref (C,): (N,); 0 for a constant row (no order at all)."""
    ra = _ranks(np.asarray(a, dtype=np.float64))
    rr = _ranks(np.asarray(ref, dtype=np.float64)[None])[0]
    ra, rr = ra - ra.mean(1, keepdims=True), rr - rr.mean()
    den = np.sqrt((ra ** 2).sum(1) * (rr ** 2).sum())
    return np.where(den > 0, (ra @ rr) / np.where(den > 0, den, 1.0), 0.0)


@dataclass
class PathReference:
    """Reference paths of units: per unit address, the mean per-layer pattern of its top real images."""

    layers: list[str]  # the path's layers
    reference: dict[str, list[np.ndarray]]  # unit address -> [(C_l,)] per layer
    top: int  # real images per reference

    @classmethod
    @torch.no_grad()
    def build(cls, model: torch.nn.Module, units: list[Unit], real: torch.Tensor, top: int = TOP_IMAGES
              ) -> "PathReference":
        """From real images (M, C, H, W): each unit's `top` most exciting ones (read as synthesize reads it)."""
        if len({u.layer for u in units}) != 1:
            raise ValueError("path references are built for units of one layer")
        layer = units[0].layer
        layers = path_layers(model, layer)
        if not layers:
            raise ValueError(f"no layer runs before '{layer}': a path needs at least one")
        device = next(model.parameters()).device
        acts = torch.cat([run(model, real[lo: lo + 500].to(device), [layer])[layer].cpu()
                          for lo in range(0, len(real), 500)])
        paths = activation_path(model, real, layers)
        reference = {}
        for u in units:
            score = read_units(acts, [u] * len(acts))
            idx = score.topk(min(top, len(real))).indices.numpy()
            reference[str(u)] = [p[idx].mean(0) for p in paths]
        return cls(layers, reference, min(top, len(real)))

    def similarity(self, model: torch.nn.Module, images: torch.Tensor, units: list[Unit]) -> np.ndarray:
        """images (N, C, H, W) made for units[n] -> (N,) path similarity in [-1, 1]: the mean over layers of the
        Spearman correlation of each image's pattern with its unit's reference pattern."""
        paths = activation_path(model, images, self.layers)
        out = np.zeros(len(images))
        for n, u in enumerate(units):
            ref = self.reference[str(u)]
            out[n] = np.mean([spearman_rows(p[n: n + 1], r)[0] for p, r in zip(paths, ref)])
        return out
