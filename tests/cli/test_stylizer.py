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
    assert main(["train-stylizer", "--style", str(tmp_path / "nope.png"),
                 "--out", str(tmp_path / "s.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not out.exists()


def test_the_loss_network_stays_in_eval_mode():
    """Lightning calls train() on the module: the stylizer trains, the loss network's batch norm stays in eval."""
    from dgn_am.fast_style import Stylizer, StylizerConfig, TransferLossConfig
    from tests.helpers import random_caffenet
    from training.stylizer import StylizerModule

    model = random_caffenet()
    stats = [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    module = StylizerModule(Stylizer(StylizerConfig(width=4, blocks=1)), model, torch.rand(1, 1, 28, 28),
                            TransferLossConfig())
    module.train()
    assert module.net.training and not module.model.training
    assert not any(m.training for m in module.model.modules())
    module.training_step((torch.rand(4, 1, 28, 28),), 0)
    after = [m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert stats and all(torch.equal(a, b) for a, b in zip(stats, after))
