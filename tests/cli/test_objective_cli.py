"""dgn-am synthesize --objective / --interpolate, end to end on the random-weight fmnist-caffenet."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dgn_am.cli import main

BASE = ["synthesize", "--weights", "random", "--seeds", "2", "--steps", "3", "--lr", "100", "--quiet"]


def rows(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_objective_expression_run(tmp_path):
    np.save(tmp_path / "dir.npy", np.linspace(-1, 1, 512))
    text = f"fc8:3 - 0.5 * fc8:5 + 0.1 * direction:fc6={tmp_path / 'dir.npy'}"
    assert main(BASE + ["--objective", text, "--out", str(tmp_path / "out")]) == 0
    manifest = rows(tmp_path / "out")
    assert [r["path"] for r in manifest] == ["objective_s0_simonyan.png", "objective_s1_simonyan.png"]
    assert all(r["unit"] == text and r["layer"] is None and r["prob"] is None for r in manifest)
    assert manifest[0]["settings"]["objective"] == {"expression": text}
    assert Image.open(tmp_path / "out" / "grid.png").size[1] > 0


def test_added_objective_keeps_the_units_and_is_recorded(tmp_path):
    out = tmp_path / "out"
    assert main(BASE + ["--units", "fc8:1-2", "--objective", "+ 0.1 * diversity:conv3", "--out", str(out)]) == 0
    manifest = rows(out)
    assert [r["unit"] for r in manifest] == [1, 1, 2, 2]
    assert manifest[0]["settings"]["method"]["objective"] == "+ 0.1 * diversity:conv3"
    assert manifest[0]["settings"]["objective"] == {"units": True, "added": "+ 0.1 * diversity:conv3"}


def test_interpolate_writes_a_row_of_frames_per_seed(tmp_path):
    out = tmp_path / "out"
    assert main(BASE + ["--interpolate", "fc8:1", "logprob:fc8:7", "--frames", "3", "--out", str(out)]) == 0
    manifest = rows(out)
    assert [r["path"] for r in manifest][:2] == ["frame00_s0_simonyan-custom.png", "frame00_s1_simonyan-custom.png"]
    assert [r["unit"].rsplit("t=", 1)[1] for r in manifest] == ["0", "0", "0.5", "0.5", "1", "1"]
    assert manifest[0]["settings"]["method"]["operators"][-1] == {"type": "Share", "weight": 0.02}
    w, h = Image.open(out / "grid.png").size
    assert w > h  # 2 rows (seeds) of 3 frames


@pytest.mark.parametrize("extra, message", [
    (["--objective", "fc8:3 -"], "at column 8"),
    (["--objective", "fc8:30"], "out of range"),
    (["--objective", "fc8:3", "--units", "fc8:1"], "replace --units"),
    (["--objective", "fc8:3", "--interpolate", "fc8:1", "fc8:2"], "not both"),
    (["--frames", "4"], "give --interpolate"),
    (["--interpolate", "fc8:1", "+ fc8:2"], "begins with + or -"),
    (["--interpolate", "fc8:1", "fc8:2", "--share", "2"], "Share weight"),
])
def test_bad_objectives_exit_2_before_writing(tmp_path, capsys, extra, message):
    assert main(BASE + extra + ["--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_config_objective_runs_as_the_one_target(tmp_path):
    config = tmp_path / "mine.json"
    config.write_text(json.dumps({"name": "mine", "steps": 3, "objective": "fc8:3 - fc8:1",
                                  "step_rule": {"kind": "sgd", "lr": 100}}))
    out = tmp_path / "out"
    assert main(["synthesize", "--weights", "random", "--config", str(config), "--seeds", "1", "--quiet",
                 "--out", str(out)]) == 0
    (row,) = rows(out)
    assert row["path"] == "objective_s0_mine.png" and row["settings"]["objective"] == {"expression": "fc8:3 - fc8:1"}
