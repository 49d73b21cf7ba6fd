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
from dgn_am.shards import Group, PartFolder, Ranks, link_into, thread_count
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
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
        if prior is not None:
            prior.generator.to(memory_format=torch.channels_last)
    if args.init_image:
        method = start_from_image(method, args.init_image, model, prior)
    method = method.with_overrides(steps=args.steps, lr=args.lr)
    _check_method(method)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    return model, method, units, seeds, prior


def _chunk_size(args, model, method, units, seeds, prior) -> int:
    """Units per chunk: --batch-size items (at least one unit), and within --max-memory (dgn_am.memory)."""
    size = max(1, args.batch_size // len(seeds)) if args.batch_size else len(units)
    if args.max_memory is not None:
        from dgn_am.memory import chunk_units, estimate, parse_size

        budget = parse_size(args.max_memory)
        size = min(size, chunk_units(budget, estimate(model, units[0], seeds[0], method, prior), len(seeds)))
    return size


def _open_run(args, folder, part, files, signature) -> dict:
    """Rank 0, before any work: lock and open --out, clear or keep the part folder of a killed run, and return the
    rows --resume keeps ({(address, seed): row}, from --out's manifest and the part folder's journals)."""
    folder.open()
    try:
        kept = kept_rows(folder.previous, files, signature, Path(args.out), folder.path)
        if part.exists() and args.overwrite:
            part.remove()
        elif part.exists() and not args.resume:
            raise UsageError(f"a killed run left {len(part.rows())} finished items in {part.path}; pass --resume to "
                             "keep them and compute the rest, or --overwrite to start again")
        elif part.exists():
            kept.update(kept_rows(part.rows(), files, signature, Path(args.out), part.path))
        part.create()
    except BaseException:
        folder.discard()
        raise
    return kept


def _run_chunks(args, model, method, chunks: list, seeds, prior, files, kept, part, rank: int, world: int) -> None:
    """Synthesize this rank's chunks, saving each image to the part folder and its row to this rank's journal as
    soon as its chunk is done (a chunk's kept items are computed with it, for the same results, but not saved)."""
    from tqdm import tqdm

    from dgn_am.imageio import save_image
    from dgn_am.methods import synthesize

    with tqdm(total=method.steps * len(chunks), desc=f"{method.name}", unit="step",
              disable=args.quiet or rank > 0) as bar:
        for n, units in enumerate(chunks, 1):
            bar.set_description(f"{method.name} chunk {n}/{len(chunks)}" + (f" of rank 0/{world}" if world > 1 else ""))
            with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16,
                                enabled=args.precision == "bf16"):
                result, items = synthesize(model, units, seeds, method, prior=prior,
                                           progress=lambda i, k, s: (bar.update(1),
                                                                     bar.set_postfix(act=f"{s.nanmean():.2f}")))
            with torch.no_grad():
                logits = model(result.images)
            rows = []
            for row, (unit, seed) in enumerate(items):
                key = (str(unit), seed)
                if key in kept:
                    continue
                failed = result.failed[row] if result.failed else None
                prob = None
                if failed is None and output_layer(model, unit.layer):
                    prob = float(torch.softmax(logits[row].flatten(), 0)[unit.index])
                rows.append(manifest_row(args, method, result, row, unit, seed, prob, files[key], failed))
                if failed is None:
                    save_image(result.images[row], part.file(files[key]))
            part.append(rank, rows)


def _merge(folder, part, kept: dict, order: list) -> tuple[dict, dict]:
    """Rank 0, once every rank is done: bring the part folder's PNGs into --out's temporary folder. Returns (manifest
    rows, images (C, H, W)), both keyed by (address, seed); a finished row wins over a failed one."""
    from dgn_am.imageio import read_image

    rows = dict(kept)
    for row in part.rows():
        key = (row["settings"]["address"], row["seed"])
        if row["failed"] is None and part.file(row["path"]).is_file():
            link_into(part.file(row["path"]), folder.file(row["path"]))
            rows[key] = row
        elif key not in rows:
            rows[key] = row
    missing = [k for k in order if k not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} items have no row after every rank finished (first: {missing[0]})")
    cells = {k: read_image(folder.file(rows[k]["path"])) for k in order if rows[k]["failed"] is None}
    return rows, cells


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

    ranks = Ranks.from_env()
    torch.set_num_threads(thread_count(args.threads, ranks.local_world))
    model, method, units, seeds, prior = _prepare(args)
    files = {(str(u), s): f"{unit_stem(u)}_s{s}_{method.name}.png" for u in units for s in seeds}
    if len(set(files.values())) < len(files):  # layer names that differ only in characters a file name cannot hold
        raise UsageError("two units would be written to the same file name; address them in separate runs")
    signature = run_signature(args, method.name, method.rescaled(model.input_spec.size).settings())
    started = time.perf_counter()
    order = [(str(u), s) for u in units for s in seeds]
    folder, part = OutputFolder(args.out, overwrite=args.overwrite, resume=args.resume), PartFolder(args.out)
    with Group(ranks) as group:
        size = group.from_rank0(lambda: _chunk_size(args, model, method, units, seeds, prior))
        kept = group.from_rank0(lambda: _open_run(args, folder, part, files, signature))
        chunks = [units[lo: lo + size] for lo in range(0, len(units), size)]  # the same in every run: same results
        todo = [c for c in chunks if any((str(u), s) not in kept for u in c for s in seeds)]
        if ranks.rank == 0 and 0 < len(todo) < ranks.world:
            print(f"warning: {len(todo)} chunks for {ranks.world} processes, so some have nothing to do; a smaller "
                  "--batch-size or --max-memory makes more chunks", file=sys.stderr)
        torch.manual_seed(0)  # nothing should draw from the global RNG; this makes sure a stray draw repeats
        try:
            _run_chunks(args, model, method, ranks.take(todo), seeds, prior, files, kept, part, ranks.rank,
                        ranks.world)
            group.barrier()
            if ranks.rank == 0:
                rows, cells = _merge(folder, part, kept, order)
                _write_grid(model, units, order, cells, folder)
                lines = "".join(strict_dumps(rows[k]) + "\n" for k in order)
                atomic_write(folder.file("manifest.jsonl"), lambda tmp: Path(tmp).write_text(lines))
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
    g.add_argument("--name", default=None, help="name of the composed method in file names and the manifest")
    p.add_argument("--steps", type=int, default=None, help="override the method's number of steps")
    p.add_argument("--lr", type=finite_float, default=None, help="override the method's first step size (for "
                   "dgn-am, in the reference's CaffeNet fc6 code units, scaled to the prior like its default 8)")
    p.add_argument("--init-image", default=None, help="start from this image: its code under the prior's encoder "
                   "for dgn-am methods (dgn-am itself: squashed to the encoder's input, 30 steps from lr 1, as the "
                   "reference's script 3), its pixels for pixel methods")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for code methods (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=0, help="max images per batch (0: all at once); a batch holds "
                   "whole units, each with all its seeds")
    p.add_argument("--max-memory", default=None, metavar="SIZE", help="cut the batches to fit this memory, e.g. 2GB "
                   "or 512MiB (estimated from one probe step; the Python and torch runtime are not counted)")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32", help="bf16: run the networks "
                   "under bfloat16 autocast, about 2x faster on a CPU with bf16 support but not the same images as "
                   "float32 (docs/speed.md; default: %(default)s)")
    p.add_argument("--channels-last", action="store_true", help="run the networks in channels_last memory format: "
                   "faster on a CPU here, and the same arithmetic in another order, so not bit-identical images "
                   "(docs/speed.md)")
    p.add_argument("--threads", default=None, metavar="N|auto", help="torch threads per process (default: "
                   "OMP_NUM_THREADS if set, else 'auto': the cores divided by the processes on this machine)")
    p.add_argument("--out", required=True, help="output folder; written in a temporary folder beside it and "
                   "renamed into place when complete")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--resume", action="store_true", help="keep the images already in --out's manifest, or left by a "
                   "killed run in .OUT.partial beside it, and compute only the missing (or failed) ones; the flags "
                   "must match the run that made them")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_synthesize)
