"""Training a generator prior: frozen networks stay frozen, DDP ranks agree, statistics and files are right."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from dgn_am.models.generators import Generator, GeneratorConfig
from dgn_am.priors import CodeStats, code_stats, load_prior, save_prior, to_target
from dgn_am.models.spec import InputSpec
from training.networks import Comparator, Discriminator, Encoder
from training.prior import PriorModule

TINY_G = GeneratorConfig(code_dim=16, size=8, channels=1, fc_dims=(32,), start=2, start_channels=8,
                         up_channels=(8, 4), refine=(8, 0))
TINY = "tests.prior_helpers:tiny_net"


def tiny_module(**kw) -> PriorModule:
    torch.manual_seed(0)
    return PriorModule(Generator(TINY_G), Discriminator(1, 8, 16, width=4), Encoder(TINY, "fc1"),
                       Comparator(TINY, ["pool1", "fc1"]), **kw)


def tiny_loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return DataLoader(TensorDataset(x, torch.randint(0, 3, (n,), generator=g)), batch_size=8)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_training_step_moves_g_and_d_but_not_frozen_networks():
    module = tiny_module(d_pause=0.0)
    before = {name: state(getattr(module, name)) for name in ("generator", "discriminator", "encoder", "comparator")}
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, tiny_loader())
    after = {name: state(getattr(module, name)) for name in before}
    for frozen in ("encoder", "comparator"):  # includes BatchNorm running statistics
        assert all(torch.equal(before[frozen][k], after[frozen][k]) for k in before[frozen]), frozen
    for trained in ("generator", "discriminator"):
        assert any(not torch.equal(before[trained][k], after[trained][k]) for k in before[trained]), trained
    assert not module.encoder.training and not module.comparator.training


def test_discriminator_pauses_when_far_ahead():
    module = tiny_module(d_pause=1e9)  # always "too far ahead" once G's adversarial loss is known
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    d0 = state(module.discriminator)
    trainer.fit(module, tiny_loader())
    # the first step trains D (no G loss known yet), later steps are paused: D moved exactly once
    d1 = state(module.discriminator)
    assert any(not torch.equal(d0[k], d1[k]) for k in d0)
    assert trainer.callback_metrics["train/d_paused"] == 1.0


class _SaveRankWeights(L.Callback):
    def __init__(self, folder) -> None:
        self.folder = folder

    def on_train_end(self, trainer, module) -> None:
        torch.save({**{f"g.{k}": v for k, v in module.generator.state_dict().items()},
                    **{f"d.{k}": v for k, v in module.discriminator.state_dict().items()}},
                   self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    from lightning.pytorch.strategies import DDPStrategy

    module = tiny_module(d_pause=0.1)
    init = state(module.generator)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", devices=2, logger=False, enable_checkpointing=False,
                        strategy=DDPStrategy(start_method="spawn", process_group_backend="gloo",
                                             find_unused_parameters=True),
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[_SaveRankWeights(tmp_path)])
    trainer.fit(module, tiny_loader(64))
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert any(not torch.equal(r0[f"g.{k}"], v) for k, v in init.items())  # and training did happen


def test_code_stats_match_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(2.0, 3.0, size=(50, 6)).astype(np.float32)
    batches = [torch.from_numpy(data[i: i + 16]) for i in range(0, 50, 16)]
    stats = code_stats(lambda x: x, batches)
    assert stats.count == 50
    np.testing.assert_allclose(stats.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std.numpy(), data.std(0), rtol=1e-4)
    lower, upper = stats.bounds(k=3.0)
    assert torch.equal(lower, torch.zeros(6))
    torch.testing.assert_close(upper, stats.mean + 3 * stats.std)
    lower2, _ = stats.bounds(k=2.0, nonnegative=False)
    torch.testing.assert_close(lower2, stats.mean - 2 * stats.std)


def test_prior_file_round_trip(tmp_path):
    torch.manual_seed(0)
    g = Generator(TINY_G).eval()
    stats = CodeStats(torch.rand(16), torch.rand(16), 100)
    save_prior(tmp_path / "p.safetensors", g, stats, k=2.0, nonnegative=True, provenance={"note": "test"})
    prior = load_prior(tmp_path / "p.safetensors")
    h = torch.rand(3, 16)
    torch.testing.assert_close(prior.generator(h), g(h))
    torch.testing.assert_close(prior.upper, stats.mean + 2.0 * stats.std)
    assert torch.equal(prior.lower, torch.zeros(16))
    assert prior.provenance["note"] == "test" and prior.provenance["k"] == "2.0"
    with pytest.raises(FileNotFoundError, match="neither a shipped prior"):
        load_prior(tmp_path / "missing.safetensors")


def test_to_target_converts_caffe_bgr_and_crops_like_the_reference():
    x = torch.zeros(1, 3, 256, 256)
    x[:, 0] = 10.0  # B channel, mean-subtracted
    spec = InputSpec(size=(227, 227), channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    y = to_target(x, "caffe", spec)
    assert y.shape == (1, 3, 227, 227)
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([123 / 255, 117 / 255, 114 / 255]))  # RGB order
    ramp = torch.arange(256.0).view(1, 1, 1, 256).expand(1, 1, 256, 256) / 255
    cropped = to_target(ramp, "unit", InputSpec((224, 224), 1, (0.5,), (0.25,)))
    assert cropped[0, 0, 0, 0] == pytest.approx(16 / 255)  # offset 16 for 224
    gray = to_target(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1), "unit", InputSpec((1, 1), 1, (0.5,), (0.2,)))
    assert gray.item() == pytest.approx(0.299)


def tiny_prior_config(images) -> dict:
    """A train-prior config (model and data, no trainer) for the tiny generator, encoder and image folder."""
    return {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "dgn_am.models.generators.Generator",
                          "init_args": {"config": TINY_G.to_dict()}},
            "discriminator": {"class_path": "training.networks.Discriminator",
                              "init_args": {"channels": 1, "size": 8, "code_dim": 16, "width": 4}},
            "encoder": {"class_path": "training.networks.Encoder", "init_args": {"model": TINY, "layer": "fc1"}},
            "comparator": {"class_path": "training.networks.Comparator",
                           "init_args": {"model": TINY, "layers": ["fc1"]}},
        },
        "data": {"class_path": "training.data.ImageFolderDataModule",
                 "init_args": {"root": str(images), "size": 8, "channels": 1, "batch_size": 4, "val_every": 4}},
    }


def _image_folder(root, n=12):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (10, 12), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_train_prior_command_on_an_image_folder(tmp_path):
    from training.train_prior import main

    _image_folder(tmp_path / "images")
    config = tiny_prior_config(tmp_path / "images")
    config["trainer"] = {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "logger": False,
                         "default_root_dir": str(tmp_path), "enable_checkpointing": False}
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    out = tmp_path / "prior.safetensors"
    meta = main(["--config", str(cfg), "--out", str(out), "--k", "2"])
    prior = load_prior(out)
    assert prior.code_dim == 16 and prior.provenance["encoder"] == {"model": TINY, "layer": "fc1"}
    assert meta["steps"] > 0 and 0.0 <= meta["test_reconstruction"]["recon_acc"] <= 1.0
    assert torch.all(prior.upper >= prior.lower) and torch.all(prior.lower == 0)
    torch.testing.assert_close(prior.upper, prior.mean + 2 * prior.std)
