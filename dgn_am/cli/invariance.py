"""`dgn-am invariance`: the Hessian eigenpairs of units at a point, and the paths along them
(dgn_am.explain.invariance). Argument parsing and file output only."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from dgn_am.cli.common import MAX_STEPS, add_model_args, load_target, save_npy, unit_stem
from dgn_am.errors import UsageError, bounded_int, finite_float
from dgn_am.imageio import load_image, make_grid, save_image, save_labelled_grid, view_scale, write_json
from dgn_am.outdir import OutputFolder, file_part

MAX_TARGETS = 64  # Hessians in one run: each takes hundreds of double-backward passes


def _targets(args, model) -> list:
    """The --units (Units) or the one --objective expression (ObjectiveTarget), checked against the model."""
    from dgn_am.layers import check_units, units_of
    from dgn_am.objective_expr import ObjectiveTarget, objective_for, parse_objective

    if (args.units is None) == (args.objective is None):
        raise UsageError("give exactly one of --units ADDRESS ... (e.g. fc8:0-2) or --objective EXPR "
                         "(e.g. logprob:fc8:3)")
    if args.objective is not None:
        if parse_objective(args.objective).relative:
            raise UsageError(f"--objective '{args.objective}' begins with + or -; give a whole expression")
        targets = [ObjectiveTarget(args.objective)]
    else:
        targets = units_of(model, args.units)
        check_units(model, targets)
        if len({str(u) for u in targets}) < len(targets):
            raise UsageError("--units names a unit more than once; give each unit once")
    bounded_int(len(targets), "the number of units", 1, MAX_TARGETS)
    objective_for(model, targets[:1])  # an expression's terms are checked here
    return targets


def _config(args):
    from dgn_am.explain.invariance import InvarianceConfig, parse_smooth

    bounded_int(args.k, "--k", 1, 256)
    bounded_int(args.points, "--points", 3, 101)
    if args.points % 2 == 0:
        raise UsageError(f"--points must be odd so that the path passes through the point itself, got {args.points}")
    if not args.radius > 0:
        raise UsageError(f"--radius must be > 0, got {args.radius}")
    return InvarianceConfig(k=args.k, solver=args.solver, smooth=parse_smooth(args.smooth), radius=args.radius,
                            points=args.points, verify=args.verify)


def _check_sources(args) -> None:
    if (args.image is None) == (args.method is None):
        raise UsageError("give exactly one point: --image FILE, or --method NAME (its preferred input for each unit, "
                         "from --seed)")
    if args.image is not None and not Path(args.image).is_file():
        raise UsageError(f"--image {args.image} not found")
    if args.steps is not None:
        bounded_int(args.steps, "--steps", 1, MAX_STEPS)


def _points(args, model, targets, prior) -> tuple[torch.Tensor, torch.Tensor]:
    """(points, images): per target, the point in the analysed space ((N, C, H, W) images or (N, code_dim) codes)
    and the image it shows (N, C, H, W) in [0, 1]."""
    if args.image is not None:
        image = load_image(args.image, model.input_spec).to(args.device)
        if prior is None:
            return image.expand(len(targets), -1, -1, -1), image.expand(len(targets), -1, -1, -1)
        from dgn_am.priors import encode

        code = encode(prior, image)
        return code.expand(len(targets), -1), prior.image(code, model.input_spec).expand(len(targets), -1, -1, -1)
    from tqdm import tqdm

    from dgn_am.methods import get_method, synthesize

    method = get_method(args.method).with_overrides(steps=args.steps)
    if prior is not None and method.parameterization != "code":
        raise UsageError(f"--space code needs a code method (its preferred code); --method {args.method} optimizes "
                         f"{method.parameterization}: use dgn-am-class or another dgn-am method, or --space pixels")
    if method.parameterization == "code" and prior is None:
        from dgn_am.priors import load_prior

        prior_for_method = load_prior(args.prior, device=args.device)
    else:
        prior_for_method = prior
    with tqdm(total=method.steps, desc=f"{args.method} preferred inputs", unit="step", disable=args.quiet) as bar:
        result, _ = synthesize(model, targets, [args.seed], method, prior_for_method,
                               progress=lambda i, n, s: bar.update(1))
    return (result.params if prior is not None else result.images), result.images


def cmd_invariance(args) -> int:
    from tqdm import tqdm

    from dgn_am.explain.invariance import FlatHessianWarning, invariances, settings

    config = _config(args)
    _check_sources(args)
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()
    model = load_target(args)
    targets = _targets(args, model)
    prior = None
    if args.space == "code":
        from dgn_am.priors import load_prior

        prior = load_prior(args.prior, device=args.device)
    points, shown = _points(args, model, targets, prior)
    with warnings.catch_warnings(record=True) as caught, tqdm(total=len(targets), desc="hessian", unit="unit",
                                                              disable=args.quiet) as bar:
        warnings.simplefilter("always", FlatHessianWarning)
        step = {"i": 0}

        def progress(i: int, products: int) -> None:
            if i != step["i"]:
                step["i"] = i
                bar.update(1)
            bar.set_postfix(target=str(targets[i]), hvp=products, refresh=False)

        results = invariances(model, targets, points, config, prior, args.seed, progress)
        bar.update(len(targets) - bar.n)
    flat_notes = [str(w.message) for w in caught if issubclass(w.category, FlatHessianWarning)]
    _write(args, model, targets, results, shown, settings(config, args.space), flat_notes)
    for note in dict.fromkeys(flat_notes):
        print(f"dgn-am invariance: warning: {note}", file=sys.stderr)
    return 0


def _stem(target) -> str:
    return unit_stem(target) if hasattr(target, "index") else file_part(str(target))


def _write(args, model, targets, results, shown, config: dict, flat_notes: list[str]) -> None:
    scale = view_scale(model.input_spec.size)
    rows = []
    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        for target, r, image in zip(targets, results, shown):
            stem = _stem(target)
            m = len(r.curvature.values)
            labels = [f"{'top' if j < (m + 1) // 2 else 'bottom'} {j}: lambda {lam:+.3g}, slope {s:+.3g}"
                      for j, (lam, s) in enumerate(zip(r.curvature.values.tolist(), r.slopes.tolist()))]
            save_image(image.float().cpu(), folder.file(f"{stem}_point.png"), scale=scale)
            save_image(make_grid(r.directions, rows=1), folder.file(f"{stem}_directions.png"), scale=scale)
            cells = torch.cat([r.directions[:, None], r.images], dim=1)  # (m, 1 + P, C, H, W)
            save_labelled_grid(make_grid(cells.flatten(0, 1), rows=m), labels, folder.file(f"{stem}_paths.png"),
                               rows=m, scale=scale)
            save_npy(r.curvature.vectors.float().numpy(), folder.file(f"{stem}_eigenvectors.npy"))
            rows.append({**r.summary(), "files": {"point": f"{stem}_point.png", "directions": f"{stem}_directions.png",
                                                  "paths": f"{stem}_paths.png",
                                                  "eigenvectors": f"{stem}_eigenvectors.npy"}})
        report = {"model": args.model, "weights": args.weights, "prior": args.prior if args.space == "code" else None,
                  "point": {"image": args.image} if args.image else {"method": args.method, "seed": args.seed,
                                                                        "steps": args.steps},
                  "settings": config, "seed": args.seed, "command": ["dgn-am", *getattr(args, "argv", [])],
                  "warnings": list(dict.fromkeys(flat_notes)), "targets": rows}
        write_json(folder.file("invariance.json"), report)
    if not args.quiet:
        for row in rows:
            e = row["eigenvalues"]
            print(f"{row['target']}: value {row['value']:.4g}, |gradient| {row['gradient_norm']:.3g}, eigenvalues "
                  f"{e[0]:+.3g} .. {e[-1]:+.3g} ({row['hessian_vector_products']} products, {row['seconds']:.1f} s)")
        print(f"wrote invariance.json and the path strips to {args.out}")


def add_commands(sub) -> None:
    """Add `invariance` to the dgn-am subcommands."""
    p = sub.add_parser("invariance", help="Hessian eigenpairs of a unit: its invariances and sensitivities",
                       description="The k largest and k smallest eigenpairs of the Hessian of each unit's activation "
                                   "at a point (an image, or the unit's preferred input from a method), found from "
                                   "Hessian-vector products; directions with eigenvalue and slope near 0 are the "
                                   "unit's invariances. A network of ReLU, max-pool and linear layers (the shipped "
                                   "fmnist-caffenet) has a zero Hessian almost everywhere: use --smooth softplus:BETA "
                                   "or --objective logprob:fc8:N. Writes per unit the point, the eigenvectors as "
                                   "images, the paths x + t v (a strip per direction) and invariance.json. "
                                   "See docs/invariance.md.")
    add_model_args(p)
    p.add_argument("--units", nargs="+", default=None, help="unit addresses, e.g. fc8:0-2 or conv5:3@mean")
    p.add_argument("--objective", default=None, metavar="EXPR", help="one objective expression instead of units, "
                   "e.g. logprob:fc8:3 (see `dgn-am synthesize --help`)")
    p.add_argument("--image", default=None, help="the point: this image file (all units share it)")
    p.add_argument("--method", default=None, help="the point: each unit's preferred input from this method "
                   "(dgn-am methods), e.g. dgn-am-class")
    p.add_argument("--seed", type=int, default=0, help="seed of the method's run and of the solver's start "
                   "(default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="the method's steps (default: the method's own)")
    p.add_argument("--space", default="pixels", choices=("pixels", "code"), help="pixels: the Hessian w.r.t. the "
                   "image; code: w.r.t. the prior's code h (--image: its code under the prior's encoder) "
                   "(default: %(default)s)")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for --space code and code methods "
                   "(default: %(default)s)")
    p.add_argument("--smooth", default=None, metavar="softplus:BETA", help="take the Hessian of a copy of the "
                   "networks with every ReLU replaced by softplus(BETA x) / BETA (e.g. softplus:10)")
    p.add_argument("--k", type=int, default=4, help="eigenpairs at each end (default: %(default)s)")
    p.add_argument("--solver", default="lanczos", choices=("lanczos", "lobpcg", "full"),
                   help="lanczos (scipy eigsh), lobpcg, or full (forms the Hessian; small inputs) "
                        "(default: %(default)s)")
    p.add_argument("--verify", action="store_true", help="also form the full Hessian and record the solver's "
                   "largest eigenvalue error (small inputs)")
    p.add_argument("--radius", type=finite_float, default=0.1, help="the paths' largest |t| as a fraction of the "
                   "point's L2 norm (default: %(default)s)")
    p.add_argument("--points", type=int, default=5, help="odd number of points on each path (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    p.set_defaults(func=cmd_invariance)
