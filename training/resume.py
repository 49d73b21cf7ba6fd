"""Checkpoints that survive kill -9, and resuming from them safely. Shared by both trainers.

- `AtomicCheckpointIO`: every Lightning checkpoint is written to a temporary file beside its target and renamed into
  place, so a run killed while saving leaves the previous checkpoint whole.
- `resume_path(path)`: the --ckpt_path to hand to Trainer.fit, checked first: a missing or unreadable file is a
  one-line error, not a traceback deep inside Lightning.
- Every resume passes `weights_only=True` to Trainer.fit explicitly: a checkpoint is data, and a crafted one must not
  run code even when TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set in the environment.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dgn_am.errors import UsageError

WEIGHTS_ONLY = True  # passed to every Trainer.fit(ckpt_path=...) in training/


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file in the target's folder, then os.replace: never a half-written checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        """Loads with weights_only=True unless the caller explicitly asks otherwise (nothing in training/ does)."""
        kwargs = {} if map_location is None else {"map_location": map_location}
        try:
            return super().load_checkpoint(path, weights_only=WEIGHTS_ONLY if weights_only is None else weights_only,
                                           **kwargs)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise unsafe_checkpoint(path, e) from None


def resume_path(path: str | Path | None, flag: str = "--ckpt_path") -> str | None:
    """path as a string if it names a readable checkpoint file, None if not given; else a UsageError."""
    if path is None or str(path) == "":
        return None
    p = Path(path)
    if not p.is_file():
        hint = " (Lightning's 'last' and 'best' are not supported here; give the file, e.g. runs/.../last.ckpt)" \
            if str(path) in ("last", "best", "hpc", "registry") else ""
        raise UsageError(f"{flag} {path}: no such checkpoint file{hint}; give the path of a .ckpt that a run wrote, "
                         f"or leave {flag} out to start from scratch")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{flag} {path}: cannot read it (permission denied)")
    return str(p)


def unsafe_checkpoint(path: str | Path, e: Exception) -> UsageError:
    """The one-line error for a checkpoint that does not load with weights_only=True, or does not load at all."""
    reason = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, pickle.UnpicklingError):
        return UsageError(f"checkpoint {path} does not load safely (weights only: it holds objects that would run "
                          f"code: {reason[-300:]}); resume only from checkpoints written by dgn-am train-*")
    return UsageError(f"checkpoint {path} cannot be read ({reason[:300]}); is it a whole .ckpt file?")


def checkpoint_step(path: str | Path) -> tuple[int, int]:
    """(epoch, global_step) stored in a Lightning checkpoint, read safely."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return int(ckpt["epoch"]), int(ckpt["global_step"])
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError) as e:
        raise unsafe_checkpoint(path, e) from None


def resume_record(path: str | None) -> dict | None:
    """{"path", "epoch", "global_step"} of the checkpoint a run resumes from (for the exported file's provenance),
    or None for a run from scratch."""
    if path is None:
        return None
    epoch, step = checkpoint_step(path)
    return {"path": path, "epoch": epoch, "global_step": step}
