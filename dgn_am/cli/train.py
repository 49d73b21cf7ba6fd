"""`dgn-am train-classifier`, `dgn-am train-prior` and `dgn-am train-stylizer`: hand the rest of the command line
to the training side.

The training side (`training/`, Lightning) is an optional extra: it is imported only here, only when one of these
commands runs, so `import dgn_am` and every other command work without Lightning installed."""

from __future__ import annotations

import importlib

from dgn_am.errors import UsageError

# command -> (module, function): each takes the arguments after the command name
TRAINING_COMMANDS = {"train-classifier": ("training.classifier", "main"),
                     "train-prior": ("training.train_prior", "main"),
                     "train-stylizer": ("training.stylizer", "main")}
TRAINING_PACKAGES = ("lightning", "jsonargparse", "tensorboard")  # the [train] extra


def training_entry(command: str):
    """The training side's main function for `command`, or a UsageError that says how to install it."""
    module, function = TRAINING_COMMANDS[command]
    try:
        return getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] not in (*TRAINING_PACKAGES, "training"):
            raise
        raise UsageError(f"dgn-am {command} needs the training extra ({e.name} is not installed): "
                         "pip install 'dgn_am[train]'") from None


def run_training(command: str, argv: list[str]) -> int:
    """Run a training command with its own arguments `argv`; its parser may exit by itself (SystemExit)."""
    training_entry(command)(argv)
    return 0


def add_commands(sub) -> None:
    """List the training commands in dgn-am's help; `main` dispatches them before parsing."""
    sub.add_parser("train-classifier", help="train a target classifier (see: dgn-am train-classifier --help)",
                   add_help=False)
    sub.add_parser("train-prior", help="train a generator prior (see: dgn-am train-prior --help)", add_help=False)
    sub.add_parser("train-stylizer", help="train a fast style-transfer network for one style image (see: dgn-am "
                   "train-stylizer --help)", add_help=False)
