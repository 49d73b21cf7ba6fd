"""Check a prior against the project's bars: recognizable, transfers, diverse, and the sanity control.

    python scripts/prior_bars.py --prior fmnist-fc6 --seeds 8 --out docs/prior

For each (target, judge) pair of the shipped classifiers it synthesizes the 10 output units x N seeds with the
method, and reports the judge's top-1 and mean class probability, and per class the mean pairwise cosine distance
in the judge's penultimate features across seeds, next to the same figure for N real test images of the class.
The sanity control repeats the first run against a randomly initialized copy of the target.
Writes report.json and one grid per run (rows = classes, columns = seeds) into --out. The checks themselves are
dgn_am.evaluation.prior_bars; this script only parses arguments and writes files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from dgn_am.evaluation.prior_bars import check_prior
from dgn_am.imageio import atomic_write, make_grid, save_image
from dgn_am.methods import get_method
from dgn_am.priors import load_prior


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", default="fmnist-fc6")
    p.add_argument("--method", default="dgn-am")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--tag", default="", help="suffix for the report and grid names (e.g. -s8 for another seed set)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--baseline", default="simonyan", help="hand-crafted method for the side-by-side grid")
    p.add_argument("--out", default="docs/prior")
    args = p.parse_args(argv)
    out = Path(args.out)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    prior = load_prior(args.prior)
    method = get_method(args.method).with_overrides(steps=args.steps)
    runs, grids = check_prior(method, prior, seeds, args.baseline)
    files = {"fmnist-caffenet": f"{args.method}{args.tag}_fmnist-caffenet.png",
             "fmnist-resnet": f"{args.method}{args.tag}_fmnist-resnet.png",
             "random-caffenet": f"{args.method}{args.tag}_random-caffenet.png",
             "baseline": f"{args.baseline}_fmnist-caffenet.png", "real": "real_test_images.png"}
    for name, images in grids.items():
        save_image(make_grid(images, rows=10), out / files[name], scale=3)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"command": "python scripts/prior_bars.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit, "prior": prior.provenance.get("path"), "method": method.settings(),
              "seeds": seeds, "runs": runs}
    text = json.dumps(report, indent=1)
    atomic_write(out / f"report-{args.method}{args.tag}.json", lambda tmp: Path(tmp).write_text(text))
    for name, r in runs.items():
        d = r["diversity"]
        print(f"{name}: top1 {r['top1']:.3f} prob {r['mean_prob']:.3f} diversity/real mean {d['mean_ratio']:.2f} "
              f"min {d['min_ratio']:.2f} ({r['seconds']}s)")
    return report


if __name__ == "__main__":
    main()
