"""dgn_am.data: IDX files, finding Fashion-MNIST, image folders."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

import dgn_am.data as data
from dgn_am.data import fashion_mnist_dir, image_folder, load_fashion_mnist, read_idx
from tests.helpers import FASHION_FILES, idx_bytes, write_fake_fashion_mnist, write_idx

REAL = data.DEBIAN_FASHION_MNIST
FILES = FASHION_FILES


@pytest.fixture()
def no_system_data(monkeypatch, tmp_path):
    """Make the machine's own copy invisible, so results do not depend on what is installed."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-debian-dir")
    monkeypatch.delenv("DGN_AM_FASHION_MNIST", raising=False)


# ---- read_idx ----

@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
def test_read_idx_images_exact(tmp_path, name):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    write_idx(tmp_path / name, images)
    out = read_idx(tmp_path / name)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, images)
    assert out[1, 2, 3] == 230


@pytest.mark.parametrize("name", ["labels.idx", "labels.idx.gz"])
def test_read_idx_labels_exact(tmp_path, name):
    labels = np.array([9, 0, 3, 255], dtype=np.uint8)
    write_idx(tmp_path / name, labels)
    np.testing.assert_array_equal(read_idx(str(tmp_path / name)), labels)


def test_read_idx_header_is_big_endian(tmp_path):
    images = np.zeros((1, 300, 2), dtype=np.uint8)  # 300 = 0x012C: a little-endian read would get 0x2C010000
    images[0, 299, 1] = 7
    write_idx(tmp_path / "big.idx", images)
    out = read_idx(tmp_path / "big.idx")
    assert out.shape == (1, 300, 2) and out[0, 299, 1] == 7


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path, gz):
    raw = idx_bytes(np.ones((2, 3, 3), dtype=np.uint8))[:-5]
    path = tmp_path / ("t.idx.gz" if gz else "t.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match=r"truncated: header says \(2, 3, 3\), found 13 bytes") as e:
        read_idx(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("header", [bytes([0, 0, 0x0D, 1]), bytes([1, 0, 0x08, 1]), bytes([0x1F, 0x8B, 8, 0])])
def test_read_idx_wrong_magic(tmp_path, header):
    path = tmp_path / "bad.idx"
    path.write_bytes(header + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match=f"not an unsigned-byte IDX file \\(magic {header.hex()}\\)"):
        read_idx(path)


# ---- finding and loading Fashion-MNIST ----

def test_fashion_mnist_dir_uses_data_dir(tmp_path, no_system_data):
    write_fake_fashion_mnist(tmp_path / "fm")
    assert fashion_mnist_dir(tmp_path / "fm") == tmp_path / "fm"
    assert fashion_mnist_dir(str(tmp_path / "fm")) == tmp_path / "fm"


def test_fashion_mnist_dir_env_and_torchvision_layout(tmp_path, no_system_data, monkeypatch):
    write_fake_fashion_mnist(tmp_path / "tv" / "FashionMNIST" / "raw")
    assert fashion_mnist_dir(tmp_path / "tv") == tmp_path / "tv" / "FashionMNIST" / "raw"
    monkeypatch.setenv("DGN_AM_FASHION_MNIST", str(tmp_path / "tv"))
    assert fashion_mnist_dir() == tmp_path / "tv" / "FashionMNIST" / "raw"


def test_fashion_mnist_dir_needs_all_four_files(tmp_path, no_system_data):
    write_fake_fashion_mnist(tmp_path / "fm")
    (tmp_path / "fm" / FILES[3]).unlink()
    with pytest.raises(FileNotFoundError):
        fashion_mnist_dir(tmp_path / "fm")


def test_missing_data_says_how_to_get_it(tmp_path, no_system_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist_dir(empty)
    msg = str(e.value)
    # a folder the user names is the only place looked at: never silently replaced by the system copy (issue 11)
    assert str(empty) in msg and "no-such-debian-dir" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(FileNotFoundError) as e:
        fashion_mnist_dir()
    assert "no-such-debian-dir" in str(e.value)  # without --data-dir: every place it looked
    assert "--data-dir" in msg and "--download" in msg and "DGN_AM_FASHION_MNIST" in msg
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", empty)


def test_a_data_dir_that_does_not_exist_is_an_error_even_when_the_system_copy_exists(tmp_path, monkeypatch):
    write_fake_fashion_mnist(tmp_path / "system")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "system")
    monkeypatch.delenv("DGN_AM_FASHION_MNIST", raising=False)
    assert fashion_mnist_dir() == tmp_path / "system"
    with pytest.raises(FileNotFoundError, match="--data-dir .*typo does not exist"):
        fashion_mnist_dir(tmp_path / "typo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not found in .*empty;"):
        load_fashion_mnist("test", tmp_path / "empty")


def test_load_fashion_mnist_from_files(tmp_path, no_system_data):
    arrays = write_fake_fashion_mnist(tmp_path / "fm", n_train=6, n_test=4)
    x, y = load_fashion_mnist("test", tmp_path / "fm")
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [3, 2, 1, 0]
    assert torch.equal(x[:, 0], torch.from_numpy(arrays[FILES[2]]).float() / 255)
    x, y = load_fashion_mnist("train", tmp_path / "fm")
    assert x.shape == (6, 1, 28, 28) and y.tolist() == [0, 1, 2, 3, 4, 5]
    assert float(x.max()) <= 1.0 and float(x.min()) >= 0.0


def test_load_fashion_mnist_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'val'; use 'train' or 'test'"):
        load_fashion_mnist("val", tmp_path)


@pytest.mark.skipif(not all((REAL / f).is_file() for f in FILES), reason=f"Fashion-MNIST not installed in {REAL}")
def test_real_fashion_mnist_test_split(monkeypatch):
    monkeypatch.delenv("DGN_AM_FASHION_MNIST", raising=False)
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [1000] * 10
    assert abs(float(x.mean()) - 0.2860) < 0.01  # the normalization mean the models use (measured on train)


# ---- image_folder ----

def _touch_png(path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (2, 2)).save(path)


def test_image_folder_lists_classes_and_images(tmp_path):
    _touch_png(tmp_path / "cat" / "b.png")
    _touch_png(tmp_path / "cat" / "a.PNG")
    _touch_png(tmp_path / "ant" / "sub" / "x.png")  # nested folders are searched
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "stray.png").write_bytes(b"")  # files at the top are not a class
    paths, labels, classes = image_folder(tmp_path)
    assert classes == ["ant", "cat"]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["ant/sub/x.png", "cat/a.PNG", "cat/b.png"]
    assert labels == [0, 1, 1]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected .*/CLASS_NAME/IMAGE.png"):
        image_folder(tmp_path / "missing")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found under"):
        image_folder(tmp_path)
