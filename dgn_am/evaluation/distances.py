"""Distances between distributions of features: the Frechet distance (FID) and the kernel distance (KID), built on
torchmetrics (FrechetInceptionDistance, KernelInceptionDistance and their pieces).

torchmetrics takes the feature network as a module ("custom feature extractor"): an evaluator's feature space
(dgn_am.evaluation.scoring.EvaluatorFeatures) when images are at hand, or `Precomputed` when the features are.
Features are (N, D), any real values; everything is computed in float64.

Where a torchmetrics estimator cannot serve, the module keeps its own and says why at that place:
  - ClassMixFrechet: the benchmark compares a set made for several classes with the reference images of the same
    class mix, and bootstraps it (1000 replicates per method, evaluator and space). The class statistics are
    torchmetrics' running sums and the point value is torchmetrics' `_compute_fid`, but a replicate uses products
    with the reference computed once (O(n^2) per replicate), not a D x D eigen-decomposition (about 1 s for D = 1024).
  - mmd2_unbiased: torchmetrics' maximum_mean_discrepancy assumes sets of equal size; a unit's seeds (8) are
    compared with 200 reference images. tests/evaluation/test_distances.py compares the two where both apply.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

# torchmetrics is imported where it is used: it brings lightning_utilities, which `import dgn_am` and
# `dgn-am synthesize` stay without (tests/cli/test_training_apart.py), and it costs a second at start-up.
if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance

Features = torch.Tensor | np.ndarray  # (N, D) feature rows


class Precomputed(torch.nn.Module):
    """torchmetrics' custom feature extractor for features computed already: (N, D) -> the same (N, D), float64."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim  # torchmetrics reads the feature size here instead of probing with an image

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f.double()


def _double(f) -> torch.Tensor:
    return torch.as_tensor(np.asarray(f, dtype=np.float64))


def _fid_metric(feature: torch.nn.Module) -> FrechetInceptionDistance:
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=feature, reset_real_features=False)


def _gaussian(state_sum: torch.Tensor, cov_sum: torch.Tensor, n) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), unbiased covariance (D, D)) from torchmetrics' FID state: the running sum of features, of their
    outer products, and the count, by the formula FrechetInceptionDistance.compute uses."""
    n = int(n)
    mean = state_sum / n
    return mean, (cov_sum - n * torch.outer(mean, mean)) / (n - 1)


@dataclass
class ClassStats:
    """The Gaussian of one class's reference features: count n, mean (D,) and unbiased covariance (D, D)."""

    n: int
    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def from_metric(cls, metric: FrechetInceptionDistance) -> "ClassStats":
        """The real-image side of a torchmetrics FID (after update(..., real=True) calls)."""
        s = metric.metric_state
        mean, cov = _gaussian(s["real_features_sum"], s["real_features_cov_sum"], s["real_features_num_samples"])
        return cls(int(s["real_features_num_samples"]), mean.numpy(), cov.numpy())

    @classmethod
    def of_features(cls, f: Features) -> "ClassStats":
        """From features (n, D), n >= 2, fed to torchmetrics through Precomputed."""
        f = _double(f)
        if len(f) < 2:
            raise ValueError(f"a class's reference needs at least 2 feature vectors, got {len(f)}")
        metric = _fid_metric(Precomputed(f.shape[1]))
        metric.update(f, real=True)
        return cls.from_metric(metric)


@torch.no_grad()
def reference_stats(extractor: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    batch: int = 500) -> dict[int, ClassStats]:
    """{class: ClassStats} of real images (R, C, H, W) in [0, 1] with labels (R,), each class through its own
    torchmetrics FrechetInceptionDistance with `extractor` (images -> (B, D), a `num_features` attribute) as its
    custom feature extractor. Every class needs at least 2 images."""
    out = {}
    for c in sorted(int(v) for v in labels.unique()):
        rows = images[labels.to(images.device) == c]
        if len(rows) < 2:
            raise ValueError(f"the reference set holds {len(rows)} images of class {c}; need at least 2")
        metric = _fid_metric(extractor)
        for lo in range(0, len(rows), batch):
            metric.update(rows[lo: lo + batch], real=True)
        out[c] = ClassStats.from_metric(metric)
    return out


def frechet_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2) (mu: (D,), cov: (D, D)), >= 0: torchmetrics'
    |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)), the trace term from the eigenvalues of
    cov1 cov2 (clipped at 0: rounding can take a value of zero just below it)."""
    from torchmetrics.image.fid import _compute_fid

    d = _compute_fid(_double(mu1), _double(cov1), _double(mu2), _double(cov2))
    return max(float(d), 0.0)


def frechet_distance(f1: Features, f2: Features) -> float:
    """Frechet distance between Gaussians fitted to two feature sets f1 (N1, D), f2 (N2, D), N >= 2, >= 0:
    torchmetrics' FrechetInceptionDistance on the features."""
    a, b = _double(f1), _double(f2)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least two images in each set")
    metric = _fid_metric(Precomputed(a.shape[1]))
    metric.update(b, real=True)
    metric.update(a, real=False)
    return max(float(metric.compute()), 0.0)


class ClassMixFrechet:
    """Frechet distance of generated features against the reference of their class mix, for any subset of rows,
    cheap enough for a bootstrap.

    gen: (N, D) features of generated images; gen_classes: (N,) the class each was made for; real: {class:
    ClassStats} (or (n_c, D) features, n_c >= 2). For a subset of rows (duplicates allowed) with class fractions
    w_c, the reference is the mixture Gaussian with mean mu = sum_c w_c mu_c and covariance
    sum_c w_c (cov_c + mu_c mu_c^T) - mu mu^T (the reference images of each class weighted by how often the subset
    holds that class).

    fid(): all rows, by torchmetrics' estimator (_compute_fid: a D x D eigen-decomposition). distance(rows): the
    same number for any rows, with the trace term from the (n, n) matrix A cov_mix A^T / (n - 1), A the centred
    subset, which has the non-zero eigenvalues of cov_subset cov_mix; it is built from G cov_c G^T (N, N) per
    class, computed once here, so a call costs O(C n^2 + n^3), not O(D^3). tests/evaluation/test_distances.py
    checks that the two agree."""

    def __init__(self, gen: Features, gen_classes, real: dict) -> None:
        g = np.asarray(gen, dtype=np.float64)
        self.gen = g
        self.classes = sorted(set(int(c) for c in np.asarray(gen_classes)))
        missing = [c for c in self.classes if c not in real]
        if missing:
            raise ValueError(f"no real reference of class(es) {missing} for the Frechet reference")
        stats = [real[c] if isinstance(real[c], ClassStats) else ClassStats.of_features(real[c])
                 for c in self.classes]
        self.col = np.searchsorted(self.classes, np.asarray(gen_classes))  # (N,) position of each row's class
        self.mu = np.stack([s.mean for s in stats])  # (C, D) class means
        self.covs = [s.cov for s in stats]
        self.dim = g.shape[1]
        self.gram = g @ g.T  # (N, N)
        self.q = g @ self.mu.T  # (N, C): f_i . mu_c
        self.mm = self.mu @ self.mu.T  # (C, C)
        self.tr = np.array([np.trace(s.cov) + s.mean @ s.mean for s in stats])  # tr cov_c + |mu_c|^2
        self.k = np.stack([g @ s.cov @ g.T for s in stats])  # (C, N, N): f_i cov_c f_j^T

    def _mix(self, rows: np.ndarray) -> np.ndarray:
        """(C,) class fractions of the rows."""
        return np.bincount(self.col[rows], minlength=len(self.classes)) / len(rows)

    def fid(self) -> float:
        """Frechet distance of all rows against their class mix, by torchmetrics' estimator (float, >= 0)."""
        if len(self.gen) < 2:
            raise ValueError("the Frechet distance needs at least two images in each set")
        w = self._mix(np.arange(len(self.col)))
        mu = w @ self.mu
        cov = sum(wc * (c + np.outer(m, m)) for wc, c, m in zip(w, self.covs, self.mu)) - np.outer(mu, mu)
        metric = _fid_metric(Precomputed(self.dim))
        metric.update(_double(self.gen), real=False)
        s = metric.metric_state
        gmean, gcov = _gaussian(s["fake_features_sum"], s["fake_features_cov_sum"], s["fake_features_num_samples"])
        return frechet_from_stats(gmean.numpy(), gcov.numpy(), mu, cov)

    def distance(self, rows: np.ndarray | None = None) -> float:
        """Frechet distance of the generated rows (default: all; duplicates allowed, at least 2 positions)."""
        rows = np.arange(len(self.col)) if rows is None else np.asarray(rows)
        n = len(rows)
        if n < 2:
            raise ValueError("the Frechet distance needs at least two images in each set")
        w = self._mix(rows)
        g = self.gram[np.ix_(rows, rows)]
        mean_sq = g.mean()  # |mean of the subset|^2
        tr1 = (np.trace(g) - n * mean_sq) / (n - 1)
        q = self.q[rows]  # (n, C)
        mu_sq = w @ self.mm @ w
        shift = mean_sq - 2 * q.mean(0) @ w + mu_sq  # |mean - mu|^2
        tr2 = w @ self.tr - mu_sq
        used = np.nonzero(w)[0]
        kw = np.tensordot(w[used], self.k[np.ix_(used, rows, rows)], axes=1)  # (n, n): f cov_w f^T
        kw = kw - kw.mean(0) - kw.mean(1)[:, None] + kw.mean()  # A sum_c w_c cov_c A^T
        qc = q - q.mean(0)  # (n, C): A mu_c
        a_mu = qc @ w  # (n,): A mu
        m = kw + (qc * w) @ qc.T - np.outer(a_mu, a_mu)  # A cov_mix A^T
        rank = min(len(np.unique(rows)) - 1, self.dim)  # of A: the other n - rank eigenvalues are zero but for
        cross = np.linalg.eigvalsh(m / (n - 1))[n - rank:]  # rounding, which sqrt would blow up to ~1e-8 each
        return max(float(shift + tr1 + tr2 - 2 * np.sqrt(np.clip(cross, 0, None)).sum()), 0.0)


def poly_kernel(x: Features, y: Features) -> np.ndarray:
    """KID's kernel k(x, y) = (x.y / D + 1)^3 for rows of x (N, D), y (M, D) -> (N, M) float64 (torchmetrics')."""
    from torchmetrics.image.kid import poly_kernel as tm_poly_kernel

    return tm_poly_kernel(_double(x), _double(y)).numpy()


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices kxx (N, N), kyy (M, M), kxy (N, M); N, M >= 2 (diagonals ignored).

    Our own: torchmetrics' maximum_mean_discrepancy divides both within-set sums by m (m - 1) and the cross sum by
    m^2 with m the size of the first set, which is right only for N = M (its KID draws equal subsets); a unit's
    KID compares its seeds with a larger reference set. Equal to torchmetrics' for N = M (tested)."""
    n, m = len(kxx), len(kyy)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def _kid_draws(a: torch.Tensor, b: torch.Tensor, subsets: int, size: int, seed: int) -> tuple[float, float]:
    """torchmetrics' KernelInceptionDistance (mean, population std over `subsets` draws of `size` rows of each
    set), its random subsets drawn from a torch generator seeded with `seed` without touching the global state."""
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features": they are ours already
        metric = KernelInceptionDistance(feature=Precomputed(a.shape[1]), subsets=subsets, subset_size=size)
    metric.update(b, real=True)
    metric.update(a, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def kid(f1: Features, f2: Features, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) between features f1 (N1, D) and f2 (N2, D), by
    torchmetrics' KernelInceptionDistance.

    KID: the unbiased polynomial-kernel MMD^2 averaged over `subsets` draws of m = min(subset_size, N1, N2) rows
    from each set (without replacement); with m = N1 = N2 that is the full-set estimate. se: its standard error,
    estimated from the spread of the same statistic over draws of m/2 rows (sample std, ddof 1; torchmetrics
    reports ddof 0), scaled by sqrt(1/2) (the variance of MMD^2 falls as 1/m), so it is never 0 merely because
    every draw holds the whole set. Reproducible for a seed. Returns (kid, se)."""
    a, b = _double(f1), _double(f2)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two images in each set")
    value, _ = _kid_draws(a, b, subsets, m, seed)
    half = max(2, m // 2)
    _, spread = _kid_draws(a, b, subsets, half, seed + 1)
    ddof1 = np.sqrt(subsets / (subsets - 1)) if subsets > 1 else float("nan")
    return value, float(spread * ddof1 * np.sqrt(half / m))
