"""The rows of synthesize's manifest.jsonl, and which rows of an old manifest a --resume may keep.

One row per (unit, seed), in the order units x seeds. A finished item names its PNG in "path"; a failed one (the
engine stopped it on a non-finite value) has "failed" set to the reason and "path", "activation" and "prob" null.
Rows are written with dgn_am.errors.strict_dumps: strict JSON, null for any missing number.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dgn_am.errors import UsageError, strict_dumps


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks (for provenance records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# how the networks ran, which changes the images (docs/speed.md): the flag's default for manifests made before it
RUN_OPTIONS = {"precision": "float32", "channels_last": False}


def run_options(args: Any) -> dict:
    """The RUN_OPTIONS of a run, from its parsed flags."""
    return {k: getattr(args, k, v) for k, v in RUN_OPTIONS.items()}


def manifest_row(args: Any, method: Any, result: Any, row: int, unit: Any, seed: int, prob: float | None,
                 path: str, failed: str | None) -> dict:
    """The manifest row of item `row` of an engine Result. args: the parsed synthesize flags; method: the Method
    run; prob: the class probability when the unit is in the output layer, else None."""
    return {
        "method": method.name, "model": args.model, "layer": unit.layer,
        "unit": unit.index if unit.spatial in ("centre", None) else str(unit), "seed": seed,
        "steps": method.steps, "activation": None if failed else float(result.activations[row]),
        "activation_saved": None if failed else float(result.saved_activations[row]),
        "prob": None if failed else prob, "dead_start": bool(result.dead_start[row]) if result.dead_start else False,
        "stopped_at": result.stopped_at[row] if result.stopped_at else -1,
        "path": None if failed else path, "failed": failed,
        "settings": {**result.settings, "weights": args.weights, "prior": args.prior, "address": str(unit),
                     "device": args.device, "init_image": args.init_image, **run_options(args)},
    }


def run_signature(args: Any, name: str, method_settings: dict) -> dict:
    """What every kept row must share with this run: method name and settings (as synthesize records them, after
    rescaling to the model), model, weights, prior, start image, precision and memory format."""
    return {"name": name, "model": args.model, "weights": args.weights, "prior": args.prior,
            "init_image": args.init_image, "method": json.loads(strict_dumps(method_settings)), **run_options(args)}


def _row_signature(row: dict) -> dict:
    settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
    return {"name": row.get("method"), "model": row.get("model"), "weights": settings.get("weights"),
            "prior": settings.get("prior"), "init_image": settings.get("init_image"), "method": settings.get("method"),
            **{k: settings.get(k, v) for k, v in RUN_OPTIONS.items()}}  # older manifests: the defaults


def kept_rows(previous: list[dict], expected: dict[tuple[str, int], str], signature: dict, out: Path,
              folder: Path) -> dict[tuple[str, int], dict]:
    """--resume: {(address, seed): row} for the finished items of the old manifest whose PNG is in `folder`.

    expected: {(address, seed): file name} of every item this run makes. A UsageError for a manifest made with other
    settings, or holding items this run does not make (the folder would no longer match its manifest). Failed rows
    and rows whose PNG is missing are not kept: those items are computed again."""
    kept = {}
    for row in previous:
        settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
        key = (settings.get("address"), row.get("seed"))
        if key not in expected or row.get("method") != signature["name"]:
            raise UsageError(f"cannot --resume {out}: its manifest holds {key[0]} seed {key[1]} "
                             f"({row.get('method')}), which this run does not make; give the same or more "
                             "--units/--seeds and the same method, or use --overwrite")
        differs = [k for k, v in signature.items() if _row_signature(row)[k] != v]
        if differs:
            raise UsageError(f"cannot --resume {out}: its manifest was made with other settings ({', '.join(differs)}"
                             " differ); rerun with the same flags, or use --overwrite")
        if row.get("failed") is None and row.get("path") == expected[key] and (folder / expected[key]).is_file():
            kept[key] = row
    return kept
