"""The benchmark rows that are not a plain method run: budgets per row, feature accentuation's seed images, and
gradient-free search over the prior's code.

A row is named `NAME` or `NAME@N`:
    METHOD@N          a registered method run for N steps (instead of the benchmark's --steps)
    search-cmaes@N    gradient-free search (dgn_am.search) of the prior's code, N scorer calls per (unit, seed),
    search-ga@N       the unit read under no_grad: the target used as a black box (default N: SEARCH_BUDGET)
An accentuation method (options "keep_weight") starts item (unit c, seed s) from a real test image of another
class than c (from the same images as the real-images rows, never from the realism reference): it must turn that
image towards class c while staying close to it.
"""

from __future__ import annotations

import dataclasses
import time

import torch

SEARCHES = {"search-cmaes": "cmaes", "search-ga": "ga"}  # row name -> dgn_am.search algorithm
SEARCH_BUDGET = 200  # scorer calls per (unit, seed) for a search row named without @N


def parse_row(name: str) -> tuple[str, int | None]:
    """'NAME' -> (NAME, None); 'NAME@N' -> (NAME, N), N >= 1; a ValueError for anything else."""
    base, at, n = name.partition("@")
    if not at:
        return name, None
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"bad benchmark row '{name}': use NAME@N with N >= 1 (steps of a method, scorer calls of a "
                         f"search), e.g. dgn-am@500 or search-cmaes@500")
    return base, int(n)


def known_row(name: str, methods: dict) -> bool:
    """Whether `name` names a registered method or a search, with or without @N."""
    base, _ = parse_row(name)
    return base in methods or base in SEARCHES


def accentuation_seeds(units, seeds, real: dict) -> torch.Tensor:
    """(U * S, C, H, W): for unit c and the s-th seed, real image s // K of the (s mod K)-th class other than c
    among the real-images classes (K of them; the unit's own class when it is the only one)."""
    classes = sorted(real)
    out = []
    for u in units:
        others = [c for c in classes if c != u.index] or [u.index]
        for s in range(len(seeds)):
            pool = real[others[s % len(others)]]
            out.append(pool[(s // len(others)) % len(pool)])
    return torch.stack(out)


def _search_images(target, units, seeds, prior, algorithm: str, budget: int) -> dict:
    from dgn_am.search import SearchConfig, search, unit_scorer

    config = SearchConfig(algorithm=algorithm, budget=budget)
    t0 = time.perf_counter()
    found = [search(unit_scorer(target, u), prior, target.input_spec, s, config) for u in units for s in seeds]
    return {"images": torch.stack([r.image for r in found]).clamp(0, 1), "seconds": time.perf_counter() - t0,
            "steps": budget, "settings": {"name": f"search-{algorithm}", **found[0].settings,
                                          "calls": [r.calls for r in found]}}


def make_row_images(name: str, target, units, seeds, prior_fn, real: dict, steps: int | None) -> dict:
    """Images (U * S, C, H, W) for a method or search row against one target, with seconds, steps (a search:
    its budget in scorer calls) and settings."""
    from dgn_am.methods import get_method, synthesize

    base, n = parse_row(name)
    if base in SEARCHES:
        return _search_images(target, units, seeds, prior_fn(), SEARCHES[base], n or SEARCH_BUDGET)
    method = get_method(base).with_overrides(steps=n or steps)
    if "keep_weight" in dict(method.options):
        starts = accentuation_seeds(units, seeds, real)
        method = dataclasses.replace(method, options=method.options + (("init_images", starts),))
    prior = prior_fn() if method.parameterization == "code" else None
    t0 = time.perf_counter()
    result, _ = synthesize(target, units, seeds, method, prior=prior)
    return {"images": result.images.detach().cpu().clamp(0, 1), "seconds": time.perf_counter() - t0,
            "steps": method.steps, "settings": result.settings}
