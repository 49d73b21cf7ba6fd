"""`dgn-am explain` and `dgn-am dataset-views` end to end: run main([...]) and open what they wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dgn_am.cli import main
from dgn_am.data import load_fashion_mnist
from dgn_am.explain import excitation_backprop, guided_backprop, top_k_images
from dgn_am.imageio import load_image, save_image
from tests.helpers import random_caffenet, write_fake_fashion_mnist


@pytest.fixture()
def image_file(tmp_path):
    path = tmp_path / "shoe.png"
    save_image(torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(2)), path)
    return path


def explain(image_file, out, *extra):
    return main(["explain", "--model", "fmnist-caffenet", "--weights", "random", "--image", str(image_file),
                 "--out", str(out), "--quiet", *extra])


def test_explain_writes_map_npy_overlay_and_manifest(tmp_path, image_file):
    out = tmp_path / "out"
    assert explain(image_file, out, "--unit", "fc8:3", "--method", "guided-backprop") == 0
    stem = "fc8_u3_guided-backprop"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}.png", f"{stem}.npy", f"{stem}_overlay.png", "input.png", "panel.png", "explain.json"])
    x = load_image(image_file, random_caffenet().input_spec)
    expected = guided_backprop(random_caffenet(), x, "fc8:3")[0].numpy()
    assert np.allclose(np.load(out / f"{stem}.npy"), expected, atol=1e-7)
    for name in (f"{stem}.png", f"{stem}_overlay.png"):
        with Image.open(out / name) as im:
            assert im.size == (112, 112) and im.mode == "RGB"
    manifest = json.loads((out / "explain.json").read_text())
    assert manifest["unit"] == "fc8:3" and manifest["methods"][0]["npy_shape"] == [1, 28, 28]
    assert manifest["activation"] == pytest.approx(float(random_caffenet()(x)[0, 3]), abs=1e-6)


def test_explain_all_methods_with_options_and_the_default_unit(tmp_path, image_file):
    out = tmp_path / "all"
    assert explain(image_file, out, "--method", "all", "--stop-layer", "conv3", "--patch", "7", "--stride",
                   "7", "--scale", "2") == 0
    manifest = json.loads((out / "explain.json").read_text())
    x = load_image(image_file, random_caffenet().input_spec)
    predicted = int(random_caffenet()(x).argmax())
    assert manifest["unit"] == f"fc8:{predicted}" and manifest["predicted_class"] == predicted
    assert len(manifest["methods"]) == 7
    p = np.load(out / f"fc8_u{predicted}_excitation-backprop.npy")
    assert p.shape == (96, 7, 7) and p.min() >= 0 and p.sum() == pytest.approx(1, abs=1e-5)
    assert np.allclose(p, excitation_backprop(random_caffenet(), x, f"fc8:{predicted}", "conv3")[0].numpy())
    occ = np.load(out / f"fc8_u{predicted}_occlusion.npy")
    assert occ.shape == (28, 28) and len(np.unique(occ)) <= 17  # 4 x 4 windows of 7 pixels: constant blocks
    with Image.open(out / "panel.png") as im:
        assert im.width > 400
    with Image.open(out / f"fc8_u{predicted}_saliency.png") as im:
        assert im.size == (56, 56)


@pytest.mark.parametrize("extra, message", [
    (["--unit", "fc9:1"], "unknown layer 'fc9'"),
    (["--unit", "fc8:0-3"], "names 4 units"),
    (["--unit", "fc8:10"], "out of range"),
    (["--method", "lime"], "unknown method 'lime'"),
    (["--method", "excitation-backprop", "--unit", "conv3:1", "--stop-layer", "fc7"], "comes after"),
    (["--method", "occlusion", "--patch", "40"], "larger than the image"),
])
def test_explain_errors_exit_2_and_write_nothing(tmp_path, image_file, capsys, extra, message):
    out = tmp_path / "never"
    assert explain(image_file, out, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()
    assert explain(tmp_path / "missing.png", out) == 2 and "image file not found" in capsys.readouterr().err


def test_dataset_views_on_fashion_mnist_files(tmp_path):
    write_fake_fashion_mnist(tmp_path / "fm", n_test=60)
    out = tmp_path / "views"
    args = ["dataset-views", "--model", "fmnist-caffenet", "--weights", "random", "--data-dir", str(tmp_path / "fm"),
            "--limit", "50", "--units", "conv3:0", "fc8:1", "--k", "4", "--queries", "0", "5", "--neighbours", "3",
            "--embedding", "pca", "tsne", "--threads", "1", "--thumbnails", "5", "--out", str(out), "--quiet"]
    assert main(args) == 0
    expected = {"topk_conv3_u0.png", "patches_conv3_u0.png", "topk_fc8_u1.png", "neighbours_fc7.png",
                "embedding_pca_fc7.png", "embedding_pca_fc7.npy", "embedding_tsne_fc7.png", "embedding_tsne_fc7.npy",
                "filters.png", "views.json"}
    assert {p.name for p in out.iterdir()} == expected
    record = json.loads((out / "views.json").read_text())
    images = load_fashion_mnist("test", tmp_path / "fm")[0][:50]
    top = top_k_images(random_caffenet(), images, "fc8:1", k=4)
    assert record["units"]["fc8:1"]["indices"] == top.indices.tolist()
    assert "patches_png" not in record["units"]["fc8:1"]
    conv3 = record["units"]["conv3:0"]
    assert all(0 <= t < b <= 28 and 0 <= left < r <= 28 for t, left, b, r in conv3["boxes"])
    with Image.open(out / "patches_conv3_u0.png") as im:  # 4 crops of the 18-pixel field, x6, in one row
        assert im.size == (6 * (4 * 20 + 2), 6 * 22)
    with Image.open(out / "neighbours_fc7.png") as im:  # 2 rows: the query and its 3 neighbours
        assert im.size == (4 * (4 * 30 + 2), 4 * (2 * 30 + 2))
    assert record["neighbours"]["indices"][0][0] != 0 and np.load(out / "embedding_tsne_fc7.npy").shape == (50, 2)
    assert record["filters"] == {"layer": "conv1.0", "shape": [32, 1, 3, 3], "png": "filters.png"}


def test_dataset_views_on_an_image_folder_with_default_layers(tmp_path):
    g = torch.Generator().manual_seed(0)
    for c in ("cats", "dogs"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(5):
            save_image(torch.rand(3, 32, 20, generator=g), tmp_path / "imgs" / c / f"{i}.png")
    out = tmp_path / "views"
    assert main(["dataset-views", "--model", "fmnist-resnet", "--weights", "random", "--image-folder",
                 str(tmp_path / "imgs"), "--k", "3", "--queries", "1", "--neighbours", "2", "--embedding", "pca",
                 "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "views.json").read_text())
    assert sorted(record["units"]) == ["layer3:0", "layer3:1", "layer3:2", "layer3:3"]
    assert record["neighbours"]["layer"] == "pool" and record["images"] == 10
    assert (out / "patches_layer3_u2.png").is_file() and (out / "embedding_pca_pool.png").is_file()


def test_dataset_views_errors_write_nothing(tmp_path, capsys):
    write_fake_fashion_mnist(tmp_path / "fm", n_test=8)
    base = ["dataset-views", "--model", "fmnist-caffenet", "--weights", "random", "--data-dir", str(tmp_path / "fm"),
            "--embedding", "pca", "--out", str(tmp_path / "never"), "--k", "3"]
    for extra, message in ((["--queries", "8"], "out of range"), (["--k", "9"], "more than the 8 images"),
                           (["--units", "conv9:0"], "unknown layer"), (["--embedding", "umap"], "unknown --embedding"),
                           (["--image-folder", str(tmp_path / "nope")], "does not exist")):
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
