"""`dgn-am texture` and `dgn-am style` end to end: run main([...]) and open what they wrote."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from dgn_am.cli import main
from dgn_am.imageio import save_image


@pytest.fixture()
def images(tmp_path):
    gen = torch.Generator().manual_seed(4)
    paths = []
    for name in ("a.png", "b.png"):
        save_image(torch.rand(1, 28, 28, generator=gen), tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def test_texture_writes_images_grid_and_losses(tmp_path, images):
    out = tmp_path / "tex"
    assert main(["texture", "--weights", "random", "--image", images[0], "--layers", "conv1", "conv2",
                 "--seeds", "2", "--steps", "20", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "texture.json", "texture_s0.png", "texture_s1.png"]
    record = json.loads((out / "texture.json").read_text())
    assert record["settings"]["layers"] == ["conv1", "conv2"] and record["settings"]["steps"] == 20
    start, end = record["style_loss_start"]["total"], record["style_loss"]["total"]
    assert len(end) == 2 and all(e < s for e, s in zip(end, start))
    assert set(record["style_loss"]) == {"conv1+relu", "conv2+relu", "total"}
    assert Image.open(out / "texture_s0.png").size == (112, 112)
    again = tmp_path / "again"
    main(["texture", "--weights", "random", "--image", images[0], "--layers", "conv1", "conv2", "--seeds", "2",
          "--steps", "20", "--out", str(again), "--quiet"])
    assert (again / "texture_s1.png").read_bytes() == (out / "texture_s1.png").read_bytes()


def test_style_transfer_through_the_prior(tmp_path, images):
    out = tmp_path / "style"
    assert main(["style", "--weights", "random", "--content", images[0], "--style", images[1], "--parameterization",
                 "code", "--steps", "5", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "style.json").read_text())
    assert record["settings"]["prior"] == "fmnist-fc6" and record["settings"]["content_weight"] == 1e-5
    assert len(record["style_loss"]) == 1 and record["content_loss_start"][0] > 0  # the code only approximates it
    assert [r["path"] for r in record["images"]] == ["style_s0.png"]
    assert (out / "grid.png").is_file()


def test_texture_rejects_a_layer_without_positions(tmp_path, images, capsys):
    out = tmp_path / "bad"
    assert main(["texture", "--weights", "random", "--image", images[0], "--layers", "fc6", "--out", str(out)]) == 2
    assert "spatial layer" in capsys.readouterr().err and not out.exists()
    assert main(["style", "--weights", "random", "--content", images[0], "--style", images[1], "--content-weight",
                 "-1", "--out", str(out)]) == 2


def test_scanline_texture_larger_than_the_model(tmp_path, images):
    out = tmp_path / "scan"
    assert main(["texture", "--method", "scanline", "--weights", "random", "--image", images[0], "--size", "40",
                 "--window", "3", "--tolerance", "0.1", "--seeds", "2", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "texture.json").read_text())
    s = record["settings"]
    assert (s["method"], s["size"], s["window"], s["tolerance"]) == ("scanline", [40, 40], 3, 0.1)
    assert "steps" not in s and "lr" not in s
    assert len(record["style_loss"]["total"]) == 2 and all(v > 0 for v in record["style_loss"]["total"])
    assert Image.open(out / "texture_s0.png").size == (80, 80)  # enlarged 2x: at least 112 pixels
    again = tmp_path / "again"
    main(["texture", "--method", "scanline", "--weights", "random", "--image", images[0], "--size", "40",
          "--window", "3", "--tolerance", "0.1", "--seeds", "2", "--out", str(again), "--quiet"])
    assert (again / "texture_s1.png").read_bytes() == (out / "texture_s1.png").read_bytes()


def test_scanline_flags_are_checked_before_anything_is_written(tmp_path, images, capsys):
    out = tmp_path / "bad"
    for extra in (["--size", "40"], ["--method", "scanline", "--window", "4"],
                  ["--method", "scanline", "--tolerance", "-0.5"], ["--method", "scanline", "--size", "0"],
                  ["--method", "scanline", "--parameterization", "code"]):
        assert main(["texture", "--weights", "random", "--image", images[0], "--out", str(out), *extra]) == 2
        assert not out.exists()
    assert "only apply to --method scanline" in capsys.readouterr().err
