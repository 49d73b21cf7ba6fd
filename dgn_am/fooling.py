"""Fooling images (Nguyen, Yosinski & Clune, CVPR 2015): images a network puts in a class with >= 99.6% confidence
that a person would not recognize, found by gradient ascent on directly encoded pixels, or by an evolution strategy
(CMA-ES, the maintained `cma` package) over directly encoded pixels or a CPPN's weights (dgn_am.cppn).

They fool the network they were made for, not every network: `fooling_table` reads the same images with an
independent classifier, next to the target.

Confidence is the target's softmax probability of the class at its output layer. The gradient search maximizes
its log (LogProb, the engine's usual sign convention); the evolution strategy minimizes -log p (CMA-ES minimizes),
sees only the probabilities (no gradient), and stops an item once p >= threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dgn_am.cppn import CPPN
from dgn_am.engine import maximize
from dgn_am.layers import device_and_dtype, list_layers
from dgn_am.objectives import LogProb
from dgn_am.parameterizations import PixelParam
from dgn_am.steps import StepRule

THRESHOLD = 0.996  # Nguyen et al.'s confidence for a fooling image
ENCODINGS = ("direct", "cppn")


@dataclass
class Fooled:
    """images (N, C, H, W) in [0, 1]; classes and seeds (N,) of each item; confidence (N,) the target's softmax
    probability of the item's class; cost (N,) forward passes of one image spent on the item (gradient: steps;
    evolution: genomes evaluated); settings: how they were made."""

    images: torch.Tensor
    classes: list[int]
    seeds: list[int]
    confidence: list[float]
    cost: list[int]
    settings: dict = field(default_factory=dict)


def output_layer(model: torch.nn.Module) -> str:
    """The name of the model's last layer, whose softmax gives the class probabilities."""
    return list_layers(model)[-1][0]


@torch.no_grad()
def class_probabilities(model: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Softmax of the model's output for images (N, C, H, W) in [0, 1]: (N, classes), float64 on the CPU."""
    device = device_and_dtype(model)[0]
    out = [F.softmax(model(images[i: i + batch].to(device)).flatten(1).double(), 1).cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out)


def _check_classes(model: torch.nn.Module, classes: Sequence[int]) -> None:
    n = list_layers(model)[-1][2][0]
    bad = [c for c in classes if not 0 <= c < n]
    if bad:
        raise ValueError(f"classes {bad} are outside the model's {n} outputs (0 to {n - 1})")


def fool_gradient(model: torch.nn.Module, classes: Sequence[int], seeds: Sequence[int], steps: int = 200,
                  lr: float = 0.01, noise_std: float = 0.2,
                  progress: Callable[[int, int, torch.Tensor], None] | None = None) -> Fooled:
    """Gradient ascent on log p(class) over raw pixels (direct encoding, no prior, no regularizer), from uniform
    grey plus N(0, noise_std^2) noise per seed; Adam with step `lr`; pixels kept in [0, 1]. One item per
    (class, seed) pair, classes outer."""
    _check_classes(model, classes)
    items = [(c, s) for c in classes for s in seeds]
    spec = model.input_spec
    param = PixelParam((spec.channels, *spec.size), centre=0.5, init="randn", init_std=noise_std)
    objective = LogProb(output_layer(model), [c for c, _ in items])
    result = maximize(model, objective, param, [s for _, s in items], steps, StepRule("adam", lr=lr),
                      progress=progress)
    probs = class_probabilities(model, result.images)
    conf = [float(probs[i, c]) for i, (c, _) in enumerate(items)]
    settings = {"search": "gradient", "encoding": "direct", "steps": steps, "lr": lr, "noise_std": noise_std}
    return Fooled(result.images, [c for c, _ in items], [s for _, s in items], conf, [steps] * len(items), settings)


def _decoder(encoding: str, shape: tuple[int, int, int], hidden: int) -> tuple[Callable, int, float]:
    """(genomes (P, D) -> images (P, C, H, W), D, default sigma0) for an encoding."""
    if encoding == "direct":  # a genome is the image itself; values outside [0, 1] are clipped
        return (lambda g: g.clamp(0, 1).view(-1, *shape)), int(np.prod(shape)), 0.25
    if encoding == "cppn":
        cppn = CPPN(shape, hidden)
        return cppn.images, cppn.genome_size, 1.0
    raise ValueError(f"unknown encoding '{encoding}'; use {' or '.join(ENCODINGS)}")


def _start(encoding: str, size: int, seed: int) -> np.ndarray:
    """The seed's first mean: uniform [0, 1] pixels (direct) or N(0, 1) weights (cppn), from a seeded generator."""
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.rand(size, generator=gen) if encoding == "direct" else torch.randn(size, generator=gen)
    return x.double().numpy()


def evolve_one(model: torch.nn.Module, cls: int, seed: int, encoding: str, generations: int, popsize: int | None,
               sigma: float | None, threshold: float, hidden: int = 8,
               progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, float, int]:
    """CMA-ES for one (class, seed): (best image (C, H, W), its confidence, genomes evaluated). Diagonal
    covariance (sep-CMA) for the direct encoding's many dimensions; full covariance for the CPPN's weights."""
    import cma

    spec = model.input_spec
    decode, size, sigma0 = _decoder(encoding, (spec.channels, *spec.size), hidden)
    opts = {"seed": int(seed) + 1, "verbose": -9, "maxiter": generations, "ftarget": -math.log(threshold),
            "CMA_diagonal": encoding == "direct"}  # cma treats seed 0 as "draw one from the clock": shift by 1
    if popsize is not None:
        opts["popsize"] = popsize
    es = cma.CMAEvolutionStrategy(_start(encoding, size, seed), sigma or sigma0, opts)
    while not es.stop():
        genomes = es.ask()
        images = decode(torch.from_numpy(np.stack(genomes)).float())
        p = class_probabilities(model, images)[:, cls]
        es.tell(genomes, (-torch.log(p.clamp(min=1e-300))).tolist())
        if progress is not None:
            progress(len(genomes))
    best = decode(torch.from_numpy(np.asarray(es.result.xbest)).float().view(1, -1))
    return best[0], float(class_probabilities(model, best)[0, cls]), int(es.result.evaluations)


def fool_evolution(model: torch.nn.Module, classes: Sequence[int], seeds: Sequence[int], encoding: str = "cppn",
                   generations: int = 200, popsize: int | None = None, sigma: float | None = None,
                   threshold: float = THRESHOLD, hidden: int = 8,
                   progress: Callable[[int], None] | None = None) -> Fooled:
    """CMA-ES on the target's confidence alone, one run per (class, seed), classes outer; each run stops at
    `threshold` or after `generations`. popsize None: cma's default 4 + 3 ln(D); sigma None: 0.25 (direct) or
    1.0 (cppn). progress(n) is told every batch of n genomes evaluated."""
    _check_classes(model, classes)
    _decoder(encoding, (1, 1, 1), hidden)  # reject an unknown encoding before any run
    images, conf, cost, items = [], [], [], [(c, s) for c in classes for s in seeds]
    for c, s in items:
        image, p, n = evolve_one(model, c, s, encoding, generations, popsize, sigma, threshold, hidden, progress)
        images.append(image)
        conf.append(p)
        cost.append(n)
    settings = {"search": "evolution", "encoding": encoding, "generations": generations, "popsize": popsize,
                "sigma": sigma, "threshold": threshold, "strategy": "CMA-ES (cma)"}
    if encoding == "cppn":
        settings["cppn_hidden"] = hidden
    return Fooled(torch.stack(images), [c for c, _ in items], [s for _, s in items], conf, cost, settings)


def fooling_table(target: torch.nn.Module, judge: torch.nn.Module, images: torch.Tensor, classes: Sequence[int],
                  threshold: float = THRESHOLD) -> list[dict]:
    """One row per image (N, C, H, W): class; target_conf (the target's probability of the class), fooled (>=
    threshold); judge_class (the independent judge's top class), judge_agrees (judge_class == class) and
    judge_conf (the judge's probability of the class)."""
    pt, pj = class_probabilities(target, images), class_probabilities(judge, images)
    rows = []
    for i, c in enumerate(classes):
        rows.append({"class": int(c), "target_conf": float(pt[i, c]), "fooled": bool(pt[i, c] >= threshold),
                     "judge_class": int(pj[i].argmax()), "judge_agrees": bool(int(pj[i].argmax()) == c),
                     "judge_conf": float(pj[i, c])})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Means over rows of fooling_table: fooled (fraction), target_conf, judge_agrees (fraction), judge_conf."""
    if not rows:
        raise ValueError("no rows to summarize")
    keys = ("fooled", "target_conf", "judge_agrees", "judge_conf")
    return {k: sum(float(r[k]) for r in rows) / len(rows) for k in keys} | {"n": len(rows)}
