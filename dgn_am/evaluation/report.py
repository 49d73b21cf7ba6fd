"""Turning run_benchmark's dict into results.json, results.csv, a Markdown table and figures (images.png and one
bar chart per question: realism.png, diversity.png, transfer.png).

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
    ("path_similarity", "path sim", True, "{:.2f}"),
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
    from dgn_am.errors import strict_dumps

    keep = {k: v for k, v in results.items() if k not in ("images", "real_images_for_grid")}
    plain = json.loads(json.dumps(keep, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return strict_dumps(plain, indent=1)  # strict JSON: a NaN statistic (one seed drawn twice) becomes null


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
             f"Budget, the same for every method (but a row named NAME@N: N steps, or N scorer calls for a search): "
             f"{b['steps']} steps, {b['image_size'][0]}x{b['image_size'][1]} "
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
             "anchored to real images. path sim: Spearman correlation of the image's per-layer channel pattern with "
             "that of the unit's 20 top reference images, mean over the layers before the unit (Geirhos et al. "
             "2024). steps: for a search row, scorer calls per image. Control: the method against a randomly "
             "initialized target.", ""]
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


FIGURE_QUESTIONS = {  # file -> (title, [(summary key, label)]): one bar chart per question
    "realism.png": ("Which prior gives realistic images? (green: learned prior, blue: hand-crafted, grey: references)",
                    [("fid_early", "FID early (lower better)"), ("fid_penult", "FID penult (lower better)"),
                     ("density", "density (higher better)")]),
    "diversity.png": ("Which prior gives diverse images?",
                      [("coverage", "coverage of real images (higher better)"), ("diversity", "pairwise diversity")]),
    "transfer.png": ("Which prior's images transfer to networks never used to make them?",
                     [("transfer_mean", "evaluators' top-1 (higher better)"), ("activation_norm", "act/top on the target")]),
}


def draw_bars(results: dict, path: str | Path, title: str, metrics: list[tuple[str, str]]) -> None:
    """A row of horizontal bar charts, one per metric, methods down the side, 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m, e in results["methods"].items() if not e.get("error")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.32 * len(methods) + 1.4), dpi=100,
                             sharey=True, squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics):
        vals = [results["methods"][m]["summary"].get(key, {}) for m in methods]
        v = np.array([x.get("value", np.nan) if x else np.nan for x in vals], dtype=float)
        lo = np.array([x.get("lo") if x and x.get("lo") is not None else np.nan for x in vals], dtype=float)
        hi = np.array([x.get("hi") if x and x.get("hi") is not None else np.nan for x in vals], dtype=float)
        err = np.nan_to_num(np.stack([v - lo, hi - v]).clip(0))
        colours = ["tab:green" if m.startswith("dgn-am") else "tab:grey" if m in ("real-images", "noise")
                   else "tab:blue" for m in methods]
        ax.barh(range(len(methods)), v, xerr=err, capsize=2, color=colours)
        ax.set_yticks(range(len(methods)), methods, fontsize=10)
        ax.invert_yaxis()
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_images(results: dict, path: str | Path, seeds: int = 4) -> None:
    """images.png: one row per method (real images first), one column per unit (its class name when known), the
    first `seeds` images of each unit in a 2-column block, enlarged 2x so garments are visible."""
    from dgn_am.evaluation.figures import image_table

    st = results["settings"]
    units = st["units_list"]
    n = len(st["seed_list"])
    k = min(seeds, n)
    names = ["real-images"] + [m for m in results["images"] if m != "real-images" and "(control)" not in m]
    labels = st.get("class_names") or units
    cells = [[results["images"][m][u * n: u * n + k] for u in range(len(units))] for m in names]
    image_table(cells, names, [str(x) for x in labels], path, cols=[2] * len(units), scale=2,
                title=f"Preferred inputs of {st['model']}'s output units, first {k} seeds per unit")


def draw_figures(results: dict, out: str | Path) -> list[Path]:
    """images.png and one bar chart per question (FIGURE_QUESTIONS) in out. Returns the paths written."""
    from dgn_am.imageio import atomic_write

    out = Path(out)
    paths = [out / "images.png"]
    draw_images(results, paths[0])
    for name, (title, metrics) in FIGURE_QUESTIONS.items():
        atomic_write(out / name, lambda tmp, t=title, m=metrics: draw_bars(results, tmp, t, m))
        paths.append(out / name)
    return paths
