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


def frechet_distance(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets f1 (N1, D), f2 (N2, D), N >= 2.

    When N1 <= D the trace term is computed from the small (N1, N1) matrix A cov2 A^T / (N1 - 1), A = f1 - mean,
    which has the same non-zero eigenvalues as cov1 cov2 (cheap for few synthesized images in a wide space). The
    benchmark uses ClassMixFrechet; this is its reference for two plain feature sets."""
    a = np.asarray(f1, dtype=np.float64)
    if len(a) < 2:
        raise ValueError("the Frechet distance needs at least two images in each set")
    mu1, a = _center(a)
    mu2, bc = _center(np.asarray(f2, dtype=np.float64))
    cov2 = bc.T @ bc / (len(bc) - 1)
    if len(a) > a.shape[1]:
        return frechet_from_stats(mu1, a.T @ a / (len(a) - 1), mu2, cov2)
    cross = np.linalg.eigvalsh(a @ cov2 @ a.T / (len(a) - 1))  # (N1,) = non-zero eigenvalues of cov1 cov2
    tr1 = float((a ** 2).sum() / (len(a) - 1))
    d = float(((mu1 - mu2) ** 2).sum() + tr1 + np.trace(cov2) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())
    return max(d, 0.0)


class ClassMixFrechet:
    """Frechet distance between any subset of generated features and the Gaussian of real features of the same
    class mix, cheap to recompute on many subsets (a bootstrap).

    gen: (N, D) features of generated images; gen_classes: (N,) the class each was made for; real: {class: (n_c, D)}
    real features per class, n_c >= 2. For a subset of rows (duplicates allowed) with class fractions w_c, the
    reference is the mixture Gaussian with mean mu = sum_c w_c mu_c and covariance
    sum_c w_c (cov_c + mu_c mu_c^T) - mu mu^T (the reference images of each class weighted by how often the subset
    holds that class). The trace term comes from the (n, n) matrix A cov_mix A^T / (n - 1), A the centred subset,
    built from products with the reference computed once here, so a call costs O(n^2 * sum_c n_c), not O(D^3)."""

    def __init__(self, gen: np.ndarray, gen_classes: np.ndarray, real: dict[int, np.ndarray]) -> None:
        gen = np.asarray(gen, dtype=np.float64)
        classes = sorted(set(int(c) for c in gen_classes))
        missing = [c for c in classes if c not in real or len(real[c]) < 2]
        if missing:
            raise ValueError(f"need at least 2 real feature vectors of class(es) {missing} for the Frechet reference")
        self.col = np.searchsorted(classes, np.asarray(gen_classes))  # (N,) position of each row's class
        ys = [np.asarray(real[c], dtype=np.float64) for c in classes]
        mu = np.stack([y.mean(0) for y in ys])  # (C, D) class means
        self.dim = gen.shape[1]
        self.gram = gen @ gen.T  # (N, N)
        self.q = gen @ mu.T  # (N, C): f_i . mu_c
        self.mm = mu @ mu.T  # (C, C)
        self.tr = np.array([((y - m) ** 2).sum() / (len(y) - 1) + m @ m for y, m in zip(ys, mu)])  # tr cov_c + |mu_c|^2
        # (N, sum n_c): f_i . (y - mu_c) / sqrt(n_c - 1), so that for centred rows P P^T = A cov_c A^T per class block
        self.p = np.concatenate([gen @ (y - m).T / np.sqrt(len(y) - 1) for y, m in zip(ys, mu)], axis=1)
        self.block = np.concatenate([np.full(len(y), i) for i, y in enumerate(ys)])  # (sum n_c,) class of each column

    def distance(self, rows: np.ndarray | None = None) -> float:
        """Frechet distance of the generated rows (default: all; duplicates allowed, at least 2 positions)."""
        rows = np.arange(len(self.col)) if rows is None else np.asarray(rows)
        n = len(rows)
        if n < 2:
            raise ValueError("the Frechet distance needs at least two images in each set")
        w = np.bincount(self.col[rows], minlength=len(self.mm)) / n  # (C,) class mix of the subset
        g = self.gram[np.ix_(rows, rows)]
        mean_sq = g.mean()  # |mean of the subset|^2
        tr1 = (np.trace(g) - n * mean_sq) / (n - 1)
        q = self.q[rows]  # (n, C)
        mu_sq = w @ self.mm @ w
        shift = mean_sq - 2 * q.mean(0) @ w + mu_sq  # |mean - mu|^2
        tr2 = w @ self.tr - mu_sq
        p = self.p[rows]
        p = p - p.mean(0)  # (n, sum n_c): A (y - mu_c)^T / sqrt(n_c - 1)
        qc = q - q.mean(0)  # (n, C): A mu_c
        a_mu = qc @ w  # (n,): A mu
        m = (p * w[self.block]) @ p.T + (qc * w) @ qc.T - np.outer(a_mu, a_mu)  # A cov_mix A^T
        rank = min(len(np.unique(rows)) - 1, self.dim)  # of A: the other n - rank eigenvalues are zero but for
        cross = np.linalg.eigvalsh(m / (n - 1))[n - rank:]  # rounding, which sqrt would blow up to ~1e-8 each
        return max(float(shift + tr1 + tr2 - 2 * np.sqrt(np.clip(cross, 0, None)).sum()), 0.0)


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
                     n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                     recentre: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A statistic of the whole image set (such as FID), with the nested bootstrap of bootstrap_ci.

    groups[u]: the row indices of unit u's seeds. statistic(rows) -> (K,) values (K statistics at once, so they
    share every draw) for the rows of a set, duplicates allowed. Each replicate draws units with replacement, then
    seeds with replacement within each drawn unit, and evaluates the statistic on all drawn rows. With the same
    seed, the draws are those of bootstrap_ci. recentre (default): centre the interval on the estimate, because
    FID of a resample holding repeated images is biased upward (fewer distinct images); the interval then gives
    the spread at this set size. Returns (estimate, low, high), each (K,)."""
    groups = [np.asarray(g) for g in groups]
    if not groups:
        raise ValueError("bootstrap_set_ci needs at least one unit")
    estimate = np.atleast_1d(np.asarray(statistic(np.concatenate(groups)), dtype=np.float64))
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
