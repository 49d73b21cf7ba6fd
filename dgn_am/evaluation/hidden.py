"""The hidden-unit benchmark: preferred inputs of conv channels and fc units, judged against each unit's own top
real images (a hidden unit has no class, so the class benchmark's references do not apply).

For every (unit, seed) and method it records, with nested-bootstrap 95% intervals (units, then seeds):
  - act/top: the unit's activation on the saved image over its top activation on the test set, both read the
    same way (before the ReLU where the layer ends in one; dgn_am.layers);
  - nonpositive: the fraction of items that end at activation <= 0 (a unit that never rose);
  - the same two "as optimized" (_raw): on the image as the target saw it in the loop, which differs from the
    saved image only for a method that does not clamp (the reference loop `dgn-am` feeds the raw generator
    output to the target; its PNG is clipped to [0, 1]);
  - realism: KID, in each evaluator's penultimate features, between the unit's images and its real exemplars
    ranked seeds+1 .. seeds+top_k on the test set (lower is better; mean over evaluators);
  - diversity: mean pairwise cosine distance across the unit's seeds in the same features.
Two pseudo-methods frame the table: `top-images` (the unit's top `seeds` test images: act/top 1.0 for the best)
and `noise`. Summaries are given per layer and over all units.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from dgn_am.evaluation.distances import poly_kernel
from dgn_am.evaluation.metrics import bootstrap_ci, bootstrap_set_ci, pairwise_cosine_distance_of
from dgn_am.evaluation.scoring import Evaluator, UnitKernels
from dgn_am.layers import Unit, check_units, read_units, run, units_of

PSEUDO = ("top-images", "noise")
PER_IMAGE = ("activation", "activation_raw", "dead_start")  # per-item arrays every method returns
DEFAULT_METHODS = ("dgn-am", "dgn-am-adam", "dgn-am-bank", "dgn-am-anchor", "dgn-am-class", "dgn-am-stats", "simonyan",
                   "olah")
SUMMARIES = ("act_top", "median_act_top", "nonpositive", "act_top_raw", "median_act_top_raw", "nonpositive_raw",
             "dead_start", "realism_kid", "diversity")


@dataclass(frozen=True)
class HiddenConfig:
    model: str = "fmnist-caffenet"  # target network
    weights: str | None = None  # target weights file (None: checkpoints/)
    units: tuple[str, ...] = ("conv5:0-63", "fc6:0-63")  # unit addresses, any layers
    methods: tuple[str, ...] = DEFAULT_METHODS  # top-images and noise are always added
    seeds: int = 4  # seeds per unit
    first_seed: int = 0
    steps: int | None = None  # one budget for every method (None: each method's own default)
    evaluators: tuple[str, ...] = ("fmnist-resnet", "fmnist-caffenet-s1")  # never the target
    prior: str = "fmnist-fc6"  # generator prior for code methods
    top_k: int = 50  # real exemplars per unit for realism (ranked after the `seeds` best)
    n_boot: int = 500  # bootstrap replicates
    batch_size: int = 256  # items optimized at once
    data_dir: str | None = None
    device: str = "cpu"


@torch.no_grad()
def unit_table(model: torch.nn.Module, images: torch.Tensor, units: list[Unit], batch: int = 1000) -> torch.Tensor:
    """(N, U): every unit's activation (its own reading) on every image."""
    layers = list(dict.fromkeys(u.layer for u in units))
    cols = []
    for lo in range(0, len(images), batch):
        acts = run(model, images[lo: lo + batch], layers)
        n = min(batch, len(images) - lo)
        cols.append(torch.stack([read_units(acts[u.layer], [u] * n) for u in units], 1).cpu())
    return torch.cat(cols)


def _synthesize(name: str, target, units, seeds, prior_fn, config: HiddenConfig) -> dict:
    from dgn_am.methods import get_method, synthesize

    method = get_method(name).with_overrides(steps=config.steps)
    prior = prior_fn() if method.parameterization == "code" else None
    per_chunk = max(1, config.batch_size // len(seeds))
    t0 = time.perf_counter()
    images, acts, raw, dead = [], [], [], []
    for lo in range(0, len(units), per_chunk):
        result, _ = synthesize(target, units[lo: lo + per_chunk], seeds, method, prior=prior)
        images.append(result.images.cpu())
        acts.append(result.saved_activations.cpu())
        raw.append(result.activations.cpu())
        dead += result.dead_start
    return {"images": torch.cat(images), "activation": torch.cat(acts).double().numpy(),
            "activation_raw": torch.cat(raw).double().numpy(), "dead_start": np.array(dead, dtype=float),
            "seconds": time.perf_counter() - t0, "steps": method.steps}


def _kernels(f: np.ndarray, ref: np.ndarray) -> UnitKernels:
    """KID pieces of one unit's images f (S, D) against its exemplars ref (K, D), for cheap seed resampling."""
    kyy = poly_kernel(ref, ref)
    off = ~np.eye(len(ref), dtype=bool)
    return UnitKernels(poly_kernel(f, f), poly_kernel(f, ref).mean(1), float(kyy[off].mean()))


def _summaries(made: dict, norm: np.ndarray, feats: list[np.ndarray], refs: list[list[np.ndarray]],
               groups: list[np.ndarray], config: HiddenConfig) -> dict:
    """{statistic: {"value", "lo", "hi"}} over the given units (groups: each unit's rows in made's arrays)."""
    def summary(stat=None, values=None) -> dict:
        est, lo, hi = bootstrap_ci([values[g] for g in groups] if stat is None else groups, statistic=stat,
                                   n_boot=config.n_boot, seed=0)
        return {"value": est, "lo": lo, "hi": hi}

    act_top = made["activation"] / np.repeat(norm, len(groups[0]))
    act_top_raw = made["activation_raw"] / np.repeat(norm, len(groups[0]))
    kernels = [[_kernels(f[g], r[u]) for u, g in enumerate(groups)] for f, r in zip(feats, refs)]
    out = {"act_top": summary(values=act_top),
           "nonpositive": summary(values=(made["activation"] <= 0).astype(float)),
           "act_top_raw": summary(values=act_top_raw),
           "nonpositive_raw": summary(values=(made["activation_raw"] <= 0).astype(float)),
           "dead_start": summary(values=made["dead_start"]),
           "realism_kid": summary(lambda u, i: float(np.mean([k[u].kid(i) for k in kernels]))),
           "diversity": summary(lambda u, i: float(np.mean([pairwise_cosine_distance_of(f[groups[u]], i)
                                                            for f in feats])))}
    est, lo, hi = bootstrap_set_ci(groups, lambda rows: np.array([np.median(act_top[rows]),
                                                                  np.median(act_top_raw[rows])]),
                                   n_boot=config.n_boot, seed=0, recentre=False)
    for j, key in enumerate(("median_act_top", "median_act_top_raw")):
        out[key] = {"value": float(est[j]), "lo": float(lo[j]), "hi": float(hi[j])}
    return out


def _reference_images(name: str, target, x: torch.Tensor, table: torch.Tensor, order: torch.Tensor, units,
                      seeds: list[int], config: HiddenConfig) -> dict:
    """The reference rows: "top-images" (each unit's strongest test images, x (N, C, H, W), table (N, U) and its
    descending order) or "noise" (uniform noise, seeded per unit and seed), as _synthesize returns them."""
    if name == "top-images":
        rows = order[: config.seeds].T.flatten()
        made = {"images": x[rows].cpu(), "activation": table[rows, torch.arange(len(units)).repeat_interleave(
            len(seeds))].double().numpy(), "dead_start": np.zeros(len(rows)), "seconds": 0.0, "steps": 0}
        return {**made, "activation_raw": made["activation"]}
    gens = [torch.Generator().manual_seed(10_000 * n + s) for n in range(len(units)) for s in seeds]
    noise = torch.stack([torch.rand(*x.shape[1:], generator=g) for g in gens])
    t = unit_table(target, noise.to(config.device), units)
    made = {"images": noise, "activation": t[torch.arange(len(noise)), torch.arange(len(units))
            .repeat_interleave(len(seeds))].double().numpy(), "dead_start": np.zeros(len(noise)),
            "seconds": 0.0, "steps": 0}
    return {**made, "activation_raw": made["activation"]}


def _layer_summary(layer: str, made: dict, feats: list, units, seeds: list[int], groups: list, norm: np.ndarray,
                   refs: list, config: HiddenConfig) -> dict:
    """The summaries over the units of `layer` ("all": every unit)."""
    pick = [i for i, u in enumerate(units) if layer in ("all", u.layer)]
    rows = np.concatenate([groups[i] for i in pick])
    regroup = [np.arange(j * len(seeds), (j + 1) * len(seeds)) for j in range(len(pick))]
    return _summaries({k: made[k][rows] for k in PER_IMAGE}, norm[pick],
                      [f[rows] for f in feats], [[r[i] for i in pick] for r in refs], regroup, config)


def run_hidden_benchmark(config: HiddenConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Run the hidden-unit benchmark (module docstring). Returns settings, per-method per-item numbers and
    summaries (per layer and "all"), the images, and each unit's top-9 exemplar indices into the test set."""
    from dgn_am.data import load_fashion_mnist
    from dgn_am.methods import METHODS
    from dgn_am.models.loading import load_model
    from dgn_am.priors import load_prior

    if config.seeds < 2:
        raise ValueError(f"the hidden-unit benchmark needs --seeds >= 2 for diversity, got {config.seeds}")
    unknown = [m for m in config.methods if m not in METHODS and m not in PSEUDO]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(sorted(METHODS))} "
                         "(dgn-am methods)")
    if config.model in config.evaluators:
        raise ValueError(f"evaluator '{config.model}' is the target itself; pick other evaluators")
    target = load_model(config.model, config.weights, device=config.device)
    units = units_of(target, list(config.units))
    check_units(target, units)
    evaluators = [Evaluator.from_spec(e, device=config.device) for e in config.evaluators]
    x, _ = load_fashion_mnist("test", config.data_dir)
    x = x.to(config.device)
    table = unit_table(target, x, units)  # (N, U)
    order = table.argsort(0, descending=True)  # (N, U)
    need = config.seeds + config.top_k
    norm = table.max(0).values.double().numpy()
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    groups = [np.arange(i * len(seeds), (i + 1) * len(seeds)) for i in range(len(units))]
    exemplar_feats = [e.embed(x[order[:need].T.flatten()])["penult"].reshape(len(units), need, -1)
                      for e in evaluators]  # per evaluator (U, seeds + top_k, D)
    refs = [[f[u, config.seeds:] for u in range(len(units))] for f in exemplar_feats]
    prior_cache: dict = {}

    def prior_fn():
        if "p" not in prior_cache:
            prior_cache["p"] = load_prior(config.prior, device=config.device)
        return prior_cache["p"]

    layers = list(dict.fromkeys(u.layer for u in units))
    results, images = {}, {}
    for name in [m for m in config.methods if m not in PSEUDO] + list(PSEUDO):
        if progress:
            progress(name)
        if name in PSEUDO:
            made = _reference_images(name, target, x, table, order, units, seeds, config)
        else:
            made = _synthesize(name, target, units, seeds, prior_fn, config)
        feats = [e.embed(made["images"].to(config.device))["penult"] for e in evaluators]
        summary = {layer: _layer_summary(layer, made, feats, units, seeds, groups, norm, refs, config)
                   for layer in layers + ["all"]}
        results[name] = {"summary": summary, "per_image": {k: made[k].tolist() for k in PER_IMAGE},
                         "cost": {"seconds_total": made["seconds"], "steps": made["steps"],
                                  "seconds_per_image": made["seconds"] / len(made["images"])}}
        images[name] = made["images"]
    settings = {**asdict(config), "units_list": [str(u) for u in units], "seed_list": seeds,
                "top_activation": norm.tolist(), "layers": layers,
                "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
                "threads": torch.get_num_threads(), "machine": platform.machine()}
    return {"settings": settings, "methods": results, "images": images,
            "exemplars": order[:9].T.cpu(), "test_images": x.cpu()}
