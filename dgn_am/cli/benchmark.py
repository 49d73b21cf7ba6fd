"""`dgn-am benchmark`: argument parsing and file output for the benchmark harness."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dgn_am.cli.common import DATA_DIR_HELP, MAX_IMAGES, MAX_SEED, MAX_STEPS, add_model_args, check_device
from dgn_am.errors import bounded_int
from dgn_am.imageio import write_text


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[2], timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_outputs(results: dict, out: Path, command: str, commit: str) -> None:
    """results.json, results.csv, table.md, images.png, realism.png, diversity.png and transfer.png in out, each
    written atomically."""
    from dgn_am.evaluation.report import draw_figures, to_csv, to_json, to_markdown

    results["settings"]["command"] = command
    results["settings"]["commit"] = commit
    for name, text in (("results.json", to_json(results)), ("results.csv", to_csv(results)),
                       ("table.md", to_markdown(results, command, commit))):
        write_text(out / name, text)
    draw_figures(results, out)


def _output_units(args) -> bool:
    """True when every --units address is a unit of the target's output layer (the class benchmark)."""
    from dgn_am.layers import list_layers, units_of
    from dgn_am.models.loading import load_model

    model = load_model(args.model, args.weights)
    out_layer = list_layers(model)[-1][0]
    return all(u.layer == out_layer for u in units_of(model, args.units))


def cmd_hidden(args, folder) -> int:
    """The hidden-unit benchmark (units not of the output layer), written through `folder` (an OutputFolder)."""
    from tqdm import tqdm

    from dgn_am.evaluation.hidden import DEFAULT_METHODS, HiddenConfig, run_hidden_benchmark
    from dgn_am.evaluation.hidden_report import write_hidden

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else DEFAULT_METHODS
    evaluators = tuple(e.strip() for e in args.evaluators.split(",") if e.strip()) if args.evaluators else None
    config = HiddenConfig(model=args.model, weights=args.weights, units=tuple(args.units), methods=methods,
                          seeds=args.seeds, first_seed=args.first_seed, steps=args.steps,
                          **({"evaluators": evaluators} if evaluators else {}), prior=args.prior,
                          top_k=args.top_k, n_boot=args.n_boot, batch_size=args.batch_size,
                          data_dir=args.data_dir, device=args.device)
    with tqdm(total=len(set(methods)) + 2, desc="hidden-unit benchmark", unit="run", disable=args.quiet) as bar:
        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        results = run_hidden_benchmark(config, progress=progress)
    with folder:  # written in a temporary folder, renamed into place when complete
        write_hidden(results, folder.path, "dgn-am " + " ".join(_rebuild(args)), _commit())
    if not args.quiet:
        print(f"wrote results.json, table.md, exemplars_*.png to {args.out}")
    return 0


def cmd_benchmark(args) -> int:
    from tqdm import tqdm

    from dgn_am.evaluation.benchmark import DEFAULT_METHODS, BenchmarkConfig, run_benchmark

    from dgn_am.outdir import OutputFolder

    folder = OutputFolder(args.out, overwrite=args.overwrite, manifest=None, keep_others=True)
    folder.precheck()  # before the long run, and again under the lock when writing

    check_device(args.device)
    bounded_int(args.seeds, "--seeds", 1, MAX_IMAGES)
    bounded_int(args.first_seed, "--first-seed", 0, MAX_SEED - args.seeds + 1)
    bounded_int(args.steps, "--steps", 1, MAX_STEPS)
    if not _output_units(args):
        return cmd_hidden(args, folder)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else DEFAULT_METHODS
    evaluators = tuple(e.strip() for e in args.evaluators.split(",") if e.strip()) if args.evaluators else None
    config = BenchmarkConfig(model=args.model, weights=args.weights, units=" ".join(args.units), methods=methods,
                             seeds=args.seeds, first_seed=args.first_seed, steps=args.steps, evaluators=evaluators,
                             prior=args.prior, reference_per_class=args.reference, limit=args.limit,
                             control=not args.no_control, n_boot=args.n_boot, calibration=not args.no_calibration,
                             data_dir=args.data_dir, device=args.device)
    runs = len(set(methods) | {"real-images", "noise"}) + (0 if args.no_control else len(set(methods) - {"real-images", "noise"}))
    with tqdm(total=runs + (0 if args.no_calibration else 1), desc="benchmark", unit="run",
              disable=args.quiet) as bar:
        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        results = run_benchmark(config, progress=progress)
    command = "dgn-am " + " ".join(_rebuild(args))
    with folder:  # written in a temporary folder, renamed into place when complete
        write_outputs(results, folder.path, command, _commit())
        if args.wandb:
            _log_wandb(results, folder.path, quiet=args.quiet)
    out = Path(args.out)
    if not args.quiet:
        failed = [m for m, e in results["methods"].items() if e.get("error")]
        print(f"wrote results.json, results.csv, table.md and figures (images.png, realism.png, diversity.png, "
              f"transfer.png) to {out}" +
              (f"; failed methods: {', '.join(failed)}" if failed else ""))
    return 0


WANDB_COLUMNS = ("transfer_mean", "kid_early", "kid_penult", "fid_penult", "fid_early", "density", "precision",
                 "coverage", "diversity")


def _log_wandb(results: dict, out: Path, quiet: bool = False) -> Path:
    """Log the summary table to wandb, always offline (no account or network needed; upload later with
    `wandb sync`). Writes under out/wandb; returns the run's directory."""
    try:
        import wandb
    except ImportError:
        raise ValueError("--wandb needs the wandb package: pip install wandb (or drop --wandb)") from None
    run = wandb.init(project="dgn-am-benchmark", dir=str(out), config=results["settings"], mode="offline",
                     settings=wandb.Settings(silent=quiet))
    rows = [[m] + [(e.get("summary") or {}).get(k, {}).get("value") for k in WANDB_COLUMNS]
            for m, e in results["methods"].items()]
    run.log({"benchmark": wandb.Table(columns=["method", *WANDB_COLUMNS], data=rows)})
    run_dir = Path(run.dir).parent  # run.dir is the run's files/ folder
    run.finish()
    return run_dir


def add_commands(sub) -> None:
    """Add `benchmark` to the dgn-am subcommands."""
    from dgn_am.evaluation.benchmark import DEFAULT_METHODS
    from dgn_am.evaluation.hidden import DEFAULT_METHODS as HIDDEN_METHODS

    p = sub.add_parser("benchmark", help="compare visualization methods with calibrated, independent metrics",
                       description="Synthesize preferred inputs with every method under one budget, score them "
                                   "with independent evaluator networks, validate the metrics on calibration "
                                   "inputs, and write results.json, results.csv, table.md and figures to --out. "
                                   "Hidden units (not of the output layer) run the hidden-unit benchmark instead.")
    add_model_args(p)
    p.add_argument("--units", nargs="+", default=["fc8:0-9"],
                   help="class units of the output layer (the class benchmark), or any hidden units such as "
                        "conv5:0-63 fc6:0-63 (the hidden-unit benchmark) (default: %(default)s)")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods; real-images and noise (hidden units: top-images and noise) are "
                        f"always added (default: {','.join(DEFAULT_METHODS)}; hidden units: "
                        f"{','.join(HIDDEN_METHODS)})")
    p.add_argument("--seeds", type=int, default=8, help="seeds per unit (default: %(default)s)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+N-1 (default: %(default)s)")
    p.add_argument("--steps", type=int, default=200, help="optimization steps for every method (default: %(default)s)")
    p.add_argument("--evaluators", default=None, help="comma-separated judge networks, never the target, each "
                   "MODEL[=WEIGHTS][@PENULT/EARLY] (MODEL as for --model; layers default to the shipped ones or are "
                   "picked from the model) (default for fmnist-caffenet: fmnist-resnet,fmnist-caffenet-s1)")
    p.add_argument("--prior", default="fmnist-fc6", help="generator prior for code methods (default: %(default)s)")
    p.add_argument("--reference", type=int, default=200, help="real images per class for realism (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="normalize activations over the first N training "
                   "images instead of the test set")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=50, help="hidden units: real exemplars per unit for realism "
                   "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="hidden units: items optimized at once "
                   "(default: %(default)s)")
    p.add_argument("--no-control", action="store_true", help="skip the randomly initialized target control")
    p.add_argument("--no-calibration", action="store_true", help="skip the metric calibration")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--wandb", action="store_true", help="also log the table to wandb, offline (wandb sync later)")
    p.add_argument("--out", required=True, help="output folder (written in a temporary folder beside it, renamed "
                   "into place when complete)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out, replacing the files "
                   "this command writes and keeping the others (e.g. another benchmark in a subfolder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_benchmark)


def _rebuild(args) -> list[str]:
    """The command line, rebuilt from the parsed arguments (every setting explicit), for the table's label."""
    skip = {"func", "command", "quiet", "wandb", "overwrite"}
    out = ["benchmark"]
    for k, v in vars(args).items():
        if k in skip or v is None or v is False:
            continue
        out += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(x) for x in v] if isinstance(v, list)
                                               else [str(v)])
    return out
