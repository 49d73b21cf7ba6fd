"""`dgn-am synthesize`: compose a method from the flags, run it over every (unit, seed) pair, and write the PNGs,
grid.png and manifest.jsonl. Argument parsing and file output only; the work happens in `dgn_am.methods`."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from dgn_am.cli.chunks import chunk_size, merge_parts, open_run, run_chunks, write_extra_grids
from dgn_am.cli.common import (MAX_BATCH, MAX_IMAGES, MAX_SEED, MAX_STEPS, add_model_args, load_target, output_layer,
                               unit_stem)
from dgn_am.components import (COMPONENTS, FIELD, ROLE, method_from_dict, parse_component, parse_step_rule,
                               usage)
from dgn_am.errors import ItemsFailed, UsageError, bounded_int, finite_float, non_finite_in, strict_loads
from dgn_am.manifest import run_signature
from dgn_am.objective_expr import ObjectiveTarget, frame_weights, parse_objective
from dgn_am.operators import Share
from dgn_am.outdir import OutputFolder, check_name
from dgn_am.parameterizations import start_from_image
from dgn_am.shards import Group, PartFolder, Ranks, thread_count
from dgn_am.steps import usage as step_usage
from dgn_am.imageio import make_grid, save_labelled_grid, view_scale, write_jsonl


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
    if args.objective and _relative(args.objective):
        changes["objective"] = args.objective
    if args.interpolate and args.share:
        changes["operators"] = changes.get("operators", method.operators) + (Share(weight=args.share),)
    if args.spectrum:
        if method.parameterization != "maco":
            raise UsageError(f"--spectrum is for the maco parameterization; {method.name} uses {method.parameterization}")
        options = changes.get("options", method.options)
        changes["options"] = tuple(o for o in options if o[0] != "spectrum") + (("spectrum", args.spectrum),)
    if args.mean_image:
        options = changes.get("options", method.options)
        changes["options"] = tuple(o for o in options if o[0] != "mean_image") + (("mean_image", args.mean_image),)
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


def _relative(text: str) -> bool:
    """True for an expression that is added to the units (begins with + or -); parses it, so errors come first."""
    return parse_objective(text).relative


def _targets(args, model) -> list:
    """The rows' targets: the --units (default fc8:0-9), the --objective expression, or the --interpolate frames."""
    from dgn_am.layers import units_of

    if args.objective and args.interpolate:
        raise UsageError("give either --objective EXPR or --interpolate A B, not both")
    if args.frames != 8 and not args.interpolate:
        raise UsageError("--frames is the number of --interpolate frames; give --interpolate A B too")
    full = args.interpolate or (args.objective and not _relative(args.objective))
    if full and args.units is not None:
        raise UsageError("--objective/--interpolate replace --units; drop --units, or begin the --objective with + "
                         "to add it to each unit's objective (--objective '+ 0.1 * diversity:conv3')")
    if args.interpolate:
        a, b = args.interpolate
        for text in (a, b):
            if _relative(text):
                raise UsageError(f"--interpolate objective '{text}' begins with + or -; give whole expressions")
        bounded_int(args.frames, "--frames", 2, MAX_IMAGES)
        return [ObjectiveTarget(a, b, t) for t in frame_weights(args.frames)]
    if full:
        return [ObjectiveTarget(args.objective)]
    return units_of(model, args.units or ["fc8:0-9"])


def _check_targets(model, units: list, extra: str) -> None:
    """Units in range and each named once; every objective term checked against the model (layers, files)."""
    from dgn_am.layers import Unit, check_units
    from dgn_am.objective_expr import objective_for

    check_units(model, [u for u in units if isinstance(u, Unit)])
    repeated = sorted(a for a, n in Counter(str(u) for u in units).items() if n > 1)
    if repeated:
        raise UsageError(f"--units names {', '.join(repeated)} more than once; give each unit once")
    objective_for(model, units, extra)


def _prepare(args) -> tuple:
    """Check every flag, load the model (and the prior of a code method) and compose the method, so that every
    error is raised before anything is written. Returns (model, method, targets, seeds, prior): targets are Units or
    ObjectiveTargets."""
    _check_counts(args)
    if args.name is not None:
        check_name(args.name)
    method = _base_method(args)
    model = load_target(args)
    method = _compose(method, args, model)
    if method.objective and not args.objective and not _relative(method.objective):
        # a --config whose objective replaces the units: run it as the one target, as --objective would
        args.objective, method = method.objective, dataclasses.replace(method, objective="")
    units = _targets(args, model)
    bounded_int(len(units) * args.seeds, "the number of images (units x --seeds)", 1, MAX_IMAGES)
    _check_targets(model, units, method.objective)
    prior = None
    if method.parameterization == "code":
        from dgn_am.priors import load_prior

        prior = load_prior(args.prior, device=args.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
        if prior is not None:
            prior.generator.to(memory_format=torch.channels_last)
    if args.init_image:
        method = start_from_image(method, args.init_image, model, prior)
    elif method.init == "seed-image":
        from dgn_am.accentuation import NEEDS_IMAGE

        raise UsageError(f"method {method.name} {NEEDS_IMAGE}")
    method = method.with_overrides(steps=args.steps, lr=args.lr)
    _check_method(method)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    return model, method, units, seeds, prior


def _write_grid(model, units, order: list, cells: dict, folder, by_seed: bool = False) -> None:
    """grid.png: one row per unit (or expression), one column per seed, labelled with the unit (and class name);
    by_seed (an interpolation): one row per seed, one column per frame. Failed items are left blank."""
    if not cells:
        return
    blank = torch.ones_like(next(iter(cells.values())))
    names = getattr(model, "class_names", None)
    if by_seed:
        seeds = list(dict.fromkeys(s for _, s in order))
        order = [(str(u), s) for s in seeds for u in units]
        labels = [f"seed {s}" for s in seeds]
    else:
        labels = [f"{u} {names[u.index]}" if names and u.layer and u.index < len(names)
                  and output_layer(model, u.layer) else str(u) for u in units]
    grid = make_grid(torch.stack([cells.get(k, blank) for k in order]), rows=len(labels))
    save_labelled_grid(grid, labels, folder.file("grid.png"), rows=len(labels),
                       scale=view_scale(model.input_spec.size))


def _file_names(units: list, seeds: list, method_name: str) -> dict:
    """{(address, seed): PNG name}: fc8_u3_s0_NAME.png for units, objective_s0_NAME.png for an expression,
    frame03_s0_NAME.png for the frames of an interpolation."""
    def stem(i: int, u) -> str:
        if not isinstance(u, ObjectiveTarget):
            return unit_stem(u)
        return "objective" if u.to is None else f"frame{i:02d}"

    return {(str(u), s): f"{stem(i, u)}_s{s}_{method_name}.png" for i, u in enumerate(units) for s in seeds}


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

    ranks = Ranks.from_env()
    torch.set_num_threads(thread_count(args.threads, ranks.local_world))
    model, method, units, seeds, prior = _prepare(args)
    files = _file_names(units, seeds, method.name)
    if len(set(files.values())) < len(files):  # layer names that differ only in characters a file name cannot hold
        raise UsageError("two units would be written to the same file name; address them in separate runs")
    signature = run_signature(args, method.name, method.rescaled(model.input_spec.size).settings())
    started = time.perf_counter()
    order = [(str(u), s) for u in units for s in seeds]
    folder, part = OutputFolder(args.out, overwrite=args.overwrite, resume=args.resume), PartFolder(args.out)
    with Group(ranks) as group:
        size = group.from_rank0(lambda: chunk_size(args, model, method, units, seeds, prior))
        kept = group.from_rank0(lambda: open_run(args, folder, part, files, signature))
        chunks = [units[lo: lo + size] for lo in range(0, len(units), size)]  # the same in every run: same results
        todo = [c for c in chunks if any((str(u), s) not in kept for u in c for s in seeds)]
        if ranks.rank == 0 and 0 < len(todo) < ranks.world:
            print(f"warning: {len(todo)} chunks for {ranks.world} processes, so some have nothing to do; a smaller "
                  "--batch-size or --max-memory makes more chunks", file=sys.stderr)
        torch.manual_seed(0)  # nothing should draw from the global RNG; this makes sure a stray draw repeats
        try:
            run_chunks(args, model, method, ranks.take(todo), seeds, prior, files, kept, part, ranks.rank,
                        ranks.world)
            group.barrier()
            if ranks.rank == 0:
                rows, cells = merge_parts(folder, part, kept, order)
                _write_grid(model, units, order, cells, folder, by_seed=bool(args.interpolate))
                write_extra_grids(units, order, rows, folder)
                write_jsonl(folder.file("manifest.jsonl"), [rows[k] for k in order])
                folder.commit()
                part.remove()
        except BaseException as e:
            if ranks.rank == 0:
                folder.discard()
                if not part.rows():
                    part.remove()  # nothing finished: leave nothing behind
                else:
                    e.add_note(f"the finished items wait in {part.path}: the same command with --resume continues")
            raise
    if ranks.rank == 0:
        _report_outcome(args, rows, kept, time.perf_counter() - started)
    return 0


def _add_target_args(p) -> None:
    """--units, --objective, --interpolate and their --frames and --share: what the images maximize."""
    p.add_argument("--units", nargs="+", default=None,
                   help="unit addresses: fc8:3, fc8:0-9, fc8:1,5,7, conv5:12, conv5:12@mean, conv5:12@3,4 "
                        "(default: fc8:0-9)")
    p.add_argument("--objective", default=None, metavar="EXPR",
                   help="maximize an expression instead of units: 'fc8:3 - 0.5 * fc8:5', 'conv5:12@mean', "
                        "'layer:conv4', 'logprob:fc8:3', 'direction:fc6=dir.npy', 'diversity:conv3'; one that "
                        "begins with + or - is added to each --units objective ('+ 0.1 * diversity:conv3')")
    p.add_argument("--interpolate", nargs=2, default=None, metavar=("A", "B"),
                   help="a row of --frames images per seed moving from objective A to objective B; every frame "
                        "of a row starts from the seed's start and shares its path (--share)")
    p.add_argument("--frames", type=int, default=8, help="frames of --interpolate (default: %(default)s)")
    p.add_argument("--share", type=finite_float, default=0.02,
                   help="--interpolate: after each step, move each frame this fraction of the way to the mean of "
                        "its row (Olah's shared parameterization; 0: frames only share their start; default: "
                        "%(default)s)")


def add_commands(sub) -> None:
    """Add `synthesize` to the dgn-am subcommands."""
    p = sub.add_parser("synthesize", help="optimize images that maximize units",
                       description="Optimize preferred inputs for every (unit, seed) pair and write PNGs, "
                                   "grid.png (one row per unit) and manifest.jsonl to --out.")
    add_model_args(p)
    _add_target_args(p)
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
    _add_scale_args(p)
    p.add_argument("--out", required=True, help="output folder; written in a temporary folder beside it and "
                   "renamed into place when complete")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--resume", action="store_true", help="keep the images already in --out's manifest, or left by a "
                   "killed run in .OUT.partial beside it, and compute only the missing (or failed) ones; the flags "
                   "must match the run that made them")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_synthesize)


def _add_scale_args(p) -> None:
    """How the work runs: batches, memory, precision, memory format, threads (README, "Thousands of units")."""
    p.add_argument("--batch-size", type=int, default=0, help="max images per batch (0: all at once); a batch holds "
                   "whole units, each with all its seeds")
    p.add_argument("--max-memory", default=None, metavar="SIZE", help="cut the batches to fit this memory, e.g. 2GB "
                   "or 512MiB (estimated from one probe step; the Python and torch runtime are not counted)")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32", help="bf16: run the networks "
                   "under bfloat16 autocast, faster on a CPU with bf16 support but not the same images as "
                   "float32 (docs/speed.md; default: %(default)s)")
    p.add_argument("--channels-last", action="store_true", help="run the networks in channels_last memory format: "
                   "faster on a CPU here, and the same arithmetic in another order, so not bit-identical images "
                   "(docs/speed.md)")
    p.add_argument("--threads", default=None, metavar="N|auto", help="torch threads per process (default: "
                   "OMP_NUM_THREADS if set, else 'auto': the cores divided by the processes on this machine)")
