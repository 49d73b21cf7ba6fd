"""`dgn-am facets` end to end: run main([...]) and open what it wrote."""

from __future__ import annotations

import json

from PIL import Image

from dgn_am.cli import main


def test_facets_writes_grid_images_and_diversity(tmp_path):
    out = tmp_path / "facets"
    assert main(["facets", "--weights", "random", "--units", "fc8:2,5", "--k", "2", "--top", "10", "--pool", "300",
                 "--method", "nguyen-handcrafted", "--steps", "3", "--show", "2", "--judge", "fmnist-caffenet-s1",
                 "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["facets.json", "facets.png"] + [f"fc8_u{u}_facet{i}.png" for u in (2, 5) for i in (0, 1)]
    record = json.loads((out / "facets.json").read_text())
    unit = record["units"][0]
    assert unit["unit"] == "fc8:2" and sum(unit["cluster_sizes"]) == 10 and len(unit["activations"]) == 2
    assert sorted(sum(unit["clusters"], [])) == sorted(set(sum(unit["clusters"], [])))
    assert set(unit["diversity"]) == {"facets", "real_top", "real_cluster_best", "method_seeds"}
    assert 0 <= unit["own_cluster"] <= 1 and record["settings"]["cluster_layer"] == "fc7"
    assert unit["real_top_activation"]["best"] >= unit["real_top_activation"]["mean"]
    # 2 rows of 2 facets x (start, facet, 2 real) + 1 blank between: 9 cells of 28 px + 2 px padding, x4
    width, height = Image.open(out / "facets.png").size
    assert height == (2 * 30 + 2) * 4 and width > (9 * 30 + 2) * 4


def test_facets_rejects_a_fourier_method(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["facets", "--weights", "random", "--method", "olah", "--out", str(out)]) == 2
    assert "facets need a code method" in capsys.readouterr().err and not out.exists()
