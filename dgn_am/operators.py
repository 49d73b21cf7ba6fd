"""Operators r_theta: in-place changes to p after each step (Yosinski et al. 2015), as frozen dataclasses called
(p, ctx: engine.StepContext) -> None.

Order in Yosinski's toolbox, which a method reproduces by listing them in this order:
    p += lr * grad;  Decay;  GaussianBlur (every k steps);  NormClip;  ContributionClip.
BilateralBlur is an edge-preserving alternative to GaussianBlur (the seed notes' suggestion).

Except Decay, they act on image-shaped p (B, C, H, W): for PixelParam that is the mean-subtracted image
x - centre, the space r_theta is defined in, so "zeroing" a pixel sets it to the centre (the mean colour); for
RGB models its decorrelated colour components (PixelParam's `decorrelate`).
Spatial settings are in pixels of the image at hand; `rescaled(factor)` gives the operator for an image whose side
is `factor` times larger (used by Method.reference_size).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from dgn_am.priors import require_bank


def _check_image(p: torch.Tensor, who: str) -> None:
    if p.dim() != 4:
        raise ValueError(f"{who} acts on image-shaped p (B, C, H, W), but p has shape {tuple(p.shape)}; "
                         "use it with the 'pixels' parameterization")


def _check_pct(pct: float, who: str) -> None:
    if not 0 <= pct <= 100:
        raise ValueError(f"{who}: pct is a percentile in [0, 100], got {pct}")


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """1-D Gaussian weights exp(-t^2 / (2 sigma^2)) for t in [-r, r], r = int(truncate * sigma + 0.5), summing to 1
    (float64; torchvision builds the same weights in the image's dtype)."""
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Blur each channel of x (B, C, H, W) with a Gaussian of std `sigma` pixels; same shape, dtype and device.

    torchvision.transforms.v2.functional.gaussian_blur with kernel radius r = int(truncate * sigma + 0.5), as
    scipy.ndimage.gaussian_filter chooses it. Borders: torchvision mirrors about the edge pixel without repeating it
    (c b | a b c; scipy's mode "mirror", numpy's "reflect"). Until issue 18 this function mirrored with the edge
    repeated (b a | a b c; scipy's default "reflect", which Yosinski's toolbox used): the two differ only in the
    outer r pixels, and the benchmark's conclusions did not change (docs/benchmark.md). The kernel must be narrower
    than the image (r < min(H, W)). sigma <= 0 returns x unchanged. Differentiable in x.
    """
    r = _radius(sigma, truncate, x, "blur")
    if r == 0:
        return x
    return TF.gaussian_blur(x, [2 * r + 1, 2 * r + 1], [float(sigma), float(sigma)])


def _radius(sigma: float, truncate: float, x: torch.Tensor, what: str) -> int:
    """The kernel radius int(truncate * sigma + 0.5) (0 for sigma <= 0), checked to fit x's mirrored borders."""
    r = int(truncate * sigma + 0.5) if sigma > 0 else 0
    if r >= min(x.shape[-2:]):
        raise ValueError(f"{what} width {sigma} px gives a kernel radius of {r} px, too wide for a "
                         f"{x.shape[-2]}x{x.shape[-1]} image (mirrored borders need radius < side); use a width "
                         f"below {min(x.shape[-2:]) / truncate:.2g} px")
    return r


def bilateral_filter(x: torch.Tensor, sigma: float, sigma_range: float, truncate: float = 4.0) -> torch.Tensor:
    """Edge-preserving blur of each channel of x (B, C, H, W); same shape, dtype and device.

    out[i] = sum_j w_ij x[j] / sum_j w_ij over the (2r + 1)^2 window around pixel i, r = int(truncate * sigma + 0.5),
    w_ij = g_sigma(i - j) * exp(-(x[j] - x[i])^2 / (2 sigma_range^2)): gaussian_blur's spatial weights times a range
    weight, so pixels across an edge (a value more than ~sigma_range away) barely count. Per item and channel; borders
    mirrored as gaussian_blur, which it equals when sigma_range is huge. sigma <= 0 returns x unchanged. Memory:
    (2r + 1)^2 copies of x (the unfolded windows).
    """
    if sigma_range <= 0:
        raise ValueError(f"bilateral filter needs a range sigma > 0, got {sigma_range}")
    r = _radius(sigma, truncate, x, "bilateral")
    if r == 0:
        return x
    b, c, h, w = x.shape
    flat = x.reshape(b * c, 1, h, w)
    windows = F.unfold(F.pad(flat, (r, r, r, r), mode="reflect"), 2 * r + 1)  # (BC, K, HW), K = (2r + 1)^2
    g = gaussian_kernel(sigma, truncate).to(x.dtype)
    spatial = (g[:, None] * g[None, :]).reshape(1, -1, 1).to(x.device)  # (1, K, 1)
    weights = spatial * torch.exp(-0.5 * ((windows - flat.reshape(b * c, 1, h * w)) / sigma_range) ** 2)
    out = (weights * windows).sum(1) / weights.sum(1)  # (BC, HW); the centre's weight keeps the sum > 0
    return out.view(b, c, h, w)


def _percentile_mask(values: torch.Tensor, pct: float) -> torch.Tensor:
    """values (B, H, W) -> bool (B, H, W): True where a value is strictly below its item's pct-th percentile
    (linear interpolation between order statistics, as numpy.percentile's default)."""
    flat = values.flatten(1).float()
    threshold = torch.quantile(flat, pct / 100.0, dim=1, keepdim=True)  # (B, 1)
    return (flat < threshold).view_as(values)


@dataclass(frozen=True)
class Decay:
    """Yosinski's L2 decay and DGN-AM's code decay: p *= (1 - rate) after every step."""

    rate: float = 0.01  # theta_decay; DGN-AM's h *= 0.99 is rate 0.01

    def __call__(self, p: torch.Tensor, ctx) -> None:
        p.mul_(1.0 - self.rate)


@dataclass(frozen=True)
class Anchor:
    """Pull p back toward its start after every step: p += weight * (p_start - p).

    With normalized steps of size lr, a run settles where one step's move balances the pull, about lr / weight
    (in mean-|step| units) from the start. Started from real images' codes (init "bank"), each seed stays near its
    own real image, which keeps the seeds of one unit apart (dgn-am-anchor). Needs the engine's ctx.start.
    """

    weight: float = 0.01  # fraction of the distance to the start removed after every step, in [0, 1]

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 1:
            raise ValueError(f"Anchor weight is a fraction in [0, 1], got {self.weight}")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        if ctx.start is None:
            raise ValueError("Anchor needs the start point: run it through dgn_am.engine.maximize")
        p.add_(ctx.start - p, alpha=self.weight)
        ctx.param.project(p)  # the start may lie outside the constraint set (a raw init); p may not


@dataclass(frozen=True)
class Share:
    """Olah et al.'s shared parameterization, as an operator: after every step, move each item's p `weight` of the
    way to the mean p of the items that started from the same point (the frames of one interpolation row, which
    share a seed), so those items follow one shared path and differ only where their objectives pull apart.
    Items with a start of their own are left as they are. Needs the engine's ctx.start."""

    weight: float = 0.02  # fraction of the distance to the shared mean removed after every step, in [0, 1]

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 1:
            raise ValueError(f"Share weight is a fraction in [0, 1], got {self.weight}")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        if ctx.start is None:
            raise ValueError("Share needs the start point: run it through dgn_am.engine.maximize")
        start = ctx.start.flatten(1)  # (B, D)
        same = (start[:, None, :] == start[None, :, :]).all(-1).to(p.dtype)  # (B, B): same start
        mean = (same @ p.flatten(1)) / same.sum(1, keepdim=True)  # (B, D)
        p.add_(mean.view_as(p) - p, alpha=self.weight)


@dataclass(frozen=True)
class StopAt:
    """Stop each item once it is about as strong as the prior's real images: after every step, an item whose
    objective has reached `fraction` times the highest objective any image of the prior's code bank reaches for
    that item's unit is put back where it was before the step.

    Seeds started from different real images then stop near them instead of all climbing into the unit's mode
    (dgn-am-class). The reference is computed once per run from ctx.param.prior.bank (a code parameterization);
    the first step is never undone. An item whose unit no bank image excites (best objective <= 0: a hidden unit
    read before its ReLU) has no real-image strength to stop at, and climbs freely.
    """

    fraction: float = 0.9  # of the best bank image's objective

    def __post_init__(self) -> None:
        if self.fraction <= 0:
            raise ValueError(f"StopAt fraction must be > 0, got {self.fraction}")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        memo = ctx.memo.setdefault(("StopAt", id(self)), {})
        if "reference" not in memo:
            memo["reference"] = bank_reference(ctx)
        else:
            with torch.no_grad():
                reference = memo["reference"]
                done = (ctx.score(ctx.param.to_image(p)) >= self.fraction * reference) & (reference > 0)
            p[done] = memo["previous"][done]
        memo["previous"] = p.detach().clone()


@torch.no_grad()
def bank_reference(ctx, chunk: int = 64) -> torch.Tensor:
    """(B,): for every item, the highest objective over the images of the prior's code bank (ctx.score_each: one
    forward pass per bank image, in chunks)."""
    bank = require_bank(getattr(ctx.param, "prior", None), "StopAt (a code parameterization)",
                        "use it with a dgn-am method and a prior from dgn-am train-prior or code-stats")
    return torch.cat([ctx.score_each(ctx.param.to_image(bank[lo: lo + chunk]))
                      for lo in range(0, len(bank), chunk)]).max(0).values


@dataclass(frozen=True)
class GaussianBlur:
    """Blur p with a Gaussian of std `width` pixels after steps 0, every, 2 * every, ... (theta_b_width/every)."""

    width: float = 1.0  # theta_b_width: the Gaussian's standard deviation in pixels
    every: int = 4  # theta_b_every: blur after step i when i % every == 0
    truncate: float = 4.0  # kernel radius in standard deviations (scipy's default)

    def __post_init__(self) -> None:
        if self.width < 0 or self.every < 1:
            raise ValueError(f"GaussianBlur needs width >= 0 and every >= 1, got width={self.width}, "
                             f"every={self.every}")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        _check_image(p, "GaussianBlur")
        if ctx.step % self.every == 0:
            p.copy_(gaussian_blur(p, self.width, self.truncate))

    def rescaled(self, factor: float) -> "GaussianBlur":
        return dataclasses.replace(self, width=self.width * factor)


@dataclass(frozen=True)
class BilateralBlur:
    """GaussianBlur's edge-preserving alternative: a bilateral filter of p (bilateral_filter) after steps 0, every,
    2 * every, ... Smooths the high-frequency noise within regions while a step larger than ~range_sigma survives."""

    width: float = 1.0  # the spatial Gaussian's standard deviation in pixels, as GaussianBlur's width
    range_sigma: float = 0.1  # the range Gaussian's standard deviation, in p's units (image units for pixels)
    every: int = 4  # filter after step i when i % every == 0
    truncate: float = 4.0  # kernel radius in standard deviations

    def __post_init__(self) -> None:
        if self.width < 0 or self.every < 1 or self.range_sigma <= 0:
            raise ValueError(f"BilateralBlur needs width >= 0, range_sigma > 0 and every >= 1, got width={self.width}, "
                             f"range_sigma={self.range_sigma}, every={self.every}")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        _check_image(p, "BilateralBlur")
        if ctx.step % self.every == 0:
            p.copy_(bilateral_filter(p, self.width, self.range_sigma, self.truncate))

    def rescaled(self, factor: float) -> "BilateralBlur":
        return dataclasses.replace(self, width=self.width * factor)


@dataclass(frozen=True)
class NormClip:
    """Zero the pixels whose norm over channels ||p[b, :, i, j]|| is below item b's pct-th percentile (theta_n_pct)."""

    pct: float = 20.0  # theta_n_pct in [0, 100]; 0 does nothing

    def __post_init__(self) -> None:
        _check_pct(self.pct, "NormClip")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        _check_image(p, "NormClip")
        if self.pct > 0:
            p.masked_fill_(_percentile_mask(p.norm(dim=1), self.pct).unsqueeze(1), 0.0)


def contribution(p: torch.Tensor, ctx, exact: bool, chunk: int = 4096) -> torch.Tensor:
    """Each pixel's contribution to its item's objective, (B, H, W) >= 0.

    exact=False: |sum_c p * grad|, the first-order estimate of the change when the pixel is zeroed, using the step's
    gradient ctx.grad (as Yosinski's toolbox). exact=True: |score(x) - score(x with pixel (i, j) zeroed in p)|,
    B * H * W extra images scored in forward passes of about `chunk` images.
    """
    if not exact:
        return (p * ctx.grad).sum(1).abs()
    b, c, h, w = p.shape
    n = h * w
    base = ctx.score(ctx.param.to_image(p))  # (B,)
    out = torch.empty(b, n, dtype=base.dtype, device=base.device)
    per = max(1, chunk // b)  # pixels per forward pass
    for lo in range(0, n, per):
        k = min(per, n - lo)
        pk = p.unsqueeze(0).repeat(k, 1, 1, 1, 1).view(k, b, c, n)  # (k, B, C, HW): copy j zeroes pixel lo + j
        j = torch.arange(k, device=p.device)
        pk[j, :, :, lo + j] = 0.0
        scores = ctx.score(ctx.param.to_image(pk.view(k * b, c, h, w))).view(k, b)  # row j*B + b: item b
        out[:, lo: lo + k] = (base.unsqueeze(0) - scores).abs().T
    return out.view(b, h, w)


@dataclass(frozen=True)
class ContributionClip:
    """Zero the pixels whose contribution is below item b's pct-th percentile (theta_c_pct); see contribution()."""

    pct: float = 90.0  # theta_c_pct in [0, 100]; 0 does nothing
    exact: bool = False  # False: |sum_c p * grad| (the paper's linear estimate); True: one forward pass per pixel
    chunk: int = 4096  # exact only: images per forward pass

    def __post_init__(self) -> None:
        _check_pct(self.pct, "ContributionClip")
        if self.chunk < 1:
            raise ValueError(f"ContributionClip: chunk must be >= 1, got {self.chunk}")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        _check_image(p, "ContributionClip")
        if self.pct > 0:
            mask = _percentile_mask(contribution(p, ctx, self.exact, self.chunk), self.pct)
            p.masked_fill_(mask.unsqueeze(1), 0.0)


def centre_fraction(step: int, steps: int, start: float, until: float) -> float:
    """Side of the optimized centre region as a fraction of the image side after step `step` (0-based): grows
    linearly from `start` to 1, reaching 1 after a fraction `until` of the steps."""
    if until <= 0:
        return 1.0
    return min(1.0, start + (1.0 - start) * (step + 1) / (until * steps))


def centre_mask(h: int, w: int, fraction: float, device: torch.device | None = None) -> torch.Tensor:
    """bool (H, W): True inside the centred box whose sides are `fraction` of the image's (at least 1 pixel)."""
    def axis(n: int) -> torch.Tensor:
        keep = max(1, min(n, math.ceil(fraction * n - 1e-9)))
        lo = (n - keep) // 2
        return (torch.arange(n, device=device) >= lo) & (torch.arange(n, device=device) < lo + keep)

    return axis(h)[:, None] & axis(w)[None, :]


@dataclass(frozen=True)
class CentreBias:
    """Centre bias (Nguyen et al. 2016): only a centred box of the image is optimized at first, and it grows.

    After each step p is zeroed outside the box (so those pixels stay at the centre image, e.g. the dataset mean);
    the box's side grows from `start` of the image's to the whole image once a fraction `until` of steps is done.
    """

    start: float = 0.4  # side of the first box as a fraction of the image side, in (0, 1]
    until: float = 0.5  # fraction of the steps after which the whole image is optimized, in [0, 1]

    def __post_init__(self) -> None:
        if not (0 < self.start <= 1 and 0 <= self.until <= 1):
            raise ValueError(f"CentreBias needs 0 < start <= 1 and 0 <= until <= 1, got start={self.start}, "
                             f"until={self.until}")

    def __call__(self, p: torch.Tensor, ctx) -> None:
        _check_image(p, "CentreBias")
        fraction = centre_fraction(ctx.step, ctx.steps, self.start, self.until)
        if fraction < 1.0:
            p.masked_fill_(~centre_mask(p.shape[-2], p.shape[-1], fraction, p.device), 0.0)
