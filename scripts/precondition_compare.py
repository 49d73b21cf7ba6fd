"""The numbers behind docs/baselines.md, "Preconditioning and edge-preserving blur": each new method against its base.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python scripts/precondition_compare.py            # the table
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python scripts/precondition_compare.py sweep      # the settings' sweep
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python scripts/precondition_compare.py edge       # a step edge, blurred
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python scripts/precondition_compare.py hashes     # run at two commits, diff

fmnist-caffenet, fc8:0-9 x seeds 0-3, every method at its own default steps. Rows: olah, olah-lapnorm, and the
control "olah in pixels" (olah-lapnorm without its preconditioner, so the pixel parameterization and the
preconditioner can be told apart; activation and transfer only, it is not a registered method); yosinski and
yosinski-bilateral. Columns for the registered methods come from the benchmark (dgn_am.evaluation.benchmark, no
control network, no calibration, 200 bootstrap replicates, its default judges fmnist-resnet and
fmnist-caffenet-s1): the target's logit, transfer to the judges and KID (each with its 95% interval), FID in the
judges' penultimate features, precision/density/coverage and diversity. Prints a markdown table.

sweep: activation and fmnist-resnet transfer of yosinski-bilateral's range sigma 0.1-0.5 and olah-lapnorm's 3-5
levels, same units and seeds. edge: how far a 0/1 step edge moves under the Gaussian blur and the bilateral filter.
hashes: a hash of the images of every method registered before these pieces (12 steps, fc8:0-1 x seeds 0-1,
random-weight fmnist-caffenet as in tests/helpers.py) and of its settings; run it at two commits and diff the output.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

COLUMNS = ("activation", "transfer_mean", "kid_penult", "fid_penult", "precision", "density", "coverage",
           "diversity")
METHODS = ("olah", "olah-lapnorm", "yosinski", "yosinski-bilateral")
WITH_INTERVAL = ("activation", "transfer_mean", "kid_penult")  # printed with their 95% bootstrap interval


def _cell(summary: dict, interval: bool) -> str:
    """'29.1' or '29.1 [28.5, 29.8]'."""
    text = f"{summary['value']:.3g}"
    return text + f" [{summary['lo']:.3g}, {summary['hi']:.3g}]" if interval else text


def _control_row(units_text: str, seeds: list[int]) -> dict:
    """olah-lapnorm without its preconditioner: mean target logit and transfer to fmnist-resnet."""
    import dgn_am
    from dgn_am.evaluation.scoring import Evaluator
    from dgn_am.methods import get_method, synthesize

    model, judge = dgn_am.load_model("fmnist-caffenet"), Evaluator.from_spec("fmnist-resnet").model
    method = dataclasses.replace(get_method("olah-lapnorm"), name="olah-pixels", preconditioners=())
    result, items = synthesize(model, dgn_am.parse_units(units_text), seeds, method)
    target = torch.tensor([u.index for u, _ in items])
    with torch.no_grad():
        logits = model(result.images)
        correct = (judge(result.images).argmax(1) == target).float()
    return {"activation": float(logits[torch.arange(len(target)), target].mean()),
            "transfer_fmnist-resnet": float(correct.mean())}


def _sweep() -> None:
    import dgn_am
    from dgn_am.evaluation.scoring import Evaluator
    from dgn_am.methods import get_method, synthesize
    from dgn_am.operators import BilateralBlur, Decay, NormClip
    from dgn_am.preconditioners import LaplacianNormalize

    model, judge = dgn_am.load_model("fmnist-caffenet"), Evaluator.from_spec("fmnist-resnet").model
    base, olah = get_method("yosinski"), get_method("olah-lapnorm")
    runs = {f"yosinski-bilateral range_sigma={r}": dataclasses.replace(base, operators=(
        Decay(rate=1e-3), BilateralBlur(width=0.5, range_sigma=r, every=4), NormClip(pct=20)))
        for r in (0.1, 0.2, 0.3, 0.5)}
    runs.update({f"olah-lapnorm levels={k}": dataclasses.replace(olah, preconditioners=(LaplacianNormalize(levels=k),))
                 for k in (3, 4, 5)})
    for label, method in runs.items():
        result, items = synthesize(model, dgn_am.parse_units("fc8:0-9"), [0, 1, 2, 3], method)
        target = torch.tensor([u.index for u, _ in items])
        with torch.no_grad():
            correct = (judge(result.images).argmax(1) == target).float().mean()
        print(f"{label}: activation {result.activations.mean():.2f}, transfer fmnist-resnet {correct:.3f}")


def _edge() -> None:
    from dgn_am.operators import bilateral_filter, gaussian_blur

    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0
    for width in (0.5, 1.0):
        moved = [(bilateral_filter(step, width, r) - step).abs().max().item() for r in (0.1, 0.3, 1.0)]
        print(f"width {width}: blur {(gaussian_blur(step, width) - step).abs().max().item():.3g}; bilateral range "
              f"0.1 / 0.3 / 1.0: " + " / ".join(f"{m:.2g}" for m in moved))


def _hashes() -> None:
    import hashlib
    import json

    from dgn_am.layers import parse_units
    from dgn_am.methods import METHODS, synthesize
    from dgn_am.priors import load_prior
    from tests.helpers import random_caffenet

    for name in sorted(set(METHODS) - {"olah-lapnorm", "yosinski-bilateral"}):
        m = METHODS[name]
        given = {"mean-image": ("mean_image", torch.full((1, 28, 28), 0.3)),
                 "seed-image": ("init_images", torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(2)))}
        method = dataclasses.replace(m, steps=12, options=m.options + ((given[m.init],) if m.init in given else ()))
        prior = load_prior("fmnist-fc6") if m.parameterization == "code" else None
        result, _ = synthesize(random_caffenet(), parse_units("fc8:0-1"), [0, 1], method, prior=prior)
        settings = {k: v for k, v in result.settings.items() if k != "parameterization"}  # holds the checkout's path
        print(name, hashlib.sha256(result.images.numpy().tobytes()).hexdigest()[:16],
              hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16])


def main(argv: list[str]) -> int:
    from dgn_am.evaluation.benchmark import BenchmarkConfig, run_benchmark

    torch.set_num_threads(1)
    mode = argv[0] if argv else "table"
    if mode in ("sweep", "edge", "hashes"):
        {"sweep": _sweep, "edge": _edge, "hashes": _hashes}[mode]()
        return 0
    if mode != "table":
        raise SystemExit(f"unknown mode '{mode}'; use table, sweep, edge or hashes")
    config = BenchmarkConfig(methods=METHODS, seeds=4, steps=None, control=False, calibration=False, n_boot=200)
    results = run_benchmark(config)
    print("| method | " + " | ".join(COLUMNS) + " | transfer fmnist-resnet |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for name, entry in results["methods"].items():
        s = entry["summary"]
        cells = [_cell(s[c], c in WITH_INTERVAL) if c in s else "" for c in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + f" | {s['transfer_fmnist-resnet']['value']:.3g} |")
    control = _control_row(config.units, list(range(config.seeds)))
    print(f"| olah-pixels (control) | {control['activation']:.3g} |" + " |" * (len(COLUMNS) - 1) +
          f" {control['transfer_fmnist-resnet']:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
