"""`dgn-am fool` end to end: run main([...]) and open what it wrote."""

from __future__ import annotations

import json

from dgn_am.cli import main


def test_fool_gradient_writes_images_table_and_summary(tmp_path):
    out = tmp_path / "fool"
    assert main(["fool", "--weights", "random", "--units", "fc8:1,3", "--steps", "10", "--judge",
                 "fmnist-caffenet-s1", "--reference", "2", "--seeds", "2", "--out", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["fc8_u1_s0_fool.png", "fc8_u1_s1_fool.png", "fc8_u3_s0_fool.png", "fc8_u3_s1_fool.png",
                     "fooling.json", "grid.png", "table.md"]
    record = json.loads((out / "fooling.json").read_text())
    rows = record["images"]
    assert [r["class"] for r in rows] == [1, 1, 3, 3] and [r["seed"] for r in rows] == [0, 1, 0, 1] and all(r["fooled"] == (r["target_conf"] >= 0.996) for r in rows)
    assert record["summary"]["n"] == 4
    assert record["summary"]["judge_agrees"] == sum(r["judge_agrees"] for r in rows) / 4
    assert record["real_reference"]["n"] == 4  # 2 real test images of each of the 2 classes
    assert record["settings"]["search"] == "gradient" and record["settings"]["judge"] == "fmnist-caffenet-s1"
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 6 and table[3].startswith("| 1 Trouser | 1 |")


def test_fool_evolution_cppn(tmp_path):
    out = tmp_path / "evo"
    assert main(["fool", "--weights", "random", "--units", "fc8:0", "--search", "evolution", "--encoding", "cppn",
                 "--generations", "2", "--popsize", "4", "--seeds", "2", "--judge", "fmnist-caffenet-s1",
                 "--reference", "0", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "fooling.json").read_text())
    assert [r["cost"] for r in record["images"]] == [8, 8]  # 2 generations of 4: the random network never reaches 0.996
    assert record["settings"]["encoding"] == "cppn" and record["real_reference"] is None


def test_fool_rejects_hidden_units_and_gradient_cppn(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["fool", "--weights", "random", "--units", "fc7:0", "--out", str(out)]) == 2
    assert "not in the output layer" in capsys.readouterr().err
    assert main(["fool", "--weights", "random", "--encoding", "cppn", "--out", str(out)]) == 2
    assert "--search evolution" in capsys.readouterr().err and not out.exists()
