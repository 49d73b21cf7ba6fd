"""What a unit is invariant to, and what it is sensitive to, at one point: the eigenpairs of the Hessian of its
activation (Simonyan, Vedaldi & Zisserman 2014 list "the Hessian of a unit" as a way to show its invariances).

At a point x (an image in [0, 1], or a generator code h with the image G(h)) the unit's activation f has gradient g
and Hessian H. Along a unit direction v, f(x + t v) ~ f(x) + t (g . v) + t^2 / 2 (v' H v). An eigenvector with an
eigenvalue near 0 and a slope g . v near 0 is a direction the unit ignores to second order: an invariance. One with
a large |eigenvalue| is a sensitivity (negative: the activation falls both ways, x sits on a ridge; positive: a
valley). `unit_invariance` finds the k largest and k smallest eigenpairs from Hessian-vector products
(dgn_am.explain.hessian) and walks each direction, measuring the activation at x + t v.

Piecewise-linear networks. A network made only of linear layers (Linear, Conv, BatchNorm in eval mode), ReLU,
LeakyReLU and max-pooling is piecewise linear in its input, so its Hessian is exactly zero almost everywhere (every
eigenvalue is 0, and the Hessian says nothing). The shipped fmnist-caffenet is such a network, and so is the
fmnist-fc6 generator (LeakyReLU, linear output, clamped to [0, 1]). The result then has `flat=True` and a
FlatHessianWarning is issued. Two standard remedies:

- smooth=BETA evaluates the Hessian on a surrogate: a copy of the networks with every ReLU replaced by
  softplus(beta x) / beta and every LeakyReLU(a) by a x + (1 - a) softplus(beta x) / beta (the original networks
  are not touched). The surrogate's modules subclass nn.ReLU and nn.LeakyReLU, so a unit is read exactly as before
  (pre-ReLU where a layer ends in a ReLU). As beta grows the surrogate approaches the network (|softplus(beta x) /
  beta - relu(x)| <= log(2) / beta), and its curvature concentrates at the ReLU kinks. Max-pooling stays as it is.
- an objective with curvature of its own, such as logprob:fc8:3 (log-softmax is smooth in the logits).

The path activations are always measured on the original network (and on the surrogate as well when smoothing).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dgn_am.explain.hessian import SOLVERS, Curvature, eigenpairs
from dgn_am.layers import run
from dgn_am.objective_expr import objective_for

SPACES = ("pixels", "code")


class FlatHessianWarning(UserWarning):
    """The Hessian of a unit was exactly zero at the point: the network is piecewise linear there."""


class SoftplusReLU(nn.ReLU):
    """ReLU's smooth surrogate softplus(beta x) / beta, an nn.ReLU subclass so unit readings do not change."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, beta=self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}"


class SoftplusLeakyReLU(nn.LeakyReLU):
    """LeakyReLU(a)'s smooth surrogate a x + (1 - a) softplus(beta x) / beta (an nn.LeakyReLU subclass)."""

    def __init__(self, negative_slope: float, beta: float) -> None:
        super().__init__(negative_slope)
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.negative_slope
        return a * x + (1 - a) * F.softplus(x, beta=self.beta)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope:g}, beta={self.beta:g}"


def parse_smooth(text: str | None) -> float | None:
    """'softplus:BETA' -> BETA (> 0); None or 'none' -> None."""
    if text is None or text == "none":
        return None
    kind, _, beta = text.partition(":")
    try:
        value = float(beta)
    except ValueError:
        value = float("nan")
    if kind != "softplus" or not math.isfinite(value) or value <= 0:
        raise ValueError(f"bad smoothing '{text}'; use softplus:BETA with BETA > 0, e.g. softplus:10 (or none)")
    return value


def smoothed(module: nn.Module, beta: float) -> tuple[nn.Module, int]:
    """A copy of `module` with every nn.ReLU replaced by SoftplusReLU(beta) and every nn.LeakyReLU(a) by
    SoftplusLeakyReLU(a, beta); returns (copy, number replaced). `module` itself is left unchanged."""
    out = copy.deepcopy(module)
    swaps = [(name, m) for name, m in out.named_modules()
             if type(m) in (nn.ReLU, nn.LeakyReLU)]  # exact types: a surrogate is never swapped twice
    for name, m in swaps:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        new = SoftplusReLU(beta) if type(m) is nn.ReLU else SoftplusLeakyReLU(m.negative_slope, beta)
        setattr(parent, child, new)
    return out, len(swaps)


@dataclass(frozen=True)
class InvarianceConfig:
    """How the Hessian of a unit is analysed at one point."""

    k: int = 4  # eigenpairs at each end: the k largest and the k smallest (most negative) eigenvalues
    solver: str = "lanczos"  # lanczos (eigsh), lobpcg or full (dgn_am.explain.hessian)
    smooth: float | None = None  # softplus beta of the surrogate whose Hessian is taken; None: the network itself
    radius: float = 0.1  # the path's largest |t|, as a fraction of ||x|| (the point's L2 norm)
    points: int = 5  # points on each path, evenly from -radius to +radius (odd, so that t = 0 is one of them)
    verify: bool = False  # also form the full Hessian (small inputs) and record the eigenvalue error of the solver
    tol: float = 1e-8  # the solver's relative tolerance

    def __post_init__(self) -> None:
        if self.k < 1 or self.points < 3 or self.points % 2 == 0 or not self.radius > 0 or self.solver not in SOLVERS:
            raise ValueError(f"invariance needs k >= 1, an odd points >= 3, radius > 0 and a solver in {SOLVERS}; "
                             f"got {self}")
        if self.smooth is not None and not self.smooth > 0:
            raise ValueError(f"smooth (softplus beta) must be > 0, got {self.smooth}")


@dataclass
class Invariance:
    """One target's Hessian analysis at one point; m = 2k directions, P path points; the point lives in `space`.

    curvature: eigenvalues (m,), eigenvectors (m, n), gradient (n,) of the surrogate (or the network);
    value: the objective at the point on the network (value_surrogate: on the surrogate, else None);
    slopes (m,): g . v; ts (P,): path steps; path (m, P): the network's objective at x + t v (path_surrogate likewise,
    or None); quadratic (m, P): f + t g.v + t^2 lambda / 2 from the Hessian; images (m, P, C, H, W) in [0, 1]: what
    the network sees on each path (pixels: x + t v clipped for display; code: G(h + t v)); directions (m, C, H, W)
    in [0, 1]: each eigenvector as an image, 0.5 = no change (code: the image change G'(h) v); seconds: wall time."""

    target: str
    space: str
    curvature: Curvature
    value: float
    value_surrogate: float | None
    slopes: torch.Tensor
    ts: torch.Tensor
    path: torch.Tensor
    path_surrogate: torch.Tensor | None
    quadratic: torch.Tensor
    images: torch.Tensor
    directions: torch.Tensor
    verify_error: float | None
    seconds: float

    def summary(self) -> dict:
        """The numbers as JSON-ready lists (no images)."""
        c = self.curvature
        tolist = (lambda t: None if t is None else t.tolist())
        return {"target": self.target, "space": self.space, "value": self.value,
                "value_surrogate": self.value_surrogate, "gradient_norm": float(c.gradient.norm()),
                "eigenvalues": c.values.tolist(), "slopes": self.slopes.tolist(), "flat": c.flat,
                "solver": c.solver, "hessian_vector_products": c.products, "ts": self.ts.tolist(),
                "path": self.path.tolist(), "path_surrogate": tolist(self.path_surrogate),
                "quadratic": self.quadratic.tolist(), "verify_max_eigenvalue_error": self.verify_error,
                "seconds": self.seconds, **_spectrum_summary(c.spectrum)}


NEAR_ZERO = 1e-3  # an eigenvalue is "near zero" when |lambda| <= NEAR_ZERO * max |lambda|


def _spectrum_summary(spectrum: torch.Tensor | None) -> dict:
    """With the whole spectrum (solver full): it, and how many eigenvalues are near zero (the unit's second-order
    invariances: with a near-zero slope too, the activation does not change along them)."""
    if spectrum is None:
        return {}
    peak = float(spectrum.abs().max())
    near = int((spectrum.abs() <= NEAR_ZERO * peak).sum()) if peak > 0 else len(spectrum)
    return {"spectrum": spectrum.tolist(), "near_zero_eigenvalues": near, "near_zero_threshold": NEAR_ZERO * peak}


def _decoder(generator: nn.Module, spec) -> Callable[[torch.Tensor], torch.Tensor]:
    """h (B, code_dim) -> the image (B, C, H, W) in [0, 1] that the target sees (as Prior.image, clamped)."""
    from dgn_am.priors import to_target

    output = generator.config.output
    return lambda h: to_target(generator(h), output, spec, clip=True)


def _scorer(model: nn.Module, target, shape: tuple, decode: Callable | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """z (n,) or (B, n) -> the target's objective: a scalar for (n,), (B,) for (B, n)."""
    objectives = {1: objective_for(model, [target])}  # by batch size

    def f(z: torch.Tensor) -> torch.Tensor:
        rows = z.reshape(-1, z.shape[-1])  # (B, n)
        x = rows.reshape(-1, *shape) if decode is None else decode(rows)  # (B, C, H, W)
        if len(rows) not in objectives:
            objectives[len(rows)] = objective_for(model, [target] * len(rows))
        objective = objectives[len(rows)]
        out = objective(run(model, x, list(objective.layers)))
        return out[0] if z.dim() == 1 else out

    return f


def _as_image(v: torch.Tensor) -> torch.Tensor:
    """A signed map (..., C, H, W) shown in [0, 1]: 0.5 + v / (2 max|v|), 0.5 where v = 0."""
    peak = v.abs().amax(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-30)
    return 0.5 + v / (2 * peak)


def _paths(f: Callable, x: torch.Tensor, vectors: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """f at x + t v for every direction v (m, n) and step t (P,) -> (m, P)."""
    with torch.no_grad():
        pts = x.flatten()[None, None] + ts[None, :, None] * vectors[:, None]  # (m, P, n)
        return f(pts.reshape(-1, x.numel())).reshape(len(vectors), len(ts))


def _functions(model: nn.Module, target, config: InvarianceConfig, prior) -> tuple:
    """(f, f_hessian, decode, device) in float64 on copies of the networks: f the target's objective on the network,
    f_hessian on the surrogate (f itself without smoothing), decode h -> image in code space (else None)."""
    spec = model.input_spec
    shape = (spec.channels, *spec.size)
    exact_model = copy.deepcopy(model).double().eval()
    decode = decode_smooth = gen = None
    if prior is not None:
        gen = copy.deepcopy(prior.generator).double().eval()
        decode = decode_smooth = _decoder(gen, spec)
    f = _scorer(exact_model, target, shape, decode)
    if config.smooth is None:
        return f, f, decode, next(exact_model.parameters()).device
    surrogate, count = smoothed(exact_model, config.smooth)
    if gen is not None:
        gen_smooth, count_gen = smoothed(gen, config.smooth)
        decode_smooth, count = _decoder(gen_smooth, spec), count + count_gen
    if count == 0:
        raise ValueError("smooth: the networks have no nn.ReLU or nn.LeakyReLU module to replace (a functional "
                         "relu cannot be swapped); drop smooth, or use a curved objective such as logprob")
    return f, _scorer(surrogate, target, shape, decode_smooth), decode, next(exact_model.parameters()).device


def unit_invariance(model: nn.Module, target, point: torch.Tensor, config: InvarianceConfig = InvarianceConfig(),
                    prior=None, seed: int = 0, progress: Callable[[int], None] | None = None) -> Invariance:
    """The Hessian eigenpairs of `target` (a Unit, or an ObjectiveTarget such as logprob:fc8:3) at `point`.

    point: an image (C, H, W) in [0, 1] in the model's input format (space "pixels"), or a code (code_dim,) of
    `prior` (space "code": the image is the prior's G(h) clamped to [0, 1]). The analysis runs in float64 on copies
    of the networks (smoothed when config.smooth). Issues a FlatHessianWarning when the Hessian is exactly zero."""
    start = time.perf_counter()
    shape = (model.input_spec.channels, *model.input_spec.size)
    f_exact, f_hess, decode_exact, device = _functions(model, target, config, prior)
    x = point.detach().to(dtype=torch.float64, device=device).flatten()
    curvature = eigenpairs(f_hess, x, config.k, config.solver, seed, config.tol, progress)
    verify_error = None
    if config.verify:
        full = eigenpairs(f_hess, x, config.k, "full", seed)
        verify_error = float((full.values - curvature.values).abs().max())
    if curvature.flat:
        warnings.warn(f"the Hessian of {target} is exactly zero at this point: the network is piecewise linear "
                      "here (ReLU, max-pool and linear layers), so every eigenvalue is 0 and second-order "
                      "invariances are undefined; use smooth=softplus:BETA (--smooth softplus:10) or a curved "
                      "objective such as logprob:LAYER:INDEX", FlatHessianWarning, stacklevel=2)
    vectors = curvature.vectors.to(x)
    half = config.points // 2
    ts = (torch.arange(config.points, dtype=torch.float64) - half).to(x) / half * config.radius * float(x.norm())
    slopes = vectors @ curvature.gradient.to(x)
    quadratic = curvature.value + slopes[:, None] * ts + 0.5 * curvature.values.to(x)[:, None] * ts ** 2
    pts = x[None, None] + ts[None, :, None] * vectors[:, None]  # (m, P, n)
    with torch.no_grad():
        images = pts.reshape(-1, *shape) if decode_exact is None else decode_exact(pts.reshape(-1, x.numel()))
        value = float(f_exact(x[None])[0])
    if prior is None:
        directions = _as_image(vectors.reshape(-1, *shape))
    else:
        directions = _as_image(torch.autograd.functional.jvp(decode_exact, x[None].expand(len(vectors), -1),
                                                             vectors)[1])
    return Invariance(
        target=str(target), space="pixels" if prior is None else "code", curvature=curvature, value=value,
        value_surrogate=None if config.smooth is None else curvature.value, slopes=slopes.cpu(), ts=ts.cpu(),
        path=_paths(f_exact, x, vectors, ts).cpu(),
        path_surrogate=None if config.smooth is None else _paths(f_hess, x, vectors, ts).cpu(),
        quadratic=quadratic.cpu(), images=images.reshape(len(vectors), len(ts), *shape).clamp(0, 1).float().cpu(),
        directions=directions.float().cpu(), verify_error=verify_error, seconds=time.perf_counter() - start)


def settings(config: InvarianceConfig, space: str) -> dict:
    """The settings of a run, for its JSON."""
    return {"space": space, **asdict(config)}


def invariances(model: nn.Module, targets: Sequence, points: torch.Tensor,
                config: InvarianceConfig = InvarianceConfig(), prior=None, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> list[Invariance]:
    """unit_invariance for each target i at points[i] (images (N, C, H, W), or codes (N, code_dim) with a prior).
    progress(target index, products) after each Hessian-vector product."""
    if len(points) != len(targets):
        raise ValueError(f"{len(targets)} targets but {len(points)} points; give one point per target")
    return [unit_invariance(model, t, points[i], config, prior, seed,
                            None if progress is None else (lambda n, i=i: progress(i, n)))
            for i, t in enumerate(targets)]
