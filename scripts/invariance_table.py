"""The table of docs/invariance.md from the invariance.json of `dgn-am invariance` runs.

    python scripts/invariance_table.py out/invariance/pixels-softplus10 out/invariance/code-softplus10 ...

One row per folder and target: the objective at the point, |gradient|, the largest and the smallest eigenvalue,
the activation change at t = -r and +r along the top and the bottom direction on the network, on the surrogate (when
smoothed) and as the quadratic model f + t g.v + t^2 lambda / 2 predicts it, the near-zero eigenvalues (solver
full), Hessian-vector products and seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(folder: Path) -> list[str]:
    report = json.loads((folder / "invariance.json").read_text())
    out = []
    for t in report["targets"]:
        values, path, mid = t["eigenvalues"], t["path"], len(t["ts"]) // 2

        def change(j: int, p: list) -> str:
            return f"{p[j][0] - p[j][mid]:+.2f} / {p[j][-1] - p[j][mid]:+.2f}"

        def cell(j: int) -> str:
            surrogate = f"; {change(j, t['path_surrogate'])}" if t["path_surrogate"] else ""
            return f"{change(j, path)}{surrogate}; {change(j, t['quadratic'])}"

        top, bottom = cell(0), cell(len(values) - 1)
        near = t.get("near_zero_eigenvalues")
        near = "" if near is None else f"{near} / {len(t['spectrum'])}"
        out.append(f"| {folder.name} | {t['target']} | {t['value']:.2f} | {t['gradient_norm']:.3g} | "
                   f"{values[0]:+.3g} | {values[-1]:+.3g} | {top} | {bottom} | {near} | "
                   f"{t['hessian_vector_products']} | {t['seconds']:.1f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="--out folders of dgn-am invariance")
    args = parser.parse_args()
    print("| run | target | value | \\|g\\| | lambda max | lambda min | change at -r / +r along top: net; surrogate; "
          "quadratic | the same along bottom | near-zero | products | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in args.folders:
        print("\n".join(rows(folder)))


if __name__ == "__main__":
    main()
