"""dgn_am.evaluation.distances: FID and KID on torchmetrics, checked against known answers, the definitions
(scipy's matrix square root), and the estimators the module keeps where torchmetrics' cannot serve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dgn_am.evaluation.distances import (ClassMixFrechet, ClassStats, Precomputed, frechet_distance,
                                         frechet_from_stats, kid, mmd2_unbiased, poly_kernel, reference_stats)


def test_frechet_identical_gaussians_is_zero():
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_from_stats(np.zeros(2), cov, np.zeros(2), cov) == pytest.approx(0.0, abs=1e-9)


def test_frechet_shifted_unit_gaussians_is_squared_shift():
    mu = np.array([1.0, -2.0, 0.5])
    assert frechet_from_stats(np.zeros(3), np.eye(3), mu, np.eye(3)) == pytest.approx(float(mu @ mu))
    g = np.random.default_rng(0)
    a, b = g.normal(size=(20000, 3)), g.normal(size=(20000, 3)) + mu
    assert frechet_distance(a, b) == pytest.approx(float(mu @ mu), rel=0.03)


def test_frechet_distance_with_fewer_images_than_features_matches_the_stats_formula():
    g = np.random.default_rng(1)
    a, b = g.normal(size=(5, 8)), g.normal(size=(400, 8)) * 2
    mu1, c1 = a.mean(0), np.cov(a.T)
    mu2, c2 = b.mean(0), np.cov(b.T)
    assert frechet_distance(a, b) == pytest.approx(frechet_from_stats(mu1, c1, mu2, c2), rel=1e-6)


def test_kid_identical_distributions_near_zero_with_se():
    g = np.random.default_rng(2)
    a, b = g.normal(size=(300, 16)), g.normal(size=(300, 16))
    value, se = kid(a, b, subsets=50, subset_size=200)
    assert se > 0
    assert abs(value) < 3 * se + 1e-3
    far, far_se = kid(a, b + 1.5, subsets=50, subset_size=200)
    assert far > value + 5 * far_se


def _mixture_frechet(gen, cls, real, rows):
    """Frechet distance from the definitions: the mixture of the classes' Gaussians weighted by the class mix."""
    a = gen[rows]
    classes = sorted(real)
    w = np.array([np.mean(cls[rows] == c) for c in classes])
    mus = [real[c].mean(0) for c in classes]
    covs = [np.cov(real[c].T) for c in classes]
    mu = sum(wi * m for wi, m in zip(w, mus))
    cov = sum(wi * (c + np.outer(m, m)) for wi, c, m in zip(w, covs, mus)) - np.outer(mu, mu)
    return frechet_from_stats(a.mean(0), np.cov(a.T), mu, cov)


def test_class_mix_frechet_matches_definition():
    g = np.random.default_rng(1)
    real = {c: g.normal(c, 1 + c, size=(30 + 5 * c, 20)) for c in range(3)}
    gen = g.normal(1, 2, size=(12, 20))
    cls = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 1, 2])
    f = ClassMixFrechet(gen, cls, real)
    for rows in (np.arange(12), np.array([0, 0, 3, 5, 5, 5, 7]), np.array([2, 3, 4, 4])):
        assert f.distance(rows) == pytest.approx(_mixture_frechet(gen, cls, real, rows), rel=1e-6)
    assert f.distance() == pytest.approx(f.distance(np.arange(12)))
    with pytest.raises(ValueError, match="two images"):
        f.distance(np.array([3]))


def test_class_mix_frechet_one_class_is_plain_frechet():
    g = np.random.default_rng(2)
    gen, real = g.normal(size=(40, 5)), g.normal(0.5, 1.5, size=(300, 5))
    f = ClassMixFrechet(gen, np.zeros(40, dtype=int), {0: real})
    assert f.distance() == pytest.approx(frechet_distance(gen, real), rel=1e-9)


def test_frechet_from_stats_matches_scipy_sqrtm_definition():
    linalg = pytest.importorskip("scipy.linalg")
    g = np.random.default_rng(5)
    a, b = g.normal(size=(6, 6)), g.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T
    mu1, mu2 = g.normal(size=6), g.normal(size=6)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(linalg.sqrtm(c1 @ c2)).real
    assert frechet_from_stats(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-9)


def test_class_stats_are_the_mean_and_unbiased_covariance():
    f = np.random.default_rng(6).normal(3.0, 2.0, size=(25, 4))
    s = ClassStats.of_features(f)
    assert s.n == 25
    assert np.allclose(s.mean, f.mean(0)) and np.allclose(s.cov, np.cov(f.T), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        ClassStats.of_features(f[:1])


class _Linear(torch.nn.Module):
    """A fixed feature extractor for images (B, 1, 2, 2): the 4 pixels times a known matrix -> (B, 3)."""

    num_features = 3

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.arange(12.0).view(4, 3) / 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def test_reference_stats_run_images_through_the_extractor_per_class():
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(30, 1, 2, 2, generator=g), torch.tensor([0, 1, 2] * 10)
    stats = reference_stats(_Linear(), images, labels, batch=4)  # several update() calls per class
    assert sorted(stats) == [0, 1, 2]
    for c in range(3):
        f = (images[labels == c].flatten(1) @ _Linear().w).double().numpy()
        assert stats[c].n == 10
        assert np.allclose(stats[c].mean, f.mean(0), atol=1e-6)
        assert np.allclose(stats[c].cov, np.cov(f.T), atol=1e-6)
    with pytest.raises(ValueError, match="1 images of class 3"):
        reference_stats(_Linear(), images[:5], torch.tensor([0, 0, 1, 1, 3]))


def test_class_mix_fid_by_torchmetrics_equals_the_bootstrap_path():
    # fewer images (15) than features (40): the rank-deficient case of the benchmark (80 images, up to 1024 features)
    g = np.random.default_rng(7)
    real = {c: g.normal(c, 1 + c, size=(50, 40)) for c in range(3)}
    cls = np.array([0] * 4 + [1] * 5 + [2] * 6)
    gen = g.normal(1, 2, size=(15, 40))
    f = ClassMixFrechet(gen, cls, real)
    assert f.fid() == pytest.approx(f.distance(), rel=1e-6)
    assert f.fid() == pytest.approx(_mixture_frechet(gen, cls, real, np.arange(15)), rel=1e-9)
    one = ClassMixFrechet(gen, np.zeros(15, dtype=int), {0: ClassStats.of_features(real[0])})
    assert one.fid() == pytest.approx(frechet_distance(gen, real[0]), rel=1e-9)
    with pytest.raises(ValueError, match="class\\(es\\) \\[5\\]"):
        ClassMixFrechet(gen, np.full(15, 5), real)


def test_poly_kernel_by_hand():
    # (x.y / D + 1)^3 with D = 2: x.y = 3 -> 2.5^3; x.x = 5 -> 3.5^3
    k = poly_kernel(np.array([[1.0, 2.0]]), np.array([[3.0, 0.0], [1.0, 2.0]]))
    assert k.tolist() == [[15.625, 42.875]]


def _mmd2_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 of Gretton et al. (2012), Lemma 6, term by term."""
    def k(a, b):
        return (a @ b / len(a) + 1) ** 3
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd2_unbiased_against_the_definition_and_torchmetrics():
    from torchmetrics.image.kid import maximum_mean_discrepancy

    g = np.random.default_rng(8)
    x, y = g.normal(size=(5, 3)), g.normal(0.5, 1, size=(7, 3))
    assert mmd2_unbiased(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)) == pytest.approx(
        _mmd2_by_loops(x, y), rel=1e-12)
    y = y[:5]  # torchmetrics' estimator needs equal sizes
    tm = maximum_mean_discrepancy(*(torch.as_tensor(poly_kernel(a, b)) for a, b in ((x, x), (x, y), (y, y))))
    ours = mmd2_unbiased(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y))
    assert ours == pytest.approx(float(tm), rel=1e-12)


def test_unit_kernels_with_all_seeds_is_the_unbiased_mmd():
    from dgn_am.evaluation.scoring import UnitKernels

    g = np.random.default_rng(9)
    seeds, ref = g.normal(size=(4, 6)), g.normal(size=(20, 6))
    kyy = poly_kernel(ref, ref)
    unit = UnitKernels(poly_kernel(seeds, seeds), poly_kernel(seeds, ref).mean(1),
                       float(kyy[~np.eye(20, dtype=bool)].mean()))
    assert unit.kid() == pytest.approx(_mmd2_by_loops(seeds, ref), rel=1e-10)


def test_kid_with_whole_sets_is_the_full_mmd_and_repeats_for_a_seed():
    g = np.random.default_rng(10)
    a, b = g.normal(size=(12, 5)), g.normal(0.3, 1, size=(12, 5))
    value, se = kid(a, b, subsets=5, subset_size=12)  # every draw holds both whole sets
    assert value == pytest.approx(_mmd2_by_loops(a, b), rel=1e-10)
    assert se > 0  # from the half-size draws
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    assert kid(a, b, subsets=5, subset_size=6, seed=3) == kid(a, b, subsets=5, subset_size=6, seed=3)
    assert kid(a, b, subsets=5, subset_size=6, seed=3) != kid(a, b, subsets=5, subset_size=6, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    with pytest.raises(ValueError, match="at least two"):
        kid(a[:1], b)


def test_precomputed_passes_features_through_as_float64():
    f = torch.rand(3, 4)
    assert torch.equal(Precomputed(4)(f), f.double()) and Precomputed(4).num_features == 4
