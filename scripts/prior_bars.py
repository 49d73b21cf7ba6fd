"""Check a prior against the project's bars: recognizable, transfers, diverse, and the sanity control.

    python scripts/prior_bars.py --prior fmnist-fc6 --seeds 8 --out docs/prior

For each (target, judge) pair of the shipped classifiers it synthesizes the 10 output units x N seeds with the
method, and reports the judge's top-1 and mean class probability, and per class the mean pairwise cosine distance
in the judge's penultimate features across seeds, next to the same figure for N real test images of the class.
The sanity control repeats the first run against a randomly initialized copy of the target.
Writes report.json and one grid per run (rows = classes, columns = seeds) into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from dgn_am.data import load_fashion_mnist
from dgn_am.evaluation.metrics import features, judge, mean_pairwise_cosine_distance
from dgn_am.evaluation.scoring import FEATURE_LAYERS
from dgn_am.imageio import atomic_write, make_grid, save_image
from dgn_am.layers import parse_units
from dgn_am.methods import get_method, synthesize
from dgn_am.models.loading import load_model
from dgn_am.priors import load_prior

OUTPUT = {"fmnist-caffenet": "fc8", "fmnist-resnet": "fc", "fmnist-caffenet-s1": "fc8"}


def run_pair(target, target_name: str, judge_model, judge_name: str, method, prior, seeds: list[int],
             real: dict[int, torch.Tensor]) -> tuple[dict, torch.Tensor]:
    units = parse_units(f"{OUTPUT[target_name]}:0-9")
    t0 = time.perf_counter()
    result, items = synthesize(target, units, seeds, method, prior=prior)
    seconds = time.perf_counter() - t0
    classes = torch.tensor([u.index for u, _ in items])
    verdict = judge(judge_model, result.images, classes)
    feats = features(judge_model, result.images, FEATURE_LAYERS[judge_name][0])
    div, real_div = {}, {}
    for c in range(10):
        div[c] = mean_pairwise_cosine_distance(feats[classes == c])
        real_div[c] = mean_pairwise_cosine_distance(features(judge_model, real[c], FEATURE_LAYERS[judge_name][0]))
    ratios = [div[c] / real_div[c] for c in range(10)]
    report = {
        "target": target_name, "judge": judge_name, "images": len(items), "seconds": round(seconds, 1),
        "top1": verdict["top1"], "mean_prob": verdict["prob"],
        "top1_per_class": [float(verdict["correct"][classes == c].float().mean()) for c in range(10)],
        "target_activation_mean": float(result.activations.mean()),
        "diversity": {"per_class": [div[c] for c in range(10)], "real_per_class": [real_div[c] for c in range(10)],
                      "ratio_per_class": ratios, "mean_ratio": sum(ratios) / 10, "min_ratio": min(ratios)},
    }
    return report, result.images


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
    models = {n: load_model(n) for n in ("fmnist-caffenet", "fmnist-resnet")}
    x, y = load_fashion_mnist("test")
    real = {c: x[y == c][: args.seeds] for c in range(10)}
    runs = {}
    for target, judge_name in (("fmnist-caffenet", "fmnist-resnet"), ("fmnist-resnet", "fmnist-caffenet")):
        runs[f"{target}->{judge_name}"], images = run_pair(models[target], target, models[judge_name], judge_name,
                                                           method, prior, seeds, real)
        save_image(make_grid(images, rows=10), out / f"{args.method}{args.tag}_{target}.png", scale=3)
    torch.manual_seed(0)
    random_target = load_model("fmnist-caffenet", weights="random")
    runs["sanity: random fmnist-caffenet->fmnist-resnet"], images = run_pair(
        random_target, "fmnist-caffenet", models["fmnist-resnet"], "fmnist-resnet", method, prior, seeds, real)
    save_image(make_grid(images, rows=10), out / f"{args.method}{args.tag}_random-caffenet.png", scale=3)
    base = get_method(args.baseline)
    base_result, _ = synthesize(models["fmnist-caffenet"], parse_units("fc8:0-9"), seeds, base)
    save_image(make_grid(base_result.images, rows=10), out / f"{args.baseline}_fmnist-caffenet.png", scale=3)
    save_image(make_grid(torch.cat([real[c] for c in range(10)]), rows=10), out / "real_test_images.png", scale=3)
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
