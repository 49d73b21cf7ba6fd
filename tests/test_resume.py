"""Both trainers survive kill -9: the killed run leaves its checkpoint whole and the exported file untouched, and a
resume from the last checkpoint continues at that checkpoint's step with the losses of an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dgn_am.data import DEBIAN_FASHION_MNIST, read_idx
from tests.helpers import FASHION_FILES, write_idx
from tests.test_prior_training import _image_folder, tiny_prior_config
from training.resume import AtomicCheckpointIO, checkpoint_step, resume_path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
SENTINEL = b"the previous export, which a killed run must leave alone"


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dgn_am", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)


def run_and_kill(args: list[str], ckpt: Path, min_step: int) -> int:
    """Start a run, kill -9 it once `ckpt` holds at least min_step steps; returns the checkpoint's step."""
    proc = subprocess.Popen([sys.executable, "-m", "dgn_am", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed; give it more steps"
            if ckpt.is_file() and checkpoint_step(ckpt)[1] >= min_step:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return checkpoint_step(ckpt)[1]
            time.sleep(0.02)
        raise AssertionError("no checkpoint appeared")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def losses(log_dir: Path, key: str) -> dict[int, float]:
    """{step: value} of one logged metric, from the CSVLogger's metrics.csv files under log_dir."""
    out = {}
    for path in sorted(log_dir.rglob("metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get(key):
                    out[int(row["step"])] = float(row[key])
    return out


def test_atomic_checkpoint_io_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "global_step": 7, "w": torch.ones(3)}, target)
    assert checkpoint_step(target) == (1, 7)

    def crash(obj, f):  # a save that dies half-way through writing
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 2, "global_step": 9}, target)
    assert checkpoint_step(target) == (1, 7)  # the previous checkpoint is whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # and no temporary file is left


def test_resume_path_checks_the_file(tmp_path):
    from dgn_am.errors import UsageError

    assert resume_path(None) is None
    with pytest.raises(UsageError, match="no such checkpoint file"):
        resume_path(tmp_path / "missing.ckpt")
    with pytest.raises(UsageError, match="'last' and 'best' are not supported"):
        resume_path("last")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_resume_never_runs_code_from_a_checkpoint(tmp_path):
    """A crafted checkpoint is refused by the safe loader even when the environment turns torch's default off."""
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"epoch": 0, "global_step": 0, "payload": _Evil()}, ckpt)
    code = ("import os, sys; os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1';"
            "from training.resume import AtomicCheckpointIO;"
            f"AtomicCheckpointIO().load_checkpoint({str(ckpt)!r})")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**ENV, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert proc.returncode != 0 and "does not load safely" in proc.stderr
    assert not (tmp_path / "PWNED").exists()


def _small_fashion_mnist(root: Path, n_train: int = 480, n_test: int = 100) -> None:
    """The first images of the real data set, as a small --data-dir (learnable, quick to test on)."""
    arrays = [read_idx(DEBIAN_FASHION_MNIST / f) for f in FASHION_FILES]
    root.mkdir(parents=True)
    for name, a, n in zip(FASHION_FILES, arrays, (n_train, n_train, n_test, n_test)):
        write_idx(root / name, a[:n])


@pytest.mark.slow
@pytest.mark.skipif(not all((DEBIAN_FASHION_MNIST / f).is_file() for f in FASHION_FILES),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_train_classifier_killed_then_resumed(tmp_path):
    _small_fashion_mnist(tmp_path / "fm")
    common = ["train-classifier", "--data-dir", str(tmp_path / "fm"), "--batch-size", "24", "--epochs", "8",
              "--lr", "0.02", "--threads", "1", "--accelerator", "cpu", "--logger", "csv", "--log-every", "1",
              "--checkpoint-every", "3"]
    whole = run(common + ["--log-dir", str(tmp_path / "a"), "--out", str(tmp_path / "a.safetensors")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    meta_a = json.loads(whole.stdout.strip().splitlines()[-1])

    out = tmp_path / "b.safetensors"
    out.write_bytes(SENTINEL)
    ckpt = tmp_path / "b" / "b" / "checkpoints" / "last.ckpt"
    step = run_and_kill(common + ["--log-dir", str(tmp_path / "b"), "--out", str(out)], ckpt, min_step=30)
    assert out.read_bytes() == SENTINEL  # the export happens only at the end, in one rename
    assert sorted(p.name for p in tmp_path.glob("*.safetensors*")) == ["a.safetensors", "b.safetensors"]
    assert 30 <= step < meta_a["steps"]

    resumed = run(common + ["--log-dir", str(tmp_path / "c"), "--out", str(out), "--ckpt-path", str(ckpt)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    meta_c = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert meta_c["resumed_from"]["global_step"] == step and meta_c["steps"] == meta_a["steps"]
    from dgn_am.models.loading import read_state_dict

    read_state_dict(out)  # a whole safetensors file, no longer the sentinel
    a, c = losses(tmp_path / "a", "train/loss"), losses(tmp_path / "c", "train/loss")
    assert min(c) >= step  # nothing before the checkpoint was trained again
    common_steps = sorted(set(a) & set(c))
    assert len(common_steps) >= meta_a["steps"] - step - 2
    # the same schedule and weights; only the data order after the resume differs (the loader's shuffle seed)
    late = [s for s in common_steps if s >= meta_a["steps"] - 40]
    assert abs(np.mean([a[s] for s in late]) - np.mean([c[s] for s in late])) < 0.15
    assert abs(meta_a["test_acc"] - meta_c["test_acc"]) < 0.1


def _prior_config(tmp_path: Path, name: str) -> Path:
    config = tiny_prior_config(tmp_path / "images")
    config["model"]["d_pause"] = 0.0
    config["trainer"] = {
        "max_epochs": 60, "accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 1,
        "limit_val_batches": 0, "enable_model_summary": False, "default_root_dir": str(tmp_path / name),
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / name)}},
        "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                       "init_args": {"dirpath": str(tmp_path / name / "ckpt"), "save_last": True,
                                     "every_n_train_steps": 10}}]}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.slow
def test_train_prior_killed_then_resumed(tmp_path):
    _image_folder(tmp_path / "images")  # 24 images: 18 for training, 4 per batch
    config_a = _prior_config(tmp_path, "a")
    whole = run(["train-prior", "--config", str(config_a), "--out", str(tmp_path / "a.safetensors")])
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "b.safetensors"
    out.write_bytes(SENTINEL)
    config_b = _prior_config(tmp_path, "b")
    step = run_and_kill(["train-prior", "--config", str(config_b), "--out", str(out)],
                        tmp_path / "b" / "ckpt" / "last.ckpt", min_step=100)
    assert out.read_bytes() == SENTINEL
    resumed = run(["train-prior", "--config", str(config_b), "--out", str(out),
                   "--ckpt_path", str(tmp_path / "b" / "ckpt" / "last.ckpt")])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from dgn_am.priors import load_prior

    prov = load_prior(out).provenance
    assert prov["resumed_from"]["global_step"] == step
    assert prov["steps"] == load_prior(tmp_path / "a.safetensors").provenance["steps"]
    a, b = losses(tmp_path / "a", "train/g"), losses(tmp_path / "b", "train/g")
    after = sorted(s for s in b if s > step)
    assert after and min(after) > step
    before = sorted(s for s in b if s <= step)
    # up to the kill the two runs are the same run; after the resume only the data order differs
    np.testing.assert_allclose([b[s] for s in before[:20]], [a[s] for s in before[:20]], rtol=1e-4)
    late = [s for s in after if s in a][-30:]
    assert abs(np.mean([a[s] for s in late]) - np.mean([b[s] for s in late])) < 0.2 * np.mean([a[s] for s in late])
