"""The optimization loop shared by every method. It writes no files and prints nothing.

One call optimizes a whole batch: item b has its own seed and its own target (through the objective), and all
items go through the model in one forward pass per step. Each step:

  1. x = param.to_image(p)                        (B, C, H, W) in [0, 1]
  2. x' = transforms(x)                           jitter etc., drawn from a torch.Generator seeded by the run;
                                                  a result larger than (H, W) (after Pad) is centre-cropped back
  3. score = objective(activations of x')         (B,), to maximize; with samples = k > 1, x' is k transformed
                                                  copies of x and the score is their mean (an expectation over
                                                  transformations, Athalye et al. 2018), in one forward pass
  4. loss = -(score - penalties(x, p)).sum()      the one place the sign is flipped
  5. p += step_rule(-d loss / d p, lr_i)          lr_i from a constant or linear schedule (steps.py); the
                                                  direction first goes through the preconditioners, if any
                                                  (preconditioners.py: gradient blur, Laplacian normalization)
  6. param.project(p), then each operator(p)      e.g. clip codes to bounds, then decay; or blur, pixel clipping

Two choices follow the reference loop (DGN-AM's act_max.py) when a method asks for them:
  - returns="rendered": the result is the image rendered at the last step, BEFORE its update (the reference's
    `best_xx = cropped_x0`), and params is the code that rendered it; "final" (default): the image after the last
    update and operators.
  - stop_at_zero_grad=True: an item whose ascent direction is all zero stops there (the reference breaks out of
    its loop): its p is left as it was and its result is that step's render.
An item whose objective and gradient are both exactly 0 at the first step is a dead start (Result.dead_start):
nothing moves it, so its image is not a preferred input of anything.
Result.images are clamped to [0, 1] (what is saved); Result.activations score the returned images as the target
saw them during optimization (unclamped for a parameterization that does not clamp), saved_activations the
clamped ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from dgn_am.layers import device_and_dtype, run
from dgn_am.objectives import Objective
from dgn_am.parameterizations import Parameterization
from dgn_am.preconditioners import precondition
from dgn_am.reproducible import deterministic_on_model_device
from dgn_am.steps import StepRule


class Penalty(Protocol):
    """A term to SUBTRACT from the objective: (image (B, C, H, W), p (B, ...)) -> (B,). Includes its weight."""

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor: ...


class Preconditioner(Protocol):
    """A change to the ascent direction before the step rule uses it: d (B, ...) -> d' (B, ...)."""

    def __call__(self, d: torch.Tensor) -> torch.Tensor: ...


class Transform(Protocol):
    """A random, differentiable image transform: (x (B, C, H, W), generator) -> (B, C, H', W')."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...


@dataclass
class StepContext:
    """What an operator may look at after a step."""

    step: int  # 0-based index of the step just taken
    steps: int  # total number of steps
    grad: torch.Tensor  # ascent direction d(score - penalties)/dp at the pre-step point, (B, ...)
    param: Parameterization
    # images (N, C, H, W) -> objective (N,), no transforms. N may be any multiple k * B of the batch size: the
    # images are read as k blocks of B rows, row n scored with item (n % B)'s objective (one forward pass).
    score: Callable[[torch.Tensor], torch.Tensor]
    start: torch.Tensor | None = None  # p as initialized, before the first step, (B, ...)
    memo: dict = field(default_factory=dict)  # one dict per run, kept across steps: operators' state
    # images (N, C, H, W) -> (N, B): every image scored with every item's objective, the model run once per image
    score_each: Callable[[torch.Tensor], torch.Tensor] | None = None


class Operator(Protocol):
    """An in-place change to p after a step (Yosinski's r_theta): (p, ctx) -> None."""

    def __call__(self, p: torch.Tensor, ctx: StepContext) -> None: ...


@dataclass
class Result:
    """images (B, C, H, W) clamped to [0, 1], as saved; activations (B,) objective of the returned images without
    transforms, as the target saw them in the loop; saved_activations (B,) objective of `images` (equal to
    activations unless clamping changed a pixel); history (steps, B) objective at every step (with transforms;
    NaN for an item after it failed, and for every item after the step where all had stopped or failed);
    params (B, ...) the optimized tensor that rendered the images; dead_start (B,) items whose objective and
    gradient were both 0 at the first step; stopped_at (B,) the step where an item stopped on a zero gradient
    (-1: it ran every step)."""

    images: torch.Tensor
    activations: torch.Tensor
    history: torch.Tensor
    params: torch.Tensor
    seeds: list[int]
    settings: dict = field(default_factory=dict)
    saved_activations: torch.Tensor | None = None
    dead_start: list[bool] = field(default_factory=list)
    stopped_at: list[int] = field(default_factory=list)
    # failed[b]: None, or why item b stopped early ("non-finite gradient at step 3"): its p was frozen at the last
    # finite point before that step, so its image is the last good one. Empty when not filled in (older callers).
    failed: list[str | None] = field(default_factory=list)
    # per-item maps the parameterization gathered during the run (Parameterization.extras), e.g. MACO's
    # "transparency" (B, 1, H, W) in [0, 1]; empty for most parameterizations
    extras: dict = field(default_factory=dict)


def centre_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """x (B, C, H', W') with H' >= H, W' >= W -> its centre (B, C, H, W); x itself when it already fits."""
    h, w = int(size[0]), int(size[1])
    if tuple(x.shape[-2:]) == (h, w):
        return x
    if x.shape[-2] < h or x.shape[-1] < w:
        raise ValueError(f"transforms shrank the image to {tuple(x.shape[-2:])}, smaller than the model's input "
                         f"({h}, {w}); transforms may keep or enlarge the size (Pad), never shrink it")
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top: top + h, left: left + w]


def check_samples(samples: int, transforms: Sequence, who: str = "maximize") -> None:
    """samples (transformed copies scored per step) must be >= 1, and > 1 only with transforms to draw them from."""
    if samples < 1 or (samples > 1 and not transforms):
        raise ValueError(f"{who}: samples must be >= 1, and > 1 only with transforms to draw copies from; got "
                         f"samples={samples} with {len(transforms)} transforms")


def non_finite_items(total: torch.Tensor, grad: torch.Tensor) -> list[tuple[int, str]]:
    """[(item, what)] for the items whose objective total (B,) or ascent direction grad (B, ...) holds a NaN or an
    infinity; what is "objective" or "gradient"."""
    bad_total = ~torch.isfinite(total.detach())
    bad_grad = ~torch.isfinite(grad).flatten(1).all(1)
    return [(b, "objective" if bool(bad_total[b]) else "gradient")
            for b in torch.nonzero(bad_total | bad_grad).flatten().tolist()]


NO_GRADIENT = ("the objective carries no gradient back to the image: the model's forward pass runs under "
               "torch.no_grad or detaches its output; activation maximization needs a differentiable model "
               "(remove the no_grad/detach from its forward)")


def require_grad(total: torch.Tensor | None) -> None:
    """A clear error for a model whose output carries no gradient (forward under torch.no_grad, .detach(), ...).
    total: the objective, or the gradient autograd.grad(..., allow_unused=True) returned (None: not connected)."""
    if total is None or not total.requires_grad:
        raise ValueError(NO_GRADIENT)


def run_seed(seeds: Sequence[int]) -> int:
    """One number from all item seeds, for the run's transform generator."""
    h = 0
    for s in seeds:
        h = (h * 1_000_003 + int(s)) % (2**63 - 1)
    return h


def scorers(model: torch.nn.Module, objective: Objective, batch: int) -> tuple[Callable, Callable]:
    """(score, score_each) for a batch of `batch` items, no transforms: score(x (k * B, C, H, W)) -> (k * B,), row n
    scored with item n % B's objective; score_each(x (N, C, H, W)) -> (N, B), every image with every item's."""
    layers = list(objective.layers)

    def score_fn(x: torch.Tensor) -> torch.Tensor:
        """x (k * B, C, H, W) -> (k * B,): row n scored with item n % B's objective, in one forward pass."""
        if x.shape[0] % batch:
            raise ValueError(f"score() takes a multiple of the batch size {batch} images, got {x.shape[0]}")
        acts = run(model, x, layers)
        if x.shape[0] == batch:
            return objective(acts)
        return torch.cat([objective({k: v[lo: lo + batch] for k, v in acts.items()})
                          for lo in range(0, x.shape[0], batch)])

    def score_each(x: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) -> (N, B): image n scored with every item's objective (the objective reads row b of its
        input as item b's), from one forward pass over the N images."""
        acts = run(model, x, layers)
        return torch.stack([objective({k: v[n: n + 1].expand(batch, *v.shape[1:]) for k, v in acts.items()})
                            for n in range(x.shape[0])])

    return score_fn, score_each


def ascent(p: torch.Tensor, param: Parameterization, score_fn: Callable, penalties: Sequence[Penalty],
           transforms: Sequence[Transform], samples: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Steps 1 to 4 of the module docstring at p (B, ...): (image x (B, C, H, W), score (B,), score - penalties
    (B,), ascent direction d(score - penalties)/dp (B, ...))."""
    batch = p.shape[0]
    x = param.to_image(p)
    xt = x.repeat(samples, *[1] * (x.dim() - 1)) if samples > 1 else x
    for t in transforms:
        xt = t(xt, gen)
    xt = centre_crop(xt, x.shape[-2:])
    score = score_fn(xt).view(samples, batch).mean(0)
    total = score
    for pen in penalties:
        total = total - pen(x, p)
    require_grad(score)  # the model must pass a gradient back (a penalty alone would hide it)
    (grad,) = torch.autograd.grad(total.sum(), p, allow_unused=True)  # ascent direction of (score - penalties)
    if grad is None:
        raise ValueError(NO_GRADIENT)
    return x, score, total, grad


@dataclass
class _Items:
    """Per-item bookkeeping of one run of B items."""

    failed: list[str | None]  # why each item failed (non-finite), or None
    frozen: torch.Tensor  # (B,) bool, on p's device: stopped by a non-finite value
    running: torch.Tensor  # (B,) bool, on p's device: not stopped by a zero gradient
    stopped_at: torch.Tensor  # (B,) long: the step a zero gradient stopped the item at, -1 if never
    dead: torch.Tensor  # (B,) bool: score 0 and gradient 0 at the start
    rendered: torch.Tensor | None = None  # the last image (B, C, H, W) rendered before an update
    rendered_p: torch.Tensor | None = None  # its p

    @classmethod
    def new(cls, batch: int, device: torch.device) -> "_Items":
        return cls([None] * batch, torch.zeros(batch, dtype=torch.bool, device=device),
                   torch.ones(batch, dtype=torch.bool, device=device), torch.full((batch,), -1, dtype=torch.long),
                   torch.zeros(batch, dtype=torch.bool))

    def fail(self, b: int, why: str) -> None:
        """Freeze item b; the first reason it failed is the one kept."""
        if not self.frozen[b]:
            self.failed[b] = why
        self.frozen[b] = True

    def before_update(self, i: int, x: torch.Tensor, p: torch.Tensor, score: torch.Tensor, grad: torch.Tensor,
                      returns: str, stop_at_zero_grad: bool) -> bool:
        """Note dead starts, the render (returns "rendered": every item at the first step, then those still
        running and not failed; a failed item keeps its last good render) and zero-gradient stops. False when
        every item has stopped or failed."""
        zero = (grad.flatten(1).abs().amax(1) == 0) & ~self.frozen  # (B,)
        if i == 0:
            self.dead = (zero & (score.detach() == 0)).cpu()
        if returns == "rendered":
            if self.rendered is None:
                self.rendered, self.rendered_p = x.detach().clone(), p.detach().clone()
            else:
                now = self.running & ~self.frozen
                self.rendered[now], self.rendered_p[now] = x.detach()[now], p.detach()[now]
        if stop_at_zero_grad:
            self.stopped_at[(zero & self.running).cpu()] = i
            self.running = self.running & ~zero
        return bool((self.running & ~self.frozen).any())


def _update(p: torch.Tensor, grad: torch.Tensor, lr: float, step: Callable, param: Parameterization,
            operators: Sequence[Operator], ctx: StepContext, items: _Items, keep: torch.Tensor) -> None:
    """Step 5 of the module docstring, in place on p: the step rule, the projection and the operators; an item the
    update made non-finite fails, and failed or stopped items go back to `keep`, the point the step started from."""
    step(p, grad, lr)
    param.project(p)
    for op in operators:
        op(p, ctx)
    for b in torch.nonzero(~torch.isfinite(p).flatten(1).all(1)).flatten().tolist():
        # a finite gradient, but the step (lr, optimizer, operators) overflowed
        items.fail(b, f"non-finite update at step {ctx.step}")
    halted = items.frozen | ~items.running
    if halted.any():
        p[halted] = keep[halted]


def _preconditioned(step: Callable, preconditioners: Sequence[Preconditioner]) -> Callable:
    """The step rule fed the preconditioned direction, step(p, precondition(d), lr); `step` itself when there are
    none (so runs without preconditioners do exactly what they did before)."""
    if not preconditioners:
        return step
    return lambda p, d, lr: step(p, precondition(d, preconditioners), lr)


def _record(history: torch.Tensor, i: int, score: torch.Tensor, frozen: torch.Tensor,
            progress: Callable[[int, int, torch.Tensor], None] | None) -> None:
    """history[i] = this step's scores (B,), NaN for frozen items; then tell `progress`."""
    history[i] = score.detach().float().cpu().masked_fill(frozen.cpu(), float("nan"))
    if progress is not None:
        progress(i, history.shape[0], history[i])


def _result(images: torch.Tensor, params: torch.Tensor, score_fn: Callable, history: torch.Tensor,
            seeds: Sequence[int]) -> Result:
    """The Result of the returned images (B, C, H, W): clamped to [0, 1], scored as the loop saw them and as saved."""
    final = score_fn(images).detach()
    saved = images.clamp(0, 1)
    saved_final = final if torch.equal(saved, images) else score_fn(saved).detach()
    return Result(images=saved, activations=final, history=history, params=params, seeds=list(seeds),
                  saved_activations=saved_final)


def _check_loop(steps: int, samples: int, transforms: Sequence, returns: str) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_samples(samples, transforms)
    if returns not in ("final", "rendered"):
        raise ValueError(f"returns must be 'final' or 'rendered', got '{returns}'")


@deterministic_on_model_device
def maximize(
    model: torch.nn.Module,
    objective: Objective,
    param: Parameterization,
    seeds: Sequence[int],
    steps: int,
    step_rule: StepRule = StepRule(),
    penalties: Sequence[Penalty] = (),
    operators: Sequence[Operator] = (),
    transforms: Sequence[Transform] = (),
    progress: Callable[[int, int, torch.Tensor], None] | None = None,
    samples: int = 1,
    returns: str = "final",
    stop_at_zero_grad: bool = False,
    preconditioners: Sequence[Preconditioner] = (),
) -> Result:
    """Maximize objective over param for len(seeds) items at once; see the module docstring for one step.

    samples: transformed copies of each image scored per step (their mean score is maximized); 1 without transforms.
    returns: "final" or "rendered"; stop_at_zero_grad: see the module docstring.
    preconditioners: applied in order to the ascent direction before the step rule (StepContext.grad stays raw).

    progress(i, steps, score) is called after every step with the (B,) scores, e.g. to drive a progress bar.
    """
    _check_loop(steps, samples, transforms, returns)
    device, dtype = device_and_dtype(model)
    batch = len(seeds)
    score_fn, score_each = scorers(model, objective, batch)
    gen = torch.Generator().manual_seed(run_seed(seeds))
    p = param.init(seeds, device, dtype).requires_grad_(True)
    start = p.detach().clone()
    memo: dict = {}
    step = _preconditioned(step_rule.start(p), preconditioners)  # the rule object, e.g. Adam and its state
    history = torch.full((steps, len(seeds)), float("nan"))
    items = _Items.new(batch, p.device)
    for i in range(steps):
        x, score, total, grad = ascent(p, param, score_fn, penalties, transforms, samples, gen)
        for b, what in non_finite_items(total, grad):  # freeze the item at this step's (last finite) point
            items.fail(b, f"non-finite {what} at step {i}")
        keep = p.detach().clone()  # the point this step starts from: an item that fails goes back to it
        if items.frozen.any():
            grad = torch.where(items.frozen.view(-1, *[1] * (grad.dim() - 1)), torch.zeros_like(grad), grad)
        with torch.no_grad():
            if not items.before_update(i, x, p, score, grad, returns, stop_at_zero_grad):
                _record(history, i, score, items.frozen, progress)
                break
            ctx = StepContext(i, steps, grad, param, score_fn, start, memo, score_each)
            _update(p, grad, step_rule.lr_at(i, steps), step, param, operators, ctx, items, keep)
        _record(history, i, score, items.frozen, progress)
        if bool(items.frozen.all()):
            break
    with torch.no_grad():
        if returns == "rendered":
            params, images = items.rendered_p, items.rendered
        else:
            params, images = p.detach(), param.to_image(p).detach()
        result = _result(images, params, score_fn, history, seeds)
    result.dead_start, result.stopped_at, result.failed = items.dead.tolist(), items.stopped_at.tolist(), items.failed
    result.extras = param.extras()
    return result
