"""Turning run_benchmark's dict into results.json, results.csv, a Markdown table and figure.png.

Functions here return text or draw onto a file path given by the caller; the CLI decides where files go and
writes them with dgn_am.imageio.atomic_write.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

# (key in summary, column header, higher is better, format)
COLUMNS = [
    ("activation", "act", True, "{:.2f}"),
    ("activation_norm", "act/top", True, "{:.2f}"),
    ("prob", "p(class)", True, "{:.2f}"),
    ("transfer_mean", "transfer", True, "{:.2f}"),
    ("kid_penult", "KID penult", False, "{:.3f}"),
    ("kid_early", "KID early", False, "{:.3f}"),
    ("fid_penult", "FID penult", False, "{:.2f}"),
    ("fid_early", "FID early", False, "{:.2f}"),
    ("density", "density", True, "{:.2f}"),
    ("diversity", "diversity", True, "{:.3f}"),
    ("coverage", "coverage", True, "{:.3f}"),
]


def _cell(s: dict | None, fmt: str) -> str:
    if not s or s.get("value") is None or (isinstance(s["value"], float) and math.isnan(s["value"])):
        return "-"
    text = fmt.format(s["value"])
    if s.get("lo") is not None:
        text += f" [{fmt.format(s['lo'])}, {fmt.format(s['hi'])}]"
    return text


def to_json(results: dict) -> str:
    """results.json: everything but the image tensors (per-image numbers, summaries, settings, calibration)."""
    keep = {k: v for k, v in results.items() if k not in ("images", "real_images_for_grid")}
    return json.dumps(keep, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def to_csv(results: dict) -> str:
    """results.csv: one row per method; value, lo, hi for every summary metric, then control and cost."""
    keys = sorted({k for e in results["methods"].values() for k in (e.get("summary") or {})})
    evs = results["settings"]["evaluators"]
    header = ["method", "error"] + [f"{k}{s}" for k in keys for s in ("", "_lo", "_hi")] + \
        [f"control_transfer_{ev}" for ev in evs] + ["control_transfer_mean", "seconds_per_image", "steps"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for name, e in results["methods"].items():
        s = e.get("summary") or {}
        row = [name, e.get("error") or ""]
        for k in keys:
            v = s.get(k) or {}
            row += [v.get("value"), v.get("lo"), v.get("hi")]
        c = e.get("control") or {}
        row += [(c.get(f"transfer_{ev}") or {}).get("value") for ev in evs]
        row += [(c.get("transfer_mean") or {}).get("value")]
        cost = e.get("cost") or {}
        row += [cost.get("seconds_per_image"), cost.get("steps")]
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_markdown(results: dict, command: str = "", commit: str = "") -> str:
    """The main table, the per-evaluator transferability, the control, the calibration table and its verdict."""
    st = results["settings"]
    b = st["budget"]
    lines = [f"Command: `{command}`  ", f"Commit: `{commit}`  ",
             f"Target: `{st['model']}`, units `{st['units']}`, {len(st['seed_list'])} seeds per unit; evaluators "
             f"(never used during optimization): {', '.join(f'`{e}`' for e in st['evaluators'])}.  ",
             f"Budget, the same for every method: {b['steps']} steps, {b['image_size'][0]}x{b['image_size'][1]} "
             f"images, {b['channels']} channel(s), values in [{b['value_range'][0]}, {b['value_range'][1]}]; "
             f"code methods use prior `{st['prior']}`.  ",
             f"Brackets: 95% bootstrap intervals ({st['n_boot']} replicates, units then seeds). act/top: activation "
             f"over the unit's top activation on the {st['normalization']['images']}. KID/FID: lower is better, "
             "mean over evaluators; `real-images` is the real-vs-real floor. density (realism): how many of the k-NN "
             "balls (k = 5) of the real images of the unit's class hold an image, over k, in an evaluator's "
             "penultimate features, mean over evaluators (about 1 for real images; precision, the fraction inside "
             "any ball, is in the JSON and CSV). coverage (diversity anchored to real images): fraction of "
             "those real images' balls that hold at least one of the unit's images; it grows with the number of "
             "seeds, so compare with `real-images` at the same count. FID and coverage intervals are centred on the "
             "estimate (a resample repeats images). diversity: mean pairwise cosine distance across seeds, not "
             "anchored to real images. Control: the method against a randomly initialized target.", ""]
    head = ["method"] + [c[1] for c in COLUMNS] + ["control transfer", "s/image", "steps"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in results["methods"].items():
        if e.get("error"):
            lines.append(f"| {name} | failed: {e['error'][:120]} |" + " |" * (len(head) - 2))
            continue
        s = e["summary"]
        ctrl = _cell((e.get("control") or {}).get("transfer_mean"), "{:.2f}") if e.get("control") else "n/a"
        cost = e["cost"]
        lines.append("| " + " | ".join([name] + [_cell(s.get(k), f) for k, _, _, f in COLUMNS] +
                                       [ctrl, f"{cost['seconds_per_image']:.3f}", str(cost["steps"])]) + " |")
    lines += ["", "Transferability per evaluator (top-1 agreement with the target class):", ""]
    evs = st["evaluators"]
    lines += ["| method | " + " | ".join(evs) + " | " + " | ".join(f"control {ev}" for ev in evs) + " |",
              "|---|" + "---|" * (2 * len(evs))]
    for name, e in results["methods"].items():
        if e.get("error"):
            continue
        c = e.get("control") or {}
        lines.append(f"| {name} | " + " | ".join(_cell(e["summary"].get(f"transfer_{ev}"), "{:.2f}") for ev in evs)
                     + " | " + " | ".join(_cell(c.get(f"transfer_{ev}"), "{:.2f}") if c else "n/a" for ev in evs)
                     + " |")
    lines += ["", calibration_markdown(results.get("calibration"))]
    return "\n".join(lines) + "\n"


def calibration_markdown(calib: dict | None) -> str:
    """The calibration table: every metric's value on every calibration input, and whether it ranks them honestly."""
    if not calib:
        return "Calibration: not run.\n"
    inputs = calib["inputs"]
    lines = [f"Calibration ({calib['seeds_per_class']} real test images per class, disjoint from the reference, "
             "and corrupted copies). A metric passes when real scores best, noise worst, and every corruption "
             "worse than real.", "",
             "| metric | " + " | ".join(inputs) + " | real best | noise worst | passes |",
             "|---|" + "---|" * (len(inputs) + 3)]
    for m, v in calib["verdicts"].items():
        vals = [calib["scores"][i].get(m) for i in inputs]
        lines.append(f"| {m} | " + " | ".join("-" if x is None else f"{x:.3g}" for x in vals) +
                     f" | {'yes' if v['real_best'] else 'NO'} | {'yes' if v['noise_worst'] else 'NO'} | "
                     f"{'yes' if v['passes'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def draw_figure(results: dict, path: str | Path) -> None:
    """figure.png: one image grid per method (rows = units, columns = seeds) side by side, with the real images,
    then a bar chart of the main metrics with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dgn_am.imageio import make_grid

    images = dict(results["images"])
    rows = len(results["settings"]["units_list"])
    names = list(images)
    metrics = [("transfer_mean", "transfer (higher better)"), ("activation_norm", "act/top (higher better)"),
               ("kid_early", "KID early (lower better)"), ("kid_penult", "KID penult (lower better)"),
               ("fid_early", "FID early (lower better)"), ("density", "density (higher better)"),
               ("coverage", "coverage (higher better)"),
               ("diversity", "diversity")]
    fig = plt.figure(figsize=(max(12, 1.6 * len(names)), 9), dpi=110)
    gs = fig.add_gridspec(2, max(len(names), len(metrics)), height_ratios=[1.6, 1])
    for i, name in enumerate(names):
        ax = fig.add_subplot(gs[0, i])
        grid = make_grid(images[name], rows=rows).numpy()
        ax.imshow(grid[0] if grid.shape[0] == 1 else grid.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    methods = [m for m, e in results["methods"].items() if not e.get("error")]
    for j, (key, label) in enumerate(metrics):
        ax = fig.add_subplot(gs[1, j])
        vals = [results["methods"][m]["summary"].get(key, {}) for m in methods]
        v = np.array([x.get("value", np.nan) if x else np.nan for x in vals], dtype=float)
        lo = np.array([x.get("lo") if x and x.get("lo") is not None else np.nan for x in vals], dtype=float)
        hi = np.array([x.get("hi") if x and x.get("hi") is not None else np.nan for x in vals], dtype=float)
        err = np.nan_to_num(np.stack([v - lo, hi - v]).clip(0))
        ax.bar(range(len(methods)), v, yerr=err, capsize=2, color="tab:blue")
        ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right", fontsize=7)
        ax.set_title(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
