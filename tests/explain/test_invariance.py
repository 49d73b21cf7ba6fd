"""Hessian eigenpairs of a unit (dgn_am.explain.hessian, dgn_am.explain.invariance): known answers on a quadratic,
agreement of the iterative solvers with the full Hessian, the zero Hessian of a ReLU net, the softplus surrogate."""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dgn_am.explain.hessian import eigenpairs, full_hessian
from dgn_am.explain.invariance import (FlatHessianWarning, InvarianceConfig, SoftplusLeakyReLU, SoftplusReLU,
                                       parse_smooth, smoothed, unit_invariance)
from dgn_am.layers import Unit, run
from dgn_am.models.loading import TargetModel
from dgn_am.models.spec import InputSpec

SPEC28 = InputSpec(size=(28, 28), channels=1, mean=(0.5,), std=(0.25,))


def _matrix(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _check_against_eigh(curv, a: torch.Tensor, k: int) -> None:
    w, v = np.linalg.eigh((a + a.T).numpy())  # the Hessian of x' A x is A + A'
    want_w = np.r_[w[::-1][:k], w[::-1][-k:]]
    want_v = np.c_[v[:, ::-1][:, :k], v[:, ::-1][:, -k:]]
    np.testing.assert_allclose(curv.values.numpy(), want_w, rtol=1e-6, atol=1e-8)
    overlap = np.abs(np.sum(curv.vectors.numpy().T * want_v, axis=0))  # |<v, v_ref>| = 1 up to the sign
    np.testing.assert_allclose(overlap, 1.0, atol=1e-5)


@pytest.mark.parametrize("solver,n", [("full", 6), ("lanczos", 12), ("lobpcg", 30)])
def test_quadratic_eigenpairs_equal_eigh_of_a_plus_a_transpose(solver, n):
    a = _matrix(n)
    x0 = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    curv = eigenpairs(lambda x: x @ a @ x, x0, k=2, solver=solver, seed=3)
    _check_against_eigh(curv, a, 2)
    assert curv.value == pytest.approx(float(x0 @ a @ x0))
    assert torch.allclose(curv.gradient, (a + a.T) @ x0)
    assert not curv.flat and (curv.gradient @ curv.vectors.T >= 0).all()  # signed so that g . v >= 0


class Quadratic(nn.Module):
    """(B, 1, 4, 4) -> fc (B, 1) = x' A x on the normalized input: a unit whose Taylor expansion is exact."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.float(), requires_grad=False)
        self.fc = nn.Identity()

    def forward(self, x):
        z = x.flatten(1)
        return self.fc(((z @ self.a) * z).sum(1, keepdim=True))


def test_quadratic_unit_paths_equal_the_taylor_expansion():
    a = _matrix(16, seed=5)
    spec = InputSpec(size=(4, 4), channels=1, mean=(0.0,), std=(1.0,))
    model = TargetModel(Quadratic(a), spec).eval()
    x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(2))
    r = unit_invariance(model, Unit("fc", 0), x, InvarianceConfig(k=3, solver="lanczos", radius=0.5, points=7))
    _check_against_eigh(r.curvature, a.float().double(), 3)
    torch.testing.assert_close(r.path, r.quadratic, rtol=1e-5, atol=1e-5)  # f(x + t v) is exactly quadratic in t
    assert r.path[:, 3].sub(r.value).abs().max() < 1e-9 and r.ts[3] == 0
    assert r.images.shape == (6, 7, 1, 4, 4) and r.directions.shape == (6, 1, 4, 4)
    assert 0 <= float(r.directions.min()) and float(r.directions.max()) <= 1


def _smooth_net() -> TargetModel:
    torch.manual_seed(11)
    net = nn.Sequential()
    net.add_module("conv", nn.Sequential(nn.Conv2d(1, 2, 5, stride=3), nn.Softplus()))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Sequential(nn.Linear(2 * 8 * 8, 6), nn.Tanh(), nn.Linear(6, 3)))
    return TargetModel(net, SPEC28).eval()


@pytest.mark.parametrize("solver", ["lanczos", "lobpcg"])
def test_iterative_solvers_agree_with_the_full_hessian_on_28x28(solver):
    model = _smooth_net()
    x = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(4))
    r = unit_invariance(model, Unit("fc", 1), x, InvarianceConfig(k=3, solver=solver, verify=True, tol=1e-10))
    assert r.verify_error < 1e-6 * float(r.curvature.values.abs().max())
    assert float(r.curvature.values.abs().max()) > 1e-3  # a smooth net has curvature
    assert r.curvature.products < 784  # fewer products than forming the Hessian column by column
    f = lambda z: model.double()(z.view(1, 1, 28, 28))[0, 1]  # noqa: E731 - the independent reference
    h = full_hessian(f, x.double())
    v = r.curvature.vectors
    np.testing.assert_allclose((v @ h @ v.T).diagonal().numpy(), r.curvature.values.numpy(), rtol=1e-6, atol=1e-9)


def test_same_seed_same_result_and_another_seed_same_eigenvalues():
    model = _smooth_net()
    x = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(4))
    a, b = (unit_invariance(model, Unit("fc", 0), x, InvarianceConfig(k=2), seed=7) for _ in range(2))
    assert torch.equal(a.curvature.values, b.curvature.values) and torch.equal(a.curvature.vectors, b.curvature.vectors)
    assert torch.equal(a.path, b.path)
    c = unit_invariance(model, Unit("fc", 0), x, InvarianceConfig(k=2), seed=8)
    torch.testing.assert_close(a.curvature.values, c.curvature.values, rtol=1e-6, atol=1e-9)


def _relu_net() -> TargetModel:
    torch.manual_seed(3)
    net = nn.Sequential()
    net.add_module("conv", nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()))
    net.add_module("pool", nn.MaxPool2d(2))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc6", nn.Sequential(nn.Linear(4 * 14 * 14, 16), nn.ReLU()))
    net.add_module("fc8", nn.Linear(16, 3))
    return TargetModel(net, SPEC28).eval()


@pytest.mark.parametrize("solver", ["lanczos", "full"])
def test_relu_net_has_a_zero_hessian_and_warns(solver):
    model = _relu_net()
    x = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(4))
    with pytest.warns(FlatHessianWarning, match="piecewise linear"):
        r = unit_invariance(model, Unit("fc8", 2), x, InvarianceConfig(k=2, solver=solver))
    assert r.curvature.flat and not r.curvature.values.any() and r.curvature.gradient.norm() > 0
    v = r.curvature.vectors
    torch.testing.assert_close(v @ v.T, torch.eye(4, dtype=v.dtype))  # orthonormal directions
    if solver == "lanczos":  # without a solver run, the directions are drawn orthogonal to the gradient
        assert r.slopes.abs().max() < 1e-9


def test_softplus_surrogate_approaches_the_relu_net_and_leaves_it_alone():
    model = _relu_net()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = model(x)
        gaps = []
        for beta in (10.0, 100.0, 1000.0):
            smooth, count = smoothed(model, beta)
            assert count == 2 and all(type(m) is nn.ReLU for m in model.modules() if isinstance(m, nn.ReLU))
            gaps.append(float((smooth(x) - want).abs().max()))
            # a unit reads the same pre-ReLU value on the surrogate: the first conv's reading is unchanged
            assert torch.equal(run(smooth, x, ["conv"])["conv"], run(model, x, ["conv"])["conv"])
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 2e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlatHessianWarning)
        r = unit_invariance(model, Unit("fc8", 2), x[0], InvarianceConfig(k=2, smooth=50.0))
    assert not r.curvature.flat and r.curvature.values.abs().max() > 0 and r.value_surrogate is not None
    assert r.path_surrogate.shape == r.path.shape


def test_smoothed_leaky_relu_and_the_smooth_syntax():
    leaky = nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(0.3))
    smooth, count = smoothed(leaky, 1e4)
    assert count == 1 and isinstance(smooth[1], SoftplusLeakyReLU) and type(leaky[1]) is nn.LeakyReLU
    z = torch.linspace(-3, 3, 61)
    torch.testing.assert_close(smooth[1](z), leaky[1](z), atol=1e-4, rtol=0)
    assert float(SoftplusReLU(2.0)(torch.zeros(1))) == pytest.approx(np.log(2) / 2)  # softplus(0) / beta
    assert parse_smooth("softplus:10") == 10.0 and parse_smooth(None) is None
    for bad in ("softplus", "softplus:-1", "relu:3", "softplus:nan"):
        with pytest.raises(ValueError, match="softplus:BETA"):
            parse_smooth(bad)
    with pytest.raises(ValueError, match="no nn.ReLU"):
        unit_invariance(_smooth_net(), Unit("fc", 0), torch.rand(1, 28, 28), InvarianceConfig(k=1, smooth=5.0))


class _TinyGenerator(nn.Module):
    """h (B, 5) -> (B, 1, 28, 28) through a LeakyReLU: a stand-in for the prior's generator."""

    config = SimpleNamespace(output="unit")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(9)
        self.body = nn.Sequential(nn.Linear(5, 12), nn.LeakyReLU(0.3), nn.Linear(12, 28 * 28), nn.Sigmoid())

    def forward(self, h):
        return self.body(h).view(-1, 1, 28, 28)


def test_code_space_hessian_matches_the_full_one_and_renders_the_paths():
    prior = SimpleNamespace(generator=_TinyGenerator().eval())
    h = torch.rand(5, generator=torch.Generator().manual_seed(6)) + 0.2
    r = unit_invariance(_smooth_net(), Unit("fc", 2), h, InvarianceConfig(k=2, solver="full", smooth=20.0),
                        prior=prior)
    f = lambda z: _smooth_net().double()(  # noqa: E731 - the independent reference: G then the net, smoothed G
        smoothed(prior.generator, 20.0)[0].double()(z[None]).clamp(0, 1))[0, 2]
    w = np.linalg.eigvalsh(full_hessian(f, h.double()).numpy())
    np.testing.assert_allclose(r.curvature.values.numpy(), np.r_[w[::-1][:2], w[::-1][-2:]], rtol=1e-6, atol=1e-10)
    assert r.space == "code" and r.images.shape == (4, 5, 1, 28, 28) and r.directions.shape == (4, 1, 28, 28)
    assert r.path[:, 2].sub(r.value).abs().max() < 1e-9


def test_full_solver_reports_the_whole_spectrum_and_its_near_zero_count():
    a = torch.diag(torch.tensor([3.0, 1.0, 1e-5, 0.0, -2.0], dtype=torch.float64))  # Hessian 2A: 6, 2, 2e-5, 0, -4
    curv = eigenpairs(lambda x: x @ a @ x, torch.ones(5, dtype=torch.float64), k=1, solver="full")
    np.testing.assert_allclose(curv.spectrum.numpy(), [6.0, 2.0, 2e-5, 0.0, -4.0], atol=1e-12)
    np.testing.assert_allclose(curv.values.numpy(), [6.0, -4.0], atol=1e-12)
    from dgn_am.explain.invariance import _spectrum_summary
    summary = _spectrum_summary(curv.spectrum)
    assert summary["near_zero_eigenvalues"] == 2 and summary["near_zero_threshold"] == pytest.approx(6e-3)
    assert eigenpairs(lambda x: x @ a @ x, torch.ones(5, dtype=torch.float64), k=1, solver="lanczos").spectrum is None


@pytest.mark.parametrize("solver", ["lanczos", "full"])
def test_logprob_on_a_relu_net_has_the_gauss_newton_hessian(solver):
    """Where a network is piecewise linear, log softmax(z(x))_c has the Hessian -J'(diag p - p p')J (z's Jacobian J):
    negative semidefinite, of rank <= classes - 1. Computed here independently from J and p."""
    from dgn_am.objective_expr import ObjectiveTarget

    model = _relu_net()
    x = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(4))
    net = copy.deepcopy(model).double().requires_grad_(False)
    z = lambda v: net(v.view(1, 1, 28, 28))[0]  # noqa: E731 - the logits (3,)
    x64 = x.double().flatten()
    jac = torch.autograd.functional.jacobian(z, x64)  # (3, 784)
    p = torch.softmax(z(x64), 0)
    w = np.linalg.eigvalsh((-jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac).numpy())
    r = unit_invariance(model, ObjectiveTarget("logprob:fc8:1"), x, InvarianceConfig(k=2, solver=solver))
    np.testing.assert_allclose(r.curvature.values.numpy(), np.r_[w[::-1][:2], w[::-1][-2:]], rtol=1e-6, atol=1e-9)
    assert r.curvature.values[-1] < -1e-3 and abs(float(r.curvature.values[0])) < 1e-9  # top: 0 (rank <= 2 of 784)
