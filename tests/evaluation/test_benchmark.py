"""The benchmark harness: metric values with known answers, the calibration ordering, one tiny end-to-end run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.helpers import have_fashion_mnist
import torch

from dgn_am.evaluation.calibration import judge_ranking, shuffle_patches
from dgn_am.evaluation.metrics import bootstrap_ci


def test_bootstrap_contains_mean_and_shrinks():
    g = np.random.default_rng(3)
    small = [g.normal(1.0, 1.0, size=4) for _ in range(5)]
    large = [g.normal(1.0, 1.0, size=16) for _ in range(40)]
    est_s, lo_s, hi_s = bootstrap_ci(small, n_boot=500)
    est_l, lo_l, hi_l = bootstrap_ci(large, n_boot=500)
    assert lo_s <= est_s <= hi_s and lo_l <= est_l <= hi_l
    assert est_s == pytest.approx(np.mean([s.mean() for s in small]))
    assert (hi_l - lo_l) < (hi_s - lo_s)


def test_shuffle_patches_keeps_pixels():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = shuffle_patches(x, patch=2, seed=0)
    assert sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())
    blocks = {tuple(y[0, 0, r:r + 2, c:c + 2].flatten().tolist()) for r in (0, 2) for c in (0, 2)}
    assert blocks == {tuple(x[0, 0, r:r + 2, c:c + 2].flatten().tolist()) for r in (0, 2) for c in (0, 2)}


def test_judge_ranking():
    v = judge_ranking({"real": 0.1, "dimmed": 0.5, "blurred": 0.4, "inverted": 2.0, "shuffled": 1.0, "noise": 3.0},
                      higher_is_better=False)
    assert v["passes"] and v["order"][0] == "real" and v["order"][-1] == "noise"
    v = judge_ranking({"real": 0.9, "dimmed": 0.95, "blurred": 0.4, "inverted": 0.2, "shuffled": 0.1, "noise": 0.1},
                      higher_is_better=True)
    assert not v["real_best"] and not v["noise_worst"] and not v["passes"]




needs_data = pytest.mark.skipif(not have_fashion_mnist(), reason="Fashion-MNIST not installed")


def _offline_wandb_env(monkeypatch, tmp_path) -> None:
    """wandb's own folders in tmp_path, and an environment that asks for online mode: the code must force offline."""
    pytest.importorskip("wandb")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def _wandb_table(out) -> dict:
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((out / "wandb").iterdir()) if (out / "wandb").exists() else "no wandb folder"
    assert list(runs[0].glob("run-*.wandb")), "the offline run wrote no .wandb log"
    tables = list(runs[0].glob("files/media/table/benchmark_*.table.json"))
    assert len(tables) == 1
    return json.loads(tables[0].read_text())


def test_wandb_logs_offline_without_account(tmp_path, monkeypatch):
    from dgn_am.cli.benchmark import _log_wandb

    _offline_wandb_env(monkeypatch, tmp_path)
    results = {"settings": {"model": "m", "evaluators": ["e"]},
               "methods": {"a": {"summary": {"transfer_mean": {"value": 0.5}, "precision": {"value": 0.25},
                                             "coverage": {"value": 0.125}}},
                           "broken": {"error": "RuntimeError: x", "summary": None}}}
    run_dir = _log_wandb(results, tmp_path, quiet=True)
    assert run_dir.name.startswith("offline-run-") and run_dir.parent == tmp_path / "wandb"
    table = _wandb_table(tmp_path)
    cols = table["columns"]
    assert cols[0] == "method" and {"precision", "coverage", "fid_penult"} <= set(cols)
    row = dict(zip(cols, table["data"][0]))
    assert row["method"] == "a" and row["precision"] == 0.25 and row["coverage"] == 0.125
    assert row["kid_penult"] is None and table["data"][1][0] == "broken"


@needs_data
def test_end_to_end_tiny(tmp_path, monkeypatch):
    from dgn_am.cli import main

    _offline_wandb_env(monkeypatch, tmp_path)
    out = tmp_path / "bench"
    rc = main(["benchmark", "--units", "fc8:0-1", "--seeds", "2", "--steps", "3",
               "--methods", "simonyan,noise,real-images", "--evaluators", "fmnist-resnet",
               "--n-boot", "30", "--reference", "30", "--out", str(out), "--quiet", "--wandb"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res) >= {"settings", "methods", "calibration"}
    st = res["settings"]
    assert st["budget"]["steps"] == 3 and st["budget"]["value_range"] == [0.0, 1.0]
    assert st["evaluators"] == ["fmnist-resnet"] and "command" in st and "commit" in st
    assert list(res["methods"]) == ["simonyan", "real-images", "noise"]
    for name, e in res["methods"].items():
        assert e["error"] is None, name
        pi = e["per_image"]
        assert len(pi["activation"]) == 4
        assert all(0.0 <= p <= 1.0 for p in pi["prob"] + pi["evalprob_fmnist-resnet"])
        s = e["summary"]
        for key in ("activation", "activation_norm", "prob", "transfer_mean", "kid_penult", "kid_early",
                    "fid_penult", "fid_early", "fid_penult_fmnist-resnet", "precision", "density", "coverage",
                    "precision_fmnist-resnet", "density_fmnist-resnet", "coverage_fmnist-resnet"):
            assert s[key]["lo"] <= s[key]["value"] + 1e-9 <= s[key]["hi"] + 2e-9, (name, key)
        for key in ("precision", "coverage"):
            assert 0.0 <= s[key]["value"] <= 1.0, (name, key)
        assert s["precision"]["value"] == s["precision_fmnist-resnet"]["value"]  # one evaluator: mean = it
        assert e["cost"]["steps"] == (3 if name == "simonyan" else 0)
    m = res["methods"]
    assert m["simonyan"]["control"] is not None and m["real-images"]["control"] is None
    tr = {k: v["summary"]["transfer_mean"]["value"] for k, v in m.items()}
    assert tr["real-images"] == max(tr.values()) and tr["noise"] == min(tr.values())
    kid_e = {k: v["summary"]["kid_penult"]["value"] for k, v in m.items()}
    assert kid_e["real-images"] == min(kid_e.values()) and kid_e["noise"] == max(kid_e.values())
    cov = {k: v["summary"]["coverage"]["value"] for k, v in m.items()}
    assert cov["noise"] == 0.0 and cov["real-images"] > 0.0
    assert set(res["calibration"]["verdicts"]) >= {"kid_penult", "kid_early", "fid_penult", "transfer_mean",
                                                   "precision", "density", "coverage", "precision_fmnist-resnet",
                                                   "coverage_fmnist-resnet"}
    assert res["calibration"]["scores"]["noise"]["precision"] == 0.0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["simonyan", "real-images", "noise"]
    assert "transfer_mean_lo" in rows[0] and "control_transfer_mean" in rows[0]
    assert {"precision", "precision_lo", "coverage_hi", "density", "fid_penult_lo", "fid_penult_hi"} <= set(rows[0])
    assert all(r["fid_penult_lo"] != "" for r in rows)
    table = (out / "table.md").read_text()
    assert "Command: `dgn-am benchmark" in table and "Commit:" in table and "| noise |" in table
    assert "Calibration" in table and "3 steps" in table
    header = next(line for line in table.splitlines() if line.startswith("| method | act"))
    assert "| density |" in header and "| coverage |" in header and "| diversity |" in header
    assert "| FID early |" in header
    noise_row = next(line for line in table.splitlines() if line.startswith("| noise |"))
    assert noise_row.split(" | ")[header.split(" | ").index("FID penult")].count("[") == 1  # FID has brackets
    assert "| precision |" in table.split("Calibration")[1]  # a calibration row for the new metrics
    assert _wandb_table(out)["columns"][0] == "method"
    for name in ("images.png", "realism.png", "diversity.png", "transfer.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_calibration_orders_real_best_noise_worst():
    """On real Fashion-MNIST images: every realism metric ranks real best and noise worst, or says it does not."""
    from dgn_am.data import load_fashion_mnist
    from dgn_am.evaluation.calibration import calibration_inputs
    from dgn_am.evaluation.distances import frechet_distance
    from dgn_am.evaluation.metrics import features
    from dgn_am.models.loading import load_model

    x, y = load_fashion_mnist("test")
    ev = load_model("fmnist-resnet")
    ref = torch.cat([x[y == c][:60] for c in range(10)])
    probe = torch.cat([x[y == c][60:70] for c in range(10)])
    fr = features(ev, ref, "pool").numpy()
    scores = {k: frechet_distance(features(ev, v, "pool").numpy(), fr) for k, v in calibration_inputs(probe).items()}
    v = judge_ranking(scores, higher_is_better=False)
    assert v["real_best"] and v["noise_worst"], scores


def test_unknown_method_and_target_evaluator_rejected(tmp_path):
    from dgn_am.evaluation.benchmark import BenchmarkConfig, _evaluators, _methods

    with pytest.raises(ValueError, match="available"):
        _methods(BenchmarkConfig(methods=("no-such-method",)))
    with pytest.raises(ValueError, match="target itself"):
        _evaluators(BenchmarkConfig(evaluators=("fmnist-caffenet",)))


# ---- evaluators of the user's own: MODEL[=WEIGHTS][@PENULT/EARLY] ----

def test_parse_evaluator():
    from dgn_am.evaluation.scoring import parse_evaluator

    assert parse_evaluator("fmnist-resnet") == ("fmnist-resnet", None, None)
    assert parse_evaluator("pkg.nets:make=/w/a.pt@fc1/conv2") == ("pkg.nets:make", "/w/a.pt", ("fc1", "conv2"))
    assert parse_evaluator("torchvision:resnet18=random") == ("torchvision:resnet18", "random", None)
    for bad in ("fmnist-resnet@pool", "fmnist-resnet@/layer1", "=w.pt", "fmnist-resnet="):
        with pytest.raises(ValueError, match="bad evaluator"):
            parse_evaluator(bad)


def test_default_layers_pick_the_shipped_feature_layers():
    from dgn_am.evaluation.scoring import FEATURE_LAYERS, default_layers
    from dgn_am.models.loading import load_model

    for name, layers in FEATURE_LAYERS.items():
        assert default_layers(load_model(name, weights="random")) == layers


def test_evaluator_from_spec_names_layers_and_weights(tmp_path):
    from dgn_am.evaluation.scoring import Evaluator
    from dgn_am.models.loading import checkpoints_dir

    weights = checkpoints_dir() / "fmnist-caffenet-s1.safetensors"
    e = Evaluator.from_spec(f"fmnist-caffenet-s1={weights}@fc6/conv3")
    assert (e.name, e.penult, e.early) == ("fmnist-caffenet-s1=fmnist-caffenet-s1.safetensors", "fc6", "conv3")
    feats = e.embed(torch.rand(3, 1, 28, 28))
    assert feats["penult"].shape == (3, 512) and feats["early"].shape[0] == 3
    with pytest.raises(ValueError, match="has no layer fc9; its layers: stem.0, .*, pool, fc "):
        Evaluator.from_spec("fmnist-resnet@fc9/layer1")


def test_benchmark_rejects_an_evaluator_with_another_input_format_or_the_target(tmp_path):
    from dgn_am.evaluation.benchmark import BenchmarkConfig, run_benchmark

    with pytest.raises(ValueError, match=r"takes 1x4x4 images, but the target makes 1x28x28"):
        run_benchmark(BenchmarkConfig(evaluators=("fmnist-resnet", "tests.helpers:factory"), steps=1, seeds=1))
    with pytest.raises(ValueError, match="is the target itself"):
        run_benchmark(BenchmarkConfig(evaluators=("fmnist-resnet", "fmnist-caffenet"), steps=1, seeds=1))


@needs_data
def test_benchmark_with_a_user_evaluator(tmp_path):
    from dgn_am.evaluation.benchmark import BenchmarkConfig, run_benchmark
    from dgn_am.models.loading import checkpoints_dir

    weights = checkpoints_dir() / "fmnist-caffenet-s1.safetensors"
    res = run_benchmark(BenchmarkConfig(units="fc8:0-1", seeds=2, steps=2, methods=("simonyan",), control=False,
                                        calibration=False, n_boot=5, reference_per_class=20,
                                        evaluators=("fmnist-resnet", f"fmnist-caffenet-s1={weights}@fc6/conv3")))
    name = "fmnist-caffenet-s1=fmnist-caffenet-s1.safetensors"
    assert res["settings"]["evaluators"] == ["fmnist-resnet", name]
    assert res["settings"]["feature_layers"][name] == {"penult": "fc6", "early": "conv3"}
    assert f"transfer_{name}" in res["methods"]["simonyan"]["summary"]
