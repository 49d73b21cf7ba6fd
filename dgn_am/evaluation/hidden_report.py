"""Writing the hidden-unit benchmark: results.json, table.md, and one exemplar figure per layer."""

from __future__ import annotations

import json
from pathlib import Path

from dgn_am.errors import strict_dumps
from dgn_am.evaluation.figures import image_table
from dgn_am.imageio import write_text

COLUMNS = (("act_top", "act/top", "{:.2f}"), ("median_act_top", "median act/top", "{:.2f}"),
           ("nonpositive", "ends <= 0", "{:.3f}"), ("median_act_top_raw", "median act/top as optimized", "{:.2f}"),
           ("nonpositive_raw", "ends <= 0 as optimized", "{:.3f}"),
           ("realism_kid", "realism KID (lower better)", "{:.3f}"), ("diversity", "diversity", "{:.3f}"))


def _cell(s: dict, fmt: str) -> str:
    value = fmt.format(s["value"])
    return value if s.get("lo") is None else f"{value} [{fmt.format(s['lo'])}, {fmt.format(s['hi'])}]"


def to_markdown(results: dict, command: str = "", commit: str = "") -> str:
    """One table per layer (and one over all units): every summary with its 95% interval, and the cost."""
    st = results["settings"]
    lines = [f"Hidden units of {st['model']}: {', '.join(st['units'])}, {st['seeds']} seeds each, evaluators "
             f"{', '.join(st['evaluators'])}; realism against each unit's test images ranked {st['seeds'] + 1}.."
             f"{st['seeds'] + st['top_k']}. Activations are read on the saved images (clipped to [0, 1]); 'as "
             "optimized' reads them as the target saw them in the loop (differs only for dgn-am, which feeds the raw "
             f"generator output). 95% intervals: bootstrap over units, then seeds ({st['n_boot']}).", ""]
    if command:
        lines += [f"Command: `{command}`" + (f" (commit {commit})" if commit else ""), ""]
    for layer in st["layers"] + ["all"]:
        n = len([u for u in st["units_list"] if u.split(":")[0] == layer]) if layer != "all" else len(st["units_list"])
        lines += [f"### {layer} ({n} units)", "",
                  "| method | " + " | ".join(c[1] for c in COLUMNS) + " | s / image | steps |",
                  "|---" * (len(COLUMNS) + 3) + "|"]
        for name, entry in results["methods"].items():
            s = entry["summary"][layer]
            cost = entry["cost"]
            lines.append(f"| {name} | " + " | ".join(_cell(s[k], f) for k, _, f in COLUMNS) +
                         f" | {cost['seconds_per_image']:.2f} | {cost['steps']} |")
        lines.append("")
    return "\n".join(lines)


def draw_exemplars(results: dict, out: Path, per_layer: int = 6, methods: list[str] | None = None) -> list[Path]:
    """exemplars_LAYER.png: for the first `per_layer` units of each layer, its top 9 test images (left) beside
    each method's images of it. Returns the paths written."""
    st = results["settings"]
    seeds = len(st["seed_list"])
    names = methods or [m for m in results["images"] if m not in ("noise", "top-images")]
    paths = []
    for layer in st["layers"]:
        idx = [i for i, u in enumerate(st["units_list"]) if u.split(":")[0] == layer][:per_layer]
        cells = [[results["test_images"][results["exemplars"][i]]] +
                 [results["images"][m][i * seeds: (i + 1) * seeds] for m in names] for i in idx]
        path = out / f"exemplars_{layer}.png"
        image_table(cells, [st["units_list"][i] for i in idx], ["top 9 test images"] + names, path,
                    cols=[3] + [seeds] * len(names), scale=2,
                    title=f"{st['model']} {layer}: natural exemplars beside synthesized preferred inputs")
        paths.append(path)
    return paths


def write_hidden(results: dict, out: Path, command: str, commit: str) -> None:
    results["settings"]["command"], results["settings"]["commit"] = command, commit
    data = {k: v for k, v in results.items() if k not in ("images", "test_images", "exemplars")}
    data["exemplars"] = results["exemplars"].tolist()
    plain = json.loads(json.dumps(data, default=lambda o: o.tolist() if hasattr(o, "tolist") else float(o)))
    for name, text in (("results.json", strict_dumps(plain, indent=1)),
                       ("table.md", to_markdown(results, command, commit))):
        write_text(out / name, text)
    draw_exemplars(results, out)
