"""dgn_am.models: load_model by name, input conventions, weight files and their errors."""

from __future__ import annotations

import ast

import pytest
import torch

from dgn_am.models.fmnist import FASHION_MNIST_INPUT
from dgn_am.models.loading import SHIPPED, load_model, write_state_dict
from dgn_am.models.spec import InputSpec
from tests.helpers import TINY_SPEC


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_names_load_with_random_weights(name, images):
    torch.manual_seed(0)
    model = load_model(name, weights="random")
    assert model.name == name
    assert model.input_spec == FASHION_MNIST_INPUT
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    out = model(images)
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_random_weights_follow_the_global_seed():
    torch.manual_seed(3)
    a = load_model("fmnist-caffenet", weights="random")
    torch.manual_seed(3)
    b = load_model("fmnist-caffenet", weights="random")
    torch.manual_seed(4)
    c = load_model("fmnist-caffenet", weights="random")
    assert torch.equal(a.net.fc8.weight, b.net.fc8.weight)
    assert not torch.equal(a.net.fc8.weight, c.net.fc8.weight)


def test_normalization_is_folded_in(caffenet, images):
    expected = caffenet.net((images - 0.2860) / 0.3530)  # Fashion-MNIST mean and std, by hand
    assert torch.allclose(caffenet(images), expected, atol=1e-6)
    assert torch.allclose(caffenet(images), caffenet.net(FASHION_MNIST_INPUT.normalize(images)), atol=1e-6)
    assert not torch.allclose(caffenet(images), caffenet.net(images), atol=1e-4)  # normalization matters


def test_input_spec_normalize_per_channel():
    spec = InputSpec(size=(1, 2), channels=3, mean=(0.5, 0.0, 1.0), std=(0.5, 2.0, 0.25))
    x = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.5]], [[1.0, 0.75]]]])  # (1, 3, 1, 2)
    y = spec.normalize(x)
    assert y.tolist() == [[[[1.0, -1.0]], [[0.5, 0.25]], [[0.0, -1.0]]]]
    assert InputSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="need 3 entries"):
        InputSpec(size=(2, 2), channels=3, mean=(0.5,), std=(1.0,))


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28), (2, 1, 28, 27)])
def test_wrong_image_shape_gives_a_clear_error(caffenet, shape):
    with pytest.raises(ValueError) as e:
        caffenet(torch.zeros(shape))
    msg = str(e.value)
    assert f"images of shape {shape}" in msg
    assert "expects (B, 1, 28, 28) in [0, 1]" in msg
    assert "load_image" in msg


def test_weights_round_trip_through_safetensors(tmp_path, caffenet, images):
    path = tmp_path / "w.safetensors"
    write_state_dict(path, caffenet.net.state_dict(), {"note": "test", "epochs": 3})
    torch.manual_seed(99)  # a different random start, overwritten by the file
    loaded = load_model("fmnist-caffenet", weights=path)
    assert torch.equal(loaded(images), caffenet(images))
    for k, v in caffenet.net.state_dict().items():  # BatchNorm buffers included
        assert torch.equal(loaded.net.state_dict()[k], v), k
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())

    from dgn_am.models.loading import read_state_dict
    _, meta = read_state_dict(path)
    assert meta == {"note": "test", "epochs": "3"}  # non-strings are stored as JSON


def test_weights_with_the_wrapper_prefix_also_load(tmp_path, caffenet, images):
    path = tmp_path / "w.safetensors"
    write_state_dict(path, caffenet.state_dict(), {})  # keys "net.conv1.0.weight", ...
    assert all(k.startswith("net.") for k in caffenet.state_dict())
    torch.manual_seed(99)
    assert torch.equal(load_model("fmnist-caffenet", weights=str(path))(images), caffenet(images))


def test_torch_save_state_dict_loads(tmp_path, caffenet, images):
    path = tmp_path / "w.pt"
    torch.save(caffenet.net.state_dict(), path)
    torch.manual_seed(99)
    assert torch.equal(load_model("fmnist-caffenet", weights=path)(images), caffenet(images))
    ckpt = tmp_path / "lightning.ckpt"  # a Lightning-style checkpoint: the state_dict under "state_dict"
    torch.save({"state_dict": caffenet.state_dict(), "epoch": 1}, ckpt)
    torch.manual_seed(99)
    assert torch.equal(load_model("fmnist-caffenet", weights=ckpt)(images), caffenet(images))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_corrupt_weights_file_names_the_path(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(bytes(torch.randint(0, 256, (500,), generator=torch.Generator().manual_seed(0)).tolist()))
    with pytest.raises(ValueError) as e:
        load_model("fmnist-caffenet", weights=path)
    assert str(path) in str(e.value)
    assert "could not read weights file" in str(e.value)


def test_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        load_model("fmnist-caffenet", weights=path)


def test_weights_of_another_architecture_do_not_match(tmp_path):
    torch.manual_seed(0)
    resnet = load_model("fmnist-resnet", weights="random")
    path = tmp_path / "resnet.safetensors"
    write_state_dict(path, resnet.net.state_dict(), {})
    with pytest.raises(ValueError) as e:
        load_model("fmnist-caffenet", weights=path)
    msg = str(e.value)
    assert "does not match the architecture FmnistCaffeNet" in msg and str(path) in msg
    missing, unexpected = msg.split("missing ")[1].split(", unexpected ")
    assert "'conv1.0.weight'" in missing and "'fc.weight'" in unexpected


def test_weights_with_a_wrong_shape_do_not_match(tmp_path, caffenet):
    """The shape check names the tensors (load_state_dict alone raises a bare RuntimeError, even non-strict)."""
    state = dict(caffenet.net.state_dict())
    state["fc8.weight"] = torch.zeros(11, 512)
    state["fc8.bias"] = torch.zeros(11)
    path = tmp_path / "w.safetensors"
    write_state_dict(path, state, {})
    with pytest.raises(ValueError, match="missing \\[\\], unexpected \\[\\], wrong shape") as e:
        load_model("fmnist-caffenet", weights=path)
    wrong = str(e.value).split("wrong shape ")[1]
    assert sorted(ast.literal_eval(wrong)) == ["fc8.bias", "fc8.weight"]


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_model("fmnist-caffenet", weights=missing)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_model("torchvision:resnet18", weights=missing)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_model("tests.helpers:factory", weights=missing)


def test_shipped_weights_default_to_the_checkpoints_folder(tmp_path, monkeypatch, caffenet, images):
    monkeypatch.setenv("DGN_AM_CHECKPOINTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="DGN_AM_CHECKPOINTS") as e:
        load_model("fmnist-caffenet")
    assert str(tmp_path / "fmnist-caffenet.safetensors") in str(e.value)
    write_state_dict(tmp_path / "fmnist-caffenet.safetensors", caffenet.net.state_dict(), {})
    assert torch.equal(load_model("fmnist-caffenet")(images), caffenet(images))


def test_torchvision_resnet18_random():
    torch.manual_seed(0)
    model = load_model("torchvision:resnet18", weights="random")
    assert model.input_spec.size == (224, 224) and model.input_spec.channels == 3
    assert model.input_spec.mean == (0.485, 0.456, 0.406)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"expects \(B, 3, 224, 224\)"):
        model(torch.zeros(1, 1, 224, 224))


def test_torchvision_without_weights_says_to_pass_weights():
    with pytest.raises(ValueError, match="--weights FILE") as e:
        load_model("torchvision:resnet18")
    assert "--weights random" in str(e.value) and "Nothing is downloaded" in str(e.value)


def test_unknown_torchvision_name_lists_available():
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet19'") as e:
        load_model("torchvision:resnet19", weights="random")
    available = str(e.value).split("available:")[1]
    assert "resnet18" in available and "vgg16" in available


@pytest.mark.parametrize("spec", ["tests.helpers:factory", "tests.helpers:factory_dict_spec"])
def test_factory_path(spec):
    model = load_model(spec)
    assert model.input_spec == TINY_SPEC
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    expected = model.net((x - 0.5) / 0.25)
    assert torch.allclose(model(x), expected)
    with pytest.raises(ValueError, match=r"expects \(B, 1, 4, 4\)"):
        model(torch.zeros(2, 1, 28, 28))


def test_factory_path_with_weights(tmp_path):
    model = load_model("tests.helpers:factory")
    state = {k: torch.full_like(v, 0.5) for k, v in model.net.state_dict().items()}
    path = tmp_path / "tiny.safetensors"
    write_state_dict(path, state, {})
    loaded = load_model("tests.helpers:factory", weights=path)
    assert torch.equal(loaded.net.fc.weight, torch.full((3, 32), 0.5))


def test_factory_without_input_spec_errors_clearly():
    with pytest.raises(ValueError, match="without an `input_spec`") as e:
        load_model("tests.helpers:no_spec_factory")
    assert "tests.helpers:no_spec_factory" in str(e.value) and "InputSpec(size=(H, W)" in str(e.value)


def test_factory_that_is_not_a_module():
    with pytest.raises(ValueError, match="returned int, not a torch.nn.Module"):
        load_model("tests.helpers:not_a_module")


@pytest.mark.parametrize("spec", ["tests.no_such_module:factory", "tests.helpers:no_such_factory"])
def test_factory_that_cannot_be_imported(spec):
    with pytest.raises(ValueError, match=f"cannot import '{spec}'"):
        load_model(spec)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'fmnist-vgg'") as e:
        load_model("fmnist-vgg", weights="random")
    for name in SHIPPED:
        assert name in str(e.value)
    assert "torchvision:NAME" in str(e.value) and "package.module:factory" in str(e.value)


def test_model_files_describe_themselves(tmp_path):
    """save_model writes arch, arch_args, InputSpec and class names; load_model(path) rebuilds the model with no
    other flag. A train-classifier file from before arch_args (classes and channels recorded apart) loads too."""
    from dgn_am.models.fmnist import FmnistCaffeNet
    from dgn_am.models.loading import save_model, write_state_dict

    torch.manual_seed(0)
    net = FmnistCaffeNet(num_classes=4, in_channels=3, size=64).eval()
    spec = InputSpec((64, 64), 3, (0.5,) * 3, (0.25,) * 3)
    save_model(tmp_path / "m.safetensors", net, "fmnist-caffenet", {"num_classes": 4, "in_channels": 3, "size": 64},
               spec, ("a", "b", "c", "d"))
    model = load_model(str(tmp_path / "m.safetensors"))
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model(x), net(spec.normalize(x)))
    assert model.class_names == ("a", "b", "c", "d") and model.input_spec == spec
    old = FmnistCaffeNet(num_classes=10, in_channels=1).eval()
    write_state_dict(tmp_path / "old.safetensors", old.state_dict(),
                     {"arch": "fmnist-caffenet", "input_spec": FASHION_MNIST_INPUT.to_dict(), "num_classes": 10})
    x = torch.rand(1, 1, 28, 28)
    torch.testing.assert_close(load_model(str(tmp_path / "old.safetensors"))(x), old(FASHION_MNIST_INPUT.normalize(x)))
    with pytest.raises(ValueError, match="leave out --weights"):
        load_model(str(tmp_path / "m.safetensors"), weights="random")
    write_state_dict(tmp_path / "bare.safetensors", old.state_dict(), {})
    with pytest.raises(ValueError, match="is not a model file"):
        load_model(str(tmp_path / "bare.safetensors"))
