"""The texture, style and fooling figures of docs/methods.md, from the output folders its commands wrote.

    python scripts/methods_figures.py [--runs out/methods] [--out docs/img/methods]

Each figure stacks runs as labelled rows (the inputs first, then one column per seed); the facets figures are the
commands' facets.png at half size. It reads only the PNGs and JSON the commands wrote, and computes nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image

from dgn_am.imageio import load_image, make_grid, read_image, save_labelled_grid
from dgn_am.models.fmnist import FASHION_MNIST_INPUT

FIGURES = {  # figure name -> [(row label, run folder, input files shown first)]
    "texture-layers": [(label, f"texture-{run}", ["docs/img/fmnist-test-0.png"]) for label, run in (
        ("conv1", "conv1"), ("conv1-2", "conv1-conv2"), ("conv1-3", "conv1-conv2-conv3"),
        ("conv1-5", "conv1-conv2-conv3-conv4-conv5"), ("conv1-3, prior", "conv1-conv2-conv3-code"))] + [
        ("conv1-3", "texture-shirt", ["docs/img/methods/fmnist-test-4.png"]),
        ("conv1-3, prior", "texture-shirt-code", ["docs/img/methods/fmnist-test-4.png"])],
    "style": [(f"{kind}, alpha {w}", f"style{suffix}-{w}", ["docs/img/methods/fmnist-test-1.png",
                                                           "docs/img/methods/fmnist-test-4.png"])
              for kind, suffix in (("pixels", ""), ("prior", "-code")) for w in ("1e-4", "1e-5", "1e-6")],
}
FACETS = ("dgn-am-class", "nguyen-handcrafted")  # facets-METHOD runs, copied at half size in grey
FOOLING = {"gradient, direct": "fool-gradient", "CMA-ES, direct": "fool-evolution-direct",
           "CMA-ES, CPPN": "fool-evolution-cppn"}


def _texture_rows(runs: Path, rows: list) -> tuple[list[torch.Tensor], list[str]]:
    cells, labels = [], []
    for label, run, inputs in rows:
        record = json.loads((runs / run / f"{run.split('-')[0]}.json").read_text())
        shown = [load_image(p, FASHION_MNIST_INPUT)[0] for p in inputs]
        made = [read_image(runs / run / r["path"]) for r in record["images"]]
        cells.append(torch.stack([torch.nn.functional.interpolate(x[None], scale_factor=4)[0] for x in shown]
                                 + made))
        labels.append(label)
    width = max(len(c) for c in cells)
    blank = torch.ones_like(cells[0][0])
    return [torch.cat([c, blank.expand(width - len(c), *blank.shape)]) for c in cells], labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="out/methods")
    p.add_argument("--out", default="docs/img/methods")
    args = p.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    for name, rows in FIGURES.items():
        cells, labels = _texture_rows(runs, rows)
        save_labelled_grid(make_grid(torch.cat(cells), rows=len(cells)), labels, out / f"{name}.png", rows=len(cells))
    cells, labels = [], []
    for label, run in FOOLING.items():
        record = json.loads((runs / run / "fooling.json").read_text())
        for seed in record["settings"]["seeds"]:
            cells += [read_image(runs / run / r["path"]) for r in record["images"] if r["seed"] == seed]
            labels.append(f"{label}, seed {seed}")
    save_labelled_grid(make_grid(torch.stack(cells), rows=len(labels)), labels, out / "fooling.png", rows=len(labels))
    for method in FACETS:
        im = Image.open(runs / f"facets-{method}" / "facets.png")
        im = im.convert("L").resize((im.width // 2, im.height // 2), Image.NEAREST)
        im.save(out / f"facets-{method}.png", optimize=True)


if __name__ == "__main__":
    main()
