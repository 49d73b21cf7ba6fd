"""dgn_am.evaluation.report: table cells, CSV and JSON from a tiny hand-made results dict."""

import csv
import io
import json

import torch

from dgn_am.evaluation.report import _cell, to_csv, to_json

RESULTS = {
    "settings": {"evaluators": ["judge"]},
    "methods": {
        "mine": {"error": None, "summary": {"transfer_mean": {"value": 0.5, "lo": 0.25, "hi": 0.75}},
                 "control": {"transfer_judge": {"value": 0.1}, "transfer_mean": {"value": 0.1}},
                 "cost": {"seconds_per_image": 2.0, "steps": 10}},
        "broken": {"error": "ValueError: no", "summary": None, "control": None},
    },
    "images": {"mine": torch.zeros(1, 1, 2, 2)},
    "real_images_for_grid": torch.zeros(1, 1, 2, 2),
}


def test_cell_formats_value_and_interval():
    assert _cell({"value": 0.5, "lo": 0.25, "hi": 0.75}, "{:.2f}") == "0.50 [0.25, 0.75]"
    assert _cell({"value": 1.0, "lo": None}, "{:.1f}") == "1.0"
    assert _cell({"value": float("nan")}, "{:.2f}") == "-" and _cell(None, "{:.2f}") == "-"


def test_csv_has_one_row_per_method_with_value_lo_hi():
    rows = list(csv.reader(io.StringIO(to_csv(RESULTS))))
    assert rows[0] == ["method", "error", "transfer_mean", "transfer_mean_lo", "transfer_mean_hi",
                       "control_transfer_judge", "control_transfer_mean", "seconds_per_image", "steps"]
    assert rows[1] == ["mine", "", "0.5", "0.25", "0.75", "0.1", "0.1", "2.0", "10"]
    assert rows[2] == ["broken", "ValueError: no", "", "", "", "", "", "", ""]


def test_json_leaves_out_the_images():
    data = json.loads(to_json(RESULTS))
    assert set(data) == {"settings", "methods"} and data["methods"]["mine"]["cost"]["steps"] == 10
