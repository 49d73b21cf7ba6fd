"""How different a synthesize run's seeds are: per unit, the mean pairwise cosine distance of its images in a
judge's penultimate features, with the mean activation and class probability from the manifest.

    python scripts/seed_diversity.py out/methods/units out/methods/units-diversity
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dgn_am.evaluation.metrics import features, mean_pairwise_cosine_distance
from dgn_am.evaluation.scoring import FEATURE_LAYERS
from dgn_am.imageio import read_image
from dgn_am.models.loading import load_model


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="synthesize --out folders")
    p.add_argument("--judge", default="fmnist-resnet")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    judge, layer = load_model(args.judge), FEATURE_LAYERS[args.judge][0]
    report = {}
    for folder in map(Path, args.folders):
        rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
        units = list(dict.fromkeys(r["settings"]["address"] for r in rows))
        per_unit = {}
        for u in units:
            x = torch.stack([read_image(folder / r["path"]) for r in rows if r["settings"]["address"] == u])
            per_unit[u] = mean_pairwise_cosine_distance(features(judge, x, layer))
        probs = [r["prob"] for r in rows if r["prob"] is not None]
        report[str(folder)] = {"diversity": per_unit, "mean_diversity": sum(per_unit.values()) / len(per_unit),
                               "mean_activation": sum(r["activation"] for r in rows) / len(rows),
                               "mean_prob": sum(probs) / len(probs) if probs else None}
        print(f"{folder}: diversity ({args.judge} {layer}) " +
              ", ".join(f"{u} {v:.3f}" for u, v in per_unit.items()) +
              f"; mean {report[str(folder)]['mean_diversity']:.3f}, activation "
              f"{report[str(folder)]['mean_activation']:.2f}, prob {report[str(folder)]['mean_prob']}")
    return report


if __name__ == "__main__":
    main()
