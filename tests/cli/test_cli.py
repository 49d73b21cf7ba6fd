"""The dgn-am command line, end to end: call main([...]) and open what it wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import dgn_am.data as data
from dgn_am.cli import main
from dgn_am.imageio import load_image
from dgn_am.layers import parse_units, run
from dgn_am.objectives import UnitObjective
from tests.helpers import FASHION_FILES, random_caffenet, write_fake_fashion_mnist

# --lr 100: the random network's gradients are tiny, and at simonyan's own lr the images stay a flat grey
SYNTH = ["synthesize", "--weights", "random", "--units", "fc8:0-1", "conv3:2@mean", "--seeds", "2", "--steps", "3",
         "--lr", "100", "--quiet"]
KEYS = {"method", "model", "layer", "unit", "seed", "steps", "activation", "activation_saved", "prob", "dead_start",
        "stopped_at", "path", "failed", "settings"}


def read_manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """One run of the synthesize command shared by the tests that read its output."""
    out = tmp_path_factory.mktemp("synth") / "out"
    assert main(SYNTH + ["--out", str(out)]) == 0
    return out


def test_synthesize_writes_pngs_grid_and_manifest(synthesized):
    stems = [f"fc8_u{u}_s{s}_simonyan" for u in (0, 1) for s in (0, 1)] + \
            [f"conv3_u2_mean_s{s}_simonyan" for s in (0, 1)]
    assert sorted(p.name for p in synthesized.iterdir()) == sorted([f"{s}.png" for s in stems] +
                                                                    ["grid.png", "manifest.jsonl"])
    for stem in stems:
        im = Image.open(synthesized / f"{stem}.png")
        assert im.mode == "L" and im.size == (28, 28)
        assert len(np.unique(np.asarray(im))) > 20  # the optimization moved the pixels: not a flat image
    # grid: 3 rows (units) x 2 columns (seeds) of 28-pixel cells, 2-pixel padding, enlarged 112 // 28 = 4 times,
    # after a margin on the left that names each row's unit (and class, for output units)
    grid = Image.open(synthesized / "grid.png")
    margin = grid.width - 4 * (2 * 30 + 2)
    assert grid.height == 4 * (3 * 30 + 2) and margin > 40
    g = np.asarray(grid.convert("L"))
    cell = g[4 * 32: 4 * 32 + 4 * 28: 4, margin + 4 * 2: margin + 4 * 2 + 4 * 28: 4]  # row 1 (fc8:1), column 0 (seed 0)
    np.testing.assert_array_equal(cell, np.asarray(Image.open(synthesized / "fc8_u1_s0_simonyan.png")))
    for r in range(3):  # every row has its label: dark text pixels in the margin beside it
        assert (g[4 * (2 + 30 * r): 4 * (30 + 30 * r), :margin] < 128).sum() > 20

    records = read_manifest(synthesized)
    assert len(records) == 6
    assert [(r["layer"], r["unit"], r["seed"]) for r in records] == [
        ("fc8", 0, 0), ("fc8", 0, 1), ("fc8", 1, 0), ("fc8", 1, 1), ("conv3", "conv3:2@mean", 0),
        ("conv3", "conv3:2@mean", 1)]
    for r in records:
        assert set(r) == KEYS and r["failed"] is None
        assert r["method"] == "simonyan" and r["model"] == "fmnist-caffenet" and r["steps"] == 3
        assert isinstance(r["activation"], float)
        assert not r["path"].startswith("/") and (synthesized / r["path"]).is_file()
        assert r["settings"]["weights"] == "random" and r["settings"]["method"]["name"] == "simonyan"
        assert r["settings"]["method"]["steps"] == 3 and r["settings"]["parameterization"]["name"] == "pixels"
        if r["layer"] == "fc8":
            assert isinstance(r["prob"], float) and 0.0 < r["prob"] < 1.0
            assert r["settings"]["address"] == f"fc8:{r['unit']}"
        else:
            assert r["prob"] is None
            assert r["settings"]["address"] == "conv3:2@mean"


def test_manifest_activation_matches_rescoring_the_png(synthesized):
    model = random_caffenet()  # the network `--weights random` builds
    for r in read_manifest(synthesized):
        unit = parse_units(r["settings"]["address"])[0]
        x = load_image(synthesized / r["path"], model.input_spec).requires_grad_(True)  # (1, 1, 28, 28)
        act = UnitObjective([unit])(run(model, x, [unit.layer]))
        (grad,) = torch.autograd.grad(act.sum(), x)
        # 8-bit rounding moves each pixel by at most 0.5 / 255: to first order, |change| <= sum |grad| * 0.5 / 255
        tol = 2 * float(grad.abs().sum()) * 0.5 / 255 + 1e-6
        assert abs(float(act.detach()) - r["activation"]) <= tol, r["path"]
        if r["prob"] is not None:
            with torch.no_grad():
                prob = torch.softmax(model(x), 1)[0, unit.index]
            assert abs(float(prob) - r["prob"]) < 1e-3


def test_synthesize_twice_gives_identical_activations(synthesized, tmp_path):
    torch.manual_seed(1234)  # whatever the global RNG did before, `--weights random` is the same network
    torch.rand(5)
    assert main(SYNTH + ["--out", str(tmp_path / "again")]) == 0
    first = [r["activation"] for r in read_manifest(synthesized)]
    second = [r["activation"] for r in read_manifest(tmp_path / "again")]
    assert first == second
    assert len(set(first)) > 1  # the units really differ


def test_synthesize_first_seed_and_batch_size(tmp_path):
    """Chunked batches give the same result as one batch, and --first-seed names the files."""
    args = ["synthesize", "--weights", "random", "--units", "fc8:3-5", "--seeds", "1", "--first-seed", "7",
            "--steps", "2", "--quiet", "--lr", "100"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    assert main(args + ["--batch-size", "1", "--out", str(tmp_path / "chunked")]) == 0
    one, chunked = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "chunked")
    assert [r["path"] for r in one] == [f"fc8_u{u}_s7_simonyan.png" for u in (3, 4, 5)]
    assert [r["path"] for r in chunked] == [r["path"] for r in one]
    assert np.allclose([r["activation"] for r in one], [r["activation"] for r in chunked], atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--units", "fc9:0"], "unknown layer 'fc9'"),
    (["--units", "fc8:10"], "out of range"),
    (["--units", "conv3:0@9,9"], "position out of range"),
    (["--units", "fc8:x"], "bad unit list"),
    (["--weights", "MISSING"], "nope.safetensors"),
    (["--method", "nope"], "unknown method 'nope'; available:"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--samples", "0"], "--samples must be >= 1"),
    (["--samples", "2"], "only with transforms"),  # simonyan has no transforms to draw copies from
])
def test_synthesize_bad_input_exits_2_and_touches_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text("sentinel\n")
    (out / "fc8_u0_s0_simonyan.png").write_bytes(b"old image")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    extra = [str(tmp_path / "nope.safetensors") if a == "MISSING" else a for a in extra]
    args = ["synthesize", "--weights", "random", "--units", "fc8:0", "--seeds", "1", "--steps", "1", "--quiet"]
    assert main(args + extra + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("dgn-am synthesize: error: ") and message in err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
    # and a folder that does not exist yet is not created
    assert main(args + extra + ["--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()


def test_layers_command(capsys):
    assert main(["layers", "--weights", "random"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# fmnist-caffenet: input (B, 1, 28, 28) in [0, 1]"
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith("#")}
    assert rows["fc6"].split()[1] == "Sequential" and "(512,)" in rows["fc6"]
    assert rows["fc6"].endswith("before ReLU fc6.1") and rows["conv3"].endswith("before ReLU conv3.2")
    assert rows["fc8"].endswith("(10,)            output") and "(96, 7, 7)" in rows["conv3"]
    assert not any("." in name for name in rows)  # nested modules only with --all
    assert main(["layers", "--weights", "random", "--all"]) == 0
    assert "conv3.0" in {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]}


def test_layers_command_bad_model(capsys):
    assert main(["layers", "--model", "fmnist-vgg", "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dgn-am layers: error: unknown model 'fmnist-vgg'") and len(err.strip().splitlines()) == 1


def test_methods_command(capsys):
    assert main(["methods"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["simonyan"][1:4] == ["pixels", "200", "steps"]
    assert "Simonyan" in " ".join(rows["simonyan"])


def test_evaluate_command_on_a_tiny_test_set(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-dir")
    monkeypatch.delenv("DGN_AM_FASHION_MNIST", raising=False)
    arrays = write_fake_fashion_mnist(tmp_path / "fm", n_test=8)
    model = random_caffenet()
    with torch.no_grad():
        pred = model(torch.from_numpy(arrays[FASHION_FILES[2]]).float().div(255).unsqueeze(1)).argmax(1).numpy()
    labels = np.where(np.arange(8) < 6, pred, (pred + 1) % 10)  # 6 of 8 right: top1 = 0.75
    write_fake_fashion_mnist(tmp_path / "fm", n_test=8, test_labels=labels)
    assert main(["evaluate", "--weights", "random", "--data-dir", str(tmp_path / "fm")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"model": "fmnist-caffenet", "test_images": 8, "top1": 0.75}


def test_evaluate_without_data_exits_2_and_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-dir")
    monkeypatch.delenv("DGN_AM_FASHION_MNIST", raising=False)
    assert main(["evaluate", "--weights", "random", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not all((data.DEBIAN_FASHION_MNIST / f).is_file() for f in FASHION_FILES),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_evaluate_command_on_the_real_test_set(capsys, monkeypatch):
    monkeypatch.delenv("DGN_AM_FASHION_MNIST", raising=False)
    assert main(["evaluate", "--weights", "random"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "fmnist-caffenet" and result["test_images"] == 10000
    assert isinstance(result["top1"], float) and 0.0 <= result["top1"] <= 1.0
    assert result["top1"] * 10000 == round(result["top1"] * 10000)  # a count of correct images


def test_dead_starts_are_flagged_and_reported(tmp_path, capsys):
    from tests.prior_helpers import tiny_net

    net = tiny_net().eval()
    grey = torch.full((1, 1, 8, 8), 0.5)  # simonyan's all-zero start in normalized coordinates
    pre = run(net, grey, ["fc1"])["fc1"][0]
    dead, alive = int(pre.argmin()), int(pre.argmax())
    assert pre[dead] < 0 < pre[alive]
    out = tmp_path / "dead"
    assert main(["synthesize", "--model", "tests.prior_helpers:tiny_net", "--method", "simonyan", "--steps", "3",
                 "--units", f"fc1+relu:{dead},{alive}", "--seeds", "1", "--out", str(out), "--quiet"]) == 0
    rows = read_manifest(out)
    assert [r["dead_start"] for r in rows] == [True, False]
    assert rows[0]["activation"] == 0.0 and rows[1]["activation"] > 0
    err = capsys.readouterr().err
    assert "1 of 2 items were dead starts" in err and "drop '+relu'" in err
    # read before its ReLU (the default), the same unit is not dead
    assert main(["synthesize", "--model", "tests.prior_helpers:tiny_net", "--method", "simonyan", "--steps", "3",
                 "--units", f"fc1:{dead}", "--seeds", "1", "--out", str(tmp_path / "alive"), "--quiet"]) == 0
    assert read_manifest(tmp_path / "alive")[0]["dead_start"] is False
    assert "dead starts" not in capsys.readouterr().err
