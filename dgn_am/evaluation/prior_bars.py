"""The prior's bars: are a method's images recognizable, do they transfer, are they diverse, and does the sanity
control fail? The README's quality checks; `scripts/prior_bars.py` is its command line.

For each (target, judge) pair of the shipped classifiers, `run_pair` synthesizes the 10 output units x N seeds with
the method and reports the judge's top-1 and mean class probability, and per class the mean pairwise cosine distance
in the judge's penultimate features (scoring.FEATURE_LAYERS) across seeds, next to the same figure for N real test
images of the class. `check_prior` runs both pairs, the sanity control (the first pair against a randomly
initialized copy of the target) and a hand-crafted baseline for a side-by-side grid. Nothing is written here.
"""

from __future__ import annotations

import time

import torch

from dgn_am.evaluation.metrics import features, judge, mean_pairwise_cosine_distance
from dgn_am.evaluation.scoring import FEATURE_LAYERS
from dgn_am.layers import parse_units
from dgn_am.methods import Method, get_method, synthesize
from dgn_am.models.loading import load_model

OUTPUT = {"fmnist-caffenet": "fc8", "fmnist-resnet": "fc", "fmnist-caffenet-s1": "fc8"}  # each one's class layer
PAIRS = (("fmnist-caffenet", "fmnist-resnet"), ("fmnist-resnet", "fmnist-caffenet"))  # (target, judge)


def run_pair(target, target_name: str, judge_model, judge_name: str, method: Method, prior, seeds: list[int],
             real: dict[int, torch.Tensor]) -> tuple[dict, torch.Tensor]:
    """(the pair's report, its images (10 * len(seeds), C, H, W), class-major). real: class -> (N, C, H, W)
    real test images of that class, the diversity reference."""
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


def check_prior(method: Method, prior, seeds: list[int], baseline: str = "simonyan",
                data_dir: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """({run name: report}, {grid name: images (10 * len(seeds), C, H, W), class-major}) for both pairs, the
    sanity control ("random-caffenet"), the baseline method on fmnist-caffenet and the real test images."""
    from dgn_am.data import load_fashion_mnist

    models = {n: load_model(n) for n in ("fmnist-caffenet", "fmnist-resnet")}
    x, y = load_fashion_mnist("test", data_dir)
    real = {c: x[y == c][: len(seeds)] for c in range(10)}
    runs, grids = {}, {}
    for target, judge_name in PAIRS:
        runs[f"{target}->{judge_name}"], grids[target] = run_pair(models[target], target, models[judge_name],
                                                                  judge_name, method, prior, seeds, real)
    torch.manual_seed(0)
    random_target = load_model("fmnist-caffenet", weights="random")
    runs["sanity: random fmnist-caffenet->fmnist-resnet"], grids["random-caffenet"] = run_pair(
        random_target, "fmnist-caffenet", models["fmnist-resnet"], "fmnist-resnet", method, prior, seeds, real)
    base_result, _ = synthesize(models["fmnist-caffenet"], parse_units("fc8:0-9"), seeds, get_method(baseline))
    grids["baseline"] = base_result.images
    grids["real"] = torch.cat([real[c] for c in range(10)])
    return runs, grids
