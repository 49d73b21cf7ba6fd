"""Reproduce the benchmark tables for the embedded default (Fashion-MNIST, target fmnist-caffenet).

    python scripts/benchmark_fmnist.py                    # both tables: docs/benchmark/ and docs/benchmark/hidden/
    python scripts/benchmark_fmnist.py --only class --seeds 8 --steps 200 --out /tmp/bench

The class table runs `dgn-am benchmark` on fc8:0-9 with every method of the default list that is registered
(missing ones are named in the output), the default evaluators whose checkpoints exist, 8 seeds, 100 steps for
every method and 500 bootstrap replicates, plus gradient-free search over the prior's code (CMA-ES and XDream's
genetic algorithm, --search-budget scorer calls per image) next to gradient DGN-AM (`dgn-am`, the reference loop)
run for the same number of steps, i.e. forward passes. The hidden-unit table runs it on conv5:0-63 and fc6:0-63 (all of
conv5's channels and the first 64 units of fc6), 4 seeds each, 200 steps, with every prior-based method and two
hand-crafted ones, into OUT/hidden.
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
    p.add_argument("--only", choices=("class", "hidden"), default=None, help="run one of the two tables")
    p.add_argument("--hidden-seeds", type=int, default=4)
    p.add_argument("--hidden-steps", type=int, default=200)
    p.add_argument("--search-budget", type=int, default=200,
                   help="scorer calls per image of the search rows, and steps of the gradient row beside them")
    args = p.parse_args(argv)
    rc = 0 if args.only == "hidden" else run_class(args)
    if rc == 0 and args.only != "class":
        rc = dgn_am_main(["benchmark", "--model", "fmnist-caffenet", "--units", "conv5:0-63", "fc6:0-63",
                          "--seeds", str(args.hidden_seeds), "--steps", str(args.hidden_steps),
                          "--n-boot", str(args.n_boot), "--out", f"{args.out}/hidden", "--overwrite"])
    return rc


def run_class(args) -> int:
    budget = args.search_budget
    methods = [m for m in DEFAULT_METHODS if m in METHODS] + [f"search-cmaes@{budget}", f"search-ga@{budget}",
                                                              f"dgn-am@{budget}"]
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
