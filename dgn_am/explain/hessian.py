"""Eigenpairs of the Hessian of a scalar function f: R^n -> R at a point, from Hessian-vector products.

The gradient graph of f is built once (create_graph=True); each product H v is one more backward pass through it
(double backward), so the n x n Hessian is never formed unless asked for (solver "full", or `full_hessian` to check
the others). Solvers:

    lanczos   scipy.sparse.linalg.eigsh (ARPACK's implicitly restarted Lanczos) on a LinearOperator, which="BE":
              the k largest and the k smallest (most negative) eigenvalues in one run
    lobpcg    scipy.sparse.linalg.lobpcg, once for the largest k and once for the smallest k, from seeded blocks
    full      torch.autograd.functional.hessian, then numpy.linalg.eigh; n <= MAX_FULL only

Every start vector is drawn from `seed`, and the same seed gives the same eigenpairs. A function whose Hessian is
exactly zero at x (a network of ReLU, max-pool and linear layers) answers every probe with zero; it is reported with
`flat=True`, zero eigenvalues and seeded orthonormal directions orthogonal to the gradient, without calling a solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

SOLVERS = ("lanczos", "lobpcg", "full")
MAX_FULL = 4096  # largest n whose full Hessian (n x n, float64: 128 MiB at 4096) the "full" solver forms


@dataclass
class Curvature:
    """The 2k extreme eigenpairs of the Hessian H of f at x (n = x.numel()).

    values (m,): eigenvalues, descending (the k largest, then the k smallest; m = 2k, or n when 2k > n);
    vectors (m, n): unit eigenvectors, row i for values[i], each signed so that gradient . v >= 0;
    gradient (n,): df/dx at x; value: f(x); products: Hessian-vector products used; flat: H x v was exactly 0 for
    every probe, so H = 0 here (values are 0 and vectors are arbitrary directions orthogonal to the gradient);
    spectrum (n,): every eigenvalue, descending (solver "full" only, else None)."""

    value: float
    gradient: torch.Tensor
    values: torch.Tensor
    vectors: torch.Tensor
    solver: str
    products: int
    flat: bool = False
    spectrum: torch.Tensor | None = None


class HessianOperator:
    """v (n,) -> H v at x0 by double backward through f's gradient graph, built once.

    f: (n,) -> scalar tensor, differentiable twice where H is wanted. `progress(products)` is called after each
    product."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
                 progress: Callable[[int], None] | None = None) -> None:
        self.x = x0.detach().flatten().clone().requires_grad_(True)
        y = f(self.x)
        if y.numel() != 1:
            raise ValueError(f"the function must return one number, got shape {tuple(y.shape)}")
        (self.g,) = torch.autograd.grad(y.reshape(()), self.x, create_graph=True)
        self.value, self.gradient = float(y.detach()), self.g.detach().clone()
        self.products, self.progress = 0, progress

    @property
    def n(self) -> int:
        return self.x.numel()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """H v for v (n,) in x's dtype and device -> (n,)."""
        self.products += 1
        hv = None
        if self.g.requires_grad:  # a gradient that does not depend on x (a linear f) has no graph: H = 0
            (hv,) = torch.autograd.grad(self.g, self.x, v, retain_graph=True, allow_unused=True)
        if self.progress is not None:
            self.progress(self.products)
        return torch.zeros_like(self.x) if hv is None else hv.detach()

    def numpy_matvec(self, v: np.ndarray) -> np.ndarray:
        """H v on float64 numpy vectors (n,) or (n, 1) (scipy's LinearOperator calls it so)."""
        t = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1)).to(self.x)
        return self(t).double().cpu().numpy()

    def numpy_matmat(self, block: np.ndarray) -> np.ndarray:
        """H V for V (n, m): one product per column."""
        return np.stack([self.numpy_matvec(block[:, j]) for j in range(block.shape[1])], axis=1)


def full_hessian(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor) -> torch.Tensor:
    """The full Hessian (n, n) of f at x0 (flattened), symmetrized; for small n only (n <= MAX_FULL)."""
    x = x0.detach().flatten().clone()
    if x.numel() > MAX_FULL:
        raise ValueError(f"the full Hessian of {x.numel()} inputs is too large to form (limit {MAX_FULL}); use "
                         "solver 'lanczos' or 'lobpcg', which need only Hessian-vector products")
    h = torch.autograd.functional.hessian(lambda z: f(z).reshape(()), x)
    return (h + h.T) / 2


def _seeded(n: int, m: int, seed: int) -> np.ndarray:
    """(n, m) standard normal draws from a torch.Generator seeded with `seed` (float64)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, m, generator=g, dtype=torch.float64).numpy()


def _is_flat(op: HessianOperator, seed: int) -> bool:
    """True when H v is exactly 0 for two seeded probes: the Hessian is zero at this point."""
    probes = _seeded(op.n, 2, seed + 1)
    return all(not np.any(op.numpy_matvec(probes[:, j])) for j in range(2))


def _flat_directions(gradient: np.ndarray, m: int, seed: int) -> np.ndarray:
    """(n, m) seeded orthonormal directions orthogonal to the gradient (where n allows)."""
    n = gradient.size
    g = gradient / np.linalg.norm(gradient) if np.any(gradient) else np.zeros(n)
    block = _seeded(n, m, seed)
    block -= np.outer(g, g @ block)
    q, _ = np.linalg.qr(block)
    return q[:, :m]


def _lanczos(op: HessianOperator, k: int, seed: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = op.n
    a = LinearOperator((n, n), matvec=op.numpy_matvec, matmat=op.numpy_matmat, dtype=np.float64)
    return eigsh(a, k=2 * k, which="BE", v0=_seeded(n, 1, seed)[:, 0], tol=tol, maxiter=max(1000, 20 * n))


def _lobpcg(op: HessianOperator, k: int, seed: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    from scipy.sparse.linalg import LinearOperator, lobpcg

    n = op.n
    a = LinearOperator((n, n), matvec=op.numpy_matvec, matmat=op.numpy_matmat, dtype=np.float64)
    values, vectors = [], []
    for largest, s in ((True, seed), (False, seed + 7919)):
        with warnings.catch_warnings():  # lobpcg warns when it stops at maxiter; the residuals are checked below
            warnings.simplefilter("ignore", UserWarning)
            w, v = lobpcg(a, _seeded(n, k, s), largest=largest, tol=tol, maxiter=500)
        values.append(w)
        vectors.append(v)
    return np.concatenate(values), np.concatenate(vectors, axis=1)


def _full(f: Callable, op: HessianOperator, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the 2k extreme eigenvalues, their eigenvectors (n, 2k), every eigenvalue ascending)."""
    w, v = np.linalg.eigh(full_hessian(f, op.x).double().cpu().numpy())
    op.products += op.n  # forming H is one product per column
    if 2 * k >= len(w):
        return w, v, w
    keep = np.r_[0:k, len(w) - k:len(w)]
    return w[keep], v[:, keep], w


def _signed(vectors: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Each column v turned so that gradient . v >= 0; where gradient . v is ~0, so that v's largest entry is > 0."""
    out = vectors.copy()
    scale = np.linalg.norm(gradient) + 1e-300
    for j in range(out.shape[1]):
        slope = gradient @ out[:, j]
        ref = slope if abs(slope) > 1e-9 * scale else out[np.argmax(np.abs(out[:, j])), j]
        if ref < 0:
            out[:, j] = -out[:, j]
    return out


def eigenpairs(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, k: int = 4, solver: str = "lanczos",
               seed: int = 0, tol: float = 1e-8, progress: Callable[[int], None] | None = None) -> Curvature:
    """The k largest and k smallest eigenpairs of the Hessian of f at x0.

    f: (n,) -> scalar (x0 is flattened to (n,) first; compute in float64 for eigenvalues near 0); k >= 1;
    solver: lanczos, lobpcg or full (module docstring); tol: the solver's relative tolerance."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown Hessian solver '{solver}'; use {', '.join(SOLVERS)}")
    if k < 1:
        raise ValueError(f"k (eigenpairs at each end) must be >= 1, got {k}")
    op = HessianOperator(f, x0, progress)
    n, grad = op.n, op.gradient.double().cpu().numpy()
    if solver == "lanczos" and 2 * k >= n:
        raise ValueError(f"lanczos finds 2k = {2 * k} eigenpairs of an n = {n} Hessian only when 2k < n; lower k "
                         "or use solver 'full'")
    if solver == "lobpcg" and 5 * k > n:
        raise ValueError(f"lobpcg needs 5k <= n (k = {k}, n = {n}); lower k or use solver 'full'")
    if solver != "full" and _is_flat(op, seed):
        m = min(2 * k, n)
        vectors = _flat_directions(grad, m, seed)
        return Curvature(op.value, op.gradient, torch.zeros(m, dtype=torch.float64),
                         torch.from_numpy(vectors.T.copy()), solver, op.products, flat=True)
    spectrum = None
    if solver == "lanczos":
        w, v = _lanczos(op, k, seed, tol)
    elif solver == "lobpcg":
        w, v = _lobpcg(op, k, seed, tol)
    else:
        w, v, every = _full(f, op, k)
        spectrum = torch.from_numpy(every[::-1].copy())
    order = np.argsort(-w, kind="stable")
    w, v = w[order], _signed(v[:, order], grad)
    flat = solver == "full" and not np.any(w)
    return Curvature(op.value, op.gradient, torch.from_numpy(w.copy()), torch.from_numpy(v.T.copy()), solver,
                     op.products, flat=flat, spectrum=spectrum)
