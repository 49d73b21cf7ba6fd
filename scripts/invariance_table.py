"""The table of docs/invariance.md from the invariance.json of `dgn-am invariance` runs.

    python scripts/invariance_table.py out/invariance/pixels-softplus10 out/invariance/code-softplus10 ...

One row per folder and target: the objective at the point, |gradient|, the largest and the smallest eigenvalue,
the activation change on the network (and on the surrogate, when smoothed) at t = -r and +r along the top and the
bottom direction, the near-zero eigenvalues (solver full), Hessian-vector products and seconds.
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

        surrogate = t["path_surrogate"]
        top = change(0, path) + (f" ({change(0, surrogate)})" if surrogate else "")
        bottom = change(len(values) - 1, path) + (f" ({change(len(values) - 1, surrogate)})" if surrogate else "")
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
    print("| run | target | value | \\|g\\| | lambda max | lambda min | change at -r / +r, top (surrogate) | "
          "change at -r / +r, bottom (surrogate) | near-zero | products | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in args.folders:
        print("\n".join(rows(folder)))


if __name__ == "__main__":
    main()
