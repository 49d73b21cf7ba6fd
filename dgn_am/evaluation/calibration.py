"""Calibration inputs for the benchmark's metrics, and whether each metric ranks them honestly.

A metric earns trust only if, on inputs whose quality a person can see, it puts real images first and uniform
noise last, and scores the tricky corruptions (dimmed, blurred, contrast-inverted, patch-shuffled real images)
worse than real images. Each input is a (N, C, H, W) tensor in [0, 1] of S images per class, made from real test
images that are disjoint from the scorer's reference images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CORRUPTIONS = ("dimmed", "blurred", "inverted", "shuffled")
INPUTS = ("real",) + CORRUPTIONS + ("noise",)


def dim(x: torch.Tensor, factor: float = 0.35) -> torch.Tensor:
    """Low contrast and dark: x * factor. x (N, C, H, W) in [0, 1]."""
    return x * factor


def blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Gaussian blur with std sigma pixels (reflect padding), per channel."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def invert(x: torch.Tensor) -> torch.Tensor:
    """Contrast inversion: 1 - x (a bright background, a dark garment)."""
    return 1 - x


def shuffle_patches(x: torch.Tensor, patch: int = 7, seed: int = 0) -> torch.Tensor:
    """Cut each image into patch x patch tiles and permute them (one random permutation per image); keeps every
    pixel value, destroys the shape. H and W must be multiples of patch."""
    n, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    gh, gw = h // patch, w // patch
    tiles = x.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c, patch, patch)
    gen = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(gh * gw, generator=gen) for _ in range(n)])  # (N, tiles)
    tiles = tiles[torch.arange(n)[:, None], order]
    return tiles.reshape(n, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def uniform_noise(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Uniform noise in [0, 1] of the given (N, C, H, W) shape."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def calibration_inputs(real: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """{name: images} for every name in INPUTS, each the same shape as real (N, C, H, W)."""
    return {"real": real, "dimmed": dim(real), "blurred": blur(real), "inverted": invert(real),
            "shuffled": shuffle_patches(real, patch=max(1, real.shape[-1] // 4), seed=seed),
            "noise": uniform_noise(tuple(real.shape), seed=seed)}


def judge_ranking(scores: dict[str, float], higher_is_better: bool) -> dict:
    """Does one metric rank the calibration inputs honestly? scores: {input name: value}.

    Returns real_best (real strictly better than every other input), noise_worst (noise strictly worse than
    every other input), corruptions_below_real (each corruption worse than real: {name: bool}), the order from
    best to worst, and passes (all of the above)."""
    sign = 1.0 if higher_is_better else -1.0
    good = {k: sign * v for k, v in scores.items() if v is not None and np.isfinite(v)}
    order = sorted(good, key=lambda k: -good[k])
    real_best = "real" in good and all(good["real"] > v for k, v in good.items() if k != "real")
    noise_worst = "noise" in good and all(good["noise"] < v for k, v in good.items() if k != "noise")
    below = {k: bool("real" in good and k in good and good[k] < good["real"]) for k in CORRUPTIONS}
    return {"real_best": bool(real_best), "noise_worst": bool(noise_worst), "corruptions_below_real": below,
            "order": order, "passes": bool(real_best and noise_worst and all(below.values()))}


def calibrate(metric_fn, real: torch.Tensor, classes: torch.Tensor, seeds_per_class: int,
              metrics: dict[str, bool], seed: int = 0) -> dict:
    """Score every calibration input with every metric and judge each metric's ranking.

    metric_fn(images (N, C, H, W), classes (N,)) -> {metric name: value}: the benchmark's own scoring.
    real (N, C, H, W): real test images grouped as `seeds_per_class` rows per class, disjoint from the reference.
    metrics: {metric name: higher_is_better} for the metrics to judge.
    Returns {"scores": {input: {metric: value}}, "verdicts": {metric: judge_ranking(...)}}."""
    inputs = calibration_inputs(real, seed=seed)
    scores = {name: metric_fn(x, classes) for name, x in inputs.items()}
    verdicts = {m: judge_ranking({name: scores[name].get(m) for name in inputs}, hib) for m, hib in metrics.items()}
    return {"inputs": list(INPUTS), "seeds_per_class": seeds_per_class, "scores": scores, "verdicts": verdicts}
