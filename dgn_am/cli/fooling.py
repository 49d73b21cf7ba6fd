"""`dgn-am fool`: fooling images (Nguyen, Yosinski & Clune 2015) for output units, by gradient or by evolution, and
how an independent classifier reads them. Argument parsing and file output only; the work is in `dgn_am.fooling`."""

from __future__ import annotations


import torch

from dgn_am.cli.common import DATA_DIR_HELP, MAX_IMAGES, MAX_SEED, MAX_STEPS, add_model_args, load_target, unit_stem
from dgn_am.errors import UsageError, bounded_int, finite_float
from dgn_am.imageio import make_grid, save_image, save_labelled_grid, view_scale, write_json, write_text


def _check(args) -> None:
    from dgn_am.outdir import OutputFolder

    bounded_int(args.seeds, "--seeds", 1, MAX_IMAGES)
    bounded_int(args.first_seed, "--first-seed", 0, MAX_SEED - args.seeds)
    bounded_int(args.steps, "--steps", 1, MAX_STEPS)
    bounded_int(args.generations, "--generations", 1, MAX_STEPS)
    bounded_int(args.reference, "--reference", 0, 10_000)
    if args.popsize is not None:
        bounded_int(args.popsize, "--popsize", 2, 100_000)
    if not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.search == "gradient" and args.encoding != "direct":
        raise UsageError("--search gradient optimizes directly encoded pixels; use --encoding direct, or "
                         "--search evolution for --encoding cppn")
    OutputFolder(args.out, overwrite=args.overwrite, manifest=None).precheck()


def _classes(model, addresses: list[str]) -> list:
    """The units named by --units, which must be in the model's output layer (a class each)."""
    from dgn_am.fooling import output_layer
    from dgn_am.layers import check_units, units_of

    units = units_of(model, addresses)
    check_units(model, units)
    last = output_layer(model)
    wrong = [str(u) for u in units if u.layer != last]
    if wrong:
        raise UsageError(f"fooling images target classes: {', '.join(wrong)} are not in the output layer '{last}'; "
                         f"use e.g. {last}:0-9")
    return units


def _search(args, model, classes: list[int], seeds: list[int]):
    from tqdm import tqdm

    from dgn_am.fooling import fool_evolution, fool_gradient

    if args.search == "gradient":
        with tqdm(total=args.steps, desc="fool (gradient)", unit="step", disable=args.quiet) as bar:
            return fool_gradient(model, classes, seeds, args.steps, args.lr,
                                 progress=lambda i, n, s: bar.update(1))
    with tqdm(desc=f"fool (evolution, {args.encoding})", unit="image", disable=args.quiet) as bar:
        return fool_evolution(model, classes, seeds, args.encoding, args.generations, args.popsize, args.sigma,
                              args.threshold, progress=bar.update)


def _real_reference(args, target, judge, classes: list[int]) -> dict | None:
    """The same table on --reference real test images of each class: how both networks read real images."""
    from dgn_am.data import load_fashion_mnist
    from dgn_am.fooling import fooling_table, summarize

    if not args.reference:
        return None
    x, y = load_fashion_mnist("test", args.data_dir)
    picks = [int(i) for c in dict.fromkeys(classes) for i in (y == c).nonzero().flatten()[: args.reference]]
    if not picks:
        return None
    rows = fooling_table(target, judge, x[picks], [int(y[i]) for i in picks], args.threshold)
    return summarize(rows)


def _table(rows: list[dict], names) -> str:
    """The rows as a Markdown table."""
    head = ("| class | seed | target conf | fooled | judge's top class | judge agrees | judge conf |\n"
            "|---|---|---|---|---|---|---|\n")

    def name(c: int) -> str:
        return f"{c} {names[c]}" if names and c < len(names) else str(c)

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    return head + "".join(f"| {name(r['class'])} | {r['seed']} | {r['target_conf']:.4f} | {yes(r['fooled'])} | "
                          f"{name(r['judge_class'])} | {yes(r['judge_agrees'])} | {r['judge_conf']:.4f} |\n"
                          for r in rows)


def cmd_fool(args) -> int:
    import argparse

    from dgn_am.fooling import fooling_table, summarize
    from dgn_am.outdir import OutputFolder

    _check(args)
    model = load_target(args)
    units = _classes(model, args.units)
    judge = load_target(argparse.Namespace(model=args.judge, weights=args.judge_weights, device=args.device))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    torch.manual_seed(0)  # nothing should draw from the global RNG; this makes a stray draw repeat
    fooled = _search(args, model, [u.index for u in units], seeds)
    rows = fooling_table(model, judge, fooled.images, fooled.classes, args.threshold)
    scale = view_scale(model.input_spec.size)
    with OutputFolder(args.out, overwrite=args.overwrite, manifest=None) as folder:
        for row, unit, seed, image, cost in zip(rows, [u for u in units for _ in seeds], fooled.seeds,
                                                fooled.images, fooled.cost):
            row.update(seed=seed, cost=cost, path=f"{unit_stem(unit)}_s{seed}_fool.png")
            save_image(image, folder.file(row["path"]), scale=scale)
        names = getattr(model, "class_names", None)
        grid = make_grid(fooled.images.cpu().view(len(units), len(seeds), *fooled.images.shape[1:])
                         .transpose(0, 1).reshape(-1, *fooled.images.shape[1:]), rows=len(seeds))
        save_labelled_grid(grid, [f"seed {s}" for s in seeds], folder.file("grid.png"), rows=len(seeds), scale=scale)
        record = {"settings": {**fooled.settings, "model": args.model, "weights": args.weights, "judge": args.judge,
                               "judge_weights": args.judge_weights, "units": [str(u) for u in units], "seeds": seeds,
                               "threshold": args.threshold, "device": args.device},
                  "summary": summarize(rows), "real_reference": _real_reference(args, model, judge, fooled.classes),
                  "images": rows}
        write_json(folder.file("fooling.json"), record)
        write_text(folder.file("table.md"), _table(rows, names))
    if not args.quiet:
        s = record["summary"]
        print(f"wrote {len(rows)} fooling images to {args.out}: {s['fooled']:.0%} fool {args.model} (mean confidence "
              f"{s['target_conf']:.4f}); {args.judge} agrees on {s['judge_agrees']:.0%} (mean confidence "
              f"{s['judge_conf']:.4f})")
    return 0


def add_commands(sub) -> None:
    """Add `fool` to the dgn-am subcommands."""
    p = sub.add_parser("fool", help="fooling images: unrecognizable images a network is sure about",
                       description="Make images the target puts in each class with >= --threshold confidence "
                                   "(Nguyen et al. 2015) by gradient ascent on pixels or by CMA-ES over pixels or "
                                   "a CPPN, then read them with an independent --judge.")
    add_model_args(p)
    p.add_argument("--units", nargs="+", default=["fc8:0-9"], help="output units, one per class (default: "
                   "%(default)s)")
    p.add_argument("--search", choices=("gradient", "evolution"), default="gradient", help="(default: %(default)s)")
    p.add_argument("--encoding", choices=("direct", "cppn"), default="direct",
                   help="direct: the pixels themselves; cppn: a CPPN's weights (evolution only) (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=1, help="images per class (default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1 (default: %(default)s)")
    p.add_argument("--threshold", type=finite_float, default=0.996, help="confidence that counts as fooled; "
                   "evolution stops there (default: %(default)s)")
    p.add_argument("--steps", type=int, default=200, help="gradient: Adam steps (default: %(default)s)")
    p.add_argument("--lr", type=finite_float, default=0.01, help="gradient: Adam step size (default: %(default)s)")
    p.add_argument("--generations", type=int, default=200, help="evolution: most generations per image "
                   "(default: %(default)s)")
    p.add_argument("--popsize", type=int, default=None, help="evolution: population (default: cma's 4 + 3 ln D)")
    p.add_argument("--sigma", type=finite_float, default=None, help="evolution: first step size (default: 0.25 "
                   "direct, 1.0 cppn)")
    p.add_argument("--judge", default="fmnist-resnet", help="independent classifier (default: %(default)s)")
    p.add_argument("--judge-weights", default=None, help="weights for --judge (default: its shipped ones)")
    p.add_argument("--reference", type=int, default=100, help="real test images per class read by both networks "
                   "for comparison, 0 for none (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", required=True, help="output folder (written beside it, renamed into place at the end)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_fool)
