"""End-to-end: `dgn-am search`, `dgn-am spectrum`, and synthesize's maco (transparency maps) and accentuation
(panels) outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgn_am.cli import main

DOCS_IMAGE = Path(__file__).parents[2] / "docs" / "img" / "fmnist-test-0.png"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_search_command_on_units(tmp_path):
    out = tmp_path / "search"
    assert main(["search", "--units", "fc8:0-1", "--budget", "45", "--population", "8", "--seeds", "2",
                 "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    assert [(r["target"], r["seed"]) for r in rows] == [("fc8:0", 0), ("fc8:0", 1), ("fc8:1", 0), ("fc8:1", 1)]
    for r in rows:
        assert r["calls"] == 40 and r["generations"] == 5 and len(r["best"]) == len(r["mean"]) == 5
        assert r["score"] == pytest.approx(max(r["best"]))
        for key in ("path", "generations_png", "curve_png"):
            assert (out / r[key]).is_file()
        assert r["settings"]["search"]["algorithm"] == "cmaes" and r["settings"]["search"]["budget"] == 45
    # the saved best image scores what the manifest says (8-bit PNG: close, not exact)
    from dgn_am.models.loading import load_model

    model = load_model("fmnist-caffenet")
    x = torch.from_numpy(np.asarray(Image.open(out / rows[2]["path"]), dtype=np.float32) / 255)[None, None]
    with torch.no_grad():
        assert float(model(x)[0, 1]) == pytest.approx(rows[2]["score"], abs=0.2)
    assert Image.open(out / "grid.png").size[1] >= 2 * 28


def test_search_command_with_a_python_scorer_and_ga(tmp_path):
    out = tmp_path / "scorer"
    assert main(["search", "--scorer", "tests.search_scorers:brightness", "--algorithm", "ga", "--budget", "100",
                 "--population", "20", "--out", str(out), "--quiet"]) == 0
    (row,) = _rows(out)
    assert row["target"] == "tests.search_scorers:brightness" and row["calls"] == 20 + 10 * 8
    assert np.all(np.diff(row["best"]) >= 0)  # the GA keeps its best


@pytest.mark.parametrize("extra,message", [
    (["--scorer", "nowhere"], "package.module:function"),
    (["--budget", "3"], "smaller than one generation"),
    (["--batch-size", "-1"], "max_batch"),
])
def test_search_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert main(["search", "--units", "fc8:0", "--out", str(out), "--quiet"] + extra) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_spectrum_command_on_an_image_folder(tmp_path, capsys):
    from dgn_am.parameterizations import load_spectrum, mean_spectrum

    g = np.random.default_rng(0)
    arrays = [g.integers(0, 256, (4, 4), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(arrays):
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a, "L").save(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png")
    out = tmp_path / "s.safetensors"
    assert main(["spectrum", "--image-folder", str(tmp_path / "imgs"), "--size", "4", "--channels", "1",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3 and summary["shape"] == [1, 4, 4]
    s = load_spectrum(out)
    order = [0, 2, 1]  # the folder lists class c0 (images 0, 2), then c1 (image 1)
    ref = mean_spectrum(torch.from_numpy(np.stack([arrays[i] for i in order])[:, None].astype(np.float32) / 255))
    assert torch.allclose(s.magnitude, ref.magnitude, atol=1e-6)
    assert "dgn-am spectrum" in s.source["command"]
    assert main(["spectrum", "--image-folder", str(tmp_path / "imgs"), "--size", "5", "--out", str(out)]) == 2


def test_synthesize_maco_writes_transparency_maps(tmp_path):
    out = tmp_path / "maco"
    assert main(["synthesize", "--method", "maco", "--units", "fc8:3", "--seeds", "2", "--steps", "3",
                 "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    for r in rows:
        t = np.asarray(Image.open(out / r["transparency"]), dtype=np.float32) / 255
        assert t.shape == (28, 28) and t.max() == 1.0
        assert r["settings"]["parameterization"]["spectrum"]["file"] == "fmnist"
    assert (out / "transparency.png").is_file() and not (out / "panels.png").exists()
    bad = tmp_path / "bad"
    assert main(["synthesize", "--method", "simonyan", "--spectrum", "x", "--out", str(bad), "--quiet"]) == 2


def test_synthesize_accentuation_writes_panels_and_needs_an_image(tmp_path, capsys):
    out = tmp_path / "acc"
    assert main(["synthesize", "--method", "accentuation", "--init-image", str(DOCS_IMAGE), "--units", "fc8:5",
                 "--seeds", "1", "--steps", "3", "--out", str(out), "--quiet"]) == 0
    (row,) = _rows(out)
    panel = np.asarray(Image.open(out / row["panel"]), dtype=np.float32) / 255
    seed = np.asarray(Image.open(DOCS_IMAGE).convert("L"), dtype=np.float32) / 255
    assert panel.shape == (56, 2 * (3 * 28 + 4))  # enlarged 2x: seed | accentuation | difference
    assert np.abs(panel[::2, :56:2] - seed).max() <= 1 / 255 + 1e-6
    assert (out / "panels.png").is_file()
    missing = tmp_path / "none"
    assert main(["synthesize", "--method", "accentuation", "--units", "fc8:5", "--out", str(missing)]) == 2
    assert "--init-image" in capsys.readouterr().err and not missing.exists()
