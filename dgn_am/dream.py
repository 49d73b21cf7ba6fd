"""DeepDream (Mordvintsev, Olah & Tyka 2015): amplify what a layer (or a unit, or any objective) sees in an image.

Pixels, octave by octave from the coarsest: the image is scaled down by octave_scale^k; at each octave a detail
image is optimized with normalized gradient steps (mean |change| lr per pixel and step, the original's
1.5 / mean|g| on 0..255) under a random jitter, the model seeing base + detail resized to its input; the detail is
scaled up to the next octave. The result is the input plus the final detail.

Prior: the code of the image under the prior's encoder is the start, and the same objective is raised by normalized
steps on the code (lr times the code's mean upper bound per step), clipped to the prior's bounds, for
octaves x steps steps: the image stays one the generator can make. Octaves have no meaning for a code; the jitter
still applies to the rendered image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from dgn_am.engine import maximize
from dgn_am.layers import run
from dgn_am.objective_expr import ObjectiveTarget, objective_for
from dgn_am.parameterizations import CodeParam
from dgn_am.parameterizations.octave import OctaveParam
from dgn_am.steps import StepRule
from dgn_am.transforms import Jitter


@dataclass(frozen=True)
class DreamConfig:
    """One DeepDream recipe."""

    octaves: int = 3  # image scales, each octave_scale times smaller than the next
    octave_scale: float = 1.4  # side ratio between octaves
    steps: int = 20  # steps per octave
    lr: float = 0.01  # mean |change| per pixel (or per code unit, times the mean upper bound) and step
    jitter: int = 1  # random shift in pixels before the model, each step (the original: 32 at 224 px)
    parameterization: str = "pixels"  # "pixels" (octaves of detail) or "prior" (the generator's code)

    def __post_init__(self) -> None:
        if self.octaves < 1 or self.steps < 1 or self.octave_scale < 1 or self.jitter < 0 or self.lr <= 0:
            raise ValueError(f"DeepDream needs octaves >= 1, steps >= 1, octave_scale >= 1, jitter >= 0 and lr > 0; "
                             f"got {self}")
        if self.parameterization not in ("pixels", "prior"):
            raise ValueError(f"DeepDream parameterization is 'pixels' or 'prior', got '{self.parameterization}'")


@dataclass
class Dream:
    """images (B, C, H, W) in [0, 1]; before and after (B,): the objective of the inputs and of the dreams."""

    images: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    settings: dict


def octave_sizes(size: tuple[int, int], octaves: int, scale: float) -> list[tuple[int, int]]:
    """The image sizes of the octaves, coarsest first, the last one `size`: side / scale^k rounded, at least 1."""
    return [(max(1, round(size[0] / scale ** k)), max(1, round(size[1] / scale ** k)))
            for k in reversed(range(octaves))]


def dream(model: torch.nn.Module, images: torch.Tensor, objective: str, config: DreamConfig = DreamConfig(),
          prior: Any = None, seed: int = 0, progress: Callable[[int, int, torch.Tensor], None] | None = None) -> Dream:
    """DeepDream of images (B, C, H, W) in [0, 1] (the model's input format) on an objective expression
    (dgn_am.objective_expr, e.g. "layer:conv4+relu" or "conv4:12@mean"). The same inputs and seed repeat exactly."""
    size = tuple(images.shape[-2:])
    obj = objective_for(model, [ObjectiveTarget(objective)] * len(images))
    seeds = [seed] * len(images)
    jitter = (Jitter(pixels=config.jitter),) if config.jitter else ()

    def score(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return obj(run(model, x, list(obj.layers))).detach()

    if config.parameterization == "prior":
        if prior is None:
            raise ValueError("a DeepDream through the prior needs a generator prior (--prior fmnist-fc6)")
        from dgn_am.priors import encode

        param = CodeParam(prior, model.input_spec, init=encode(prior, images))
        lr = config.lr * float(prior.upper.mean())
        result = maximize(model, obj, param, seeds, config.steps * config.octaves, StepRule("normalized", lr=lr),
                          transforms=jitter, progress=progress)
        out = result.images
    else:
        detail = None
        for i, (h, w) in enumerate(octave_sizes(size, config.octaves, config.octave_scale)):
            base = images if (h, w) == size else F.interpolate(images, size=(h, w), mode="bilinear",
                                                                 align_corners=False, antialias=True)
            start = None if detail is None else F.interpolate(detail, size=(h, w), mode="bilinear",
                                                              align_corners=False)
            param = OctaveParam(base, size, start)
            result = maximize(model, obj, param, seeds, config.steps, StepRule("normalized", lr=config.lr),
                              transforms=jitter, progress=progress)
            detail = result.params
        out = (images + detail).clamp(0, 1)
    settings = {"objective": objective, "config": asdict(config), "seed": seed}
    return Dream(out, score(images), score(out), settings)
