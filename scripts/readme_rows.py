"""Print the README's prior table rows from docs/prior/report-*.json (so the README quotes measured numbers)."""

import json
from pathlib import Path

for report_name in ("dgn-am-class", "dgn-am-class-s8", "dgn-am-anchor", "dgn-am-anchor-s8", "dgn-am-bank", "dgn-am-stats",
                    "dgn-am-stats-s8", "dgn-am"):
    report = json.loads((Path("docs/prior") / f"report-{report_name}.json").read_text())
    seeds = report["seeds"]
    method = f"`{report['method']['name']}` (seeds {seeds[0]}-{seeds[-1]})"
    for name, r in report["runs"].items():
        d = r["diversity"]
        name = name.replace("sanity: random ", "random ").replace("->", " -> ")
        print(f"| {method} | {name} | {r['top1']:.3f} | {r['mean_prob']:.3f} | {d['mean_ratio']:.2f} / "
              f"{d['min_ratio']:.2f} |")
