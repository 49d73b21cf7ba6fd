"""Gradient-free search over a generator prior's code, for black-box scorers (XDream, Xiao & Kreiman 2020; Ponce et
al. 2019): neurons that give no gradient, such as a non-differentiable model, a unit read under no_grad, or a
recording rig behind a Python callable.

A scorer is any callable `f(images (N, C, H, W) in [0, 1]) -> scores (N,)`, higher is better; it is called once
per generation with that generation's images (in chunks of at most `max_batch`). The budget counts scorer
evaluations: images scored, the same unit as a gradient method's forward passes per image. Two algorithms search
the prior's code box [lower, upper]:

    cmaes  CMA-ES (Hansen), from the maintained `cma` package: the mean starts at the real codes' mean, the
           step size is `sigma` times each code unit's std (cma's CMA_stds), the box is cma's bounds.
    ga     the genetic algorithm of XDream: the population starts from draws of the real codes' statistics; each
           generation keeps the `kept` best, picks parents with probability softmax(selectivity * z-scored score),
           takes each gene from the first parent with probability `heritability`, and mutates a gene with
           probability `mutation_rate` by N(0, (mutation_size * std_i)^2).

search(...) returns the best image found, the best image of every generation, and the best and mean score per
generation. The same seed gives the same result. No files, no printing.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from dgn_am.layers import Unit, check_units, read_units, run

Scorer = Callable[[torch.Tensor], Any]  # images (N, C, H, W) in [0, 1] -> (N,) scores, higher is better
ALGORITHMS = ("cmaes", "ga")


@dataclass(frozen=True)
class SearchConfig:
    algorithm: str = "cmaes"  # "cmaes" or "ga"
    budget: int = 5000  # scorer evaluations (images scored) per search
    population: int | None = None  # images per generation; None: cma's 4 + 3 ln(dim) for cmaes, 40 for ga
    max_batch: int = 0  # at most this many images per scorer call (0: the whole generation in one call)
    sigma: float = 0.5  # cmaes: first step size, in units of each code unit's std
    kept: int = 10  # ga: best codes carried over unchanged (not scored again: scorers are taken as noiseless)
    mutation_rate: float = 0.25  # ga: probability that a gene mutates
    mutation_size: float = 0.75  # ga: std of a mutation, in units of that code unit's std
    selectivity: float = 2.0  # ga: inverse temperature of the parent-choice softmax over z-scored scores
    heritability: float = 0.5  # ga: probability that a child's gene comes from its first parent

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown search algorithm '{self.algorithm}'; use {' or '.join(ALGORITHMS)}")
        if self.population is not None and self.population < 2:
            raise ValueError(f"population must be >= 2, got {self.population}")
        if self.budget < self.generation_size(2):
            raise ValueError(f"budget {self.budget} is smaller than one generation; give at least "
                             f"{self.generation_size(2)} scorer calls (or a smaller --population)")
        if self.max_batch < 0 or not self.sigma > 0 or not 0 <= self.mutation_rate <= 1 or \
                not 0 <= self.heritability <= 1 or self.mutation_size < 0:
            raise ValueError("max_batch >= 0, sigma > 0, mutation_size >= 0, mutation_rate and heritability in "
                             f"[0, 1]; got {self}")
        if self.algorithm == "ga" and not 0 <= self.kept < self.generation_size(2):
            raise ValueError(f"kept must be >= 0 and below the population {self.generation_size(2)}, got {self.kept}")

    def generation_size(self, dim: int) -> int:
        """Images per generation for a code of `dim` numbers."""
        if self.population is not None:
            return self.population
        return 4 + int(3 * np.log(dim)) if self.algorithm == "cmaes" else 40


@dataclass
class SearchResult:
    """image (C, H, W) in [0, 1] and code (D,): the best found, with its score; generation_images (G, C, H, W):
    the best image of each generation; best, mean (G,): each generation's best and mean score; calls: scorer
    evaluations spent (<= budget: a last generation that would not fit is not run)."""

    image: torch.Tensor
    code: torch.Tensor
    score: float
    generation_images: torch.Tensor
    best: np.ndarray
    mean: np.ndarray
    calls: int
    settings: dict


def unit_scorer(model: torch.nn.Module, unit: Unit) -> Scorer:
    """A scorer that reads one unit of `model` (as synthesize reads it) under torch.no_grad: the model is used as
    a black box, so its forward pass may be non-differentiable."""
    check_units(model, [unit])

    @torch.no_grad()
    def score(images: torch.Tensor) -> torch.Tensor:
        act = run(model, images, [unit.layer])[unit.layer]
        return read_units(act, [unit] * len(images))

    return score


def load_scorer(spec: str) -> Scorer:
    """'package.module:function' -> that callable, f(images (N, C, H, W) in [0, 1]) -> (N,) scores."""
    module, colon, name = spec.partition(":")
    if not (module and colon and name):
        raise ValueError(f"bad scorer '{spec}': give it as package.module:function")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load scorer '{spec}' ({e}); the module must be importable (on PYTHONPATH) and "
                         "define the function") from None
    if not callable(fn):
        raise ValueError(f"scorer '{spec}' is not callable")
    return fn


def _scores(scorer: Scorer, images: torch.Tensor, max_batch: int) -> np.ndarray:
    """The scorer on images (N, ...) in chunks of max_batch (0: one call): (N,) float64, checked finite."""
    step = max_batch or len(images)
    out = []
    for lo in range(0, len(images), step):
        chunk = images[lo: lo + step]
        s = scorer(chunk)
        s = s.detach().cpu().double().numpy() if isinstance(s, torch.Tensor) else np.asarray(s, dtype=np.float64)
        if s.shape != (len(chunk),):
            raise ValueError(f"the scorer returned shape {s.shape} for {len(chunk)} images; it must return one "
                             "score per image, shape (N,)")
        out.append(s)
    s = np.concatenate(out)
    if not np.isfinite(s).all():
        raise ValueError("the scorer returned NaN or infinite scores; it must return finite numbers")
    return s


class _Recorder:
    """Scores codes through the prior and the scorer, counts calls, keeps the best and each generation's record."""

    def __init__(self, scorer: Scorer, prior: Any, spec: Any, config: SearchConfig) -> None:
        self.scorer, self.prior, self.spec, self.config = scorer, prior, spec, config
        self.calls, self.best, self.mean, self.frames = 0, [], [], []
        self.top: tuple[float, np.ndarray, torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(self, codes: np.ndarray, carried: tuple[np.ndarray, torch.Tensor] | None = None
                 ) -> tuple[np.ndarray, torch.Tensor]:
        """codes (P, D) -> (scores (P,), images (P, C, H, W)); records the generation, which also holds the
        `carried` (scores, images) of codes kept from the last one without being scored again."""
        like = self.prior.mean  # the code's dtype and device
        images = self.prior.image(torch.as_tensor(codes, dtype=like.dtype, device=like.device), self.spec).cpu()
        s = _scores(self.scorer, images, self.config.max_batch)
        self.calls += len(codes)
        g = int(np.argmax(s))
        if self.top is None or s[g] > self.top[0]:
            self.top = (float(s[g]), np.array(codes[g]), images[g])
        everyone = s if carried is None else np.concatenate([carried[0], s])
        pictures = images if carried is None else torch.cat([carried[1], images])
        self.best.append(float(everyone.max()))
        self.mean.append(float(everyone.mean()))
        self.frames.append(pictures[int(np.argmax(everyone))])
        return s, images

    def room(self, n: int) -> bool:
        return self.calls + n <= self.config.budget


def _box(prior: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, mean, std) of the prior's code as float64 numpy arrays (D,)."""
    return tuple(t.detach().cpu().double().numpy() for t in (prior.lower, prior.upper, prior.mean, prior.std))


def _cmaes(rec: _Recorder, prior: Any, seed: int, config: SearchConfig) -> None:
    import cma

    lower, upper, mean, std = _box(prior)
    pop = config.generation_size(len(mean))
    opts = {"popsize": pop, "bounds": [lower.tolist(), upper.tolist()], "CMA_stds": np.maximum(std, 1e-12).tolist(),
            "seed": int(seed) % (2**32 - 1) + 1, "verbose": -9, "maxfevals": config.budget, "tolfun": 0,
            "tolx": 0, "tolfunhist": 0, "tolstagnation": 10**9, "tolflatfitness": 10**9}
    state = np.random.get_state()  # cma draws from numpy's global RNG, seeded by opts["seed"]; leave it as it was
    try:
        es = cma.CMAEvolutionStrategy(np.clip(mean, lower, upper), config.sigma, opts)
        while rec.room(pop):
            x = np.array(es.ask())
            s, _ = rec(np.clip(x, lower, upper))
            es.tell(list(x), (-s).tolist())  # cma minimizes
    finally:
        np.random.set_state(state)


def _ga(rec: _Recorder, prior: Any, seed: int, config: SearchConfig) -> None:
    lower, upper, mean, std = _box(prior)
    pop = config.generation_size(len(mean))
    rng = np.random.default_rng(seed)
    codes = np.clip(mean + std * rng.standard_normal((pop, len(mean))), lower, upper)
    scores, images = rec(codes)
    while rec.room(pop - config.kept):
        order = np.argsort(-scores, kind="stable")
        z = (scores - scores.mean()) / (scores.std() + 1e-12)
        p = np.exp(config.selectivity * (z - z.max()))
        p /= p.sum()
        n = pop - config.kept
        parents = rng.choice(pop, size=(n, 2), p=p)
        take_first = rng.random((n, len(mean))) < config.heritability
        children = np.where(take_first, codes[parents[:, 0]], codes[parents[:, 1]])
        mutate = rng.random((n, len(mean))) < config.mutation_rate
        children = children + mutate * rng.standard_normal((n, len(mean))) * std * config.mutation_size
        children = np.clip(children, lower, upper)
        elite = order[: config.kept]
        new_scores, new_images = rec(children, carried=(scores[elite], images[elite]))
        codes = np.concatenate([codes[elite], children])
        scores = np.concatenate([scores[elite], new_scores])
        images = torch.cat([images[elite], new_images])


def search(scorer: Scorer, prior: Any, spec: Any, seed: int = 0, config: SearchConfig = SearchConfig()) -> SearchResult:
    """Search prior's code for the image that `scorer` scores highest, within config.budget scorer evaluations.

    prior: anything with lower, upper, mean, std (D,), code_dim, provenance and image(h (P, D), spec) -> images,
    such as dgn_am.load_prior(...); spec: the InputSpec the scorer's images follow; seed: the search's random stream
    (the same seed gives the same result)."""
    rec = _Recorder(scorer, prior, spec, config)
    (_cmaes if config.algorithm == "cmaes" else _ga)(rec, prior, seed, config)
    score, code, image = rec.top
    settings = {"search": asdict(config), "population": config.generation_size(prior.code_dim), "seed": seed,
                "prior": prior.provenance.get("path"), "code_dim": prior.code_dim}
    return SearchResult(image=image, code=torch.as_tensor(code, dtype=torch.float32), score=score,
                        generation_images=torch.stack(rec.frames), best=np.array(rec.best), mean=np.array(rec.mean),
                        calls=rec.calls, settings=settings)
