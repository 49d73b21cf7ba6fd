"""k-NN manifold metrics (precision, density, coverage), the class-mix Frechet distance and its set bootstrap:
hand-computed answers on tiny inputs, and equivalence with the direct definitions."""

from __future__ import annotations

import numpy as np
import pytest

from dgn_am.evaluation.distances import ClassMixFrechet
from dgn_am.evaluation.metrics import UnitManifold, bootstrap_ci, bootstrap_set_ci, knn_radii, manifold_metrics

# 1-D real points and their k-NN radii, by hand:
#   k=1: 0 -> 1 (its neighbour 1), 1 -> 1, 3 -> 2 (neighbour 1), 7 -> 4 (neighbour 3)
#   k=2: 0 -> 3, 1 -> 2, 3 -> 3, 7 -> 6
REAL = np.array([[0.0], [1.0], [3.0], [7.0]])
GEN = np.array([[0.5], [2.0], [12.0], [20.0]])


def test_knn_radii_by_hand():
    assert knn_radii(REAL, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(REAL, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    assert knn_radii(REAL, 10).tolist() == [7.0, 6.0, 4.0, 7.0]  # k clipped to M - 1 = 3: the farthest other


def test_manifold_k1_by_hand():
    # balls [-1, 1], [0, 2], [1, 5], [3, 11]. 0.5 lies in balls 0 and 1; 2 in balls 1 (on its boundary) and 2;
    # 12 and 20 in none. precision 2/4, density (2 + 2) / (1 * 4), coverage: balls 0, 1, 2 of 4.
    m = manifold_metrics(GEN, REAL, k=1)
    assert m == {"precision": 0.5, "density": 1.0, "coverage": 0.75}


def test_manifold_k2_by_hand():
    # balls [-3, 3], [-1, 3], [0, 6], [1, 13]: 0.5 in 3 balls, 2 in all 4, 12 in ball 3 only, 20 in none.
    m = manifold_metrics(GEN, REAL, k=2)
    assert m == {"precision": 0.75, "density": pytest.approx((3 + 4 + 1) / (2 * 4)), "coverage": 1.0}


def test_manifold_duplicate_positions_count_as_samples():
    u = UnitManifold.build(GEN, REAL, k=1)
    assert u.inside.shape == (4, 4)
    idx = np.array([0, 0, 3])  # 0.5 twice (2 balls each), 20 once (none)
    assert u.precision(idx) == pytest.approx(2 / 3)
    assert u.density(idx) == pytest.approx(4 / 3)
    assert u.coverage(idx) == 0.5  # balls 0 and 1 only
    assert u.coverage(np.array([3, 3])) == 0.0


def test_real_set_against_itself_and_far_away():
    g = np.random.default_rng(0)
    real = g.normal(size=(50, 6))
    own = manifold_metrics(real, real, k=5)
    assert own["precision"] == 1.0 and own["coverage"] == 1.0
    assert own["density"] >= 1.0  # each point lies in its own ball and in the balls of its k nearest at least
    far = manifold_metrics(real + 100.0, real, k=5)
    assert far == {"precision": 0.0, "density": 0.0, "coverage": 0.0}
    fresh = manifold_metrics(g.normal(size=(50, 6)), real, k=5)  # same distribution, new samples
    assert 0.5 < fresh["precision"] < 1.0 and 0.2 < fresh["coverage"] < 1.0


def test_knn_radii_rejects_a_single_real_sample():
    with pytest.raises(ValueError, match="at least 2"):
        knn_radii(REAL[:1], 1)


def test_set_bootstrap_draws_match_bootstrap_ci():
    g = np.random.default_rng(3)
    values = g.normal(size=20)
    groups = [np.arange(i * 4, (i + 1) * 4) for i in range(5)]  # equal sizes: set mean = mean of unit means
    est, lo, hi = bootstrap_set_ci(groups, lambda rows: np.array([values[rows].mean()]), n_boot=200, seed=7,
                                   recentre=False)
    ref = bootstrap_ci([values[gr] for gr in groups], n_boot=200, seed=7)
    assert (est[0], lo[0], hi[0]) == pytest.approx(ref)


def test_fid_interval_contains_estimate():
    g = np.random.default_rng(4)
    real = {c: g.normal(c, 1.0, size=(60, 16)) for c in range(4)}
    cls = np.repeat(np.arange(4), 6)
    gen = g.normal(cls[:, None] * 0.8, 1.2, size=(24, 16))
    f = ClassMixFrechet(gen, cls, real)
    groups = [np.arange(u * 6, (u + 1) * 6) for u in range(4)]
    est, lo, hi = bootstrap_set_ci(groups, lambda rows: np.array([f.distance(rows)]), n_boot=200)
    assert est[0] == pytest.approx(f.distance())
    assert lo[0] < est[0] < hi[0]
    # why it is centred: resamples repeat images, which inflates FID, so the raw percentiles sit above the estimate
    _, raw_lo, _ = bootstrap_set_ci(groups, lambda rows: np.array([f.distance(rows)]), n_boot=200, recentre=False)
    assert raw_lo[0] > est[0]


# ---- against prdc (Naeem et al.'s own package), which returns only the set-level numbers ----
# Ours is kept because the bootstrap needs the (seed x real ball) matrix, which prdc does not expose. prdc counts a
# sample on a ball's boundary as outside (distance < radius); we count it inside (<=), as the by-hand tests above.

def test_manifold_metrics_match_prdc_on_continuous_features(capsys):
    from prdc import compute_prdc

    g = np.random.default_rng(11)
    real, gen = g.normal(size=(60, 5)), g.normal(0.4, 1.2, size=(40, 5))
    ours = manifold_metrics(gen, real, k=5)
    theirs = compute_prdc(real, gen, nearest_k=5)
    for m in ("precision", "density", "coverage"):
        assert ours[m] == pytest.approx(theirs[m], abs=1e-12), m


def test_prdc_leaves_out_the_boundary_we_include(capsys):
    from prdc import compute_prdc

    # k=1 by hand (test_manifold_k1_by_hand): 2.0 lies on the boundary of ball [0, 2]; prdc drops that membership
    theirs = compute_prdc(REAL, GEN, nearest_k=1)
    assert theirs["precision"] == 0.5 and theirs["density"] == pytest.approx(3 / 4)
    assert manifold_metrics(GEN, REAL, k=1)["density"] == 1.0
