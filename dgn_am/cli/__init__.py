"""The `dgn-am` command line: argument parsing and file output only; the work happens in the library.

One module per command group, all sharing `common`; none imports another:

    synthesize     dgn-am synthesize
    listing        dgn-am layers, dgn-am methods
    stats          dgn-am code-stats, dgn-am evaluate, dgn-am spectrum
    train          dgn-am train-classifier, dgn-am train-prior (the optional training side)
    explain        dgn-am explain
    dataset_views  dgn-am dataset-views
    benchmark      dgn-am benchmark
    texture        dgn-am texture, dgn-am style
    fooling        dgn-am fool
    facets         dgn-am facets
    invert         dgn-am invert (feature inversion)
    dream          dgn-am dream (DeepDream)
    import_caffe   dgn-am import-caffe
    serve          dgn-am serve (the browser toolbox in dgn_am/app; its web stack is imported only when it runs)
    search         dgn-am search (gradient-free search over a prior's code)
    invariance     dgn-am invariance (Hessian eigenpairs of a unit: its invariances)

Besides `common`, `chunks` holds synthesize's running part (chunks, the part folder, merging the ranks' parts).
"""

from __future__ import annotations

import argparse
import sys

from dgn_am.cli import (benchmark, dataset_views, dream, explain, facets, fooling, import_caffe, invariance, invert,
                        listing, search, serve, stats, synthesize, texture, train)
from dgn_am.errors import ArgumentParser, report


def build_parser() -> argparse.ArgumentParser:
    """The dgn-am parser with every subcommand; each sets `func`, which takes the parsed arguments."""
    parser = ArgumentParser(prog="dgn-am", description="Synthesize the preferred inputs of neurons. Errors in the "
                            "input exit with status 2, unexpected errors with 1; add --debug anywhere on the command "
                            "line for a traceback.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (synthesize, listing, stats, train, explain, dataset_views, benchmark, invert, dream, texture, fooling,
                  facets, import_caffe, serve, search, invariance):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input, 1 unexpected error or failed items, 130 Ctrl-C).
    `--debug` anywhere on the line prints the traceback of an error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    prog = "dgn-am" + (f" {argv[0]}" if argv and not argv[0].startswith("-") else "")
    try:
        if argv and argv[0] in train.TRAINING_COMMANDS:
            return train.run_training(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        args.argv = argv  # the command line as given, for the provenance a command records
        return args.func(args)
    except SystemExit as e:  # --help, or a parser of the training side that exits by itself
        return e.code if isinstance(e.code, int) else (0 if e.code is None else _print_exit(e.code, prog))
    except BaseException as e:  # noqa: BLE001 - every error leaves through one path
        return report(e, prog, debug)


def _print_exit(message: object, prog: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
