"""A `dgn-am benchmark` output folder, read for the benchmark page: its table.md as blocks of text and tables
(the intervals stay in the cells, as the table writes them), the settings from results.json, and its figures.
Works for the class benchmark (images.png, realism.png, ...) and the hidden-unit one (exemplars_*.png).
"""

from __future__ import annotations

import json
from pathlib import Path


def _split_row(line: str) -> list[str]:
    """'| a | b [1, 2] |' -> ['a', 'b [1, 2]'] (a cell holding a pipe escaped as \\| keeps it)."""
    cells = line.strip().strip("|").replace("\\|", "\0").split("|")
    return [c.strip().replace("\0", "|") for c in cells]


def parse_markdown(text: str) -> list[dict]:
    """Blocks of a markdown document: {"table": {"head": [...], "rows": [[...], ...]}} for each pipe table and
    {"text": "..."} for each paragraph between them."""
    blocks: list[dict] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            head, rows = _split_row(line), []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            blocks.append({"table": {"head": head, "rows": rows}})
            continue
        if line.strip():
            if blocks and "text" in blocks[-1] and lines[i - 1].strip():
                blocks[-1]["text"] += " " + line.strip()
            else:
                blocks.append({"text": line.strip()})
        i += 1
    return blocks


def read_benchmark(folder: Path) -> dict:
    """{"folder", "blocks" (table.md), "settings" (results.json's), "figures" (PNG names, the image grids per method
    first)}. ValueError when the folder holds no table.md."""
    folder = Path(folder)
    table = folder / "table.md"
    if not table.is_file():
        raise ValueError(f"{folder} holds no table.md; give --benchmark a folder written by `dgn-am benchmark --out`")
    settings = {}
    results = folder / "results.json"
    if results.is_file():
        try:
            settings = json.loads(results.read_text()).get("settings", {})
        except (json.JSONDecodeError, AttributeError):
            settings = {}
    keep = ("model", "units", "methods", "seeds", "steps", "evaluators", "prior", "command", "commit")
    return {"folder": str(folder), "blocks": parse_markdown(table.read_text()),
            "settings": {k: settings[k] for k in keep if k in settings},
            "figures": sorted((p.name for p in folder.glob("*.png") if p.is_file()),
                              key=lambda n: (not n.startswith(("images", "exemplars")), n))}  # image grids first


def figure_path(folder: Path, name: str) -> Path:
    """The path of a figure the folder lists; KeyError for any other name (never a path outside the folder)."""
    folder = Path(folder)
    if name not in {p.name for p in folder.glob("*.png") if p.is_file()}:
        raise KeyError(f"no figure {name!r} in {folder}")
    return folder / name
