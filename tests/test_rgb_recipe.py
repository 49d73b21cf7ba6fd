"""The RGB recipe end to end (training/configs/imagefolder-64.yaml): a target classifier and a 64x64 RGB prior
trained on a generated ImageFolder of coloured shapes, then preferred inputs of its classes; few steps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from dgn_am.cli import main
from dgn_am.data import SHAPES, write_shapes_folder
from dgn_am.models.loading import load_model
from dgn_am.priors import load_prior

CONFIG = str(Path(__file__).resolve().parents[1] / "training" / "configs" / "imagefolder-64.yaml")
RUN = "runs/imagefolder-64"
QUICK = ["--data.init_args.root", "shapes", "--data.init_args.batch_size", "8", "--trainer.accelerator", "cpu",
         "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--trainer.limit_val_batches", "1"]


def test_shapes_folder_is_rgb_and_repeatable(tmp_path):
    assert write_shapes_folder(tmp_path / "a", per_class=2, size=32) == list(SHAPES)
    write_shapes_folder(tmp_path / "b", per_class=2, size=32)
    for name in SHAPES:
        for i in range(2):
            a, b = (Image.open(tmp_path / d / name / f"{i:03d}.png") for d in ("a", "b"))
            assert a.mode == "RGB" and a.size == (32, 32) and a.tobytes() == b.tobytes()
    red = torch.tensor(list(Image.open(tmp_path / "a" / "red-disc" / "000.png").getdata()), dtype=torch.float32)
    assert (red[:, 0] - red[:, 2]).max() > 100  # the shape is there, in its colour


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """Run the recipe's first two commands in a fresh folder (the config's relative paths land there)."""
    root = tmp_path_factory.mktemp("recipe")
    environ = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        torch.manual_seed(0)
        write_shapes_folder("shapes", per_class=10, size=64)
        assert main(["train-classifier", "--arch", "fmnist-caffenet", "--image-folder", "shapes", "--image-size", "64",
                     "--channels", "3", "--epochs", "2", "--batch-size", "16", "--log-dir", "runs",
                     "--out", f"{RUN}/target.safetensors"]) == 0
        assert main(["train-prior", "--config", CONFIG, *QUICK, "--trainer.max_steps", "4",
                     "--trainer.devices", "1", "--out", f"{RUN}/prior.safetensors"]) == 0
    # the recipe's DDP strategy, run here as one process, leaves its process group and its variables (LOCAL_RANK,
    # MASTER_PORT, ...) behind; later Lightning runs in this process must not see them
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)
    return root


def test_the_target_and_the_prior(recipe):
    model = load_model(str(recipe / RUN / "target.safetensors"))
    assert model.input_spec.size == (64, 64) and model.input_spec.channels == 3
    assert model.class_names == tuple(sorted(SHAPES))
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    prior = load_prior(recipe / RUN / "prior.safetensors")
    assert prior.generator.config.size == 64 and prior.generator.config.channels == 3 and prior.code_dim == 512
    assert prior.provenance["encoder"] == {"model": f"{RUN}/target.safetensors", "layer": "fc6"}
    assert "imagefolder-64.yaml" in prior.provenance["command"]
    assert torch.all(prior.lower == 0) and torch.all(prior.upper >= 0) and prior.bank.shape[1] == 512


def test_preferred_inputs_of_its_classes(recipe, monkeypatch):
    monkeypatch.chdir(recipe)  # the prior names its encoder by the recipe's relative path
    for method in ("dgn-am-stats", "simonyan"):
        out = recipe / f"out-{method}"
        assert main(["synthesize", "--model", f"{RUN}/target.safetensors", "--prior", f"{RUN}/prior.safetensors",
                     "--units", "fc8:0-3", "--seeds", "2", "--steps", "4", "--method", method, "--out", str(out),
                     "--quiet"]) == 0
        rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and all(r["failed"] is None and 0 <= r["prob"] <= 1 for r in rows)
        with Image.open(out / rows[0]["path"]) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
    assert rows[0]["settings"]["parameterization"]["decorrelate"] is True  # RGB pixels: decorrelated colour


@pytest.mark.slow
def test_the_recipe_under_ddp_with_two_processes(recipe, tmp_path):
    """`dgn-am train-prior` with the recipe's DDP strategy on 2 CPU processes, as a user runs it (Lightning
    relaunches the command once per device): both ranks train, rank 0 writes the prior."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(recipe / "shapes", tmp_path / "shapes")
    (tmp_path / RUN).mkdir(parents=True)
    shutil.copy(recipe / RUN / "target.safetensors", tmp_path / RUN / "target.safetensors")
    # never with a launched rank's variables: with LOCAL_RANK set, Lightning takes the command for an already
    # launched rank and waits for the other one for ever
    launched = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "GLOBAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launched and not k.startswith("PL_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(CONFIG).parents[2]))
    done = subprocess.run([sys.executable, "-m", "dgn_am", "train-prior", "--config", CONFIG, *QUICK,
                           "--trainer.max_steps", "4", "--trainer.devices", "2",
                           "--out", f"{RUN}/prior.safetensors"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    prior = load_prior(tmp_path / RUN / "prior.safetensors")
    assert int(prior.provenance["steps"]) > 0 and "--trainer.devices 2" in prior.provenance["command"]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in done.stderr  # two processes trained, with validation (a collective)
