"""scripts/gpu_check.sh --tiny runs every stage on the CPU and prints its timings (no timing is asserted), and
scripts/paper_files.py writes files the library loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dgn_am.models.loading import load_model
from dgn_am.priors import load_prior

ROOT = Path(__file__).resolve().parents[1]


def test_paper_files_load_with_the_papers_conventions(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_files.py"), "--tiny", "--out", str(tmp_path)],
                   check=True, env=env, capture_output=True)
    model = load_model(str(tmp_path / "caffenet.safetensors"))
    prior = load_prior(tmp_path / "deepsim-fc6.safetensors")
    assert model.input_spec.order == "bgr" and model.input_spec.crop_offset() == (14, 14)
    assert prior.generator.config.output == "caffe" and prior.generator.config.size == 256
    assert prior.reference_scale == pytest.approx(1.0)  # bounds at the reference's mean: s = 1
    assert model(prior.image(torch.rand(1, prior.code_dim), model.input_spec)).shape == (1, 1000)


@pytest.mark.slow
def test_gpu_check_tiny_runs_every_stage(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--tiny"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    stages = [line.split("  ")[1].split(",")[0] for line in done.stdout.splitlines() if line.startswith("timing  ")]
    assert stages[:2] == ["write random paper-size files", "synthesize fc8:945"]
    assert "train-classifier" in done.stdout and "train-prior" in done.stdout
    assert (tmp_path / "synth" / "manifest.jsonl").is_file()
    assert (tmp_path / "recipe" / "runs" / "imagefolder-64" / "prior.safetensors").is_file()
