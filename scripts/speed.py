"""Measure synthesis speed in one process: the engine batched, one item at a time, and a bare loop (the floor).

    python scripts/speed.py                                   # writes docs/speed/speed.json and speed.md
    python scripts/speed.py --method dgn-am --steps 50 --units fc8:0-9 --seeds 8 --repeats 5 --out /tmp/speed

Every row runs the same model, prior, steps and number of (unit, seed) items, `--repeats` times after one warm-up;
the table gives the median and the spread (min to max) of seconds per image, and each row's ratio to the bare loop
measured in the same process (a ratio is what a shared machine can measure; absolute times move with load).
GFLOPS: the FLOPs of one step of the bare loop (torch.utils.flop_counter, forward and backward) over its time,
against a float32 matmul measured in the same run.

Lucent (optional: `pip install --no-deps torch-lucent==0.1.8 "kornia==0.5.11" decorator ipython`, plus ipython's
own dependencies; Lucent 0.1.8 needs a kornia older than 0.6): `olah` batched against Lucent's render_vis one unit at
a time, at equal steps, with the same parameterization (1/f Fourier, sigmoid, no colour decorrelation for a grey
model), Adam 0.05, and `olah`'s transforms at the model's size (pad 2, jitter 1, scale 0.9-1.1, rotate 10 degrees,
jitter 1; Lucent's jitter(2) shifts by 0-1 pixels, and it resizes back to 28 where the engine centre-crops).

Also (scripts/speed_extra.py): the engine batched in channels_last, under bf16 autocast and with torch.compile,
against float32 with the images' differences; and prior training under Lightning against a bare loop doing the
same steps. Run it from the repository with `PYTHONPATH=.` so that it measures the checkout's code.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_extra  # noqa: E402 - the variant and training rows, beside this script
from speed_extra import timed  # noqa: E402

from dgn_am.imageio import write_text
from dgn_am.layers import parse_units, read_units, run
from dgn_am.methods import get_method, synthesize
from dgn_am.models.loading import load_model
from dgn_am.priors import load_prior


def bare_loop(model, prior, units, seeds, steps: int, lr: float) -> Callable[[], torch.Tensor]:
    """The floor: G(h) -> target -> the units -> backward -> normalized step, clip, decay; no engine, no hooks
    beyond reading the one layer."""
    layer = units[0].layer
    items = [u for u in units for _ in seeds]

    def loop() -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        h = torch.randn(len(items), prior.code_dim, generator=gen) * 0.1  # drawn on the CPU: the same start anywhere
        h = h.to(prior.upper.device).requires_grad_(True)
        for i in range(steps):
            act = read_units(run(model, prior.image(h, model.input_spec), [layer])[layer], items)
            (g,) = torch.autograd.grad(act.sum(), h)
            with torch.no_grad():
                h += (lr * (1 - i / steps)) / g.abs().mean(1, keepdim=True).clamp(min=1e-12) * g
                torch.maximum(torch.minimum(h, prior.upper), prior.lower, out=h)
                h *= 0.99
        return h.detach()

    return loop


def lucent_run(model, units, seeds, steps: int) -> Callable[[], None] | None:
    """Lucent's render_vis for each (unit, seed), one at a time, or None when lucent is not importable."""
    try:
        from lucent.optvis import param, render, transform
    except ImportError:
        return None
    spec = model.input_spec
    tf = [transform.pad(2, mode="constant", constant_value=0.5), transform.jitter(2),
          transform.random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
          transform.random_rotate(list(range(-10, 11)) + 5 * [0]), transform.jitter(2)]

    def loop() -> None:
        for u in units:
            for s in seeds:
                torch.manual_seed(s)  # Lucent draws its start from the global RNG
                render.render_vis(model, f"net_{u.layer}:{u.index}", lambda: param.image(
                    spec.size[1], h=spec.size[0], batch=1, channels=spec.channels, fft=True, decorrelate=False),
                    transforms=tf, thresholds=(steps,), preprocess=False, progress=False, show_image=False,
                    fixed_image_size=spec.size[0])

    return loop


def step_flops(model, prior, units, seeds) -> int:
    """FLOPs of one forward and backward pass of the bare loop's step."""
    layer = units[0].layer
    items = [u for u in units for _ in seeds]
    h = torch.zeros(len(items), prior.code_dim, device=prior.upper.device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        act = read_units(run(model, prior.image(h, model.input_spec), [layer])[layer], items)
        act.sum().backward()  # (autograd.grad on a leaf is not supported under the flop counter)
    return counter.get_total_flops()


def matmul_gflops(n: int = 1024, repeats: int = 5, device: str = "cpu") -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n ** 3 / statistics.median(timed(lambda: a @ b, repeats)) / 1e9


def extra_lines(variants: dict, train: dict | None) -> list[str]:
    """The Markdown of the variant rows (against float32) and the training rows (Lightning against a bare loop)."""
    base = variants["float32"]["median"]
    lines = ["", "| engine batched, variant | s / image, median [min, max] | x float32 | images vs float32 |",
             "|---|---|---|---|"]
    for name, r in variants.items():
        same = "identical" if r["identical"] else f"max diff {r['max_abs_diff']:.3f}, mean {r['mean_abs_diff']:.4f}"
        if "compile_seconds" in r:
            same += f"; compiling took {r['compile_seconds']:.0f} s"
        lines.append(f"| {name} | {r['median']:.4f} [{r['min']:.4f}, {r['max']:.4f}] | {r['median'] / base:.2f} | "
                     f"{same} |")
    if train:
        lines += ["", f"| prior training, {train['steps']} steps of batch {train['batch']} | s / step, median "
                      "[min, max] |", "|---|---|"]
        for name in ("lightning", "bare loop"):
            r = train[name]
            lines.append(f"| {name} | {r['median']:.4f} [{r['min']:.4f}, {r['max']:.4f}] |")
        lines += ["", f"Lightning's throughput is {train['lightning_throughput_over_bare']:.2f}x the bare loop's "
                      "(its whole fit() call, setup included)."]
    return lines


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fmnist-caffenet")
    p.add_argument("--prior", default="fmnist-fc6")
    p.add_argument("--method", default="dgn-am")
    p.add_argument("--units", default="fc8:0-9")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--one-at-a-time", type=int, default=8, help="items timed one by one (the rest is scaled)")
    p.add_argument("--out", default="docs/speed")
    p.add_argument("--device", default="cpu", help="cpu or cuda (Lucent puts its images on cuda:0 whenever CUDA is "
                   "available, so its row is only fair with --device cuda there)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile row (compiling takes "
                   "about a minute on 2 cores)")
    p.add_argument("--train-steps", type=int, default=20, help="prior training steps per repeat (0: no training "
                   "rows)")
    args = p.parse_args(argv)
    model, prior = load_model(args.model, device=args.device), load_prior(args.prior, device=args.device)
    units, seeds = parse_units(args.units), list(range(args.seeds))
    method = get_method(args.method).with_overrides(steps=args.steps)
    n = len(units) * len(seeds)
    lr = method.step_rule.lr * (prior.reference_scale if method.code_scale == "reference" else 1.0)
    rows: dict[str, list[float]] = {}
    rows["bare loop (floor)"] = [t / n for t in timed(bare_loop(model, prior, units, seeds, args.steps, lr),
                                                      args.repeats)]
    rows["engine, batched"] = [t / n for t in timed(lambda: synthesize(model, units, seeds, method, prior=prior),
                                                    args.repeats)]
    k = min(args.one_at_a_time, n)
    single = [(u, s) for u in units for s in seeds][:k]
    rows["engine, one item at a time"] = [t / k for t in timed(
        lambda: [synthesize(model, [u], [s], method, prior=prior) for u, s in single], args.repeats)]
    olah = get_method("olah").with_overrides(steps=args.steps)
    lucent = lucent_run(model, units, seeds[:1], args.steps)  # one seed per unit: it runs one at a time
    if lucent is not None:
        rows["olah, engine batched"] = [t / n for t in timed(lambda: synthesize(model, units, seeds, olah),
                                                             args.repeats)]
        rows["lucent render_vis, one at a time"] = [t / len(units) for t in timed(lucent, args.repeats)]
    variants = speed_extra.variants(model, prior, units, seeds, method, args.repeats, not args.no_compile)
    train = speed_extra.training(args.train_steps, args.repeats, device=args.device) if args.train_steps else None
    flops = step_flops(model, prior, units, seeds)
    bare = statistics.median(rows["bare loop (floor)"]) * n / args.steps  # seconds per step of the whole batch
    matmul_n = 1024 if args.device == "cpu" else 8192
    achieved, peak = flops / bare / 1e9, matmul_gflops(matmul_n, device=args.device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "command": "python scripts/speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit, "model": args.model, "prior": args.prior, "method": args.method, "items": n,
        "steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "machine": platform.machine(), "device": args.device,
        "device_name": (torch.cuda.get_device_name() if args.device == "cuda" else
                        platform.processor() or platform.machine()),
        "rows": {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "seconds_per_image": v}
                 for name, v in rows.items()},
        "gflops": {"step_flops": flops, "bare_loop": achieved, f"matmul_{matmul_n}": peak,
                   "fraction": achieved / peak},
        "variants": variants, "training": train,
    }
    floor = result["rows"]["bare loop (floor)"]["median"]
    if lucent is not None:
        result["lucent_over_olah"] = (result["rows"]["lucent render_vis, one at a time"]["median"] /
                                      result["rows"]["olah, engine batched"]["median"])
    lines = [f"`{result['command']}` (commit {commit}, torch {torch.__version__}, {args.device} "
             f"{result['device_name']}, {torch.get_num_threads()} threads, {n} items x {args.steps} steps, "
             f"{args.repeats} repeats after a warm-up)", "",
             "| row | s / image, median [min, max] | ratio |", "|---|---|---|"]
    for name, r in result["rows"].items():
        base, label = ((result["rows"]["olah, engine batched"]["median"], "x olah batched") if "olah" in name or
                       "lucent" in name else (floor, "x bare loop"))
        lines.append(f"| {name} | {r['median']:.4f} [{r['min']:.4f}, {r['max']:.4f}] | {r['median'] / base:.2f} "
                     f"{label} |")
    if lucent is not None:
        lines += ["", f"Lucent's render_vis takes {result['lucent_over_olah']:.1f}x the time per image of the "
                      f"engine running `olah` on all {n} items at once (same steps, parameterization and transforms)."]
    else:
        lines += ["", "Lucent is not installed, so its row is left out (see the script's docstring)."]
    lines += ["", f"Bare loop: {achieved:.1f} GFLOPS ({flops / 1e9:.2f} GFLOP per step of the batch) against "
                  f"{peak:.1f} GFLOPS for a {matmul_n}x{matmul_n} float32 matmul in the same run "
                  f"({achieved / peak:.0%})."]
    lines += extra_lines(variants, train)
    out = Path(args.out)
    write_text(out / "speed.json", json.dumps(result, indent=1))
    write_text(out / "speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


# ---- library pieces: transforms, blur and metrics, this commit against an earlier one in the same process ----

def module_at(rev: str, path: str, name: str):
    """The module at `path` as it was at git revision `rev`, imported under `name` (its own dgn_am imports resolve
    to this checkout), so two versions can be timed side by side in one process."""
    import importlib.util

    source = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True).stdout
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def library_cases(transforms, operators, metrics, batch: int) -> dict[str, Callable[[], object]]:
    """{row: call} on one version's modules (metrics: the one holding frechet_distance, kid and ClassMixFrechet):
    the olah transforms on a (batch, 1, 28, 28) image with a backward pass, the blur, and the metrics on features
    the size of the benchmark's (80 images, 10 classes, 200 real
    images per class, 512 penultimate features)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=gen, requires_grad=True)
    rng = np.random.default_rng(0)
    d = 512
    fake, classes = rng.normal(size=(80, d)), np.repeat(np.arange(10), 8)
    real = {c: rng.normal(size=(200, d)) + c for c in range(10)}
    rows = rng.integers(0, 80, 80)
    frechet = metrics.ClassMixFrechet(fake, classes, real)
    olah = [transforms.Pad(2), transforms.Jitter(1), transforms.RandomScale(0.9, 1.1), transforms.RandomRotate(10),
            transforms.Jitter(1)]

    def chain() -> None:
        g = torch.Generator().manual_seed(1)
        y = x
        for t in olah:
            y = t(y, g)
        y.sum().backward()

    def one(t) -> Callable[[], object]:
        return lambda: t(x.detach(), torch.Generator().manual_seed(1))

    return {"jitter 8 px": one(transforms.Jitter(8)), "pad 12 px": one(transforms.Pad(12)),
            "scale 0.9-1.1": one(transforms.RandomScale(0.9, 1.1)), "rotate 10 deg": one(transforms.RandomRotate(10)),
            "olah transforms + backward": chain,
            "gaussian blur sigma 1": lambda: operators.gaussian_blur(x.detach(), 1.0),
            "FID, 80 vs 200 features": lambda: metrics.frechet_distance(fake, real[0]),
            "KID, 80 vs 200, 50 subsets": lambda: metrics.kid(fake, real[0], subsets=50),
            "class-mix FID: build + all images": lambda: _class_mix_point(metrics, fake, classes, real),
            "class-mix FID: one bootstrap replicate": lambda: frechet.distance(rows)}


def _class_mix_point(metrics, fake, classes, real) -> float:
    """FID of all images against the class mix: fid() where the version has it (torchmetrics), else distance()."""
    f = metrics.ClassMixFrechet(fake, classes, real)
    return f.fid() if hasattr(f, "fid") else f.distance()


def library_main(argv: list[str] | None = None) -> dict:
    """PYTHONPATH=. python scripts/speed.py libraries [--before REV] [--batch B] [--repeats N] [--out DIR]
    (PYTHONPATH=.: time this checkout's dgn_am, not an installed copy)"""
    p = argparse.ArgumentParser(prog="speed.py libraries", description="transforms, blur and metrics: this "
                                "checkout against REV, in one process, interleaved")
    p.add_argument("--before", default="b8f6e06", help="git revision to compare with (default: before issue 18)")
    p.add_argument("--batch", type=int, default=80)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="docs/speed")
    args = p.parse_args(argv)
    from dgn_am import operators, transforms
    from dgn_am.evaluation import distances  # FID and KID since issue 18 (evaluation/metrics.py before)

    old = [module_at(args.before, f"dgn_am/{m}.py", f"_before_{m}") for m in ("transforms", "operators")]
    try:  # FID and KID live in evaluation/distances.py from issue 18 on
        old.append(module_at(args.before, "dgn_am/evaluation/distances.py", "_before_distances"))
    except subprocess.CalledProcessError:
        old.append(module_at(args.before, "dgn_am/evaluation/metrics.py", "_before_metrics"))
    before, after = library_cases(*old, args.batch), library_cases(transforms, operators, distances, args.batch)
    times: dict[str, dict[str, list[float]]] = {}
    for name in after:
        times[name] = {"before": [], "after": []}
        before[name](), after[name]()  # warm-up
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            for label, case in (("before", before[name]), ("after", after[name])):
                t0 = time.perf_counter()
                case()
                times[name][label].append(time.perf_counter() - t0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"command": "PYTHONPATH=. python scripts/speed.py libraries " + " ".join(argv if argv is not None
                                                                              else sys.argv[2:]),
              "commit": commit, "before": args.before, "batch": args.batch, "repeats": args.repeats,
              "threads": torch.get_num_threads(), "machine": platform.machine(), "device": "cpu",
              "versions": {"torch": torch.__version__, "python": platform.python_version(),
                           "torchvision": __import__("torchvision").__version__,
                           "torchmetrics": __import__("torchmetrics").__version__},
              "rows": {n: {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "seconds": v}
                           for k, v in t.items()} for n, t in times.items()}}
    lines = [f"`{result['command']}` (commit {commit} against {args.before}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats after a warm-up)", "",
             "| row | before: ms, median [min, max] | after: ms, median [min, max] | after / before |",
             "|---|---|---|---|"]
    for name, r in result["rows"].items():
        b, a = r["before"], r["after"]
        lines.append(f"| {name} | {1e3 * b['median']:.2f} [{1e3 * b['min']:.2f}, {1e3 * b['max']:.2f}] | "
                     f"{1e3 * a['median']:.2f} [{1e3 * a['min']:.2f}, {1e3 * a['max']:.2f}] | "
                     f"{a['median'] / b['median']:.2f} |")
    out = Path(args.out)
    write_text(out / "libraries.json", json.dumps(result, indent=1))
    write_text(out / "libraries.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["libraries"]:
        library_main(sys.argv[2:])
    else:
        main()
