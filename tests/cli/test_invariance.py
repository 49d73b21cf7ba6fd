"""dgn-am invariance, end to end: call main([...]) and open what it wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dgn_am.cli import main
from dgn_am.data import load_fashion_mnist
from dgn_am.imageio import save_image


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "item.png"
    save_image(load_fashion_mnist("test")[0][0], path)
    return str(path)


def test_invariance_of_a_method_point_in_code_space_with_the_surrogate(tmp_path):
    out = tmp_path / "inv"
    assert main(["invariance", "--units", "fc8:0-1", "--method", "dgn-am-class", "--steps", "2", "--space", "code",
                 "--smooth", "softplus:10", "--k", "1", "--points", "3", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "invariance.json").read_text())
    assert report["settings"]["space"] == "code" and report["settings"]["smooth"] == 10.0
    assert report["point"] == {"method": "dgn-am-class", "seed": 0, "steps": 2} and report["warnings"] == []
    assert [t["target"] for t in report["targets"]] == ["fc8:0", "fc8:1"]
    for t in report["targets"]:
        top, bottom = t["eigenvalues"]
        assert top >= bottom and top != 0 and not t["flat"] and t["gradient_norm"] > 0
        assert len(t["path"]) == 2 and len(t["path"][0]) == 3 and t["path"][0][1] == pytest.approx(t["value"])
        vectors = np.load(out / t["files"]["eigenvectors"])
        assert vectors.shape == (2, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        strip = Image.open(out / t["files"]["paths"])
        assert strip.size[0] > strip.size[1]  # 2 rows of 1 direction + 3 path points


def test_invariance_of_an_image_warns_on_the_piecewise_linear_net(tmp_path, picture, capsys):
    out = tmp_path / "inv"
    assert main(["invariance", "--units", "fc8:3", "--image", picture, "--k", "2", "--out", str(out)]) == 0
    report = json.loads((out / "invariance.json").read_text())
    target = report["targets"][0]
    assert target["flat"] and target["eigenvalues"] == [0.0] * 4 and "piecewise linear" in report["warnings"][0]
    assert "piecewise linear" in capsys.readouterr().err
    assert (out / "fc8_u3_point.png").is_file() and (out / "fc8_u3_directions.png").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--units", "fc8:0", "--objective", "logprob:fc8:0", "--method", "simonyan"], "exactly one of --units"),
    (["--units", "fc8:0"], "exactly one point"),
    (["--units", "fc8:0", "--method", "simonyan", "--space", "code"], "needs a code method"),
    (["--units", "fc8:0", "--method", "simonyan", "--points", "4"], "must be odd"),
    (["--units", "fc8:0", "--method", "simonyan", "--smooth", "relu"], "softplus:BETA"),
    (["--units", "fc9:0", "--method", "simonyan"], "fc9"),
])
def test_invariance_rejects_bad_input_before_writing(tmp_path, argv, message, capsys):
    out = tmp_path / "inv"
    assert main(["invariance", *argv, "--steps", "1", "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err and not out.exists()
