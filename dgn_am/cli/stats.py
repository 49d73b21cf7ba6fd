"""`dgn-am code-stats` (a prior's code statistics, bounds and bank), `dgn-am evaluate` (a target's accuracy) and
`dgn-am spectrum` (the mean magnitude spectrum MACO keeps fixed)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from dgn_am.cli.common import DATA_DIR_HELP, MAX_IMAGES, MAX_SEED, add_model_args, load_target
from dgn_am.errors import UsageError, bounded_int, finite_float
from dgn_am.models.spec import InputSpec


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print {"model", "test_images", "top1"} as JSON: top-1 accuracy on the Fashion-MNIST test set."""
    from dgn_am.data import load_fashion_mnist

    model = load_target(args)
    x, y = load_fashion_mnist("test", args.data_dir)
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(x), 1000):
            correct += int((model(x[lo: lo + 1000].to(args.device)).argmax(1).cpu() == y[lo: lo + 1000]).sum())
    print(json.dumps({"model": args.model, "test_images": len(x), "top1": correct / len(x)}))
    return 0


def _stats_images(args: argparse.Namespace) -> torch.Tensor:
    """The images the statistics are taken over, (N, C, H, W) in [0, 1]: --image-folder fitted to the prior's
    encoder input, or the Fashion-MNIST training split the prior was trained on."""
    if args.image_folder:
        from dgn_am.data import image_folder
        from dgn_am.imageio import load_image
        from dgn_am.priors import load_prior

        config = load_prior(args.prior).generator.config
        spec = InputSpec((config.size,) * 2, config.channels, (0.0,) * config.channels, (1.0,) * config.channels)
        return torch.cat([load_image(p, spec) for p in image_folder(args.image_folder)[0]])
    from dgn_am.data import VALIDATION_SIZE, load_fashion_mnist

    return load_fashion_mnist("train", args.data_dir)[0][:-VALIDATION_SIZE]  # the training split the prior used


def cmd_code_stats(args: argparse.Namespace) -> int:
    """Recompute the prior's code statistics and write the prior; prints a JSON summary."""
    from tqdm import tqdm

    from dgn_am.priors import restat

    if args.k <= 0:
        raise UsageError(f"--k must be > 0, got {args.k}")
    bounded_int(args.bank, "--bank", 0, MAX_IMAGES)
    bounded_int(args.seed, "--seed", 0, MAX_SEED)
    images = _stats_images(args)
    command = "dgn-am code-stats " + " ".join(sys.argv[2:] if args.command_line is None else args.command_line)
    with tqdm(total=len(images), desc="code statistics", unit="img", disable=args.quiet) as bar:
        prior = restat(args.prior, images, args.out or args.prior, args.k, not args.signed, args.bank, args.seed,
                       command, bar.update)
    print(json.dumps({"prior": str(args.out or args.prior), "images": len(images), "k": args.k,
                      "upper_mean": float(prior.upper.mean()), "bank": 0 if prior.bank is None else len(prior.bank)}))
    return 0


def cmd_spectrum(args: argparse.Namespace) -> int:
    """Write the MACO spectrum (mean magnitude spectrum and pixel statistics) of --image-folder (images fitted to
    --size and --channels) or of the Fashion-MNIST training split; prints a JSON summary."""
    from dgn_am.parameterizations import mean_spectrum, save_spectrum

    if args.image_folder:
        from dgn_am.data import image_folder
        from dgn_am.imageio import load_image

        bounded_int(args.size, "--size", 2, 4096)
        if args.size % 2 or args.channels not in (1, 3):
            raise UsageError(f"--size must be even and --channels 1 or 3, got {args.size} and {args.channels}")
        spec = InputSpec((args.size,) * 2, args.channels, (0.0,) * args.channels, (1.0,) * args.channels)
        images = torch.cat([load_image(p, spec) for p in image_folder(args.image_folder)[0]])
        data = f"image folder {args.image_folder} ({args.size}x{args.size}, {args.channels} channel(s))"
    else:
        from dgn_am.data import VALIDATION_SIZE, load_fashion_mnist

        images = load_fashion_mnist("train", args.data_dir)[0][:-VALIDATION_SIZE]
        data = f"fashion-mnist train split (first {len(images)} training images)"
    command = "dgn-am spectrum " + " ".join(sys.argv[2:] if args.command_line is None else args.command_line)
    spectrum = mean_spectrum(images, source={"data": data, "command": command})
    save_spectrum(spectrum, args.out)
    print(json.dumps({"spectrum": str(args.out), "images": len(images), "shape": list(spectrum.shape),
                      "pixel_mean": spectrum.pixel_mean.tolist(), "pixel_std": spectrum.pixel_std.tolist()}))
    return 0


def add_commands(sub) -> None:
    """Add `code-stats`, `evaluate` and `spectrum` to the dgn-am subcommands."""
    p = sub.add_parser("code-stats", help="recompute a prior's code statistics, bounds and code bank",
                       description="Run the prior's own encoder over a dataset; store per-unit mean and std, the "
                                   "bounds [0, mean + k std] and a bank of real codes in the prior file.")
    p.add_argument("--prior", required=True, help="prior file (or shipped name) to read")
    p.add_argument("--out", default=None, help="write here (default: overwrite --prior, atomically)")
    p.add_argument("--k", type=finite_float, default=3.0, help="upper bound = mean + k * std (default: %(default)s)")
    p.add_argument("--signed", action="store_true", help="lower bound mean - k std instead of 0 (non-ReLU codes)")
    p.add_argument("--bank", type=int, default=256, help="real codes to store for init 'bank' (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="which training images form the bank")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--image-folder", default=None, help="ROOT/CLASS/IMAGE files instead of Fashion-MNIST")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_code_stats, command_line=None)

    p = sub.add_parser("evaluate", help="top-1 accuracy of a model on the Fashion-MNIST test set")
    add_model_args(p)
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("spectrum", help="the mean magnitude spectrum of real images, for --method maco",
                       description="Average |rfft2| of real images per channel and frequency, with their pixel mean "
                                   "and std, into a .safetensors file that `synthesize --method maco --spectrum FILE` "
                                   "keeps fixed. Default: the Fashion-MNIST training split (the shipped 'fmnist').")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--image-folder", default=None, help="ROOT/CLASS/IMAGE files instead of Fashion-MNIST")
    p.add_argument("--size", type=int, default=28, help="image side the folder's images are fitted to (even)")
    p.add_argument("--channels", type=int, default=1, help="1 (grey) or 3 (RGB) (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.set_defaults(func=cmd_spectrum, command_line=None)
