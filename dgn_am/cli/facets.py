"""`dgn-am facets`: multifaceted feature visualization (Nguyen, Yosinski & Clune 2016) of units on Fashion-MNIST,
with the diversity of the facets next to that of the unit's real top images. Argument parsing and file output only;
the work happens in `dgn_am.facets`."""

from __future__ import annotations


import torch

from dgn_am.cli.common import DATA_DIR_HELP, MAX_SEED, MAX_STEPS, add_model_args, load_target, unit_stem
from dgn_am.errors import UsageError, bounded_int
from dgn_am.imageio import make_grid, save_image, save_labelled_grid, view_scale, write_json


def _check(args) -> None:
    from dgn_am.outdir import OutputFolder

    bounded_int(args.k, "--k", 1, 100)
    bounded_int(args.top, "--top", args.k, 100_000)
    bounded_int(args.pool, "--pool", args.top, 1_000_000)
    bounded_int(args.show, "--show", 0, 100)
    bounded_int(args.seed, "--seed", 0, MAX_SEED - args.k)
    if args.steps is not None:
        bounded_int(args.steps, "--steps", 1, MAX_STEPS)
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()


def _prepare(args) -> tuple:
    """Every check and load before any work: (model, judge, units, method, prior, pool, cluster layer, judge layer)."""
    import argparse

    from dgn_am.data import VALIDATION_SIZE, load_fashion_mnist
    from dgn_am.evaluation.scoring import FEATURE_LAYERS, default_layers
    from dgn_am.layers import check_units, get_layer, units_of
    from dgn_am.methods import get_method

    _check(args)
    model = load_target(args)
    units = units_of(model, args.units)
    check_units(model, units)
    cluster_layer = args.cluster_layer or FEATURE_LAYERS.get(args.model, default_layers(model))[0]
    get_layer(model, cluster_layer)
    method = get_method(args.method).with_overrides(steps=args.steps)
    if method.parameterization not in ("code", "pixels"):
        raise UsageError(f"--method {method.name} optimizes {method.parameterization}; facets need a code method "
                         "(started from mean codes) or a pixels method (from mean images)")
    prior = None
    if method.parameterization == "code":
        from dgn_am.priors import load_prior

        prior = load_prior(args.prior, device=args.device)
    judge = load_target(argparse.Namespace(model=args.judge, weights=None, device=args.device))
    judge_layer = FEATURE_LAYERS.get(args.judge, default_layers(judge))[0]
    train = load_fashion_mnist("train", args.data_dir)[0][:-VALIDATION_SIZE]
    if args.pool > len(train):
        raise UsageError(f"--pool {args.pool} is larger than the training split ({len(train)} images)")
    return model, judge, units, method, prior, train[: args.pool], cluster_layer, judge_layer


def _diversity(judge, layer: str, facets, pool: torch.Tensor, baseline: torch.Tensor | None) -> dict:
    """Mean pairwise cosine distance in the judge's features: of the facets, of the unit's top real images, of one
    real image per cluster (its best), and of the method's own seeds (baseline, same count as facets)."""
    from dgn_am.evaluation.metrics import mean_pairwise_cosine_distance as spread
    from dgn_am.facets import layer_features

    k = len(facets.images)
    out = {"facets": spread(layer_features(judge, facets.images, layer)) if k > 1 else None,
           "real_top": spread(layer_features(judge, pool[facets.top], layer)),
           "real_cluster_best": spread(layer_features(judge, pool[[g[0] for g in facets.clusters]], layer))
           if k > 1 else None}
    if baseline is not None and k > 1:
        out["method_seeds"] = spread(layer_features(judge, baseline, layer))
    return out


def _row(facets, pool: torch.Tensor, show: int) -> torch.Tensor:
    """One unit's grid row: for each facet, its start, the facet and `show` of its cluster's best real images
    (white where a cluster has fewer), a white cell between facets: (k * (3 + show) - 1, C, H, W)."""
    blank = torch.ones_like(pool[0])
    cells = []
    for start, image, group in zip(facets.starts, facets.images, facets.clusters):
        cells += ([blank] if cells else []) + [start, image]  # a blank cell between facets
        cells += [pool[i] if i is not None else blank for i in (group + [None] * show)[:show]]
    return torch.stack(cells)


def _facets_of(args, model, units, method, prior, pool, cluster_layer: str, bar) -> tuple[list, list]:
    """(facets per unit, baseline images per unit or None)."""
    from dgn_am.facets import unit_facets, unit_values
    from dgn_am.methods import synthesize

    values = unit_values(model, pool, units)
    done, baselines = [], []
    for i, unit in enumerate(units):
        done.append(unit_facets(model, unit, pool, values[:, i], args.k, args.top, cluster_layer, method,
                                prior, args.seed, progress=lambda *a: bar.update(1)))
        base = None
        if args.baseline and args.k > 1:
            base = synthesize(model, [unit], list(range(args.seed, args.seed + args.k)), method, prior=prior,
                              progress=lambda *a: bar.update(1))[0].images.cpu()
        baselines.append(base)
    return done, baselines


def cmd_facets(args) -> int:
    from tqdm import tqdm

    from dgn_am.facets import own_cluster_rate
    from dgn_am.outdir import OutputFolder

    model, judge, units, method, prior, pool, cluster_layer, judge_layer = _prepare(args)
    torch.manual_seed(0)  # nothing should draw from the global RNG; this makes a stray draw repeat
    runs = len(units) * ((1 if method.parameterization == "code" else args.k) + bool(args.baseline))
    with tqdm(total=runs * method.steps, desc="facets", unit="step", disable=args.quiet) as bar:
        done, baselines = _facets_of(args, model, units, method, prior, pool, cluster_layer, bar)
    scale = view_scale(model.input_spec.size)
    record = {"settings": {"model": args.model, "weights": args.weights, "method": method.settings(),
                           "prior": args.prior if prior is not None else None,
                           "start": done[0].settings["start"] if done else None, "k": args.k, "top": args.top,
                           "pool": f"the first {args.pool} training-split images", "cluster_layer":
                           cluster_layer, "judge": f"{args.judge}@{judge_layer}", "seed": args.seed,
                           "device": args.device}, "units": []}
    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        for f, base in zip(done, baselines):
            paths = [f"{unit_stem(f.unit)}_facet{i}.png" for i in range(args.k)]
            for path, image in zip(paths, f.images):
                save_image(image, folder.file(path), scale=scale)
            record["units"].append({"unit": str(f.unit), "paths": paths, "activations": f.activations,
                                    "real_top_activation": {"best": f.top_values[0],
                                                            "mean": sum(f.top_values) / len(f.top_values)},
                                    "cluster_sizes": [len(g) for g in f.clusters],
                                    "clusters": f.clusters, "diversity": _diversity(judge, judge_layer, f, pool, base),
                                    "own_cluster": own_cluster_rate(model, f, pool, cluster_layer)})
        rows = torch.cat([_row(f, pool, args.show) for f in done])
        save_labelled_grid(make_grid(rows, rows=len(units)), [str(u) for u in units], folder.file("facets.png"),
                           rows=len(units), scale=scale)
        write_json(folder.file("facets.json"), record)
    if not args.quiet:
        div = [u["diversity"] for u in record["units"] if u["diversity"]["facets"] is not None]
        note = ""
        if div:
            note = (f"; diversity (mean pairwise cosine distance, {args.judge}): facets "
                    f"{sum(d['facets'] for d in div) / len(div):.3f}, real top images "
                    f"{sum(d['real_top'] for d in div) / len(div):.3f}")
        print(f"wrote {len(units)} x {args.k} facets, facets.png and facets.json to {args.out}{note}")
    return 0


def add_commands(sub) -> None:
    """Add `facets` to the dgn-am subcommands."""
    p = sub.add_parser("facets", help="multifaceted visualization: one preferred input per cluster of a unit's top "
                       "real images", description="Cluster each unit's top Fashion-MNIST training images by "
                       "k-means in a layer's features; start one optimization from each cluster's mean code "
                       "(code methods) or mean image (pixels methods). facets.png: a row per unit; for each facet "
                       "its start, the facet and its cluster's best real images.")
    add_model_args(p)
    p.add_argument("--units", nargs="+", default=["fc8:0-9"], help="unit addresses (default: %(default)s)")
    p.add_argument("--k", type=int, default=4, help="facets (k-means clusters) per unit (default: %(default)s)")
    p.add_argument("--top", type=int, default=100, help="top real images clustered (default: %(default)s)")
    p.add_argument("--pool", type=int, default=5000, help="training images searched for the top ones (the first "
                   "N of the training split) (default: %(default)s)")
    p.add_argument("--cluster-layer", default=None, help="layer whose features are clustered (default: the "
                   "model's penultimate layer, fc7 for fmnist-caffenet)")
    p.add_argument("--method", default="dgn-am-class", help="a code method (the prior; default: %(default)s, "
                   "which stops at 90%% of the best real image's activation and so keeps the facets apart) or a "
                   "pixels method such as nguyen-handcrafted (centre bias, mean-image start)")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for code methods (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="override the method's number of steps")
    p.add_argument("--seed", type=int, default=0, help="k-means' seed and the first facet's (default: %(default)s)")
    p.add_argument("--show", type=int, default=3, help="real images shown per cluster (default: %(default)s)")
    p.add_argument("--judge", default="fmnist-resnet", help="independent network whose penultimate features "
                   "measure diversity (default: %(default)s)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the method's own k seeds (the diversity baseline without facets)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", required=True, help="output folder (written beside it, renamed into place at the end)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_facets)
