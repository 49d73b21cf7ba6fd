"""scripts/speed.py runs end to end on a tiny budget and writes what it promises (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_script_writes_json_and_table(tmp_path):
    speed = _load()
    result = speed.main(["--steps", "2", "--seeds", "2", "--units", "fc8:0-1", "--repeats", "2",
                         "--one-at-a-time", "1", "--no-compile", "--train-steps", "2", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "speed.json").read_text())
    engine = {"bare loop (floor)", "engine, batched", "engine, one item at a time"}
    lucent = {"olah, engine batched", "lucent render_vis, one at a time"}  # only where lucent is installed
    assert set(data["rows"]) in (engine, engine | lucent)
    for row in data["rows"].values():
        assert len(row["seconds_per_image"]) == 2 and row["min"] <= row["median"] <= row["max"]
    assert data["items"] == 4 and data["steps"] == 2 and data["gflops"]["step_flops"] > 0
    assert "| engine, batched |" in (tmp_path / "speed.md").read_text()
    assert result["gflops"]["fraction"] == data["gflops"]["fraction"]
    variants = data["variants"]
    assert set(variants) == {"float32", "channels_last", "bf16 autocast"}
    assert variants["float32"]["identical"] and variants["float32"]["max_abs_diff"] == 0  # against itself
    assert 0 <= variants["bf16 autocast"]["mean_abs_diff"] <= variants["bf16 autocast"]["max_abs_diff"] <= 1
    train = data["training"]
    assert len(train["lightning"]["seconds_per_step"]) == 2 and train["steps"] == 2
    assert train["lightning_throughput_over_bare"] == pytest.approx(train["bare loop"]["median"] /
                                                                    train["lightning"]["median"])
    assert "| prior training, 2 steps of batch 64 |" in (tmp_path / "speed.md").read_text()


def test_matmul_flops_are_counted_as_2n3():
    from torch.utils.flop_counter import FlopCounterMode

    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with FlopCounterMode(display=False) as counter:
        a @ b
    assert counter.get_total_flops() == 2 * 8 * 16 * 4  # the convention matmul_gflops divides by


@pytest.mark.slow
def test_paper_size_run_measures_engine_floor_and_memory():
    spec = importlib.util.spec_from_file_location("speed_paper", SCRIPT.parent / "speed_paper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.one(batch=1, steps=1)
    assert row["batch"] == 1 and row["engine_s_per_step"] > 0 and row["floor_s_per_step"] > 0
    assert row["peak_rss_mb"] > 200  # the 56M-parameter generator alone is 224 MB of float32


def test_speed_libraries_section_times_both_versions(tmp_path):
    speed = _load()
    speed.library_main(["--before", "HEAD", "--batch", "4", "--repeats", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "libraries.json").read_text())
    assert {"jitter 8 px", "gaussian blur sigma 1", "FID, 80 vs 200 features", "KID, 80 vs 200, 50 subsets",
            "class-mix FID: one bootstrap replicate"} <= set(data["rows"])
    for row in data["rows"].values():
        assert set(row) == {"before", "after"}
        assert all(len(v["seconds"]) == 1 and v["median"] > 0 for v in row.values())
    assert data["before"] == "HEAD" and "torchmetrics" in data["versions"]
    assert "| after / before |" in (tmp_path / "libraries.md").read_text()
