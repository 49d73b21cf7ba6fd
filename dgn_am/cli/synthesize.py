"""`dgn-am synthesize`: compose a method from the flags, run it over every (unit, seed) pair, and write the PNGs,
grid.png and manifest.jsonl. Argument parsing and file output only; the work happens in `dgn_am.methods`."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import torch

from dgn_am.cli.common import (MAX_BATCH, MAX_IMAGES, MAX_SEED, MAX_STEPS, add_model_args, load_target, output_layer,
                               unit_stem)
from dgn_am.components import (COMPONENTS, FIELD, ROLE, method_from_dict, parse_component, parse_step_rule,
                               usage)
from dgn_am.errors import (ItemsFailed, UsageError, bounded_int, finite_float, non_finite_in, strict_dumps,
                           strict_loads)
from dgn_am.manifest import kept_rows, manifest_row, run_signature
from dgn_am.outdir import OutputFolder, check_name
from dgn_am.parameterizations import start_from_image
from dgn_am.steps import usage as step_usage


def _base_method(args):
    """The method named by --method, or read from --config FILE.json (a Method.settings() dict)."""
    from dgn_am.methods import get_method

    if args.config is None:
        return get_method(args.method or "simonyan")
    if args.method is not None:
        raise UsageError("give either --method NAME or --config FILE.json, not both")
    path = Path(args.config)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    data = strict_loads(path.read_text(), f"config {path}")
    if isinstance(data, dict) and isinstance(data.get("method"), dict):
        data = data["method"]  # a manifest row's "settings" object
    return method_from_dict(data)


def _compose(method, args, model):
    """Apply the composition flags. The base method is first rescaled to the model's input size, so the flags'
    pixel values are in the model's own pixels; a --penalty/--operator/--transform list replaces that kind."""
    import dataclasses


    changes: dict = {}
    for kind, field in FIELD.items():
        specs = getattr(args, kind)
        if specs:
            changes[field] = () if specs == ["none"] else tuple(parse_component(kind, s) for s in specs)
    if args.step_rule:
        changes["step_rule"] = parse_step_rule(args.step_rule)
    if args.parameterization:
        changes["parameterization"] = args.parameterization
    if args.init:
        changes["init"] = args.init
    if args.init_std is not None:
        changes["init_std"] = args.init_std
    if args.samples is not None:
        if args.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {args.samples}")
        changes["samples"] = args.samples
    if args.spectrum:
        if method.parameterization != "maco":
            raise UsageError(f"--spectrum is for the maco parameterization; {method.name} uses {method.parameterization}")
        changes["options"] = tuple(o for o in method.options if o[0] != "spectrum") + (("spectrum", args.spectrum),)
    if args.mean_image:
        changes["options"] = tuple(o for o in method.options if o[0] != "mean_image") + (("mean_image", args.mean_image),)
    if not changes and not args.name:
        return method
    method = method.rescaled(model.input_spec.size)
    return dataclasses.replace(method, **changes, reference_size=None,
                               name=args.name or (f"{method.name}-custom" if changes else method.name))



def _check_counts(args) -> None:
    """Seeds, steps and batch size within bounds, before anything is built from them."""
    bounded_int(args.seeds, "--seeds", 1, MAX_IMAGES)
    if args.steps is not None:
        bounded_int(args.steps, "--steps", 1, MAX_STEPS)
    bounded_int(args.first_seed, "--first-seed", 0, MAX_SEED - args.seeds + 1)
    if not 0 <= args.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be between 0 (all at once) and {MAX_BATCH}, got {args.batch_size}")


def _check_method(method) -> None:
    """The composed method has a safe name and only finite numbers (lr, init_std, penalty weights, ...)."""
    check_name(method.name, "method name (--name, or \"name\" in --config)")
    bad = non_finite_in(method.settings())
    if bad:
        raise UsageError(f"method setting {bad} is not a finite number; give a finite value")


def _prepare(args) -> tuple:
    """Check every flag, load the model (and the prior of a code method) and compose the method, so that every
    error is raised before anything is written. Returns (model, method, units, seeds, prior)."""
    from dgn_am.layers import check_units, units_of

    _check_counts(args)
    if args.name is not None:
        check_name(args.name)
    method = _base_method(args)
    model = load_target(args)
    method = _compose(method, args, model)
    units = units_of(model, args.units)
    bounded_int(len(units) * args.seeds, "the number of images (units x --seeds)", 1, MAX_IMAGES)
    check_units(model, units)
    repeated = sorted(a for a, n in Counter(str(u) for u in units).items() if n > 1)
    if repeated:
        raise UsageError(f"--units names {', '.join(repeated)} more than once; give each unit once")
    prior = None
    if method.parameterization == "code":
        from dgn_am.priors import load_prior

        prior = load_prior(args.prior, device=args.device)
    if args.init_image:
        method = start_from_image(method, args.init_image, model, prior)
    elif method.init == "seed-image":
        from dgn_am.accentuation import NEEDS_IMAGE

        raise UsageError(f"method {method.name} {NEEDS_IMAGE}")
    method = method.with_overrides(steps=args.steps, lr=args.lr)
    _check_method(method)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    return model, method, units, seeds, prior


def _run_chunks(args, model, method, units, seeds, prior, files, kept, folder) -> tuple[dict, dict]:
    """Synthesize every chunk of units that still has a missing item, saving each image as it is made.
    Returns (manifest rows, images (C, H, W) on the CPU), both keyed by (unit address, seed), kept ones included."""
    from tqdm import tqdm

    from dgn_am.imageio import read_image, save_image
    from dgn_am.methods import synthesize

    chunk = max(1, args.batch_size // len(seeds)) if args.batch_size else len(units)
    todo = [lo for lo in range(0, len(units), chunk)  # the same chunks as a run from scratch: same results
            if any((str(u), s) not in kept for u in units[lo: lo + chunk] for s in seeds)]
    rows, cells = dict(kept), {k: read_image(folder.file(r["path"])) for k, r in kept.items()}
    with tqdm(total=method.steps * len(todo), desc=f"{method.name}", unit="step", disable=args.quiet) as bar:
        for lo in todo:
            result, items = synthesize(model, units[lo: lo + chunk], seeds, method, prior=prior,
                                       progress=lambda i, n, s: (bar.update(1),
                                                                 bar.set_postfix(act=f"{s.nanmean():.2f}")))
            with torch.no_grad():
                logits = model(result.images)
            for row, (unit, seed) in enumerate(items):
                key = (str(unit), seed)
                if key in kept:
                    continue
                failed = result.failed[row] if result.failed else None
                prob = None
                if failed is None and output_layer(model, unit.layer):
                    prob = float(torch.softmax(logits[row].flatten(), 0)[unit.index])
                record = manifest_row(args, method, result, row, unit, seed, prob, files[key], failed)
                if failed is None:
                    save_image(result.images[row], folder.file(files[key]))
                    cells[key] = result.images[row].cpu()
                    record.update(_save_extras(method, result, row, files[key], folder))
                rows[key] = record
    return rows, cells


def _save_extras(method, result, row: int, name: str, folder) -> dict:
    """Beside an item's PNG: MACO's transparency map (`*_transparency.png`, grey, 1 = the most gradient) and an
    accentuation's seed | accentuation | difference panel (`*_panel.png`). Returns their manifest entries."""
    from dgn_am.accentuation import panel, seed_images
    from dgn_am.imageio import save_image

    out = {}
    stem = name[: -len(".png")]
    if "transparency" in result.extras:
        out["transparency"] = f"{stem}_transparency.png"
        save_image(result.extras["transparency"][row], folder.file(out["transparency"]))
    if "keep_weight" in dict(method.options):
        out["panel"] = f"{stem}_panel.png"
        seed = seed_images(method, len(result.images))[row]
        save_image(panel(seed, result.images[row].cpu()), folder.file(out["panel"]), scale=2)
    return out


def _write_grid(model, units, order: list, cells: dict, folder) -> None:
    """grid.png: one row per unit, one column per seed, labelled with the unit (and class name); failed items
    are left blank."""
    from dgn_am.imageio import make_grid, save_labelled_grid

    if not cells:
        return
    blank = torch.ones_like(next(iter(cells.values())))
    grid = make_grid(torch.stack([cells.get(k, blank) for k in order]), rows=len(units))
    names = getattr(model, "class_names", None)
    labels = [f"{u} {names[u.index]}" if names and u.index < len(names) and output_layer(model, u.layer)
              else str(u) for u in units]
    save_labelled_grid(grid, labels, folder.file("grid.png"), rows=len(units),
                       scale=max(1, 112 // max(model.input_spec.size)))


def _write_extra_grids(units, order: list, rows: dict, folder) -> None:
    """transparency.png (MACO) and panels.png (accentuation): the items' extra images in grid.png's layout, one row
    per unit (failed items blank)."""
    from dgn_am.imageio import make_grid, read_image, save_labelled_grid

    for key, grid_name in (("transparency", "transparency.png"), ("panel", "panels.png")):
        files = {k: rows[k].get(key) for k in order}
        if not any(files.values()):
            continue
        cells = {k: read_image(folder.file(f)) for k, f in files.items() if f}
        blank = torch.ones_like(next(iter(cells.values())))
        grid = make_grid(torch.stack([cells.get(k, blank) for k in order]), rows=len(units))
        save_labelled_grid(grid, [str(u) for u in units], folder.file(grid_name), rows=len(units),
                           scale=max(1, 112 // max(blank.shape[-2:])))


def _report_outcome(args, rows: dict, kept: dict, seconds: float) -> None:
    """Warn about dead starts, raise ItemsFailed for failed items, else print the summary line."""
    dead = sum(bool(r.get("dead_start")) for r in rows.values())
    if dead:
        print(f"warning: {dead} of {len(rows)} items were dead starts (objective and gradient both 0 at the start, "
              "flagged dead_start in the manifest): nothing moved them, so their images are not preferred inputs. "
              "Try reading the unit before its ReLU (drop '+relu'), other seeds (--first-seed), or a method that "
              "starts from real images (--method dgn-am-class)", file=sys.stderr)
    failures = [f"{r['settings']['address']} seed {r['seed']}: {r['failed']}" for r in rows.values() if r["failed"]]
    if failures:
        raise ItemsFailed(f"{len(failures)} of {len(rows)} items failed ({'; '.join(failures[:3])}"
                          f"{'; ...' if len(failures) > 3 else ''}); the rest are in {args.out}, the failed ones "
                          "are marked in manifest.jsonl and left blank in grid.png (--resume retries them)")
    if not args.quiet:
        done = [r["activation"] for k, r in rows.items() if k not in kept]
        note = f" ({len(kept)} kept)" if kept else ""
        print(f"wrote {len(done)} images{note}, grid.png and manifest.jsonl to {args.out} "
              f"(mean activation {sum(done) / max(1, len(done)):.3f}, {seconds:.1f}s)")


def cmd_synthesize(args) -> int:
    from dgn_am.imageio import atomic_write

    model, method, units, seeds, prior = _prepare(args)
    files = {(str(u), s): f"{unit_stem(u)}_s{s}_{method.name}.png" for u in units for s in seeds}
    if len(set(files.values())) < len(files):  # layer names that differ only in characters a file name cannot hold
        raise UsageError("two units would be written to the same file name; address them in separate runs")
    signature = run_signature(args, method.name, method.rescaled(model.input_spec.size).settings())
    torch.manual_seed(0)  # nothing should draw from the global RNG; this makes sure a stray draw repeats
    started = time.perf_counter()
    order = [(str(u), s) for u in units for s in seeds]
    with OutputFolder(args.out, overwrite=args.overwrite, resume=args.resume) as folder:
        kept = kept_rows(folder.previous, files, signature, Path(args.out), folder.path)
        rows, cells = _run_chunks(args, model, method, units, seeds, prior, files, kept, folder)
        _write_grid(model, units, order, cells, folder)
        _write_extra_grids(units, order, rows, folder)
        lines = "".join(strict_dumps(rows[k]) + "\n" for k in order)
        atomic_write(folder.file("manifest.jsonl"), lambda tmp: Path(tmp).write_text(lines))
    _report_outcome(args, rows, kept, time.perf_counter() - started)
    return 0


def add_commands(sub) -> None:
    """Add `synthesize` to the dgn-am subcommands."""
    p = sub.add_parser("synthesize", help="optimize images that maximize units",
                       description="Optimize preferred inputs for every (unit, seed) pair and write PNGs, "
                                   "grid.png (one row per unit) and manifest.jsonl to --out.")
    add_model_args(p)
    p.add_argument("--units", nargs="+", default=["fc8:0-9"],
                   help="unit addresses: fc8:3, fc8:0-9, fc8:1,5,7, conv5:12, conv5:12@mean, conv5:12@3,4 "
                        "(default: %(default)s)")
    p.add_argument("--seeds", type=int, default=4, help="number of seeds per unit (default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1 (default: %(default)s)")
    p.add_argument("--method", default=None, help="a method name (default: simonyan); `dgn-am methods` lists them")
    p.add_argument("--config", default=None, metavar="FILE.json",
                   help="a method as JSON: Method.settings() fields, e.g. a manifest row's settings.method "
                        "(docs/baselines.md); instead of --method")
    g = p.add_argument_group("composition", "change the method's pieces; values are in the model's pixels. "
                             "A repeated flag builds a list that REPLACES the method's list of that kind "
                             "('none' empties it). See docs/baselines.md")
    for kind in COMPONENTS:
        g.add_argument(f"--{kind}", action="append", metavar="NAME:k=v,...", help=f"{ROLE[kind]}: {usage(kind)}")
    g.add_argument("--step-rule", default=None, metavar="KIND:k=v,...",
                   help=step_usage())
    g.add_argument("--parameterization", default=None, help="pixels, fourier or code")
    g.add_argument("--init", default=None, help="start: zeros, randn, mean-image (pixels, fourier), ...")
    g.add_argument("--init-std", type=finite_float, default=None, help="std of the random start")
    g.add_argument("--samples", type=int, default=None,
                   help="transformed copies of each image scored per step, their mean maximized (needs transforms)")
    g.add_argument("--mean-image", default=None, metavar="FILE",
                   help="image file for init mean-image (default: the Fashion-MNIST mean for Fashion-MNIST models, "
                        "else the flat normalization mean)")
    g.add_argument("--spectrum", default=None, metavar="FILE",
                   help="maco: the magnitude spectrum to keep fixed, a file from `dgn-am spectrum` (default: the "
                        "shipped Fashion-MNIST one)")
    g.add_argument("--name", default=None, help="name of the composed method in file names and the manifest")
    p.add_argument("--steps", type=int, default=None, help="override the method's number of steps")
    p.add_argument("--lr", type=finite_float, default=None, help="override the method's first step size (for "
                   "dgn-am, in the reference's CaffeNet fc6 code units, scaled to the prior like its default 8)")
    p.add_argument("--init-image", default=None, help="start from this image: its code under the prior's encoder "
                   "for dgn-am methods (dgn-am itself: squashed to the encoder's input, 30 steps from lr 1, as the "
                   "reference's script 3), its pixels for pixel methods, the seed image of --method accentuation")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for code methods (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=0, help="max images per batch (0: all at once)")
    p.add_argument("--out", required=True, help="output folder; written in a temporary folder beside it and "
                   "renamed into place when complete")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--resume", action="store_true", help="keep the images already in --out's manifest and compute "
                   "only the missing (or failed) ones; the flags must match the run that made it")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_synthesize)
