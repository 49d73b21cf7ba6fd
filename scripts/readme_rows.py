"""Print the README's prior table rows from docs/prior/report-*.json (so the README quotes measured numbers)."""

import json
from pathlib import Path

for method in ("dgn-am-anchor", "dgn-am-bank", "dgn-am"):
    report = json.loads((Path("docs/prior") / f"report-{method}.json").read_text())
    for name, r in report["runs"].items():
        d = r["diversity"]
        name = name.replace("sanity: random ", "random ").replace("->", " -> ")
        print(f"| `{method}` | {name} | {r['top1']:.3f} | {r['mean_prob']:.3f} | {d['mean_ratio']:.2f} / "
              f"{d['min_ratio']:.2f} |")
