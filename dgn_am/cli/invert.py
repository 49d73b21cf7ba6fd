"""`dgn-am invert`: reconstruct images from their representation at one layer (dgn_am.inversion). Argument parsing
and file output only."""

from __future__ import annotations

from pathlib import Path

import torch

from dgn_am.cli.common import MAX_STEPS, add_model_args, load_target
from dgn_am.errors import UsageError, bounded_int
from dgn_am.outdir import OutputFolder, file_part
from dgn_am.imageio import load_image, make_grid, save_image, save_labelled_grid, view_scale, write_json


def _modes(args, prior) -> list[str]:
    """--mode, or every mode that applies: pixels, prior, and encoder where the layer is the prior's code layer."""
    if args.mode:
        return list(dict.fromkeys(args.mode))
    enc = prior.provenance.get("encoder", {}) if prior is not None else {}
    return ["pixels", "prior"] + (["encoder"] if args.layer == enc.get("layer") and args.model == enc.get("model")
                                  else [])


def _load(args, model) -> tuple[torch.Tensor, list[str]]:
    """The --image files as (N, C, H, W) in the model's input format, and a file stem for each."""
    stems = [file_part(Path(p).stem) for p in args.image]
    if len(set(stems)) < len(stems):
        raise UsageError("two --image files share a name; give images with different file names")
    for p in args.image:
        if not Path(p).is_file():
            raise UsageError(f"--image {p} not found")
    return torch.cat([load_image(p, model.input_spec) for p in args.image]).to(args.device), stems


def _run(args, model, images: torch.Tensor, modes: list[str], prior) -> dict:
    """{mode: Inversion}, with one progress bar over every optimization step."""
    from tqdm import tqdm

    from dgn_am.inversion import INVERSION_METHODS, invert

    optimized = [m for m in modes if m in INVERSION_METHODS]  # the encoder mode takes no steps
    steps = args.steps or sum(INVERSION_METHODS[m].steps for m in optimized)
    with tqdm(total=steps if not args.steps else steps * len(optimized), desc=f"invert {args.layer}", unit="step",
              disable=args.quiet) as bar:
        return {m: invert(model, images, args.layer, m, prior, steps=args.steps, seed=args.seed,
                          progress=lambda i, n, s: bar.update(1)) for m in modes}


def cmd_invert(args) -> int:
    from dgn_am.evaluation.inversion import ssim
    from dgn_am.inversion import MODES
    from dgn_am.layers import Unit, check_units
    from dgn_am.priors import load_prior

    if args.steps is not None:
        bounded_int(args.steps, "--steps", 1, MAX_STEPS)
    bad = [m for m in args.mode or [] if m not in MODES]
    if bad:
        raise UsageError(f"unknown --mode {', '.join(bad)}; use {', '.join(MODES)}")
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()
    model = load_target(args)
    check_units(model, [Unit(args.layer, 0, "mean")])  # an unknown layer fails here, before any work
    prior = load_prior(args.prior, device=args.device)
    modes = _modes(args, prior)
    images, stems = _load(args, model)
    runs = _run(args, model, images, modes, prior)
    with torch.no_grad():
        classes = {m: model(r.images).flatten(1).argmax(1).tolist() for m, r in runs.items()}
        original = model(images).flatten(1).argmax(1).tolist()
    rows = [{"image": str(args.image[i]), "predicted_class": original[i],
             "modes": {m: {"path": f"{stems[i]}_{m}.png", "feature_loss": float(r.loss[i]),
                           "mse": float((r.images[i] - images[i]).pow(2).mean()),
                           "ssim": float(ssim(r.images[i: i + 1], images[i: i + 1])[0]),
                           "predicted_class": classes[m][i]} for m, r in runs.items()}}
            for i in range(len(images))]
    scale = view_scale(model.input_spec.size)
    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        for i, stem in enumerate(stems):
            save_image(images[i].cpu(), folder.file(f"{stem}_original.png"), scale=scale)
            for m, r in runs.items():
                save_image(r.images[i].cpu(), folder.file(f"{stem}_{m}.png"), scale=scale)
        cells = torch.stack([t for i in range(len(images)) for t in [images[i], *(r.images[i] for r in runs.values())]])
        save_labelled_grid(make_grid(cells.cpu(), rows=len(images)), stems, folder.file("grid.png"),
                           rows=len(images), scale=scale)
        report = {"model": args.model, "weights": args.weights, "layer": args.layer, "prior": args.prior,
                  "columns": ["original", *modes], "settings": {m: r.settings for m, r in runs.items()},
                  "images": rows}
        write_json(folder.file("invert.json"), report)
    if not args.quiet:
        summary = ", ".join(f"{m} ssim {sum(r['modes'][m]['ssim'] for r in rows) / len(rows):.3f}" for m in modes)
        print(f"inverted {len(rows)} images from {args.layer}: {summary}; wrote grid.png and invert.json to {args.out}")
    return 0


def add_commands(sub) -> None:
    """Add `invert` to the dgn-am subcommands."""
    p = sub.add_parser("invert", help="reconstruct images from their representation at a layer",
                       description="Feature inversion: find an image whose features at --layer match those of "
                                   "--image. Modes: pixels (Mahendran & Vedaldi: alpha-norm + TV + jitter), prior "
                                   "(optimize the generator prior's code), encoder (the prior's encoder then its "
                                   "generator; the prior's code layer only). Writes one PNG per image and mode, "
                                   "grid.png (original, then each mode) and invert.json (feature loss, pixel MSE, "
                                   "SSIM, predicted class).")
    add_model_args(p)
    p.add_argument("--image", nargs="+", required=True, help="image files; converted and resized to the model's input")
    p.add_argument("--layer", required=True, help="layer whose representation is inverted, read as the module "
                   "outputs it (after its ReLU): conv3, conv5, fc6, fc7, fc8, ...")
    p.add_argument("--mode", nargs="+", default=None, metavar="MODE",
                   help="pixels, prior, encoder (default: pixels and prior, plus encoder at the prior's code layer)")
    p.add_argument("--steps", type=int, default=None, help="optimization steps (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter (default: %(default)s)")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    p.set_defaults(func=cmd_invert)
