"""Measure feature inversion on Fashion-MNIST test images: pixels vs the learned prior vs its encoder.

    python scripts/inversion.py --images 200 --offset 100 --steps 200 --out docs/inversion

Inverts fmnist-caffenet at conv3, conv5, fc6, fc7 and fc8 with every mode that applies, and scores the
reconstructions (pixel MSE, SSIM, fmnist-resnet's agreement with the true label). Writes report.json, report.md
(the table) and grid.png (rows: the originals, then each layer and mode; columns: the first --show images).
The measurement is dgn_am.evaluation.inversion; this script only parses arguments and writes files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from dgn_am.data import load_fashion_mnist
from dgn_am.evaluation.inversion import evaluate_inversion, starts, table
from dgn_am.imageio import make_grid, save_labelled_grid, write_text
from dgn_am.models.loading import load_model
from dgn_am.priors import load_prior


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fmnist-caffenet")
    p.add_argument("--judge", default="fmnist-resnet", help="the independent classifier")
    p.add_argument("--prior", default="fmnist-fc6")
    p.add_argument("--layers", nargs="+", default=["conv3", "conv5", "fc6", "fc7", "fc8"])
    p.add_argument("--modes", nargs="+", default=["pixels", "prior", "encoder"])
    p.add_argument("--images", type=int, default=200, help="test images measured")
    p.add_argument("--offset", type=int, default=100, help="index of the first test image (0-19 tuned the weights)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--show", type=int, default=8, help="images in grid.png")
    p.add_argument("--out", default="docs/inversion")
    p.add_argument("--starts-only", action="store_true",
                   help="only score the two starts (mean image, prior's mean code) and write starts.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    images, labels = load_fashion_mnist("test")
    images, labels = images[args.offset: args.offset + args.images], labels[args.offset: args.offset + args.images]
    if args.starts_only:
        found = starts(load_model(args.model), load_model(args.judge), load_prior(args.prior), images, labels)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_text(Path(args.out) / "starts.json", json.dumps(found, indent=1))
        print(json.dumps(found, indent=1))
        return found
    report, recon = evaluate_inversion(load_model(args.model), load_model(args.judge), load_prior(args.prior),
                                       images, labels, args.layers, args.modes, steps=args.steps,
                                       progress=lambda line: print(line, file=sys.stderr))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report["settings"] = {**vars(args), "commit": commit, "torch": torch.__version__, "threads": 1}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    write_text(out / "report.md", table(report) + "\n")
    rows = [images[: args.show]] + [r[: args.show] for r in recon.values()]
    save_labelled_grid(make_grid(torch.cat(rows), rows=len(rows)), ["original", *recon],
                       out / "grid.png", rows=len(rows), scale=3)
    print(table(report))
    return report


if __name__ == "__main__":
    main()
