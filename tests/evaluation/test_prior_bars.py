"""dgn_am.evaluation.prior_bars: the README's prior checks, on fake Fashion-MNIST and 2 steps."""

import pytest

from dgn_am.evaluation.prior_bars import PAIRS, check_prior
from dgn_am.methods import get_method
from dgn_am.priors import load_prior
from tests.helpers import write_fake_fashion_mnist


def test_check_prior_reports_both_pairs_the_sanity_control_and_the_grids(tmp_path):
    write_fake_fashion_mnist(tmp_path, n_train=20, n_test=40)
    method = get_method("dgn-am-stats").with_overrides(steps=2)
    runs, grids = check_prior(method, load_prior("fmnist-fc6"), [0, 1], data_dir=str(tmp_path))
    assert list(runs) == [f"{t}->{j}" for t, j in PAIRS] + ["sanity: random fmnist-caffenet->fmnist-resnet"]
    for r in runs.values():
        assert r["images"] == 20 and 0 <= r["top1"] <= 1 and len(r["top1_per_class"]) == 10
        assert len(r["diversity"]["ratio_per_class"]) == 10
        assert r["diversity"]["mean_ratio"] == pytest.approx(sum(r["diversity"]["ratio_per_class"]) / 10)
    assert set(grids) == {"fmnist-caffenet", "fmnist-resnet", "random-caffenet", "baseline", "real"}
    assert all(g.shape == (20, 1, 28, 28) for g in grids.values())
