"""The small sweeps behind the defaults of `maco` (Adam lr) and `accentuation` (keep_weight), docs/methods.md.

    python scripts/sweep_new_methods.py maco 0.05,0.2,1.0
    python scripts/sweep_new_methods.py accentuation 3,10,30

fmnist-caffenet, fc8:0-9, seeds 0-1, 100 steps. Prints, per value: the mean logit on the saved images, how often
fmnist-resnet (never used during optimization) calls them the target class, and for accentuation the seed images'
mean logit and the mean absolute pixel change. Accentuation item (unit, seed s) starts from test image 3 s + 7.
"""

from __future__ import annotations

import dataclasses
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    import dgn_am
    from dgn_am.data import load_fashion_mnist
    from dgn_am.evaluation.scoring import Evaluator
    from dgn_am.methods import get_method, synthesize
    from dgn_am.steps import StepRule

    which, values = (argv or sys.argv[1:])[:2]
    torch.set_num_threads(1)
    model, judge = dgn_am.load_model("fmnist-caffenet"), Evaluator.from_spec("fmnist-resnet").model
    units, seeds = dgn_am.parse_units("fc8:0-9"), [0, 1]
    x, _ = load_fashion_mnist("test")
    starts = torch.cat([x[[3 * s + 7 for s in seeds]] for _ in units])  # (U * S, 1, 28, 28)
    for value in (float(v) for v in values.split(",")):
        method = dataclasses.replace(get_method(which), steps=100)
        if which == "maco":
            method = dataclasses.replace(method, step_rule=StepRule("adam", lr=value))
        else:
            method = dataclasses.replace(method, options=(("keep_weight", value), ("init_images", starts)))
        result, items = synthesize(model, units, seeds, method)
        target = torch.tensor([u.index for u, _ in items])
        with torch.no_grad():
            top1 = float((judge(result.images).argmax(1) == target).float().mean())
            seed_logit = float(model(starts)[torch.arange(len(target)), target].mean())
        line = f"{which} {value}: logit {float(result.saved_activations.mean()):.2f}, judge top-1 {top1:.2f}"
        if which == "accentuation":
            line += f", seed logit {seed_logit:.2f}, |change| {float((result.images - starts).abs().mean()):.3f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
