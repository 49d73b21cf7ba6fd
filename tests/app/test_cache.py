"""The cache holds `dgn-am synthesize` folders: what the app writes, synthesize --resume keeps whole; what
synthesize writes, the app reads; a folder made with other settings is recomputed, not shown."""

from __future__ import annotations

import json

import torch

from dgn_am.cli import main
from dgn_am.imageio import read_image
from dgn_am.layers import Unit
from tests.app.conftest import METHOD, SEEDS, STEPS


def _synthesize(out, unit: str, *extra: str) -> int:
    return main(["synthesize", "--model", "fmnist-caffenet", "--method", METHOD, "--units", unit, "--seeds",
                 str(SEEDS), "--steps", str(STEPS), "--out", str(out), *extra])


def test_synthesize_resume_keeps_every_image_the_app_wrote(toolbox, capsys):
    unit = Unit("fc8", 3)
    rows = toolbox.preferred(METHOD, "fc8:3")
    folder = toolbox.cache.folder(METHOD, unit)
    assert folder == toolbox.cache.settings.root / "fmnist-caffenet" / METHOD / "fc8_u3"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["fc8_u3_s0_simonyan.png", "fc8_u3_s1_simonyan.png", "grid.png", "manifest.jsonl"]
    assert [r["seed"] for r in rows] == [0, 1] and all(r["steps"] == STEPS for r in rows)
    assert all(0 <= r["prob"] <= 1 for r in rows)  # fc8 is the output layer: the class probability is recorded
    before = {n: (folder / n).read_bytes() for n in names if n.endswith("_simonyan.png")}
    capsys.readouterr()
    assert _synthesize(folder, "fc8:3", "--resume") == 0
    assert f"wrote 0 images ({SEEDS} kept)" in capsys.readouterr().out
    assert {n: (folder / n).read_bytes() for n in before} == before


def test_the_app_reads_what_synthesize_wrote_and_matches_it(toolbox, tmp_path):
    unit = Unit("conv5", 7)
    folder = toolbox.cache.folder(METHOD, unit)
    assert _synthesize(folder, "conv5:7", "--quiet") == 0
    rows = toolbox.cache.read(toolbox.job_model, METHOD, unit)
    assert rows is not None and [r["path"] for r in rows] == ["conv5_u7_s0_simonyan.png", "conv5_u7_s1_simonyan.png"]
    assert toolbox.jobs.started == 0
    # the app's own run of the same unit gives the same images (the same seeds give the same result)
    cli_images = [read_image(folder / r["path"]) for r in rows]
    mine = toolbox.cache.compute(toolbox.job_model, None, METHOD, unit)  # replaces the folder
    for cli_row, app_row in zip(rows, mine):
        assert abs(cli_row["activation"] - app_row["activation"]) < 1e-5
    assert all(torch.equal(a, read_image(folder / r["path"])) for a, r in zip(cli_images, mine))


def test_other_settings_or_a_missing_image_mean_recompute(toolbox, make_toolbox):
    unit = Unit("fc8", 1)
    toolbox.preferred(METHOD, "fc8:1")
    assert toolbox.cache.read(toolbox.job_model, METHOD, unit) is not None
    longer = make_toolbox(steps=STEPS + 1)
    assert longer.cache.read(longer.job_model, METHOD, unit) is None  # other --steps
    more = make_toolbox(seeds=SEEDS + 1)
    assert more.cache.read(more.job_model, METHOD, unit) is None  # a seed is missing
    rows = more.preferred(METHOD, "fc8:1")
    assert [r["seed"] for r in rows] == [0, 1, 2]
    lines = (more.cache.folder(METHOD, unit) / "manifest.jsonl").read_text().splitlines()
    manifest = [json.loads(line) for line in lines]
    assert manifest == rows
    (more.cache.folder(METHOD, unit) / rows[0]["path"]).unlink()
    assert more.cache.read(more.job_model, METHOD, unit) is None
