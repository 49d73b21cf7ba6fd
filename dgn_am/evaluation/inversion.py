"""How well each inversion mode reconstructs real images from each layer: pixel error, SSIM, and whether an
independent classifier still gives the original label. `scripts/inversion.py` is its command line.

For every (layer, mode): the mean squared pixel error (images in [0, 1]), the mean SSIM (torchmetrics' Gaussian
11x11, sigma 1.5, data range 1), the judge's top-1 agreement with the true labels on the reconstructions (and on the
originals, the ceiling), and the feature loss ||phi(x) - phi0||^2 / ||phi0||^2 the inversion reached. Nothing is
written here.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from dgn_am.evaluation.metrics import judge
from dgn_am.inversion import invert


def ssim(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """SSIM of each reconstruction (N, C, H, W) with its original, both in [0, 1]: (N,)."""
    return structural_similarity_index_measure(images.float(), originals.float(), data_range=1.0,
                                               reduction="none")


def scores(images: torch.Tensor, originals: torch.Tensor, labels: torch.Tensor, judge_model: torch.nn.Module) -> dict:
    """Pixel MSE, SSIM and the judge's top-1 on the true labels, each a mean over the N images."""
    verdict = judge(judge_model, images, labels)
    return {"mse": float((images - originals).pow(2).flatten(1).mean(1).mean()),
            "ssim": float(ssim(images, originals).mean()), "judge_top1": verdict["top1"],
            "judge_prob": verdict["prob"]}


@torch.no_grad()
def _judged(judge_model, images, labels):
    return judge(judge_model, images, labels)


@torch.no_grad()
def starts(model: torch.nn.Module, judge_model: torch.nn.Module, prior: Any, images: torch.Tensor,
           labels: torch.Tensor) -> dict:
    """The scores of the two optimized modes' starts, the floor an inversion must beat: the data set's mean image
    (where "pixels" starts) and the image of the prior's mean code (where "prior" starts), for every image."""
    from dgn_am.parameterizations import mean_image

    n = len(images)
    mean = mean_image(model.input_spec).unsqueeze(0).expand(n, -1, -1, -1).to(images)
    code = prior.image(prior.mean.unsqueeze(0), model.input_spec).expand(n, -1, -1, -1).to(images)
    return {"mean_image": scores(mean, images, labels, judge_model),
            "prior_mean_code": scores(code, images, labels, judge_model)}


def evaluate_inversion(model: torch.nn.Module, judge_model: torch.nn.Module, prior: Any, images: torch.Tensor,
                       labels: torch.Tensor, layers: Sequence[str], modes: Sequence[str], steps: int | None = None,
                       batch: int = 200, progress: Callable[[str], None] | None = None
                       ) -> tuple[dict, dict[str, torch.Tensor]]:
    """({"originals": scores, "runs": [{layer, mode, mse, ssim, judge_top1, judge_prob, feature_loss, seconds}]},
    {"LAYER/MODE": reconstructions (N, C, H, W)}). The encoder mode runs only at the prior's code layer."""
    enc = prior.provenance.get("encoder", {}) if prior is not None else {}
    with torch.no_grad():
        report: dict = {"originals": {"judge_top1": _judged(judge_model, images, labels)["top1"]}, "runs": []}
    if prior is not None:
        report["starts"] = starts(model, judge_model, prior, images, labels)
    recon: dict[str, torch.Tensor] = {}
    for layer in layers:
        for mode in modes:
            if mode == "encoder" and layer != enc.get("layer"):
                continue
            t0 = time.perf_counter()
            parts = [invert(model, images[i: i + batch], layer, mode, prior, steps=steps, seed=i)
                     for i in range(0, len(images), batch)]
            out = torch.cat([p.images for p in parts])
            loss = torch.cat([p.loss for p in parts])
            with torch.no_grad():
                row = {"layer": layer, "mode": mode, **scores(out, images, labels, judge_model),
                       "feature_loss": float(loss.mean()), "seconds": round(time.perf_counter() - t0, 1),
                       "steps": 0 if mode == "encoder" else parts[0].settings["method"]["steps"]}
            report["runs"].append(row)
            recon[f"{layer}/{mode}"] = out
            if progress:
                progress(f"{layer} {mode}: mse {row['mse']:.4f} ssim {row['ssim']:.3f} judge {row['judge_top1']:.2f}")
    return report, recon


def table(report: dict) -> str:
    """The report as a Markdown table, one row per (layer, mode)."""
    lines = ["| layer | mode | pixel MSE | SSIM | judge top-1 | feature loss | steps | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['layer']} | {r['mode']} | {r['mse']:.4f} | {r['ssim']:.3f} | {r['judge_top1']:.3f} | "
                     f"{r['feature_loss']:.3f} | {r['steps']} | {r['seconds']} |")
    lines.append(f"| (originals) | | 0 | 1 | {report['originals']['judge_top1']:.3f} | 0 | | |")
    for name, r in report.get("starts", {}).items():
        lines.append(f"| (start: {name.replace('_', ' ')}) | | {r['mse']:.4f} | {r['ssim']:.3f} | "
                     f"{r['judge_top1']:.3f} | | | |")
    return "\n".join(lines)
