"""What a paper-size DGN-AM run costs on this machine: the DeePSiM fc6 generator (4096 -> 256x256 BGR, cropped to
224) with a torchvision AlexNet target, both with random weights (nothing is downloaded; the cost does not depend on
the weights).

    python scripts/speed_paper.py                       # batches 1, 8, 32; writes docs/speed/paper.json and .md
    python scripts/speed_paper.py --batches 1 8 --steps 3 --out /tmp/paper

Each batch size runs in its own process, so its peak memory is its own: the resident set (getrusage) on the CPU,
torch's peak allocation on a GPU (`--device cuda`). Per batch:
seconds per step of the engine (`dgn-am`, unit fc8 of AlexNet, read as the reference does) and of a bare loop doing
the same forward, backward and normalized step (the floor), the median over --steps steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def paper_size(device: str = "cpu") -> tuple:
    """(AlexNet target, DeePSiM fc6 prior), both with random weights."""
    from dgn_am.models.generators import Generator
    from dgn_am.models.loading import load_model
    from dgn_am.priors import Prior

    torch.manual_seed(0)
    target = load_model("torchvision:alexnet", weights="random")
    g = Generator("deepsim-fc6").eval().requires_grad_(False)
    d = g.config.code_dim
    prior = Prior(g, torch.zeros(d), torch.full((d,), 11.85), torch.zeros(d), torch.ones(d), {"path": "random"})
    return target.to(device), prior.to(device)


def memory_estimate(batches: list[int]) -> dict:
    """What --max-memory assumes for these batches (dgn_am.memory.estimate), in MB, to set beside the measured peaks."""
    from dgn_am.layers import parse_units
    from dgn_am.memory import estimate
    from dgn_am.methods import get_method

    target, prior = paper_size()
    est = estimate(target, parse_units("classifier.6:0")[0], 0, get_method("dgn-am"), prior)
    return {"fixed_mb": est.fixed / 1e6, "per_item_mb": est.per_item / 1e6,
            "batches": {b: (est.fixed + b * est.per_item) / 1e6 for b in batches}}


def one(batch: int, steps: int, device: str = "cpu") -> dict:
    from dgn_am.layers import parse_units
    from dgn_am.methods import get_method, synthesize

    target, prior = paper_size(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    d = prior.code_dim
    units = parse_units(f"classifier.6:0-{batch - 1}")
    times: list[float] = []
    method = get_method("dgn-am").with_overrides(steps=steps + 1)
    last = [time.perf_counter()]

    def tick(i, n, s) -> None:
        sync()
        now = time.perf_counter()
        if i > 0:  # the first step is the warm-up
            times.append(now - last[0])
        last[0] = now

    synthesize(target, units, [0], method, prior=prior, progress=tick)
    h = torch.zeros(batch, d, device=device, requires_grad=True)
    floor = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        out = target(prior.image(h, target.input_spec, clamp=False))
        (grad,) = torch.autograd.grad(out[torch.arange(batch), torch.arange(batch)].sum(), h)
        with torch.no_grad():
            h += grad / grad.abs().mean(1, keepdim=True).clamp(min=1e-12)
        sync()
        if i:
            floor.append(time.perf_counter() - t0)
    return {"batch": batch, "engine_s_per_step": statistics.median(times), "floor_s_per_step": statistics.median(floor),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "steps": steps,
            "threads": torch.get_num_threads(), "device": device,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 1e6 if device == "cuda" else None}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default="docs/speed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one batch, prints JSON
    p.add_argument("--estimate", action="store_true", help="print only --max-memory's estimate for --batches")
    args = p.parse_args(argv)
    if args.estimate:
        print(json.dumps(memory_estimate(args.batches)))
        return []
    if args.one is not None:
        print(json.dumps(one(args.one, args.steps, args.device)))
        return []
    rows = []
    for b in args.batches:
        out = subprocess.run([sys.executable, __file__, "--one", str(b), "--steps", str(args.steps),
                              "--device", args.device],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = "python scripts/speed_paper.py " + " ".join(argv if argv is not None else sys.argv[1:])
    gpu = args.device == "cuda"
    where = f"{torch.cuda.get_device_name()} GPU" if gpu else f"{platform.machine()} CPU"
    lines = [f"`{command}` (commit {commit}, torch {torch.__version__}, {rows[0]['threads']} threads, "
             f"{where}; deepsim-fc6 -> torchvision alexnet, random weights)", "",
             f"| batch | engine s / step | floor s / step | engine s / image / step | peak {'GPU ' if gpu else ''}"
             "memory (MB) |", "|---|---|---|---|---|"]
    for r in rows:
        peak = r["peak_gpu_mb"] if gpu else r["peak_rss_mb"]
        lines.append(f"| {r['batch']} | {r['engine_s_per_step']:.4f} | {r['floor_s_per_step']:.4f} | "
                     f"{r['engine_s_per_step'] / r['batch']:.4f} | {peak:.0f} |")
    from dgn_am.imageio import write_text

    out, name = Path(args.out), "paper-cuda" if gpu else "paper"
    write_text(out / f"{name}.json", json.dumps({"command": command, "commit": commit, "rows": rows}, indent=1))
    write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
