"""The benchmark's extra rows: NAME@N budgets, accentuation seed images, search rows."""

from __future__ import annotations

import pytest

from tests.helpers import have_fashion_mnist
import torch

from dgn_am.evaluation.rows import SEARCH_BUDGET, accentuation_seeds, known_row, make_row_images, parse_row
from dgn_am.layers import parse_units
from dgn_am.methods import METHODS


def test_parse_row():
    assert parse_row("olah") == ("olah", None)
    assert parse_row("dgn-am@500") == ("dgn-am", 500)
    for bad in ("dgn-am@", "dgn-am@0", "dgn-am@x", "search-ga@-3"):
        with pytest.raises(ValueError, match="NAME@N"):
            parse_row(bad)


def test_known_rows():
    assert known_row("maco", METHODS) and known_row("search-cmaes@100", METHODS) and known_row("dgn-am@7", METHODS)
    assert not known_row("search-random@10", METHODS) and not known_row("nope", METHODS)


def test_accentuation_seeds_come_from_other_classes():
    real = {c: torch.full((3, 1, 2, 2), float(c)) + torch.arange(3.0).view(3, 1, 1, 1) / 10 for c in (0, 1, 2)}
    seeds = accentuation_seeds(parse_units("fc8:0-2"), [0, 1, 2], real)
    got = seeds[:, 0, 0, 0].tolist()
    # unit 0: classes 1, 2, then 1 again (its second image); unit 1: 0, 2, 0 (second); unit 2: 0, 1, 0 (second)
    assert got == pytest.approx([1.0, 2.0, 1.1, 0.0, 2.0, 0.1, 0.0, 1.0, 0.1])
    alone = accentuation_seeds(parse_units("fc8:0"), [0, 1], {0: real[0]})
    assert alone[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.1])


def test_search_and_budget_rows_make_images(caffenet):
    import dgn_am

    prior = dgn_am.load_prior("fmnist-fc6")
    units = parse_units("fc8:0-1")
    made = make_row_images("search-ga@50", caffenet, units, [0], lambda: prior, {}, steps=3)
    assert made["images"].shape == (2, 1, 28, 28) and made["steps"] == 50
    assert made["settings"]["calls"] == [40, 40]  # one GA generation of 40 fits a budget of 50
    grad = make_row_images("simonyan@4", caffenet, units, [0], lambda: prior, {}, steps=3)
    assert grad["steps"] == 4
    assert SEARCH_BUDGET >= 40




@pytest.mark.slow  # about 80 s on a loaded 2-core machine: a benchmark run with its calibration
@pytest.mark.skipif(not have_fashion_mnist(), reason="Fashion-MNIST not installed")
def test_benchmark_scores_the_new_rows_and_path_similarity(tmp_path):
    import json

    from dgn_am.cli import main

    out = tmp_path / "bench"
    assert main(["benchmark", "--units", "fc8:0-1", "--seeds", "2", "--steps", "2", "--methods",
                 "maco,accentuation,search-cmaes@30,simonyan@3", "--evaluators", "fmnist-resnet", "--no-control",
                 "--n-boot", "5", "--reference", "30", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["methods"]
    assert list(m) == ["maco", "accentuation", "search-cmaes@30", "simonyan@3", "real-images", "noise"]
    assert all(e["error"] is None for e in m.values()), {k: e["error"] for k, e in m.items()}
    assert m["search-cmaes@30"]["cost"]["steps"] == 30 and m["simonyan@3"]["cost"]["steps"] == 3
    assert m["maco"]["cost"]["steps"] == 2
    for name, e in m.items():
        sims = e["per_image"]["path_similarity"]
        assert len(sims) == 4 and all(-1 <= s <= 1 for s in sims), name
    assert m["real-images"]["summary"]["path_similarity"]["value"] > m["noise"]["summary"]["path_similarity"]["value"]
    assert "path_similarity" in res["calibration"]["verdicts"]
    assert "| path sim |" in (out / "table.md").read_text()
