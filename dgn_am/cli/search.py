"""`dgn-am search`: gradient-free search over a prior's code for units read as black boxes, or for a Python scorer
`package.module:function`; writes the best image of each search, the best image of every generation, a curve of
the best and mean score per generation, grid.png and manifest.jsonl. The work happens in `dgn_am.search`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from dgn_am.cli.common import MAX_IMAGES, MAX_SEED, add_model_args, load_target, save_figure, unit_stem
from dgn_am.errors import UsageError, bounded_int, finite_float
from dgn_am.outdir import OutputFolder, file_part
from dgn_am.imageio import make_grid, save_image, save_labelled_grid, view_scale, write_jsonl

MAX_FRAMES = 40  # generations shown in a search's generations strip (evenly spaced, the last always included)


def _config(args):
    from dgn_am.search import SearchConfig

    bounded_int(args.budget, "--budget", 2, 10**8)
    try:
        return SearchConfig(algorithm=args.algorithm, budget=args.budget, population=args.population,
                            max_batch=args.batch_size, sigma=args.sigma)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _targets(args):
    """[(label, file stem, scorer)] and the InputSpec the scorers take: the --units of --model, read under no_grad,
    or one --scorer callable (images in the --model's format)."""
    from dgn_am.layers import check_units, units_of
    from dgn_am.search import load_scorer, unit_scorer

    model = load_target(args)
    if args.scorer:
        try:
            fn = load_scorer(args.scorer)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return [(args.scorer, file_part(args.scorer.replace(":", "_")), fn)], model.input_spec
    units = units_of(model, args.units)
    check_units(model, units)
    bounded_int(len(units) * args.seeds, "the number of searches (units x --seeds)", 1, MAX_IMAGES)
    return [(str(u), unit_stem(u), unit_scorer(model, u)) for u in units], model.input_spec


def _frames(images: torch.Tensor) -> torch.Tensor:
    """At most MAX_FRAMES of the per-generation images (G, C, H, W), evenly spaced, the first and last included."""
    idx = np.unique(np.linspace(0, len(images) - 1, min(MAX_FRAMES, len(images))).round().astype(int))
    return images[torch.as_tensor(idx)]


def _curve(result, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    calls = np.arange(1, len(result.best) + 1)
    ax.plot(calls, result.best, label="best of generation")
    ax.plot(calls, result.mean, label="mean of generation")
    ax.set_xlabel("generation")
    ax.set_ylabel("score")
    ax.set_title(f"{label}: {result.settings['search']['algorithm']}, {result.calls} scorer calls", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _write_item(folder, stem: str, label: str, result) -> dict:
    """The item's PNGs and curve; returns its manifest row's file names."""
    names = {"path": f"{stem}.png", "generations_png": f"{stem}_generations.png", "curve_png": f"{stem}_curve.png"}
    save_image(result.image, folder.file(names["path"]))
    frames = _frames(result.generation_images)
    save_image(make_grid(frames, rows=1), folder.file(names["generations_png"]), scale=2)
    _curve(result, label, folder.file(names["curve_png"]))
    return names


def cmd_search(args) -> int:
    from tqdm import tqdm

    from dgn_am.priors import load_prior
    from dgn_am.search import search

    config = _config(args)
    bounded_int(args.seeds, "--seeds", 1, MAX_IMAGES)
    bounded_int(args.first_seed, "--first-seed", 0, MAX_SEED - args.seeds + 1)
    targets, spec = _targets(args)
    prior = load_prior(args.prior, device=args.device)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.perf_counter()
    rows, cells = [], []
    with OutputFolder(args.out, overwrite=args.overwrite) as folder, \
            tqdm(total=len(targets) * len(seeds), desc=f"search {config.algorithm}", unit="search",
                 disable=args.quiet) as bar:
        for label, stem, scorer in targets:
            for seed in seeds:
                result = search(scorer, prior, spec, seed, config)
                names = _write_item(folder, f"{stem}_s{seed}_{config.algorithm}", label, result)
                rows.append({"target": label, "seed": seed, "score": result.score, "calls": result.calls,
                             "generations": len(result.best), **names, "best": result.best.tolist(),
                             "mean": result.mean.tolist(),
                             "settings": {**result.settings, "model": args.model, "weights": args.weights,
                                          "scorer": args.scorer}})
                cells.append(result.image)
                bar.update(1)
                bar.set_postfix(score=f"{result.score:.2f}")
        save_labelled_grid(make_grid(torch.stack(cells), rows=len(targets)), [t[0] for t in targets],
                           folder.file("grid.png"), rows=len(targets), scale=view_scale(spec.size))
        write_jsonl(folder.file("manifest.jsonl"), rows)
    if not args.quiet:
        print(f"wrote {len(rows)} searches ({sum(r['calls'] for r in rows)} scorer calls) to {args.out} (mean best "
              f"score {np.mean([r['score'] for r in rows]):.3f}, {time.perf_counter() - started:.1f}s)")
    return 0


def add_commands(sub) -> None:
    """Add `search` to the dgn-am subcommands."""
    p = sub.add_parser("search", help="gradient-free search over a prior's code (CMA-ES, genetic algorithm)",
                       description="Evolve a generator prior's code for black-box scorers: units of --model read "
                                   "under no_grad, or a Python callable --scorer package.module:function that maps "
                                   "images (N, C, H, W) in [0, 1] to N scores. Writes the best image per search, the "
                                   "best image of each generation, a score curve, grid.png and manifest.jsonl.")
    add_model_args(p)
    p.add_argument("--units", nargs="+", default=["fc8:0-9"], help="units of --model to maximize (default: "
                   "%(default)s); ignored with --scorer")
    p.add_argument("--scorer", default=None, metavar="package.module:function",
                   help="a Python scorer f(images) -> scores instead of --units (images in --model's format)")
    p.add_argument("--algorithm", choices=("cmaes", "ga"), default="cmaes",
                   help="cmaes (the cma package) or ga (XDream's genetic algorithm) (default: %(default)s)")
    p.add_argument("--budget", type=int, default=5000, help="scorer evaluations (images scored) per search "
                   "(default: %(default)s)")
    p.add_argument("--population", type=int, default=None,
                   help="images per generation (default: 4 + 3 ln(code size) for cmaes, 40 for ga)")
    p.add_argument("--sigma", type=finite_float, default=0.5,
                   help="cmaes first step size, in code stds (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=0, help="max images per scorer call (0: a whole generation)")
    p.add_argument("--seeds", type=int, default=1, help="searches per unit, seeds FIRST..FIRST+N-1 (default: 1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior whose code is searched (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder (written in a temporary folder and renamed)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_search)
