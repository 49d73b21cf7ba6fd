"""What to maximize. Every objective maps captured activations to a (B,) tensor to MAXIMIZE.

The sign is flipped in exactly one place, the engine, which minimizes -objective. Objectives compose:
`UnitObjective(units) + 0.5 * Diversity("conv3", groups)`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from dgn_am.layers import Unit, read_units

Acts = dict[str, torch.Tensor]


class Objective:
    """Base: `layers` names what must be captured; __call__(acts) -> (B,) values to maximize."""

    layers: tuple[str, ...] = ()

    def __call__(self, acts: Acts) -> torch.Tensor:
        raise NotImplementedError

    def __add__(self, other: "Objective") -> "Objective":
        return _Combined(self, other, lambda a, b: a + b)

    def __sub__(self, other: "Objective") -> "Objective":
        return _Combined(self, other, lambda a, b: a - b)

    def __mul__(self, k: float) -> "Objective":
        return _Scaled(self, float(k))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return _Scaled(self, -1.0)


class _Combined(Objective):
    def __init__(self, a: Objective, b: Objective, op: Callable) -> None:
        self.a, self.b, self.op = a, b, op
        self.layers = tuple(dict.fromkeys(a.layers + b.layers))

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.op(self.a(acts), self.b(acts))


class _Scaled(Objective):
    def __init__(self, a: Objective, k: float) -> None:
        self.a, self.k, self.layers = a, k, a.layers

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.k * self.a(acts)


class UnitObjective(Objective):
    """The raw activation of one unit per batch item: units[b] is item b's target (any mix of layers).

    For an output layer this is the pre-softmax logit, as in DGN-AM.
    """

    def __init__(self, units: Sequence[Unit]) -> None:
        self.units = list(units)
        self.layers = tuple(dict.fromkeys(u.layer for u in self.units))

    def __call__(self, acts: Acts) -> torch.Tensor:
        first = acts[self.layers[0]]
        if len(self.layers) == 1:
            return read_units(first, self.units)
        out = torch.zeros(len(self.units), dtype=first.dtype, device=first.device)
        for layer in self.layers:
            rows = [i for i, u in enumerate(self.units) if u.layer == layer]
            idx = torch.tensor(rows, device=first.device)
            out = out.index_put((idx,), read_units(acts[layer][idx], [self.units[i] for i in rows]))
        return out


class LogProb(Objective):
    """log softmax of a logit layer at each item's class: (B,). Raising it may lower the other classes instead."""

    def __init__(self, layer: str, classes: Sequence[int]) -> None:
        self.layers, self.classes = (layer,), list(classes)

    def __call__(self, acts: Acts) -> torch.Tensor:
        logp = F.log_softmax(acts[self.layers[0]].flatten(1), dim=1)
        return logp[torch.arange(len(self.classes)), torch.tensor(self.classes, device=logp.device)]


class LayerObjective(Objective):
    """DeepDream: mean squared activation of a whole layer, (B,)."""

    def __init__(self, layer: str) -> None:
        self.layers = (layer,)

    def __call__(self, acts: Acts) -> torch.Tensor:
        return acts[self.layers[0]].flatten(1).pow(2).mean(1)


class Direction(Objective):
    """Dot product of a layer's (spatially averaged) activation with a direction: (C,) or (B, C)."""

    def __init__(self, layer: str, direction: torch.Tensor) -> None:
        self.layers, self.direction = (layer,), direction

    def __call__(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layers[0]]
        a = a.mean((2, 3)) if a.dim() == 4 else a  # (B, C)
        return (a * self.direction.to(a)).sum(1)


class Diversity(Objective):
    """Olah et al.'s diversity term: minus the mean cosine similarity of an item's Gram matrix with those of the
    other items in its group (same unit), (B,). Items alone in their group score 0."""

    def __init__(self, layer: str, groups: Sequence[int]) -> None:
        self.layers, self.groups = (layer,), list(groups)

    def __call__(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layers[0]]
        a = a.flatten(2) if a.dim() == 4 else a.unsqueeze(2)  # (B, C, HW)
        gram = F.normalize(torch.bmm(a, a.transpose(1, 2)).flatten(1), dim=1)  # (B, C*C)
        sim = gram @ gram.T  # (B, B)
        g = torch.tensor(self.groups, device=a.device)
        same = (g[:, None] == g[None, :]) & ~torch.eye(len(g), dtype=torch.bool, device=a.device)
        count = same.sum(1).clamp(min=1)
        return -(sim * same).sum(1) / count


class RepresentationDistance(Objective):
    """How far a layer's activation has moved from a reference: ||a - ref||^2 / ||ref||^2 per item, (B,) >= 0.

    reference: (1, ...) or (B, ...) activations of the layer (e.g. of the seed images); feature accentuation
    subtracts `weight * RepresentationDistance(layer, ref)` from the unit's activation to keep the image close to
    its seed's representation."""

    def __init__(self, layer: str, reference: torch.Tensor) -> None:
        self.layers, self.reference = (layer,), reference.detach()

    def __call__(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layers[0]].flatten(1)  # (B, D)
        ref = self.reference.to(a).flatten(1).expand_as(a)
        return (a - ref).pow(2).sum(1) / ref.pow(2).sum(1).clamp(min=1e-12)


class FeatureMatch(RepresentationDistance):
    """Feature inversion (Mahendran & Vedaldi 2015): minus RepresentationDistance to each item's target features,
    -||phi(x_b) - phi0_b||^2 / ||phi0_b||^2, (B,); 0 at a perfect match.

    target: (B, ...) the features phi0 of the images to reconstruct, read at `layer` the way the engine reads it."""

    def __call__(self, acts: Acts) -> torch.Tensor:
        return -super().__call__(acts)
