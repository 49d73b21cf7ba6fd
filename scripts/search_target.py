"""Gradient-free search against gradient DGN-AM on fmnist-caffenet's output units (docs/methods.md).

    python scripts/search_target.py                      # fc8:0-9, seed 0, 5000 scorer calls: docs/methods/search/
    python scripts/search_target.py --budget 500 --seeds 1 --out /tmp/search

For every (unit, seed): CMA-ES and the genetic algorithm (dgn_am.search, the unit read under no_grad) with
--budget scorer calls, and gradient DGN-AM (dgn_am.synthesize): dgn-am and dgn-am-adam with their own 200 steps,
and dgn-am-adam with --budget steps (as many forward passes as the searches' scorer calls). Every image is scored the same way: the unit's logit on the saved image (clamped to [0, 1]). Writes
results.json (per item, per method, the ratios to each gradient method, settings and timings), grid.png (one row per
unit: CMA-ES, GA, dgn-am, dgn-am-adam for seed 0) and curves.png (best and mean score per generation, mean over
items).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

GRADIENT = ("dgn-am", "dgn-am-adam")  # the reference loop and its Adam variant, both from random codes


def _gradient(model, units, seeds, prior, name: str, steps: int | None) -> tuple[np.ndarray, torch.Tensor, float]:
    from dgn_am.methods import get_method, synthesize

    method = get_method(name).with_overrides(steps=steps)
    t0 = time.perf_counter()
    result, _ = synthesize(model, units, seeds, method, prior=prior)
    return result.saved_activations.numpy().astype(float), result.images, time.perf_counter() - t0


def _searches(model, units, seeds, prior, algorithm: str, budget: int) -> dict:
    from dgn_am.search import SearchConfig, search, unit_scorer

    config = SearchConfig(algorithm=algorithm, budget=budget)
    t0 = time.perf_counter()
    found = [search(unit_scorer(model, u), prior, model.input_spec, s, config) for u in units for s in seeds]
    seconds = time.perf_counter() - t0
    images = torch.stack([r.image for r in found])
    with torch.no_grad():  # the saved image's logit, as for the gradient rows
        logits = model(images)
    index = torch.tensor([u.index for u in units for _ in seeds])
    return {"act": logits[torch.arange(len(index)), index].numpy().astype(float), "images": images,
            "seconds": seconds, "calls": [r.calls for r in found], "best": [r.best.tolist() for r in found],
            "mean": [r.mean.tolist() for r in found], "settings": found[0].settings}


def _curves(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, rec in rows.items():
        best = np.array(rec["best"]).mean(0)
        mean = np.array(rec["mean"]).mean(0)
        pop = rec["settings"]["population"]
        new = pop - rec["settings"]["search"]["kept"] if name == "ga" else pop  # ga scores only its children
        calls = pop + np.arange(len(best)) * new
        ax.plot(calls, best, label=f"{name}: best of generation")
        ax.plot(calls, mean, "--", label=f"{name}: mean of generation")
    ax.set_xlabel("scorer calls")
    ax.set_ylabel("fc8 logit (mean over units and seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import dgn_am
    from dgn_am.imageio import make_grid, save_labelled_grid

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", default="fc8:0-9")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--budget", type=int, default=5000)
    p.add_argument("--out", default="docs/methods/search")
    p.add_argument("--replot", action="store_true", help="only redraw curves.png from OUT/results.json")
    args = p.parse_args(argv)
    if args.replot:
        _curves(json.loads((Path(args.out) / "results.json").read_text())["search"], Path(args.out) / "curves.png")
        return 0
    torch.set_num_threads(1)
    model, prior = dgn_am.load_model("fmnist-caffenet"), dgn_am.load_prior("fmnist-fc6")
    units, seeds = dgn_am.parse_units(args.units), list(range(args.seeds))
    searched = {alg: _searches(model, units, seeds, prior, alg, args.budget) for alg in ("cmaes", "ga")}
    grad, images = {}, {}
    for name, steps in [(g, None) for g in GRADIENT] + [("dgn-am-adam", args.budget)]:
        key = name if steps is None else f"{name}@{steps}"
        act, images[key], seconds = _gradient(model, units, seeds, prior, name, steps)
        grad[key] = {"act": act.tolist(), "mean": float(act.mean()), "seconds": seconds}
    ratios = {alg: {g: {"ratio_of_means": float(np.mean(s["act"]) / np.mean(r["act"])),
                        "worst_unit": float(min(np.mean(np.reshape(s["act"], (len(units), -1)), 1) /
                                                np.mean(np.reshape(r["act"], (len(units), -1)), 1)))}
                    for g, r in grad.items()} for alg, s in searched.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {"command": "python scripts/search_target.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "commit": commit, "units": args.units, "seeds": seeds, "budget": args.budget,
              "search": {a: {k: v for k, v in s.items() if k != "images"} | {"act": s["act"].tolist(),
                                                                             "mean_act": float(np.mean(s["act"]))}
                         for a, s in searched.items()},
              "gradient": grad, "ratios": ratios, "threads": torch.get_num_threads(), "machine": platform.machine()}
    (out / "results.json").write_text(json.dumps(record, indent=1))
    first = [i * len(seeds) for i in range(len(units))]  # seed 0 of every unit
    cols = [searched["cmaes"]["images"], searched["ga"]["images"], images["dgn-am"], images["dgn-am-adam"]]
    grid = torch.stack([c[i].clamp(0, 1) for i in first for c in cols])
    save_labelled_grid(make_grid(grid, rows=len(units)), [str(u) for u in units], out / "grid.png",
                       rows=len(units), scale=3)
    _curves({a: searched[a] for a in searched}, out / "curves.png")
    print(json.dumps({a: {"mean_act": record["search"][a]["mean_act"], **ratios[a]} for a in ratios}, indent=1))
    print(json.dumps({k: v["mean"] for k, v in grad.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
