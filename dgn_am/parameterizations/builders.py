"""Building a method's parameterization: one builder per name, each given the method, the model, the (unit, seed)
items and the prior, so every start (zeros, random, a mean image, statistics, bank codes, codes chosen for each
unit, a real image) is chosen here, inside the builder, and nothing is set on the object afterwards.

    param = build_parameterization(method, model, items, prior)       # -> PixelParam, FourierParam or CodeParam
    method = start_from_image(method, "shoe.png", model, prior)        # the same method, started from an image

To add a parameterization: write its class (a Parameterization), a builder(method, model, items, prior) here, and
register the builder in PARAMETERIZATIONS.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from dgn_am.layers import Unit
from dgn_am.models.spec import InputSpec
from dgn_am.parameterizations.base import Parameterization
from dgn_am.parameterizations.code import CodeParam, unit_bank_starts
from dgn_am.parameterizations.fourier import FourierParam
from dgn_am.parameterizations.maco import MacoParam, Spectrum, load_spectrum
from dgn_am.parameterizations.pixels import PixelParam, mean_image

if TYPE_CHECKING:  # methods.py builds its parameterizations here; the type only, no import cycle
    from dgn_am.methods import Method

Items = Sequence[tuple[Unit, int]]  # the (unit, seed) of every row of the batch


def _pixels(method: "Method", model: torch.nn.Module, items: Items, prior: Any) -> Parameterization:
    """init "zeros" / "randn": x = normalization mean + p. init "mean-image": x = mean image + p, p ~ N(0, init_std^2);
    the mean image is option "mean_image" (a file or a (C, H, W) tensor) or dgn_am.parameterizations.mean_image's
    default (the Fashion-MNIST training mean for Fashion-MNIST models, else the flat normalization mean).
    Option "init_image" (C, H, W) starts every item from that image; option "decorrelate" (default: True for RGB
    models) optimizes decorrelated colour components instead of RGB pixels."""
    spec = model.input_spec
    opts = dict(method.options)
    shape = (spec.channels, *spec.size)
    if method.init == "mean-image" and "init_image" not in opts:
        return PixelParam(shape, centre=mean_image(spec, opts.get("mean_image")), init="randn",
                          init_std=method.init_std, box=opts.get("box", True), decorrelate=opts.get("decorrelate"))
    return PixelParam(shape, centre=spec.unit_mean(), init=opts.get("init_image", method.init),
                      init_std=method.init_std, box=opts.get("box", True), decorrelate=opts.get("decorrelate"))


def _fourier(method: "Method", model: torch.nn.Module, items: Items, prior: Any) -> Parameterization:
    """FourierParam; init "randn", "zeros" or "mean-image" (as for pixels, plus init_std noise on the spectrum).
    Options: decorrelate (default: True for 3 channels), decay_power (1.0), gain (0.25), mean_image."""
    spec = model.input_spec
    opts = dict(method.options)
    init: Any = method.init
    if init == "mean-image":
        init = mean_image(spec, opts.get("mean_image"))
    elif init == "seed-image":  # feature accentuation: each item from its seed image, (1 or B, C, H, W)
        from dgn_am.accentuation import seed_images

        init = seed_images(method, len(items))
    return FourierParam((spec.channels, *spec.size), decorrelate=opts.get("decorrelate"),
                        decay_power=opts.get("decay_power", 1.0), init=init, init_std=method.init_std,
                        gain=opts.get("gain", 0.25))


def _code(method: "Method", model: torch.nn.Module, items: Items, prior: Any) -> Parameterization:
    """CodeParam of the prior; init "randn", "stats", "bank", "bank-unit" (a bank code chosen for each item's unit),
    or option "init_codes" (codes (D,) or (B, D), e.g. of a real image). Options: clip (True), clamp (True)."""
    if prior is None:
        raise ValueError(f"method {method.name} needs a generator prior: pass --prior NAME_OR_FILE "
                         "(shipped: fmnist-fc6) or prior=dgn_am.load_prior(...)")
    opts = dict(method.options)
    init = opts.get("init_codes", method.init)
    if init == "bank-unit" and not all(isinstance(u, Unit) for u, _ in items):
        raise ValueError(f"method {method.name} starts from bank images its unit wins (init 'bank-unit'); an "
                         "objective expression has no one unit: use a method with init 'bank' or 'stats' "
                         "(e.g. --method dgn-am-anchor or dgn-am-stats)")
    starts = unit_bank_starts(model, items, prior) if init == "bank-unit" else None
    return CodeParam(prior, model.input_spec, init=init, init_std=method.init_std, clip=opts.get("clip", True),
                     clamp=opts.get("clamp", True), starts=starts)


def _maco(method: "Method", model: torch.nn.Module, items: Items, prior: Any) -> Parameterization:
    """MacoParam; init "randn" or "zeros". Option "spectrum": a shipped name ("fmnist"), a file made by
    `dgn-am spectrum`, or a Spectrum (default "fmnist")."""
    spec = model.input_spec
    spectrum = dict(method.options).get("spectrum", "fmnist")
    if not isinstance(spectrum, Spectrum):
        spectrum = load_spectrum(spectrum)
    return MacoParam(spectrum, (spec.channels, *spec.size), init=method.init, init_std=method.init_std)


# name -> builder(method, model, items, prior) -> Parameterization
PARAMETERIZATIONS: dict[str, Callable[["Method", torch.nn.Module, Items, Any], Parameterization]] = {
    "pixels": _pixels, "fourier": _fourier, "code": _code, "maco": _maco}


def build_parameterization(method: "Method", model: torch.nn.Module, items: Items,
                           prior: Any = None) -> Parameterization:
    """The parameterization `method` names, with every item's start chosen, for a batch of `items` (unit, seed)."""
    if method.parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization '{method.parameterization}'; available: "
                         f"{', '.join(sorted(PARAMETERIZATIONS))}")
    return PARAMETERIZATIONS[method.parameterization](method, model, items, prior)


def start_from_image(method: "Method", path: str | Path, model: torch.nn.Module, prior: Any = None) -> "Method":
    """`method`, started from the real image in file `path` for every item: its code under the prior's encoder
    (code methods), its pixels (pixels) or its spectrum plus the method's init_std noise (fourier). A method with
    image_start (the reference: script 3) squashes the image to the encoder's input without a crop and runs its
    (steps, lr) instead of its own."""
    from dgn_am.imageio import load_image

    if method.parameterization == "code":
        from dgn_am.priors import encode

        config = prior.generator.config
        spec = InputSpec((config.size,) * 2, config.channels, (0.0,) * config.channels, (1.0,) * config.channels)
        image = load_image(path, spec, fit="squash" if method.image_start else "crop")
        if method.image_start:
            steps, lr = method.image_start
            method = dataclasses.replace(method, steps=steps,
                                         step_rule=dataclasses.replace(method.step_rule, lr=lr))
        return dataclasses.replace(method, init="codes",
                                   options=method.options + (("init_codes", encode(prior, image)[0]),))
    if method.parameterization == "pixels":
        image = load_image(path, model.input_spec)[0]
        return dataclasses.replace(method, init="image", options=method.options + (("init_image", image),))
    if method.parameterization == "fourier" and method.init == "seed-image":  # feature accentuation
        image = load_image(path, model.input_spec)
        opts = tuple(o for o in method.options if o[0] != "init_images")
        return dataclasses.replace(method, options=opts + (("init_images", image),))
    if method.parameterization == "fourier":  # the image's spectrum plus the method's init_std noise
        image = load_image(path, model.input_spec)[0]
        return dataclasses.replace(method, init="mean-image", options=method.options + (("mean_image", image),))
    raise ValueError(f"--init-image is not supported by the {method.parameterization} parameterization")
