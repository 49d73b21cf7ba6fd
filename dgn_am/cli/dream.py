"""`dgn-am dream`: DeepDream on image files (dgn_am.dream). Argument parsing and file output only."""

from __future__ import annotations

from pathlib import Path

import torch

from dgn_am.cli.common import add_model_args, load_target
from dgn_am.errors import UsageError, finite_float
from dgn_am.outdir import OutputFolder, file_part
from dgn_am.imageio import load_image, make_grid, save_image, save_labelled_grid, view_scale, write_json


def _objective(args, model) -> str:
    """The expression to raise: --layer L (the mean square of L's output, after its ReLU), --unit, or --objective."""
    from dgn_am.layers import output_reading

    given = [f for f in ("layer", "unit", "objective") if getattr(args, f)]
    if len(given) != 1:
        raise UsageError("give exactly one of --layer LAYER, --unit ADDRESS or --objective EXPR")
    if args.layer:
        return f"layer:{output_reading(model, args.layer)}"
    return args.unit or args.objective


def cmd_dream(args) -> int:
    from dgn_am.dream import DreamConfig, dream
    from dgn_am.objective_expr import parse_objective

    if args.objective:
        parse_objective(args.objective)
    config = DreamConfig(octaves=args.octaves, octave_scale=args.octave_scale, steps=args.steps, lr=args.lr,
                         jitter=args.jitter, parameterization=args.parameterization)
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()
    model = load_target(args)
    objective = _objective(args, model)
    if args.unit and len(parse_objective(objective).terms) != 1:
        raise UsageError(f"--unit takes one unit address such as conv4:12@mean, got '{args.unit}'")
    for p in args.image:
        if not Path(p).is_file():
            raise UsageError(f"--image {p} not found")
    stems = [file_part(Path(p).stem) for p in args.image]
    if len(set(stems)) < len(stems):
        raise UsageError("two --image files share a name; give images with different file names")
    prior = None
    if config.parameterization == "prior":
        from dgn_am.priors import load_prior

        prior = load_prior(args.prior, device=args.device)
    images = torch.cat([load_image(p, model.input_spec) for p in args.image]).to(args.device)
    from tqdm import tqdm

    with tqdm(total=config.steps * config.octaves, desc=f"dream {objective}", unit="step", disable=args.quiet) as bar:
        result = dream(model, images, objective, config, prior=prior, seed=args.seed,
                       progress=lambda i, n, s: bar.update(1))
    scale = view_scale(model.input_spec.size)
    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        for i, stem in enumerate(stems):
            save_image(result.images[i].cpu(), folder.file(f"{stem}_dream.png"), scale=scale)
        cells = torch.stack([t for i in range(len(images)) for t in (images[i], result.images[i])]).cpu()
        save_labelled_grid(make_grid(cells, rows=len(images)), stems, folder.file("grid.png"), rows=len(images),
                           scale=scale)
        report = {"model": args.model, "weights": args.weights, "prior": args.prior if prior else None,
                  **result.settings, "images": [
                      {"image": str(p), "path": f"{s}_dream.png", "objective_before": float(b),
                       "objective_after": float(a)}
                      for p, s, b, a in zip(args.image, stems, result.before, result.after)]}
        write_json(folder.file("dream.json"), report)
    if not args.quiet:
        print(f"dreamed {len(stems)} images on {objective}: objective {float(result.before.mean()):.3f} -> "
              f"{float(result.after.mean()):.3f}; wrote grid.png and dream.json to {args.out}")
    return 0


def add_commands(sub) -> None:
    """Add `dream` to the dgn-am subcommands."""
    p = sub.add_parser("dream", help="DeepDream: amplify what a layer or unit sees in an image",
                       description="DeepDream (Mordvintsev et al. 2015): raise the mean square of a layer's output "
                                   "(or a unit, or any objective expression) starting from real images, octave by "
                                   "octave with jitter (pixels), or on the generator prior's code from the image's "
                                   "encoding (prior). Writes one PNG per image, grid.png (input, dream) and dream.json.")
    add_model_args(p)
    p.add_argument("--image", nargs="+", required=True, help="image files; converted and resized to the model's input")
    p.add_argument("--layer", default=None, help="raise the L2 of this layer's output (after its ReLU), e.g. conv4")
    p.add_argument("--unit", default=None, help="raise one unit instead, e.g. conv4:12@mean or fc8:3")
    p.add_argument("--objective", default=None, metavar="EXPR", help="raise any objective expression (see "
                   "`dgn-am synthesize --help`), e.g. 'layer:conv4+relu + 0.5 * fc8:3'")
    p.add_argument("--parameterization", default="pixels", choices=("pixels", "prior"),
                   help="pixels (octaves of detail) or prior (the generator's code) (default: %(default)s)")
    p.add_argument("--octaves", type=int, default=3, help="image scales (default: %(default)s)")
    p.add_argument("--octave-scale", type=finite_float, default=1.4, help="side ratio between octaves "
                   "(default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="steps per octave (default: %(default)s)")
    p.add_argument("--lr", type=finite_float, default=0.01, help="mean |change| per pixel and step "
                   "(default: %(default)s)")
    p.add_argument("--jitter", type=int, default=1, help="random shift in pixels each step (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter (default: %(default)s)")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for --parameterization prior")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    p.set_defaults(func=cmd_dream)
