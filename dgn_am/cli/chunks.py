"""The running part of `dgn-am synthesize`: cut the items into chunks, open --out (and the part folder of a killed
run), run this rank's chunks saving each as it ends, and merge every rank's part into --out (dgn_am.shards)."""

from __future__ import annotations

from pathlib import Path

import torch

from dgn_am.cli.common import output_layer
from dgn_am.errors import UsageError
from dgn_am.manifest import kept_rows, manifest_row
from dgn_am.shards import link_into
from dgn_am.imageio import make_grid, read_image, save_image, save_labelled_grid, view_scale


EXTRAS = {"transparency": "transparency.png", "panel": "panels.png"}  # an item's extra images: row key -> grid


def chunk_size(args, model, method, units, seeds, prior) -> int:
    """Units per chunk: --batch-size items (at least one unit), and within --max-memory (dgn_am.memory). The frames
    of an --interpolate run are one batch (they are optimized together)."""
    if args.interpolate:
        if args.max_memory is not None:
            raise UsageError("--max-memory cannot cut an --interpolate run: its frames are optimized together; "
                             "drop --max-memory or use fewer --frames")
        return len(units)
    size = max(1, args.batch_size // len(seeds)) if args.batch_size else len(units)
    if args.max_memory is not None:
        from dgn_am.memory import chunk_units, estimate, parse_size

        budget = parse_size(args.max_memory)
        size = min(size, chunk_units(budget, estimate(model, units[0], seeds[0], method, prior), len(seeds)))
    return size


def open_run(args, folder, part, files, signature) -> dict:
    """Rank 0, before any work: lock and open --out, clear or keep the part folder of a killed run, and return the
    rows --resume keeps ({(address, seed): row}, from --out's manifest and the part folder's journals)."""
    folder.open()
    try:
        kept = kept_rows(folder.previous, files, signature, Path(args.out), folder.path)
        if part.exists() and args.overwrite:
            part.remove()
        elif part.exists() and not args.resume:
            raise UsageError(f"a killed run left {len(part.rows())} finished items in {part.path}; pass --resume to "
                             "keep them and compute the rest, or --overwrite to start again")
        elif part.exists():
            kept.update(kept_rows(part.rows(), files, signature, Path(args.out), part.path))
        part.create()
    except BaseException:
        folder.discard()
        raise
    return kept


def run_chunks(args, model, method, chunks: list, seeds, prior, files, kept, part, rank: int, world: int) -> None:
    """Synthesize this rank's chunks, saving each image to the part folder and its row to this rank's journal as
    soon as its chunk is done (a chunk's kept items are computed with it, for the same results, but not saved)."""
    from tqdm import tqdm

    from dgn_am.methods import synthesize

    with tqdm(total=method.steps * len(chunks), desc=f"{method.name}", unit="step",
              disable=args.quiet or rank > 0) as bar:
        for n, units in enumerate(chunks, 1):
            bar.set_description(f"{method.name} chunk {n}/{len(chunks)}" + (f" of rank 0/{world}" if world > 1 else ""))
            with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16,
                                enabled=args.precision == "bf16"):
                result, items = synthesize(model, units, seeds, method, prior=prior,
                                           progress=lambda i, k, s: (bar.update(1),
                                                                     bar.set_postfix(act=f"{s.nanmean():.2f}")))
            with torch.no_grad():
                logits = model(result.images)
            rows = []
            panels = accentuation_seeds(method, len(items))  # (B, C, H, W) or None, once per chunk
            for row, (unit, seed) in enumerate(items):
                key = (str(unit), seed)
                if key in kept:
                    continue
                failed = result.failed[row] if result.failed else None
                prob = None
                if failed is None and output_layer(model, unit.layer):
                    prob = float(torch.softmax(logits[row].flatten(), 0)[unit.index])
                record = manifest_row(args, method, result, row, unit, seed, prob, files[key], failed)
                if failed is None:
                    save_image(result.images[row], part.file(files[key]))
                    record.update(save_extras(result, row, files[key], part, panels))
                rows.append(record)
            part.append(rank, rows)


def merge_parts(folder, part, kept: dict, order: list) -> tuple[dict, dict]:
    """Rank 0, once every rank is done: bring the part folder's PNGs into --out's temporary folder. Returns (manifest
    rows, images (C, H, W)), both keyed by (address, seed); a finished row wins over a failed one."""
    rows = dict(kept)
    for row in part.rows():
        key = (row["settings"]["address"], row["seed"])
        if row["failed"] is None and part.file(row["path"]).is_file():
            for name in [row["path"]] + [row[k] for k in EXTRAS if row.get(k)]:
                link_into(part.file(name), folder.file(name))
            rows[key] = row
        elif key not in rows:
            rows[key] = row
    missing = [k for k in order if k not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} items have no row after every rank finished (first: {missing[0]})")
    cells = {k: read_image(folder.file(rows[k]["path"])) for k in order if rows[k]["failed"] is None}
    return rows, cells


def accentuation_seeds(method, batch: int) -> torch.Tensor | None:
    """An accentuation method's seed images (batch, C, H, W), for the items' panels; None for other methods."""
    from dgn_am.accentuation import seed_images

    return seed_images(method, batch) if "keep_weight" in dict(method.options) else None


def save_extras(result, row: int, name: str, part, seeds: torch.Tensor | None) -> dict:
    """Beside an item's PNG: MACO's transparency map (`*_transparency.png`, grey, 1 = the most gradient) and, given
    the accentuation seeds (B, C, H, W), the seed | accentuation | difference panel (`*_panel.png`). Returns their
    manifest entries."""
    from dgn_am.accentuation import panel

    out = {}
    stem = name[: -len(".png")]
    if "transparency" in result.extras:
        out["transparency"] = f"{stem}_transparency.png"
        save_image(result.extras["transparency"][row], part.file(out["transparency"]))
    if seeds is not None:
        out["panel"] = f"{stem}_panel.png"
        save_image(panel(seeds[row], result.images[row].cpu()), part.file(out["panel"]), scale=2)
    return out


def write_extra_grids(units, order: list, rows: dict, folder) -> None:
    """transparency.png (MACO) and panels.png (accentuation): the items' extra images in grid.png's layout, one row
    per unit (failed items, and kept items whose extra image is gone, blank)."""
    for key, grid_name in EXTRAS.items():
        files = {k: rows[k].get(key) for k in order}
        cells = {k: read_image(folder.file(f)) for k, f in files.items() if f and folder.file(f).is_file()}
        if not cells:
            continue
        blank = torch.ones_like(next(iter(cells.values())))
        grid = make_grid(torch.stack([cells.get(k, blank) for k in order]), rows=len(units))
        save_labelled_grid(grid, [str(u) for u in units], folder.file(grid_name), rows=len(units),
                           scale=view_scale(blank.shape[-2:]))
