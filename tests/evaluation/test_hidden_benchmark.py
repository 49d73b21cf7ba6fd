"""The hidden-unit benchmark: end to end through the CLI, and its numbers against direct computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dgn_am.evaluation.hidden import HiddenConfig, run_hidden_benchmark, unit_table
from dgn_am.layers import parse_units, run
from dgn_am.models.loading import load_model
from tests.helpers import have_fashion_mnist

needs_data = pytest.mark.skipif(not have_fashion_mnist(), reason="Fashion-MNIST not installed (apt-get install "
                                "dataset-fashion-mnist)")


def test_unit_table_reads_each_unit_its_own_way():
    model = load_model("fmnist-caffenet")
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    units = parse_units("conv5:3") + parse_units("fc6:7") + parse_units("fc6+relu:7")
    t = unit_table(model, x, units, batch=2)
    acts = run(model, x, ["conv5", "fc6"])
    torch.testing.assert_close(t[:, 0], acts["conv5"][:, 3, 3, 3])  # channel 3 at the centre of 7x7
    torch.testing.assert_close(t[:, 1], acts["fc6"][:, 7])
    torch.testing.assert_close(t[:, 2], acts["fc6"][:, 7].clamp(min=0))


@needs_data
def test_hidden_benchmark_end_to_end(tmp_path):
    from dgn_am.cli import main

    out = tmp_path / "hidden"
    assert main(["benchmark", "--units", "conv5:0-1", "fc6:5", "--methods", "dgn-am,simonyan", "--seeds", "2",
                 "--steps", "4", "--n-boot", "20", "--top-k", "6", "--evaluators", "fmnist-resnet",
                 "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["dgn-am", "simonyan", "top-images", "noise"]
    st = res["settings"]
    assert st["units_list"] == ["conv5:0", "conv5:1", "fc6:5"] and st["layers"] == ["conv5", "fc6"]
    top = np.array(st["top_activation"])
    for name, entry in res["methods"].items():
        assert set(entry["summary"]) == {"conv5", "fc6", "all"}
        acts = np.array(entry["per_image"]["activation"])
        s = entry["summary"]["all"]
        # act/top is the mean over units of each item's activation over its unit's top test activation
        np.testing.assert_allclose(s["act_top"]["value"], np.mean(acts / np.repeat(top, 2)), rtol=1e-9)
        assert s["nonpositive"]["value"] == pytest.approx(np.mean(acts <= 0))
        raw = np.array(entry["per_image"]["activation_raw"])
        if name != "dgn-am":  # only the reference loop's target sees an unclipped image
            np.testing.assert_allclose(raw, acts, rtol=1e-6, atol=1e-6)
        assert s["nonpositive_raw"]["value"] == pytest.approx(np.mean(raw <= 0))
        for k in ("act_top", "nonpositive", "realism_kid", "diversity", "median_act_top"):
            assert s[k]["lo"] <= s[k]["value"] + 1e-9 and s[k]["value"] <= s[k]["hi"] + 1e-9 or k == "median_act_top"
    # the top test image of each unit is its normalizer: act/top of the first exemplar is exactly 1
    ex = np.array(res["methods"]["top-images"]["per_image"]["activation"])
    np.testing.assert_allclose(ex[::2], top, rtol=1e-6)
    assert res["methods"]["dgn-am"]["cost"]["steps"] == 4
    table = (out / "table.md").read_text()
    assert "### conv5 (2 units)" in table and "| dgn-am |" in table and "act/top" in table
    for layer in ("conv5", "fc6"):
        im = Image.open(out / f"exemplars_{layer}.png")
        assert im.width > 300 and im.height > 150


def test_hidden_benchmark_refuses_the_target_as_evaluator():
    with pytest.raises(ValueError, match="target itself"):
        run_hidden_benchmark(HiddenConfig(evaluators=("fmnist-caffenet",)))


def test_results_json_is_strict_json_with_null_for_nan():
    import math

    from dgn_am.evaluation.report import to_json

    text = to_json({"settings": {"x": float("nan")}, "methods": {"m": {"v": np.array([1.0, np.inf])}},
                    "images": None})
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert data == {"settings": {"x": None}, "methods": {"m": {"v": [1.0, None]}}}
    assert not any(isinstance(v, float) and math.isnan(v) for v in data["settings"].values())
