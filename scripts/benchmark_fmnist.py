"""Reproduce the benchmark table for the embedded default (Fashion-MNIST, target fmnist-caffenet, fc8:0-9).

    python scripts/benchmark_fmnist.py                    # writes docs/benchmark/
    python scripts/benchmark_fmnist.py --seeds 8 --steps 200 --out /tmp/bench

Runs `dgn-am benchmark` with every method of the default list that is registered (missing ones are named in
the output), the default evaluators whose checkpoints exist, and a budget that finishes in about 20 minutes on
2 CPU cores: 10 units x 8 seeds, 100 steps for every method, 500 bootstrap replicates.
"""

from __future__ import annotations

import argparse
import sys

from dgn_am.cli import main as dgn_am_main
from dgn_am.evaluation.benchmark import DEFAULT_EVALUATORS, DEFAULT_METHODS
from dgn_am.methods import METHODS
from dgn_am.models.loading import SHIPPED, checkpoints_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--n-boot", type=int, default=500)
    p.add_argument("--out", default="docs/benchmark")
    args = p.parse_args(argv)
    methods = [m for m in DEFAULT_METHODS if m in METHODS]
    missing = [m for m in DEFAULT_METHODS if m not in METHODS]
    evaluators = [e for e in DEFAULT_EVALUATORS["fmnist-caffenet"] if (checkpoints_dir() / SHIPPED[e][2]).is_file()]
    if missing:
        print(f"not registered, left out: {', '.join(missing)}", file=sys.stderr)
    if len(evaluators) < 2:
        print(f"only {evaluators} of the default evaluators have checkpoints", file=sys.stderr)
    return dgn_am_main(["benchmark", "--model", "fmnist-caffenet", "--units", "fc8:0-9", "--methods", ",".join(methods),
                        "--seeds", str(args.seeds), "--steps", str(args.steps), "--evaluators", ",".join(evaluators),
                        "--n-boot", str(args.n_boot), "--out", args.out, "--overwrite"])


if __name__ == "__main__":
    sys.exit(main())
