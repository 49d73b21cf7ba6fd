"""`dgn-am train-stylizer` then `dgn-am style --network`, end to end on a small fake Fashion-MNIST."""

from __future__ import annotations

import json

import torch

from dgn_am.cli import main
from dgn_am.imageio import save_image
from tests.helpers import write_fake_fashion_mnist


def test_train_then_stylize(tmp_path, capsys):
    write_fake_fashion_mnist(tmp_path / "fm", n_train=80, n_test=4)
    gen = torch.Generator().manual_seed(0)
    for name in ("style.png", "a.png", "b.png"):
        save_image(torch.rand(1, 28, 28, generator=gen), tmp_path / name)
    net = tmp_path / "s.safetensors"
    args = ["train-stylizer", "--style", str(tmp_path / "style.png"), "--out", str(net), "--data-dir",
            str(tmp_path / "fm"), "--weights", "random", "--width", "4", "--blocks", "1", "--batch-size", "8",
            "--max-steps", "3", "--logger", "none", "--log-dir", str(tmp_path / "runs"), "--accelerator", "cpu"]
    assert main(args) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["steps"] == 3 and meta["loss"]["content_layer"] == "conv4" and len(meta["style_sha256"]) == 64
    assert set(meta["val_losses"]) == {"total", "content", "style", "tv"}
    out = tmp_path / "out"
    assert main(["style", "--network", str(net), "--weights", "random", "--content", str(tmp_path / "a.png"),
                 str(tmp_path / "b.png"), "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "style.json").read_text())
    assert [r["path"] for r in record["images"]] == ["style_0.png", "style_1.png"]
    assert all(r["style_loss"] > 0 and r["content_loss"] >= 0 for r in record["images"])
    assert record["settings"]["network_meta"]["steps"] == 3 and (out / "grid.png").is_file()


def test_style_flags_are_checked(tmp_path, capsys):
    save_image(torch.rand(1, 28, 28), tmp_path / "a.png")
    out = tmp_path / "bad"
    assert main(["style", "--weights", "random", "--content", str(tmp_path / "a.png"), "--out", str(out)]) == 2
    assert "--style IMAGE (or --network FILE" in capsys.readouterr().err
    assert main(["style", "--weights", "random", "--content", str(tmp_path / "a.png"), str(tmp_path / "a.png"),
                 "--style", str(tmp_path / "a.png"), "--out", str(out)]) == 2
    assert "one image without --network" in capsys.readouterr().err
    assert main(["train-stylizer", "--style", str(tmp_path / "nope.png"), "--out", str(tmp_path / "s.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists()
