"""What every `dgn-am` command shares: the model arguments, device check, model loading, bounds on counts, and the
helpers that name and write output files. The command modules import from here and never from each other."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dgn_am.errors import UsageError
from dgn_am.outdir import file_part
from dgn_am.imageio import atomic_write, view_scale

MAX_IMAGES = 100_000  # (unit, seed) pairs in one run: more is a typo, not an experiment
MAX_STEPS = 1_000_000
MAX_BATCH = 65_536
MAX_SEED = 2**63 - 1  # seeds seed torch.Generator, which takes 64-bit integers

DATA_DIR_HELP = "Fashion-MNIST folder (default: the Debian package's)"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --weights and --device, as every command that loads a target model takes them."""
    p.add_argument("--model", default="fmnist-caffenet",
                   help="shipped name (fmnist-caffenet, fmnist-resnet, fmnist-caffenet-s1), a model file "
                        "FILE.safetensors (from train-classifier or import-caffe), torchvision:NAME, "
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


def load_target(args: argparse.Namespace) -> torch.nn.Module:
    """The target model named by --model/--weights, on --device, frozen and in eval mode."""
    from dgn_am.models.loading import load_model

    check_device(args.device)
    if str(args.weights) == "random":
        torch.manual_seed(0)  # --weights random: the same network in every run and every command, not the RNG's
    return load_model(args.model, args.weights, device=args.device)


def unit_stem(unit) -> str:
    """The file-name part for a unit: `fc8_u3`, `conv5_u12_at3-4` (position 3, 4), `conv5_u12_mean` (@mean)."""
    where = ""
    if isinstance(unit.spatial, tuple):
        where = f"_at{unit.spatial[0]}-{unit.spatial[1]}"
    elif unit.spatial == "mean":
        where = "_mean"
    return f"{file_part(unit.layer.replace('.', '-'))}_u{unit.index}{where}"


def png_scale(args: argparse.Namespace, size: tuple[int, int]) -> int:
    """--scale, or the factor that enlarges an image of `size` (H, W) to at least 112 pixels."""
    if args.scale is not None and args.scale < 1:
        raise ValueError(f"--scale must be >= 1, got {args.scale}")
    return args.scale or view_scale(size)


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure as PNG, written atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def save_npy(array: np.ndarray, path: Path) -> None:
    """An array as .npy, written atomically."""
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def output_layer(model, layer: str) -> bool:
    """True when `layer` produces the model's final output (so a softmax probability means something)."""
    from dgn_am.layers import list_layers

    layers = list_layers(model)
    return bool(layers) and layers[-1][0] == layer
