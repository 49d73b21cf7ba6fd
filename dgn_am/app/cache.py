"""Preferred inputs per unit, kept as `dgn-am synthesize` output folders so the CLI and the app share results.

The folder of one (method, unit) is ROOT/MODEL/METHOD/STEM (STEM as synthesize names files: fc8_u3, conv5_u12):
one PNG per seed, grid.png and manifest.jsonl, exactly what

    dgn-am synthesize --model MODEL --method METHOD --units UNIT --seeds N [--steps S] --out ROOT/MODEL/METHOD/STEM

writes. Either side can fill the cache: `dgn-am synthesize --resume` on a folder the app wrote keeps every image,
and the app reads a folder the CLI wrote, as long as the settings (method, steps, seeds, weights, prior) match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from dgn_am.cli.common import output_layer, unit_stem
from dgn_am.errors import UsageError
from dgn_am.layers import Unit
from dgn_am.manifest import kept_rows, manifest_row, run_signature
from dgn_am.outdir import MANIFEST, OutputFolder, file_part, read_manifest
from dgn_am.imageio import make_grid, save_image, save_labelled_grid, view_scale, write_jsonl


@dataclass(frozen=True)
class CacheSettings:
    """What the cached images are made with; the same as the synthesize flags of the same name."""

    root: Path  # the cache folder
    model: str  # --model
    weights: str | None = None  # --weights
    prior: str = "fmnist-fc6"  # --prior, for code methods
    device: str = "cpu"  # --device
    seeds: int = 4  # --seeds: images per unit, seeds 0..seeds-1
    steps: int | None = None  # --steps; None: each method's own

    def args(self) -> SimpleNamespace:
        """The synthesize flags that manifest rows record."""
        return SimpleNamespace(model=self.model, weights=self.weights, prior=self.prior, device=self.device,
                               init_image=None)


class PreferredCache:
    """Reads and writes the synthesize folder of each (method, unit)."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings

    def method(self, name: str):
        """The Method `name` with the --steps override, as synthesize composes it."""
        from dgn_am.methods import get_method

        return get_method(name).with_overrides(steps=self.settings.steps)

    def folder(self, method: str, unit: Unit) -> Path:
        return self.settings.root / file_part(self.settings.model) / method / unit_stem(unit)

    def files(self, method: str, unit: Unit) -> dict[tuple[str, int], str]:
        """{(address, seed): PNG name}, as synthesize names them."""
        return {(str(unit), s): f"{unit_stem(unit)}_s{s}_{method}.png" for s in range(self.settings.seeds)}

    def _signature(self, model: torch.nn.Module, method) -> dict:
        return run_signature(self.settings.args(), method.name, method.rescaled(model.input_spec.size).settings())

    def read(self, model: torch.nn.Module, name: str, unit: Unit) -> list[dict] | None:
        """The manifest rows of every seed, in seed order, when the folder holds them all with these settings
        (failed items included, with "failed" set); None when it is missing, incomplete or made otherwise."""
        folder = self.folder(name, unit)
        if not (folder / MANIFEST).is_file():
            return None
        files = self.files(name, unit)
        try:
            rows = read_manifest(folder / MANIFEST)
            kept_rows(rows, files, self._signature(model, self.method(name)), folder, folder)
        except UsageError:
            return None
        by_key = {(r["settings"]["address"], r["seed"]): r for r in rows}
        if set(by_key) != set(files):
            return None
        if any(r["failed"] is None and not (folder / r["path"]).is_file() for r in by_key.values()):
            return None
        return [by_key[k] for k in files]

    def compute(self, model: torch.nn.Module, prior, name: str, unit: Unit,
                progress: Callable[[float], None] = lambda f: None) -> list[dict]:
        """Synthesize every seed of the unit and write its folder (replacing a stale one) in one rename. Returns
        the manifest rows. prior: the loaded prior for code methods, else None."""
        from dgn_am.methods import synthesize

        method = self.method(name)
        seeds = list(range(self.settings.seeds))
        files = self.files(name, unit)
        result, items = synthesize(model, [unit], seeds, method, prior=prior,
                                   progress=lambda i, n, s: progress((i + 1) / n))
        with torch.no_grad():
            logits = model(result.images)
        is_output = output_layer(model, unit.layer)
        rows, cells = [], []
        with OutputFolder(self.folder(name, unit), overwrite=True) as folder:
            for row, (u, seed) in enumerate(items):
                failed = result.failed[row] if result.failed else None
                prob = float(torch.softmax(logits[row].flatten(), 0)[u.index]) if is_output and not failed else None
                rows.append(manifest_row(self.settings.args(), method, result, row, u, seed, prob,
                                         files[(str(u), seed)], failed))
                image = result.images[row].detach().cpu()
                cells.append(torch.ones_like(image) if failed else image)
                if failed is None:
                    save_image(image, folder.file(files[(str(u), seed)]))
            grid = make_grid(torch.stack(cells), rows=1)
            save_labelled_grid(grid, [str(unit)], folder.file("grid.png"), rows=1,
                               scale=view_scale(model.input_spec.size))
            write_jsonl(folder.file(MANIFEST), rows)
        return rows
