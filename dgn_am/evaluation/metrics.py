"""Metrics on sets of images. Pure functions on tensors; no file output."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
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
    return torch.cat([run(model, images[i: i + batch], [layer], raw=True)[layer].flatten(1) for i in range(0, len(images), batch)])


def mean_pairwise_cosine_distance(f: torch.Tensor) -> float:
    """Mean of 1 - cos(f_i, f_j) over pairs i < j of the rows of f (N, D), N >= 2."""
    if len(f) < 2:
        raise ValueError("need at least two feature vectors")
    z = F.normalize(f.double(), dim=1)
    sim = z @ z.T
    iu = torch.triu_indices(len(f), len(f), offset=1)
    return float((1 - sim[iu[0], iu[1]]).mean())


# Frechet distance and KID: dgn_am.evaluation.distances (on torchmetrics)


# ---- uncertainty: nested bootstrap over units, then seeds ----

def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Limit numpy's BLAS to one thread (threadpoolctl, when installed): a bootstrap does many small products,
    and on a shared machine a multi-threaded BLAS waiting for a busy core makes them 10 to 100 times slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _nested_draw(rng: np.random.Generator, sizes: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One bootstrap replicate: units drawn with replacement, then seed positions with replacement within each."""
    units = rng.integers(0, len(sizes), len(sizes))
    return units, [rng.integers(0, sizes[u], sizes[u]) for u in units]


def _interval(estimate: np.ndarray, reps: np.ndarray, level: float, recentre: bool) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of replicates reps (B, K) ignoring NaN; recentre: shift it by estimate - median(reps)."""
    lo, hi = np.nanquantile(reps, [(1 - level) / 2, (1 + level) / 2], axis=0)
    if recentre:
        shift = estimate - np.nanmedian(reps, axis=0)
        lo, hi = lo + shift, hi + shift
    return lo, hi


def bootstrap_ci(groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
                 statistic: Callable[[int, np.ndarray], float] | None = None, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0, recentre: bool = False) -> tuple[float, float, float]:
    """Mean over units of a per-unit statistic, with a percentile bootstrap interval.

    groups[u]: the per-seed values of unit u (or anything of length S_u). Each replicate draws units with
    replacement, then seeds with replacement within each drawn unit, and averages statistic(u, seed_indices)
    (default: the mean of groups[u][seed_indices]) over the drawn units, ignoring NaN (a statistic undefined for
    that draw). recentre: centre the interval on the estimate (shift it by estimate - median of the replicates),
    for statistics that a resample with repeated seeds biases, such as coverage (fewer distinct images cover
    less). Returns (estimate, low, high)."""
    groups = [np.asarray(g, dtype=np.float64) if statistic is None else g for g in groups]
    if not groups:
        raise ValueError("bootstrap_ci needs at least one unit")
    if statistic is None:
        def statistic(u: int, idx: np.ndarray) -> float:
            return float(groups[u][idx].mean())
    sizes = [len(g) for g in groups]
    estimate = float(np.mean([statistic(u, np.arange(sizes[u])) for u in range(len(groups))]))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    with _one_blas_thread():
        for r in range(n_boot):
            units, idxs = _nested_draw(rng, sizes)
            vals = np.array([statistic(u, idx) for u, idx in zip(units, idxs)])
            reps[r] = vals[~np.isnan(vals)].mean() if (~np.isnan(vals)).any() else np.nan
    if np.isnan(reps).all():
        return estimate, float("nan"), float("nan")
    lo, hi = _interval(np.array(estimate), reps, level, recentre)  # NaN replicates: no distinct pair was drawn
    return estimate, float(lo), float(hi)


def bootstrap_set_ci(groups: Sequence[np.ndarray], statistic: Callable[[np.ndarray], np.ndarray],
                     n_boot: int = 1000, level: float = 0.95, seed: int = 0, recentre: bool = True,
                     estimate: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A statistic of the whole image set (such as FID), with the nested bootstrap of bootstrap_ci.

    groups[u]: the row indices of unit u's seeds. statistic(rows) -> (K,) values (K statistics at once, so they
    share every draw) for the rows of a set, duplicates allowed. Each replicate draws units with replacement, then
    seeds with replacement within each drawn unit, and evaluates the statistic on all drawn rows. With the same
    seed, the draws are those of bootstrap_ci. recentre (default): centre the interval on the estimate, because
    FID of a resample holding repeated images is biased upward (fewer distinct images); the interval then gives
    the spread at this set size. estimate: the statistic of the whole set when another estimator gives it
    (default: statistic of all rows). Returns (estimate, low, high), each (K,)."""
    groups = [np.asarray(g) for g in groups]
    if not groups:
        raise ValueError("bootstrap_set_ci needs at least one unit")
    whole = statistic(np.concatenate(groups)) if estimate is None else estimate
    estimate = np.atleast_1d(np.asarray(whole, dtype=np.float64))
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, len(estimate)))
    with _one_blas_thread():
        for r in range(n_boot):
            units, idxs = _nested_draw(rng, [len(g) for g in groups])
            reps[r] = statistic(np.concatenate([groups[u][i] for u, i in zip(units, idxs)]))
    nan = np.isnan(reps).all(0)
    lo, hi = _interval(estimate, np.where(nan, 0.0, reps), level, recentre)
    return estimate, np.where(nan, np.nan, lo), np.where(nan, np.nan, hi)


def pairwise_cosine_distance_of(f: np.ndarray, idx: np.ndarray) -> float:
    """Mean 1 - cos over pairs of positions in idx that point at different rows of f (N, D); duplicates drawn by a
    bootstrap are not counted as zero-distance pairs. NaN when idx holds fewer than two distinct rows."""
    z = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    sim = z[idx] @ z[idx].T
    mask = idx[:, None] != idx[None, :]
    return float((1 - sim[mask]).mean()) if mask.any() else float("nan")


# ---- manifold metrics: k-nearest-neighbour balls around real samples ----

def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of a (N, D) and b (M, D): (N, M) float64, from differences (no |a|^2 +
    |b|^2 - 2ab cancellation, so equal distances compare equal)."""
    a, b = torch.as_tensor(np.asarray(a, dtype=np.float64)), torch.as_tensor(np.asarray(b, dtype=np.float64))
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").numpy()


def knn_radii(real: np.ndarray, k: int = 5) -> np.ndarray:
    """Radius of each real sample's k-NN ball: the distance from row m of real (M, D) to its k-th nearest other
    row, (M,); k is clipped to M - 1. M >= 2."""
    if len(real) < 2:
        raise ValueError(f"k-NN balls need at least 2 real feature vectors, got {len(real)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(real) - 1)
    d = _euclidean(real, real)
    np.fill_diagonal(d, np.inf)  # a sample is not its own neighbour
    return np.partition(d, k - 1, axis=1)[:, k - 1]


@dataclass
class UnitManifold:
    """Which real k-NN balls hold which generated samples, for one unit, so a bootstrap can resample its seeds
    cheaply. Precision (Kynkaenniemi et al. 2019), density and coverage (Naeem et al. 2020); a ball includes its
    boundary. Every method takes seed positions idx (default: all; duplicates count as separate samples)."""

    inside: np.ndarray  # (S, M) bool: generated sample s lies in the k-NN ball of real sample m
    k: int  # neighbours per ball (after clipping to M - 1)

    @classmethod
    def build(cls, gen: np.ndarray, real: np.ndarray, k: int = 5, radii: np.ndarray | None = None) -> "UnitManifold":
        """gen (S, D) generated features against real (M, D); radii (M,): knn_radii(real, k), if precomputed."""
        k = min(k, len(real) - 1)
        radii = knn_radii(real, k) if radii is None else radii
        return cls(_euclidean(gen, real) <= radii[None, :], k)

    def _rows(self, idx: np.ndarray | None) -> np.ndarray:
        return self.inside if idx is None else self.inside[np.asarray(idx)]

    def precision(self, idx: np.ndarray | None = None) -> float:
        """Fraction of generated samples inside at least one real ball, in [0, 1]."""
        return float(self._rows(idx).any(1).mean())

    def density(self, idx: np.ndarray | None = None) -> float:
        """Mean number of real balls holding a generated sample, over k; 1 on average for real samples, unbounded."""
        return float(self._rows(idx).sum(1).mean() / self.k)

    def coverage(self, idx: np.ndarray | None = None) -> float:
        """Fraction of real balls holding at least one generated sample, in [0, 1]; grows with the number of
        distinct generated samples, so compare sets of equal size."""
        return float(self._rows(idx).any(0).mean())


def manifold_metrics(gen: np.ndarray, real: np.ndarray, k: int = 5) -> dict[str, float]:
    """{"precision", "density", "coverage"} of generated features gen (N, D) against real features (M, D)."""
    m = UnitManifold.build(gen, real, k)
    return {"precision": m.precision(), "density": m.density(), "coverage": m.coverage()}
