"""`dgn-am import-caffe` end to end on Caffe files the tests write in the wire format, then `dgn-am synthesize`
with the imported CaffeNet and generator: the paper's setting (fc8:945) on reduced-width random-weight networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dgn_am.cli import main
from dgn_am.models.caffenet import CaffeNet, CaffeNetConfig
from dgn_am.models.generators import Generator, GeneratorConfig
from dgn_am.models.loading import load_model, read_state_dict
from dgn_am.priors import load_prior
from tests.caffe_writer import module_blobs, write_caffemodel

# the DeePSiM fc6 stack (4 -> 256, the same layer names and kinds) at reduced widths, and CaffeNet likewise
SMALL_G = GeneratorConfig(code_dim=64, size=256, channels=3, fc_dims=(32, 32), start=4, start_channels=8,
                          up_channels=(8, 8, 8, 8, 4, 3), refine=(8, 8, 8, 0, 0, 0), output="caffe")
SMALL_NET = CaffeNetConfig(convs=(8, 12, 16, 12, 8), fcs=(24, 20), num_classes=1000)


@pytest.fixture(scope="module")
def caffe_files(tmp_path_factory):
    """generator.caffemodel (legacy layout), fc6.txt, caffenet.caffemodel (new layout), mean.npy."""
    d = tmp_path_factory.mktemp("caffe")
    torch.manual_seed(0)
    g = Generator(SMALL_G)
    write_caffemodel(d / "generator.caffemodel", module_blobs(g), legacy=True)
    (d / "fc6.txt").write_text("\n".join(str(v) for v in np.random.default_rng(0).integers(3, 18, 64)) + "\n")
    blobs = module_blobs(CaffeNet(SMALL_NET))
    write_caffemodel(d / "caffenet.caffemodel", blobs)
    np.save(d / "mean.npy", np.random.default_rng(1).uniform(90, 130, (3, 256, 256)))  # float64, as the original
    return d, g, blobs


@pytest.fixture(scope="module")
def imported(caffe_files):
    d, _, _ = caffe_files
    assert main(["import-caffe", "--generator", str(d / "generator.caffemodel"), "--bounds", str(d / "fc6.txt"),
                 "--out", str(d / "prior.safetensors"), "--quiet"]) == 0
    assert main(["import-caffe", "--classifier", str(d / "caffenet.caffemodel"), "--mean", str(d / "mean.npy"),
                 "--out", str(d / "caffenet.safetensors"), "--quiet"]) == 0
    return d


def test_prior_file_has_the_bounds_generator_and_provenance(caffe_files, imported):
    d, g, _ = caffe_files
    prior = load_prior(d / "prior.safetensors")
    upper = torch.tensor([float(v) for v in (d / "fc6.txt").read_text().split()])
    assert torch.equal(prior.upper, upper) and torch.equal(prior.lower, torch.zeros(64))
    assert prior.generator.config == SMALL_G and prior.generator.config.output == "caffe"
    h = torch.rand(2, 64) * 5
    torch.testing.assert_close(prior.generator(h), g.eval()(h), rtol=0, atol=0)
    p = prior.provenance
    assert p["generator_caffemodel"]["file"] == "generator.caffemodel" and len(p["generator_caffemodel"]["sha256"]) == 64
    assert p["bounds_file"]["file"] == "fc6.txt" and "BGR" in p["output_convention"]
    assert p["preset"].startswith("none") and "import-caffe --generator" in p["command"]


def test_model_file_keeps_caffes_input_convention(caffe_files, imported):
    d, _, blobs = caffe_files
    model = load_model(str(d / "caffenet.safetensors"))
    spec = model.input_spec
    assert (spec.order, spec.scale, spec.size, spec.crop_from, spec.crop_offset()) == \
        ("bgr", 255.0, (227, 227), (256, 256), (14, 14))
    mean = torch.from_numpy(np.load(d / "mean.npy")).float()[:, 14:241, 14:241]
    torch.testing.assert_close(spec.mean_image, mean)
    net = CaffeNet(SMALL_NET).eval()
    net.load_state_dict({f"{n}.{k}": torch.from_numpy(b) for n, (w, bias) in blobs.items()
                         for k, b in (("weight", w), ("bias", bias))})
    x = torch.rand(2, 3, 227, 227)
    torch.testing.assert_close(model(x), net(x.flip(1) * 255 - mean))
    assert model.class_names is not None and len(model.class_names) == 1000
    _, meta = read_state_dict(d / "caffenet.safetensors")
    assert json.loads(meta["mean"])["file"] == "mean.npy" and meta["arch"] == "caffenet"


def test_synthesize_the_papers_setting(imported, tmp_path):
    out = tmp_path / "out"
    assert main(["synthesize", "--model", str(imported / "caffenet.safetensors"), "--prior",
                 str(imported / "prior.safetensors"), "--units", "fc8:945", "--method", "dgn-am", "--seeds", "2",
                 "--steps", "3", "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["layer"], r["unit"], r["seed"]) for r in rows] == [("fc8", 945, 0), ("fc8", 945, 1)]
    assert all(r["failed"] is None and np.isfinite(r["activation"]) and 0 <= r["prob"] <= 1 for r in rows)
    assert rows[0]["settings"]["code_scale"]["s"] == pytest.approx(
        float(load_prior(imported / "prior.safetensors").upper.mean()) / 11.85, rel=1e-4)
    with Image.open(out / rows[0]["path"]) as im:
        assert im.size == (227, 227) and im.mode == "RGB"
    again = tmp_path / "again"
    assert main(["synthesize", "--model", str(imported / "caffenet.safetensors"), "--prior",
                 str(imported / "prior.safetensors"), "--units", "fc8:945", "--method", "dgn-am", "--seeds", "2",
                 "--steps", "3", "--out", str(again), "--quiet"]) == 0
    assert [json.loads(x)["activation"] for x in (again / "manifest.jsonl").read_text().splitlines()] == \
        [r["activation"] for r in rows]


@pytest.mark.parametrize("extra, message", [
    (["--generator", "G"], "needs --bounds"),
    (["--classifier", "C", "--bounds", "B"], "--bounds goes with --generator"),
    ([], "give either"),
    (["--generator", "missing.caffemodel", "--bounds", "B"], "no such file"),
])
def test_bad_flags_exit_2_and_write_nothing(caffe_files, tmp_path, capsys, extra, message):
    d, _, _ = caffe_files
    paths = {"G": str(d / "generator.caffemodel"), "C": str(d / "caffenet.caffemodel"), "B": str(d / "fc6.txt")}
    argv = ["import-caffe", *[paths.get(a, a) for a in extra], "--out", str(tmp_path / "x.safetensors")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_bounds_of_the_wrong_length_and_a_bad_mean(caffe_files, tmp_path, capsys):
    d, _, _ = caffe_files
    (tmp_path / "short.txt").write_text("3 4 5")
    assert main(["import-caffe", "--generator", str(d / "generator.caffemodel"), "--bounds",
                 str(tmp_path / "short.txt"), "--out", str(tmp_path / "p.safetensors")]) == 2
    assert "holds 3 bounds, the generator's code has 64 units" in capsys.readouterr().err
    np.save(tmp_path / "mean.npy", np.zeros((256, 256, 3)))  # HWC instead of CHW
    assert main(["import-caffe", "--classifier", str(d / "caffenet.caffemodel"), "--mean", str(tmp_path / "mean.npy"),
                 "--out", str(tmp_path / "c.safetensors")]) == 2
    assert "expected (3, 256, 256) in BGR" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.slow
def test_full_size_deepsim_fc6_round_trips(tmp_path):
    """The published architecture at full size (~56M random weights, a ~224 MB file): imported as deepsim-fc6, its
    output equals the generator the arrays came from."""
    torch.manual_seed(0)
    g = Generator("deepsim-fc6").eval()
    write_caffemodel(tmp_path / "g.caffemodel", module_blobs(g))
    (tmp_path / "fc6.txt").write_text(" ".join(["11"] * 4096))
    assert main(["import-caffe", "--generator", str(tmp_path / "g.caffemodel"), "--bounds", str(tmp_path / "fc6.txt"),
                 "--out", str(tmp_path / "p.safetensors"), "--quiet"]) == 0
    prior = load_prior(tmp_path / "p.safetensors")
    assert prior.provenance["preset"] == "deepsim-fc6"
    h = torch.rand(1, 4096) * 3
    with torch.no_grad():
        torch.testing.assert_close(prior.generator(h), g(h), rtol=0, atol=0)
