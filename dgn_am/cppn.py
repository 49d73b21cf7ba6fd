"""A compositional pattern-producing network (CPPN, Stanley 2007): an image as a function of pixel coordinates, the
indirect encoding Nguyen, Yosinski & Clune (2015) evolved fooling images with.

Every pixel (row, column) is mapped to the inputs (x, y, r, 1), x and y in [-1, 1] from the image's left/top edge
to its right/bottom edge and r = sqrt(x^2 + y^2) / sqrt(2) in [0, 1]; two hidden layers whose units use, in turn,
sin, a Gaussian, tanh and a sigmoid; C sigmoid outputs, the pixel's channels in [0, 1]. The genome is every weight
(and the hidden and output biases), a flat vector, so any evolution strategy can search it. Nguyen et al. evolved
the topology too (NEAT); here the topology is fixed and only the weights evolve.
"""

from __future__ import annotations

import math

import torch

ACTIVATIONS = ("sin", "gauss", "tanh", "sigmoid")  # hidden unit j uses ACTIVATIONS[j % 4]


def _activate(z: torch.Tensor) -> torch.Tensor:
    """z (..., H) -> each hidden unit's own activation, unit j ACTIVATIONS[j % 4]."""
    kind = torch.arange(z.shape[-1], device=z.device) % 4
    return torch.where(kind == 0, torch.sin(z), torch.where(kind == 1, torch.exp(-z * z),
                       torch.where(kind == 2, torch.tanh(z), torch.sigmoid(z))))


class CPPN:
    """Fixed-topology CPPN for (C, H, W) images with `hidden` units in each of its two hidden layers."""

    def __init__(self, shape: tuple[int, int, int], hidden: int = 8) -> None:
        self.shape, self.hidden = tuple(shape), hidden
        c, h, w = self.shape
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        r = (xs * xs + ys * ys).sqrt() / math.sqrt(2)
        self.inputs = torch.stack([xs, ys, r, torch.ones_like(xs)], -1).view(h * w, 4)  # (HW, 4)
        # genome layout: W1 (4, hidden) | W2 (hidden, hidden) | b2 (hidden) | W3 (hidden, C) | b3 (C)
        self.sizes = (4 * hidden, hidden * hidden, hidden, hidden * c, c)

    @property
    def genome_size(self) -> int:
        return sum(self.sizes)

    def images(self, genomes: torch.Tensor) -> torch.Tensor:
        """genomes (P, genome_size) -> images (P, C, H, W) in [0, 1]."""
        if genomes.dim() != 2 or genomes.shape[1] != self.genome_size:
            raise ValueError(f"CPPN genomes must be (P, {self.genome_size}), got {tuple(genomes.shape)}")
        c, h, w = self.shape
        w1, w2, b2, w3, b3 = torch.split(genomes.float(), self.sizes, dim=1)
        k = self.hidden
        a = _activate(self.inputs @ w1.view(-1, 4, k))  # (P, HW, hidden)
        a = _activate(a @ w2.view(-1, k, k) + b2[:, None, :])  # (P, HW, hidden)
        out = torch.sigmoid(a @ w3.view(-1, k, c) + b3[:, None, :])  # (P, HW, C)
        return out.transpose(1, 2).reshape(-1, c, h, w)
