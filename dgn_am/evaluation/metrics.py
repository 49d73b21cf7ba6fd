"""Metrics on sets of images. Pure functions on tensors; no file output."""

from __future__ import annotations

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
    return torch.cat([run(model, images[i: i + batch], [layer])[layer].flatten(1) for i in range(0, len(images), batch)])


def mean_pairwise_cosine_distance(f: torch.Tensor) -> float:
    """Mean of 1 - cos(f_i, f_j) over pairs i < j of the rows of f (N, D), N >= 2."""
    if len(f) < 2:
        raise ValueError("need at least two feature vectors")
    z = F.normalize(f.double(), dim=1)
    sim = z @ z.T
    iu = torch.triu_indices(len(f), len(f), offset=1)
    return float((1 - sim[iu[0], iu[1]]).mean())


# ---- distributions of features: Frechet distance and KID ----

def _center(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = f.mean(0)
    return mu, f - mu


def frechet_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2) (mu: (D,), cov: (D, D)):
    |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)), the trace term from the eigenvalues of the
    symmetric sqrt(cov1) cov2 sqrt(cov1) (no complex sqrtm)."""
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())
    return max(d, 0.0)


def frechet_distance(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray,
                     stats2: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Frechet distance between Gaussians fitted to two feature sets f1 (N1, D), f2 (N2, D), N >= 2.

    When N1 <= D the trace term is computed from the small (N1, N1) matrix A cov2 A^T / (N1 - 1), A = f1 - mean,
    which has the same non-zero eigenvalues as cov1 cov2 (cheap for few synthesized images in a wide space).
    stats2: a precomputed (mean (D,), cov (D, D)) of f2, reused across calls."""
    a = np.asarray(f1, dtype=np.float64)
    if len(a) < 2:
        raise ValueError("the Frechet distance needs at least two images in each set")
    mu1, a = _center(a)
    if stats2 is None:
        b = np.asarray(f2, dtype=np.float64)
        mu2, bc = _center(b)
        cov2 = bc.T @ bc / (len(b) - 1)
    else:
        mu2, cov2 = stats2
    if len(a) > a.shape[1]:
        return frechet_from_stats(mu1, a.T @ a / (len(a) - 1), mu2, cov2)
    cross = np.linalg.eigvalsh(a @ cov2 @ a.T / (len(a) - 1))  # (N1,) = non-zero eigenvalues of cov1 cov2
    tr1 = float((a ** 2).sum() / (len(a) - 1))
    d = float(((mu1 - mu2) ** 2).sum() + tr1 + np.trace(cov2) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())
    return max(d, 0.0)


def gaussian_stats(f: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D), float64."""
    b = np.asarray(f, dtype=np.float64)
    mu, bc = _center(b)
    return mu, bc.T @ bc / (len(b) - 1)


def poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel k(x, y) = (x.y / D + 1)^3 for rows of x (N, D), y (M, D) -> (N, M)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices kxx (N, N), kyy (M, M), kxy (N, M); N, M >= 2 (diagonals ignored)."""
    n, m = len(kxx), len(kyy)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def kid(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray, subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) between features f1 (N1, D) and f2 (N2, D).

    KID: the unbiased polynomial-kernel MMD^2 averaged over `subsets` draws of m = min(subset_size, N1, N2) rows
    from each set (without replacement); with m = N1 = N2 that is the full-set estimate. se: its standard error,
    estimated from the spread of the same statistic over draws of m/2 rows, scaled by sqrt(1/2) (the variance of
    MMD^2 falls as 1/m), so it is never 0 merely because every draw holds the whole set. Returns (kid, se)."""
    a, b = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two images in each set")
    rng = np.random.default_rng(seed)

    def draws(size: int) -> np.ndarray:
        out = []
        for _ in range(subsets):
            x = a[rng.choice(len(a), size, replace=False)]
            y = b[rng.choice(len(b), size, replace=False)]
            out.append(mmd2_unbiased(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)))
        return np.asarray(out)

    half = max(2, m // 2)
    return float(draws(m).mean()), float(draws(half).std(ddof=1) * np.sqrt(half / m))


# ---- uncertainty: nested bootstrap over units, then seeds ----

def bootstrap_ci(groups: Sequence[Sequence[float]] | Sequence[np.ndarray],
                 statistic: Callable[[int, np.ndarray], float] | None = None, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean over units of a per-unit statistic, with a percentile bootstrap interval.

    groups[u]: the per-seed values of unit u (or anything of length S_u). Each replicate draws units with
    replacement, then seeds with replacement within each drawn unit, and averages statistic(u, seed_indices)
    (default: the mean of groups[u][seed_indices]) over the drawn units, ignoring NaN (a statistic undefined for
    that draw). Returns (estimate, low, high)."""
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
    for r in range(n_boot):
        units = rng.integers(0, len(groups), len(groups))
        vals = np.array([statistic(u, rng.integers(0, sizes[u], sizes[u])) for u in units])
        reps[r] = vals[~np.isnan(vals)].mean() if (~np.isnan(vals)).any() else np.nan
    if np.isnan(reps).all():
        return estimate, float("nan"), float("nan")
    lo, hi = np.nanquantile(reps, [(1 - level) / 2, (1 + level) / 2])  # NaN: no distinct pair was drawn
    return estimate, float(lo), float(hi)


def pairwise_cosine_distance_of(f: np.ndarray, idx: np.ndarray) -> float:
    """Mean 1 - cos over pairs of positions in idx that point at different rows of f (N, D); duplicates drawn by a
    bootstrap are not counted as zero-distance pairs. NaN when idx holds fewer than two distinct rows."""
    z = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    sim = z[idx] @ z[idx].T
    mask = idx[:, None] != idx[None, :]
    return float((1 - sim[mask]).mean()) if mask.any() else float("nan")
