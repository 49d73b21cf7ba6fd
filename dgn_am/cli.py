"""The `dgn-am` command line: argument parsing and file output only; the work happens in the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from dgn_am.errors import (ArgumentParser, ItemsFailed, UsageError, bounded_int, finite_float, non_finite_in, report,
                           strict_dumps, strict_loads)
from dgn_am.models.spec import InputSpec
from dgn_am.manifest import kept_rows, manifest_row, run_signature
from dgn_am.outdir import OutputFolder, check_name, file_part


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="fmnist-caffenet",
                   help="shipped name (fmnist-caffenet, fmnist-resnet, fmnist-caffenet-s1), torchvision:NAME, "
                        "or package.module:factory (default: %(default)s)")
    p.add_argument("--weights", default=None, help="weights file (.safetensors or torch.save state_dict), "
                   "or 'random' for random initialization; shipped models default to checkpoints/")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")


def check_device(name: str) -> torch.device:
    """torch.device(name), or a UsageError when it is malformed or not present on this machine."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} asked for, but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif device.type not in ("cpu", "mps") or (device.type == "mps" and not torch.backends.mps.is_available()):
        raise UsageError(f"--device {name} is not available here; use cpu" +
                         (" or cuda" if torch.cuda.is_available() else ""))
    return device


def _load(args) -> torch.nn.Module:
    from dgn_am.models.loading import load_model

    check_device(args.device)
    if str(args.weights) == "random":
        torch.manual_seed(0)  # --weights random: the same network in every run and every command, not the RNG's
    return load_model(args.model, args.weights, device=args.device)


def _file_stem(unit, seed: int, method: str) -> str:
    where = ""
    if isinstance(unit.spatial, tuple):
        where = f"_at{unit.spatial[0]}-{unit.spatial[1]}"
    elif unit.spatial == "mean" and unit.layer:
        where = "_mean"
    return f"{file_part(unit.layer.replace('.', '-'))}_u{unit.index}{where}_s{seed}_{method}"


def _output_layer(model, layer: str) -> bool:
    """True when `layer` produces the model's final output (so a softmax probability means something)."""
    from dgn_am.layers import list_layers

    layers = list_layers(model)
    return bool(layers) and layers[-1][0] == layer


def _start_from_image(method, path: str, model, prior):
    """Start every item from a real image: its code under the prior's encoder, or its pixels. A method with
    image_start (the reference: script 3) squashes the image to the encoder's input without a crop and runs its
    (steps, lr) instead of its own."""
    import dataclasses

    from dgn_am.imageio import load_image

    if method.parameterization == "code":
        from dgn_am.priors import encode

        config = prior.generator.config
        spec = InputSpec((config.size,) * 2, config.channels, (0.0,) * config.channels, (1.0,) * config.channels)
        image = load_image(path, spec, fit="squash" if method.image_start else "crop")
        if method.image_start:
            steps, lr = method.image_start
            method = dataclasses.replace(method, steps=steps,
                                         step_rule=dataclasses.replace(method.step_rule, lr=lr))
        return dataclasses.replace(method, init="codes", options=method.options + (("init_codes", encode(prior, image)[0]),))
    if method.parameterization == "pixels":
        image = load_image(path, model.input_spec)[0]
        return dataclasses.replace(method, init="image", options=method.options + (("init_image", image),))
    if method.parameterization == "fourier":  # the image's spectrum plus the method's init_std noise
        image = load_image(path, model.input_spec)[0]
        return dataclasses.replace(method, init="mean-image", options=method.options + (("mean_image", image),))
    raise UsageError(f"--init-image is not supported by the {method.parameterization} parameterization")


_PIECES = (("penalty", "penalties"), ("operator", "operators"), ("transform", "transforms"))


def _base_method(args):
    """The method named by --method, or read from --config FILE.json (a Method.settings() dict)."""
    from dgn_am.components import method_from_dict
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

    from dgn_am.components import parse_component, parse_step_rule

    changes: dict = {}
    for kind, field in _PIECES:
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


MAX_IMAGES = 100_000  # (unit, seed) pairs in one run: more is a typo, not an experiment
MAX_STEPS = 1_000_000
MAX_BATCH = 65_536
MAX_SEED = 2**63 - 1  # seeds seed torch.Generator, which takes 64-bit integers


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


def cmd_synthesize(args) -> int:
    from dgn_am.imageio import atomic_write, make_grid, read_image, save_image, save_labelled_grid
    from dgn_am.layers import check_units, units_of
    from dgn_am.methods import synthesize
    from tqdm import tqdm

    _check_counts(args)
    if args.name is not None:
        check_name(args.name)
    method = _base_method(args)
    model = _load(args)
    method = _compose(method, args, model)
    units = units_of(model, args.units)
    bounded_int(len(units) * args.seeds, "the number of images (units x --seeds)", 1, MAX_IMAGES)
    check_units(model, units)  # every error is raised before anything is written
    repeated = sorted(a for a, n in Counter(str(u) for u in units).items() if n > 1)
    if repeated:
        raise UsageError(f"--units names {', '.join(repeated)} more than once; give each unit once")
    prior = None
    if method.parameterization == "code":
        from dgn_am.priors import load_prior

        prior = load_prior(args.prior, device=args.device)
    if args.init_image:
        method = _start_from_image(method, args.init_image, model, prior)
    method = method.with_overrides(steps=args.steps, lr=args.lr)
    _check_method(method)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    files = {(str(u), s): f"{_file_stem(u, s, method.name)}.png" for u in units for s in seeds}
    if len(set(files.values())) < len(files):  # layer names that differ only in characters a file name cannot hold
        raise UsageError("two units would be written to the same file name; address them in separate runs")
    signature = run_signature(args, method.name, method.rescaled(model.input_spec.size).settings())
    torch.manual_seed(0)  # nothing should draw from the global RNG; this makes sure a stray draw repeats
    chunk = max(1, args.batch_size // len(seeds)) if args.batch_size else len(units)
    started = time.perf_counter()
    with OutputFolder(args.out, overwrite=args.overwrite, resume=args.resume) as folder:
        kept = kept_rows(folder.previous, files, signature, Path(args.out), folder.path)
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
                    if failed is None and _output_layer(model, unit.layer):
                        prob = float(torch.softmax(logits[row].flatten(), 0)[unit.index])
                    record = manifest_row(args, method, result, row, unit, seed, prob, files[key], failed)
                    if failed is None:
                        save_image(result.images[row], folder.file(files[key]))
                        cells[key] = result.images[row].cpu()
                    rows[key] = record
        order = [(str(u), s) for u in units for s in seeds]
        blank = torch.ones_like(next(iter(cells.values()))) if cells else None
        if blank is not None:
            grid = make_grid(torch.stack([cells.get(k, blank) for k in order]), rows=len(units))
            names = getattr(model, "class_names", None)
            labels = [f"{u} {names[u.index]}" if names and u.index < len(names) and _output_layer(model, u.layer)
                      else str(u) for u in units]
            save_labelled_grid(grid, labels, folder.file("grid.png"), rows=len(units),
                               scale=max(1, 112 // max(model.input_spec.size)))
        lines = "".join(strict_dumps(rows[k]) + "\n" for k in order)
        atomic_write(folder.file("manifest.jsonl"), lambda tmp: Path(tmp).write_text(lines))
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
              f"(mean activation {sum(done) / max(1, len(done)):.3f}, {time.perf_counter() - started:.1f}s)")
    return 0


def cmd_layers(args) -> int:
    from dgn_am.layers import POST_RELU, list_layers, relu_readings

    model = _load(args)
    spec = model.input_spec
    readings = relu_readings(model)
    print(f"# {args.model}: input (B, {spec.channels}, {spec.size[0]}, {spec.size[1]}) in [0, 1]")
    print(f"# reading: what NAME:UNIT reads. 'before ReLU X' = the input of its last ReLU, as Caffe's in-place "
          f"ReLUs; NAME{POST_RELU}:UNIT reads after it")
    for name, kind, shape in list_layers(model):
        if args.all or "." not in name:
            reading = f"before ReLU {readings[name]}" if name in readings else "output"
            print(f"{name:<28} {kind:<20} {str(tuple(shape)):<16} {reading}")
    return 0


def cmd_methods(args) -> int:
    from dgn_am.methods import METHODS

    for name, m in sorted(METHODS.items()):
        print(f"{name:<22} {m.parameterization:<8} {m.steps:>5} steps  {m.description}")
    return 0


def cmd_evaluate(args) -> int:
    from dgn_am.data import load_fashion_mnist

    model = _load(args)
    x, y = load_fashion_mnist("test", args.data_dir)
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(x), 1000):
            correct += int((model(x[lo: lo + 1000].to(args.device)).argmax(1).cpu() == y[lo: lo + 1000]).sum())
    print(json.dumps({"model": args.model, "test_images": len(x), "top1": correct / len(x)}))
    return 0


def cmd_code_stats(args) -> int:
    from tqdm import tqdm

    from dgn_am.priors import restat

    if args.k <= 0:
        raise UsageError(f"--k must be > 0, got {args.k}")
    bounded_int(args.bank, "--bank", 0, MAX_IMAGES)
    bounded_int(args.seed, "--seed", 0, MAX_SEED)

    if args.image_folder:
        from dgn_am.data import image_folder
        from dgn_am.imageio import load_image
        from dgn_am.priors import load_prior

        config = load_prior(args.prior).generator.config
        spec = InputSpec((config.size,) * 2, config.channels, (0.0,) * config.channels, (1.0,) * config.channels)
        images = torch.cat([load_image(p, spec) for p in image_folder(args.image_folder)[0]])
    else:
        from dgn_am.data import load_fashion_mnist

        images = load_fashion_mnist("train", args.data_dir)[0][:-5000]  # the training split the prior used
    command = "dgn-am code-stats " + " ".join(sys.argv[2:] if args.command_line is None else args.command_line)
    with tqdm(total=len(images), desc="code statistics", unit="img", disable=args.quiet) as bar:
        prior = restat(args.prior, images, args.out or args.prior, args.k, not args.signed, args.bank, args.seed,
                       command, bar.update)
    print(json.dumps({"prior": str(args.out or args.prior), "images": len(images), "k": args.k,
                      "upper_mean": float(prior.upper.mean()), "bank": 0 if prior.bank is None else len(prior.bank)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="dgn-am", description="Synthesize the preferred inputs of neurons. Errors in the "
                            "input exit with status 2, unexpected errors with 1; add --debug anywhere on the command "
                            "line for a traceback.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthesize", help="optimize images that maximize units",
                       description="Optimize preferred inputs for every (unit, seed) pair and write PNGs, "
                                   "grid.png (one row per unit) and manifest.jsonl to --out.")
    _add_model_args(p)
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
    g.add_argument("--penalty", action="append", metavar="NAME:k=v,...",
                   help="subtracted from the objective: l2:weight=, alpha:weight=,alpha=,scale=,mean=, "
                        "tv:weight=,beta=,scale=,mean=")
    g.add_argument("--operator", action="append", metavar="NAME:k=v,...",
                   help="applied to p after each step: decay:rate=, blur:width=,every=, normclip:pct=, "
                        "contribclip:pct=,exact=, centrebias:start=,until=")
    g.add_argument("--transform", action="append", metavar="NAME:k=v,...",
                   help="random image transforms: pad:pixels=,mode=,value=, jitter:pixels=, scale:low=,high=, "
                        "rotate:degrees=")
    g.add_argument("--step-rule", default=None, metavar="KIND:k=v,...",
                   help="sgd:lr=, momentum:lr=,momentum=, adam:lr=, normalized:lr=, progress:lr=,lr_max= "
                        "(lr_end= for a linear decay)")
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
    p.add_argument("--batch-size", type=int, default=0, help="max images per batch (0: all at once)")
    p.add_argument("--out", required=True, help="output folder; written in a temporary folder beside it and "
                   "renamed into place when complete")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--resume", action="store_true", help="keep the images already in --out's manifest and compute "
                   "only the missing (or failed) ones; the flags must match the run that made it")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("layers", help="list a model's layers and output shapes")
    _add_model_args(p)
    p.add_argument("--all", action="store_true", help="include nested modules (names with dots)")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("methods", help="list the named methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("code-stats", help="recompute a prior's code statistics, bounds and code bank",
                       description="Run the prior's own encoder over a dataset; store per-unit mean and std, the "
                                   "bounds [0, mean + k std] and a bank of real codes in the prior file.")
    p.add_argument("--prior", required=True, help="prior file (or shipped name) to read")
    p.add_argument("--out", default=None, help="write here (default: overwrite --prior, atomically)")
    p.add_argument("--k", type=finite_float, default=3.0, help="upper bound = mean + k * std (default: %(default)s)")
    p.add_argument("--signed", action="store_true", help="lower bound mean - k std instead of 0 (non-ReLU codes)")
    p.add_argument("--bank", type=int, default=256, help="real codes to store for init 'bank' (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="which training images form the bank")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.add_argument("--image-folder", default=None, help="ROOT/CLASS/IMAGE files instead of Fashion-MNIST")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_code_stats, command_line=None)

    p = sub.add_parser("evaluate", help="top-1 accuracy of a model on the Fashion-MNIST test set")
    _add_model_args(p)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.set_defaults(func=cmd_evaluate)

    sub.add_parser("train-classifier", help="train a target classifier (see: dgn-am train-classifier --help)",
                   add_help=False)
    sub.add_parser("train-prior", help="train a generator prior (see: dgn-am train-prior --help)", add_help=False)
    from dgn_am.explain.cli import add_commands; add_commands(sub)
    from dgn_am.evaluation.cli import add_commands as add_benchmark; add_benchmark(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input, 1 unexpected error or failed items, 130 Ctrl-C).
    `--debug` anywhere on the line prints the traceback of an error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    prog = "dgn-am" + (f" {argv[0]}" if argv and not argv[0].startswith("-") else "")
    try:
        if argv and argv[0] == "train-classifier":
            from training.classifier import main as train_classifier

            train_classifier(argv[1:])
            return 0
        if argv and argv[0] == "train-prior":
            from training.train_prior import main as train_prior

            train_prior(argv[1:])
            return 0
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # --help, or a parser of the training side that exits by itself
        return e.code if isinstance(e.code, int) else (0 if e.code is None else _print_exit(e.code, prog))
    except BaseException as e:  # noqa: BLE001 - every error leaves through one path
        return report(e, prog, debug)


def _print_exit(message: object, prog: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
