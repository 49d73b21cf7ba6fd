"""The benchmark harness: learned priors against hand-crafted regularizers, scored by independent networks.

run_benchmark(config) synthesizes the preferred input of every (unit, seed) with every method under one budget,
repeats it against a randomly initialized copy of the target (the sanity control), scores every image with
evaluator networks never used during optimization, validates the metrics on calibration inputs, and returns
all numbers as a dict (plus the image tensors under "images", which the report draws and does not serialize).
Two reference pseudo-methods are always included: `real-images` (test images of the unit's class, disjoint from
the realism reference) and `noise` (uniform noise). Units must be class units of the target's output layer.
Besides methods, a row may be `METHOD@STEPS` or a gradient-free search `search-cmaes@CALLS` (evaluation/rows.py);
the path similarity of every image to its unit's top reference images is scored too (evaluation/paths.py).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from dgn_am.evaluation.calibration import INPUTS, calibrate
from dgn_am.evaluation.distances import kid
from dgn_am.evaluation.metrics import bootstrap_ci, bootstrap_set_ci, pairwise_cosine_distance_of
from dgn_am.evaluation.paths import PathReference
from dgn_am.evaluation.rows import known_row, make_row_images
from dgn_am.evaluation.scoring import SPACES, Evaluator, Scorer, parse_evaluator
from dgn_am.layers import check_units, list_layers, run, units_of

PSEUDO = ("real-images", "noise")
CALIBRATION_PER_CLASS = 10  # real images per class for the calibration inputs (at least --seeds)
DEFAULT_METHODS = ("dgn-am", "dgn-am-bank", "dgn-am-anchor", "dgn-am-class", "dgn-am-stats", "simonyan", "yosinski",
                   "mahendran", "olah", "nguyen-handcrafted", "maco", "accentuation")
DEFAULT_EVALUATORS = {"fmnist-caffenet": ("fmnist-resnet", "fmnist-caffenet-s1"),
                      "fmnist-caffenet-s1": ("fmnist-resnet", "fmnist-caffenet"),
                      "fmnist-resnet": ("fmnist-caffenet", "fmnist-caffenet-s1")}


@dataclass(frozen=True)
class BenchmarkConfig:
    model: str = "fmnist-caffenet"  # target network (shipped name)
    weights: str | None = None  # target weights file (None: checkpoints/)
    units: str = "fc8:0-9"  # class units of the target's output layer
    methods: tuple[str, ...] = DEFAULT_METHODS  # methods to compare; real-images and noise are always added
    seeds: int = 8  # seeds per unit (images per unit per method)
    first_seed: int = 0  # seeds are first_seed .. first_seed + seeds - 1
    steps: int | None = 200  # one optimization budget for every method (None: each method's own default)
    evaluators: tuple[str, ...] | None = None  # independent judges (None: DEFAULT_EVALUATORS[model])
    prior: str = "fmnist-fc6"  # generator prior for methods with parameterization "code"
    reference_per_class: int = 200  # real test images per class as the realism reference
    limit: int | None = None  # normalize activations by the top over the first N training images (None: test set)
    control: bool = True  # also run every method against a randomly initialized copy of the target
    control_seed: int = 0  # torch seed of the random copy's initialization
    n_boot: int = 1000  # bootstrap replicates for the 95% intervals
    calibration: bool = True  # validate the metrics on calibration inputs
    data_dir: str | None = None  # Fashion-MNIST folder (None: the default lookup)
    device: str = "cpu"


def _methods(config: BenchmarkConfig) -> list[str]:
    from dgn_am.methods import METHODS

    names = [m for m in config.methods if m not in PSEUDO]
    unknown = [m for m in names if not known_row(m, METHODS)]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; available: "
                         f"{', '.join(sorted(METHODS) + list(PSEUDO))} (dgn-am methods), each optionally as NAME@STEPS, "
                         "and search-cmaes@CALLS, search-ga@CALLS")
    return names + list(PSEUDO)


def _evaluators(config: BenchmarkConfig) -> list[str]:
    names = list(config.evaluators or DEFAULT_EVALUATORS.get(config.model, ()))
    if not names:
        raise ValueError(f"no default evaluators for target '{config.model}'; pass --evaluators A,B")
    if any(parse_evaluator(n)[:2] == (config.model, config.weights) for n in names):
        raise ValueError(f"evaluator '{config.model}' is the target itself; an evaluator must never be used during "
                         f"optimization: pick others, e.g. --evaluators {','.join(DEFAULT_EVALUATORS['fmnist-caffenet'])}")
    return names


def _load_random(name: str, seed: int, device: str) -> torch.nn.Module:
    """A randomly initialized copy of `name`, from a fixed seed, without touching the caller's RNG state."""
    from dgn_am.models.loading import load_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_model(name, weights="random", device=device)


@torch.no_grad()
def top_activations(model: torch.nn.Module, images: torch.Tensor, layer: str, index: list[int],
                    batch: int = 1000) -> torch.Tensor:
    """Max over images (N, C, H, W) of each unit `index` of a (B, K) layer: (len(index),)."""
    best = torch.full((len(index),), -float("inf"))
    for lo in range(0, len(images), batch):
        act = run(model, images[lo: lo + batch], [layer])[layer].flatten(1)[:, index].cpu()
        best = torch.maximum(best, act.max(0).values)
    return best


def _split_real(x: torch.Tensor, y: torch.Tensor, classes: list[int], per_class: int, ref: int,
                seed: int) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per class, `per_class` images for the real-images rows, and a disjoint reference of `ref` images per class
    (of every class, so the reference covers the dataset). Returns ({class: (S, C, H, W)}, ref images, labels)."""
    gen = torch.Generator().manual_seed(seed)
    chosen, ref_x, ref_y = {}, [], []
    for c in sorted(set(int(v) for v in y.unique())):
        rows = torch.nonzero(y == c).flatten()
        rows = rows[torch.randperm(len(rows), generator=gen)]
        if len(rows) < per_class + 2:
            raise ValueError(f"class {c} has {len(rows)} test images; need {per_class + 2} for {per_class} seeds")
        chosen[c] = x[rows[:per_class]]
        take = rows[per_class: per_class + ref]
        ref_x.append(x[take])
        ref_y.append(y[take])
    return {c: chosen[c] for c in classes}, torch.cat(ref_x), torch.cat(ref_y)


def _make_images(name: str, target, units, seeds, prior_fn, real, steps) -> dict:
    """Images (U * S, C, H, W) for one method against one target, with activations, time and steps."""
    spec = target.input_spec
    if name == "real-images":
        images = torch.cat([real[u.index][: len(seeds)] for u in units])
        return {"images": images, "seconds": 0.0, "steps": 0, "settings": {"name": name}}
    if name == "noise":
        gens = [torch.Generator().manual_seed(10_000 * u.index + s) for u in units for s in seeds]
        images = torch.stack([torch.rand(spec.channels, *spec.size, generator=g) for g in gens])
        return {"images": images, "seconds": 0.0, "steps": 0, "settings": {"name": name}}
    return make_row_images(name, target, units, seeds, prior_fn, real, steps)


MANIFOLD = ("precision", "density", "coverage")  # k-NN manifold metrics, per unit against its class's real images


def _summary(groups: list[np.ndarray], config: BenchmarkConfig, statistic=None, recentre: bool = False) -> dict:
    est, lo, hi = bootstrap_ci(groups, statistic=statistic, n_boot=config.n_boot, seed=config.control_seed,
                               recentre=recentre)
    return {"value": est, "lo": lo, "hi": hi}


def _fid_summaries(scores: dict, groups: list[np.ndarray], config: BenchmarkConfig) -> dict:
    """fid_SPACE_EV and fid_SPACE (mean over evaluators) with nested-bootstrap intervals; every evaluator and space
    is scored on the same draws. A draw's reference is the reference images of the draw's class mix. The values
    are torchmetrics' FID of all images (ClassMixFrechet.fid); the replicates use ClassMixFrechet.distance."""
    evs = list(scores)
    frechets = [scores[ev][f"frechet_{space}"] for space in SPACES for ev in evs]

    def statistic(rows: np.ndarray) -> np.ndarray:
        if len(rows) < 2:
            return np.full(len(frechets) + len(SPACES), np.nan)
        v = np.array([f.distance(rows) for f in frechets]).reshape(len(SPACES), len(evs))
        return np.concatenate([v.ravel(), v.mean(1)])

    whole = np.array([scores[ev][f"fid_{space}"] for space in SPACES for ev in evs]).reshape(len(SPACES), len(evs))
    est, lo, hi = bootstrap_set_ci(groups, statistic, n_boot=config.n_boot, seed=config.control_seed,
                                   estimate=np.concatenate([whole.ravel(), whole.mean(1)]))  # torchmetrics' values
    keys = [f"fid_{space}_{ev}" for space in SPACES for ev in evs] + [f"fid_{space}" for space in SPACES]
    return {k: {"value": float(est[j]), "lo": float(lo[j]), "hi": float(hi[j])} for j, k in enumerate(keys)}


def _score_method(run_: dict, target, units, groups, norm, scorer: Scorer, config,
                  paths: PathReference | None = None) -> dict:
    """Per-image numbers and bootstrapped summaries for one run's images; with `paths` (built on `target`), also
    each image's path similarity to its unit's top reference images."""
    images = run_["images"]
    classes = torch.tensor([u.index for u in units for _ in groups[0]])
    with torch.no_grad():
        logits = target(images.to(next(target.parameters()).device)).cpu()
    act = logits[torch.arange(len(classes)), classes].numpy().astype(float)
    prob = torch.softmax(logits, 1)[torch.arange(len(classes)), classes].numpy().astype(float)
    scores = scorer.score(images, classes, groups)
    per_image = {"activation": act, "activation_norm": act / np.repeat(norm, len(groups[0])), "prob": prob}
    if paths is not None:
        per_image["path_similarity"] = paths.similarity(target, images, [u for u in units for _ in groups[0]])
    for ev, rec in scores.items():
        per_image[f"transfer_{ev}"] = rec["correct"]
        per_image[f"evalprob_{ev}"] = rec["prob"]
    per_image["transfer_mean"] = np.mean([scores[ev]["correct"] for ev in scores], 0)
    summary = {k: _summary([v[g] for g in groups], config) for k, v in per_image.items()}
    for space in SPACES:
        for ev, rec in scores.items():
            ks = rec[f"kernels_{space}"]
            summary[f"kid_{space}_{ev}"] = _summary(groups, config, lambda u, i, ks=ks: ks[u].kid(i))
        allk = [scores[ev][f"kernels_{space}"] for ev in scores]
        summary[f"kid_{space}"] = _summary(groups, config,
                                           lambda u, i, allk=allk: float(np.mean([ks[u].kid(i) for ks in allk])))
    summary.update(_fid_summaries(scores, groups, config))
    for m in MANIFOLD:  # coverage falls when a draw repeats seeds (fewer distinct images): centre its interval
        for ev, rec in scores.items():
            summary[f"{m}_{ev}"] = _summary(groups, config, lambda u, i, ms=rec["manifold"], m=m:
                                            getattr(ms[u], m)(i), recentre=m == "coverage")
        allm = [scores[ev]["manifold"] for ev in scores]
        summary[m] = _summary(groups, config, lambda u, i, allm=allm, m=m:
                              float(np.mean([getattr(ms[u], m)(i) for ms in allm])), recentre=m == "coverage")
    feats = [scores[ev]["feats_penult"] for ev in scores]
    if len(groups[0]) >= 2:
        summary["diversity"] = _summary(groups, config, lambda u, i: float(np.mean(
            [pairwise_cosine_distance_of(f[groups[u]], i) for f in feats])))  # NaN when one seed drawn twice
    first = scorer.evaluators[0].name
    f = scores[first]["feats_penult"]
    y_ref = {u.index: scorer.ref[first]["penult"][scorer.labels == u.index] for u in units}
    ses = [kid(f[g], y_ref[u.index], subsets=50, seed=0)[1] for u, g in zip(units, groups)]
    summary[f"kid_penult_se_{first}"] = {"value": float(np.sqrt(np.sum(np.square(ses))) / len(ses)),
                                         "lo": None, "hi": None}
    return {"per_image": {k: v.tolist() for k, v in per_image.items()}, "summary": summary}


def _load_evaluators(names: list[str], target, device: str) -> list:
    """The judge networks, each checked to take the target's image format, with distinct names."""
    evaluators = [Evaluator.from_spec(n, device=device) for n in names]
    spec = target.input_spec
    for e in evaluators:
        es = e.model.input_spec
        if (es.channels, tuple(es.size)) != (spec.channels, tuple(spec.size)):
            raise ValueError(f"evaluator {e.name} takes {es.channels}x{es.size[0]}x{es.size[1]} images, but the target "
                             f"makes {spec.channels}x{spec.size[0]}x{spec.size[1]}; pick evaluators with the target's "
                             "input format")
    ev_names = [e.name for e in evaluators]
    if len(set(ev_names)) < len(ev_names):
        raise ValueError(f"evaluators {', '.join(ev_names)} repeat a name; give each its own model or weights file")
    return evaluators


def _run_method(name: str, entry: dict, images: dict, target, control, units, seeds, groups, norm, scorer, prior_fn,
                real, config: BenchmarkConfig, progress: Callable[[str], None] | None,
                paths: PathReference | None = None) -> None:
    """Make and score one method's images (and, with a control network, its control run) into `entry` and
    `images`."""
    if progress:
        progress(name)
    made = _make_images(name, target, units, seeds, prior_fn, real, config.steps)
    entry.update(_score_method(made, target, units, groups, norm, scorer, config, paths))
    n = len(made["images"])
    entry["cost"] = {"seconds_per_image": made["seconds"] / n, "steps": made["steps"],
                     "seconds_total": made["seconds"]}
    entry["settings"] = made["settings"]
    images[name] = made["images"]
    if control is not None and name not in PSEUDO:
        if progress:
            progress(f"{name} (control)")
        made_c = _make_images(name, control, units, seeds, prior_fn, real, config.steps)
        scored = _score_method(made_c, control, units, groups, norm, scorer, config)
        entry["control"] = {k: v for k, v in scored["summary"].items()
                            if k.startswith("transfer") or k.startswith("activation")}
        entry["control_per_image"] = {k: v for k, v in scored["per_image"].items() if k.startswith("transfer")}
        images[f"{name} (control)"] = made_c["images"]


def run_benchmark(config: BenchmarkConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Run the whole benchmark; see the module docstring. progress(label) is called before each run."""
    from dgn_am.data import load_fashion_mnist
    from dgn_am.models.loading import load_model
    from dgn_am.priors import load_prior

    if config.seeds < 1 or (config.steps is not None and config.steps < 1):
        raise ValueError(f"--seeds and --steps must be >= 1, got {config.seeds} and {config.steps}")
    methods = _methods(config)
    ev_names = _evaluators(config)
    target = load_model(config.model, config.weights, device=config.device)
    units = units_of(target, config.units.split())
    check_units(target, units)
    out_layer = list_layers(target)[-1][0]
    if any(u.layer != out_layer for u in units):
        raise ValueError(f"the benchmark scores class units: use units of the output layer '{out_layer}', "
                         f"e.g. --units {out_layer}:0-9")
    evaluators = _load_evaluators(ev_names, target, config.device)
    ev_names = [e.name for e in evaluators]
    x, y = load_fashion_mnist("test", config.data_dir)
    classes = [u.index for u in units]
    n_cal = max(config.seeds, CALIBRATION_PER_CLASS)
    real, ref_x, ref_y = _split_real(x, y, classes, n_cal, config.reference_per_class, config.control_seed)
    if config.limit:
        xn, _ = load_fashion_mnist("train", config.data_dir)
        xn = xn[: config.limit]
    else:
        xn = x
    norm = top_activations(target, xn.to(config.device), out_layer, classes).numpy().astype(float)
    scorer = Scorer(evaluators, ref_x.to(config.device), ref_y)
    paths = PathReference.build(target, units, ref_x)  # each unit's top reference images, disjoint from real-images
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    groups = [np.arange(i * len(seeds), (i + 1) * len(seeds)) for i in range(len(units))]
    prior_cache: dict = {}

    def prior_fn():
        if "p" not in prior_cache:
            prior_cache["p"] = load_prior(config.prior, device=config.device)
        return prior_cache["p"]

    control = _load_random(config.model, config.control_seed, config.device) if config.control else None
    results, images = {}, {}
    for name in methods:
        entry: dict = {"error": None, "control": None}
        try:
            _run_method(name, entry, images, target, control, units, seeds, groups, norm, scorer, prior_fn, real,
                        config, progress, paths)
        except Exception as e:  # one broken method must not sink the benchmark: record it and go on
            entry["error"] = f"{e.__class__.__name__}: {e}"
        results[name] = entry
    calib = None
    if config.calibration:
        if progress:
            progress("calibration")
        calib = _calibrate(real, units, groups, norm, target, scorer, config, ev_names, paths)
    settings = _settings(config, target, methods, ev_names, evaluators, seeds, units, out_layer, norm)
    return {"settings": settings, "methods": results, "calibration": calib, "images": images,
            "real_images_for_grid": torch.cat([real[c][: len(seeds)] for c in classes])}


def _settings(config: BenchmarkConfig, target, methods, ev_names, evaluators, seeds, units, out_layer,
              norm: np.ndarray) -> dict:
    """results.json's "settings": the config, what was run and scored, the budget, versions and machine."""
    spec = target.input_spec
    return {**asdict(config), "methods": methods, "evaluators": ev_names, "seed_list": seeds,
            "units_list": [str(u) for u in units], "output_layer": out_layer,
            "class_names": [names[u.index] for u in units] if (names := getattr(target, "class_names", None))
            else None,
            "budget": {"steps": config.steps if config.steps is not None else "method default",
                       "image_size": list(spec.size), "channels": spec.channels, "value_range": [0.0, 1.0]},
            "normalization": {"images": f"first {config.limit} training images" if config.limit else
                              "Fashion-MNIST test set", "top_activation": norm.tolist()},
            "feature_layers": {e.name: {"penult": e.penult, "early": e.early} for e in evaluators},
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "threads": torch.get_num_threads(), "machine": platform.machine()}


CALIBRATED = {"transfer_mean": True, "kid_penult": False, "kid_early": False, "fid_penult": False,
              "fid_early": False, **{m: True for m in MANIFOLD}, "path_similarity": True}  # {metric: higher is better}


def _calibrate(real, units, groups, norm, target, scorer, config, ev_names, paths=None) -> dict:
    """The calibration inputs scored with the benchmark's own summaries (no bootstrap needed: n_boot=1), from
    max(seeds, CALIBRATION_PER_CLASS) real test images per unit's class, disjoint from the reference."""
    n = len(real[units[0].index])
    groups = [np.arange(i * n, (i + 1) * n) for i in range(len(units))]
    metrics = dict(CALIBRATED)
    for ev in ev_names:
        metrics.update({f"transfer_{ev}": True, **{f"{m}_{s}_{ev}": False for m in ("kid", "fid") for s in SPACES},
                        **{f"{m}_{ev}": True for m in MANIFOLD}})
    quick = BenchmarkConfig(**{**asdict(config), "n_boot": 1, "methods": tuple(config.methods),
                               "evaluators": tuple(ev_names)})

    def metric_fn(images: torch.Tensor, classes: torch.Tensor) -> dict:
        s = _score_method({"images": images}, target, units, groups, norm, scorer, quick, paths)["summary"]
        return {k: v["value"] for k, v in s.items() if k in metrics}

    return calibrate(metric_fn, torch.cat([real[u.index] for u in units]),
                     torch.tensor([u.index for u in units for _ in groups[0]]), n, metrics,
                     seed=config.control_seed)
