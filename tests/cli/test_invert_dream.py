"""dgn-am invert and dgn-am dream, end to end: call main([...]) and open what they wrote."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from dgn_am.cli import main
from dgn_am.data import load_fashion_mnist
from dgn_am.imageio import save_image


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    x = load_fashion_mnist("test")[0][:2]
    paths = [folder / f"item{i}.png" for i in range(2)]
    for image, path in zip(x, paths):
        save_image(image, path)
    return [str(p) for p in paths]


def test_invert_writes_every_mode_at_the_code_layer(tmp_path, pictures):
    out = tmp_path / "inv"
    assert main(["invert", "--image", *pictures, "--layer", "fc6", "--steps", "3", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "invert.json").read_text())
    assert report["columns"] == ["original", "pixels", "prior", "encoder"]
    for row in report["images"]:
        for mode, entry in row["modes"].items():
            assert (out / entry["path"]).is_file() and 0 <= entry["mse"] <= 1 and -1 <= entry["ssim"] <= 1
    assert report["settings"]["pixels"]["method"]["steps"] == 3 and report["settings"]["pixels"]["reading"] == "fc6+relu"
    assert Image.open(out / "grid.png").size[0] > Image.open(out / "grid.png").size[1]  # 2 rows of 4


def test_invert_elsewhere_has_no_encoder_mode(tmp_path, pictures):
    out = tmp_path / "inv"
    assert main(["invert", "--image", pictures[0], "--layer", "conv3", "--mode", "pixels", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "invert.json").read_text())["columns"] == ["original", "pixels"]


def test_dream_writes_and_raises_the_layer(tmp_path, pictures):
    out = tmp_path / "dream"
    assert main(["dream", "--image", *pictures, "--layer", "conv4", "--steps", "3", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "dream.json").read_text())
    assert report["objective"] == "layer:conv4+relu" and report["config"]["octaves"] == 3
    assert all(r["objective_after"] > r["objective_before"] for r in report["images"])
    assert (out / "item0_dream.png").is_file() and (out / "grid.png").is_file()


def test_dream_through_the_prior_on_a_unit(tmp_path, pictures):
    out = tmp_path / "dream"
    assert main(["dream", "--image", pictures[0], "--unit", "fc8:3", "--parameterization", "prior", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "dream.json").read_text())
    assert report["objective"] == "fc8:3" and report["prior"] == "fmnist-fc6"


@pytest.mark.parametrize("argv, message", [
    (["invert", "--layer", "fc9"], "unknown layer 'fc9'"),
    (["invert", "--layer", "conv3", "--mode", "encoder"], "prior's own code layer"),
    (["invert", "--layer", "fc6", "--mode", "magic"], "unknown --mode magic"),
    (["dream"], "exactly one of --layer"),
    (["dream", "--layer", "conv4", "--unit", "fc8:1"], "exactly one of --layer"),
    (["dream", "--objective", "layer:conv4 *"], "at column 14"),
    (["dream", "--layer", "conv4", "--octaves", "0"], "octaves >= 1"),
])
def test_bad_input_exits_2_before_writing(tmp_path, capsys, pictures, argv, message):
    assert main(argv + ["--image", pictures[0], "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
