"""Experiment loggers. wandb runs offline by default: no account needed, `wandb sync DIR` uploads later."""

from __future__ import annotations

import os
from pathlib import Path

LOGGERS = ("wandb", "csv", "tensorboard", "none")


def make_logger(kind: str, save_dir: str | Path, name: str, online: bool = False):
    """Return a Lightning logger of the given kind writing under save_dir, or False for 'none'."""
    from lightning.pytorch import loggers

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    if kind == "wandb":
        if not online:
            os.environ.setdefault("WANDB_MODE", "offline")
        return loggers.WandbLogger(name=name, project="dgn_am", save_dir=str(save_dir), offline=not online)
    if kind == "csv":
        return loggers.CSVLogger(str(save_dir), name=name)
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(str(save_dir), name=name)
    if kind == "none":
        return False
    raise ValueError(f"unknown logger '{kind}'; choose one of {', '.join(LOGGERS)}")
