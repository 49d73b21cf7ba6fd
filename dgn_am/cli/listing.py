"""`dgn-am layers` and `dgn-am methods`: what can be addressed and what can be run."""

from __future__ import annotations

import argparse

from dgn_am.cli.common import add_model_args, load_target


def cmd_layers(args: argparse.Namespace) -> int:
    """Print the model's layers: name, module type, output shape (without batch) and what NAME:UNIT reads."""
    from dgn_am.layers import POST_RELU, list_layers, relu_readings

    model = load_target(args)
    spec = model.input_spec
    readings = relu_readings(model)
    print(f"# {args.model}: input (B, {spec.channels}, {spec.size[0]}, {spec.size[1]}) in [0, 1]")
    print(f"# reading: what NAME:UNIT reads. 'before ReLU X' = the input of its last ReLU, as Caffe's in-place "
          f"ReLUs; NAME{POST_RELU}:UNIT reads after it")
    for name, kind, shape in list_layers(model):
        if args.all or "." not in name:
            reading = f"before ReLU {readings[name]}" if name in readings else "output"
            print(f"{name:<28} {kind:<20} {str(tuple(shape)):<16} {reading}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """Print the named methods: name, parameterization, steps and a one-line description."""
    from dgn_am.methods import METHODS

    for name, m in sorted(METHODS.items()):
        print(f"{name:<22} {m.parameterization:<8} {m.steps:>5} steps  {m.description}")
    return 0


def add_commands(sub) -> None:
    """Add `layers` and `methods` to the dgn-am subcommands."""
    p = sub.add_parser("layers", help="list a model's layers and output shapes")
    add_model_args(p)
    p.add_argument("--all", action="store_true", help="include nested modules (names with dots)")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("methods", help="list the named methods")
    p.set_defaults(func=cmd_methods)
