"""dgn_am.layers: unit addresses, validation against a model, reading units, capture hooks."""

from __future__ import annotations

import pytest
import torch

from dgn_am.layers import Unit, capture, check_units, get_layer, list_layers, parse_units, read_units, run
from dgn_am.models.loading import load_model


# ---- parse_units ----

@pytest.mark.parametrize("address, expected", [
    ("fc8:3", [Unit("fc8", 3, "centre")]),
    ("fc8:0-9", [Unit("fc8", i, "centre") for i in range(10)]),
    ("fc8:1,5,7", [Unit("fc8", 1), Unit("fc8", 5), Unit("fc8", 7)]),
    ("fc8:1,3-4", [Unit("fc8", 1), Unit("fc8", 3), Unit("fc8", 4)]),
    ("conv5:12", [Unit("conv5", 12, "centre")]),
    ("conv5:12@mean", [Unit("conv5", 12, "mean")]),
    ("conv5:12@centre", [Unit("conv5", 12, "centre")]),
    ("conv5:12@center", [Unit("conv5", 12, "centre")]),
    ("conv5:12@3,4", [Unit("conv5", 12, (3, 4))]),
    ("conv5:0-2@1,1", [Unit("conv5", 0, (1, 1)), Unit("conv5", 1, (1, 1)), Unit("conv5", 2, (1, 1))]),
    ("layer3.conv1:2", [Unit("layer3.conv1", 2)]),  # nested module names keep their dots
])
def test_parse_units(address, expected):
    assert parse_units(address) == expected


@pytest.mark.parametrize("unit, text", [
    (Unit("fc8", 3), "fc8:3"), (Unit("conv5", 12, "mean"), "conv5:12@mean"), (Unit("conv5", 1, (3, 4)), "conv5:1@3,4"),
])
def test_unit_str_round_trips(unit, text):
    assert str(unit) == text
    assert parse_units(text) == [unit]


@pytest.mark.parametrize("address, fragment", [
    ("fc8", "expected LAYER:INDEX"),
    ("fc8:", "bad unit list"),
    ("fc8:a", "bad unit list"),
    ("fc8:1-", "bad unit list"),
    ("fc8:-1", "bad unit list"),
    ("fc8:5-3", "empty range"),
    ("conv5:1@x", "bad position '@x'"),
    ("conv5:1@3", "bad position"),
    ("conv5:1@3,", "bad position"),
])
def test_parse_units_rejects_bad_syntax(address, fragment):
    with pytest.raises(ValueError, match=fragment) as e:
        parse_units(address)
    assert address in str(e.value)


# ---- check_units ----

def test_check_units_accepts_valid_units_and_returns_shapes(caffenet):
    shapes = check_units(caffenet, parse_units("fc8:9") + parse_units("conv3:95@6,6") + parse_units("conv5:0@mean"))
    assert shapes["fc8"] == (10,) and shapes["conv3"] == (96, 7, 7) and shapes["fc6"] == (512,)


def test_check_units_unknown_layer_lists_what_exists(caffenet):
    with pytest.raises(ValueError) as e:
        check_units(caffenet, parse_units("fc9:0"))
    msg = str(e.value)
    assert "unknown layer 'fc9'" in msg
    for name in ("conv1", "conv5", "pool5", "fc6", "fc7", "fc8"):
        assert name in msg.split("available:")[1]
    assert "dgn-am layers" in msg


def test_check_units_index_out_of_range_says_the_range(caffenet):
    with pytest.raises(ValueError, match=r"has 10 channels \(0-9\)"):
        check_units(caffenet, parse_units("fc8:10"))
    with pytest.raises(ValueError, match=r"has 96 channels \(0-95\)"):
        check_units(caffenet, parse_units("conv3:96@mean"))


@pytest.mark.parametrize("address", ["conv3:0@7,0", "conv3:0@0,7", "conv5:0@9,9"])
def test_check_units_position_out_of_range(caffenet, address):
    with pytest.raises(ValueError, match=r"position out of range; '.*' is 7x7"):
        check_units(caffenet, parse_units(address))


def test_check_units_position_on_fc_layer(caffenet):
    with pytest.raises(ValueError, match="no spatial positions"):
        check_units(caffenet, parse_units("fc8:0@1,1"))


# ---- read_units ----

def test_read_units_fc_layer():
    act = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    out = read_units(act, [Unit("fc8", 2), Unit("fc8", 0)])
    assert out.tolist() == [2.0, 3.0]


def test_read_units_conv_centre_mean_and_position():
    # (B, C, H, W) = (2, 2, 3, 5), value = 30b + 15c + 5r + k, plus 100 for item 1
    act = torch.arange(2 * 2 * 3 * 5, dtype=torch.float32).view(2, 2, 3, 5)
    act[1] += 100.0
    units = [Unit("c", 1, "centre"), Unit("c", 0, "mean")]
    # item 0 channel 1 at the centre (row 1, col 2): 15 + 5 + 2 = 22
    # item 1 channel 0 mean: 130 + mean(5r + k) = 130 + 5 + 2 = 137
    assert read_units(act, units).tolist() == [22.0, 137.0]
    units = [Unit("c", 0, (2, 4)), Unit("c", 1, (0, 3))]
    # item 0 channel 0 at (2, 4): 10 + 4 = 14; item 1 channel 1 at (0, 3): 130 + 15 + 3 = 148
    assert read_units(act, units).tolist() == [14.0, 148.0]


def test_read_units_is_differentiable_to_the_right_entries():
    act = torch.zeros(1, 2, 3, 3, requires_grad=True)
    read_units(act, [Unit("c", 1, "mean")]).sum().backward()
    expected = torch.zeros(1, 2, 3, 3)
    expected[0, 1] = 1 / 9
    assert torch.allclose(act.grad, expected)


def test_read_units_rejects_other_ranks():
    with pytest.raises(ValueError, match="neither"):
        read_units(torch.zeros(2, 3, 4), [Unit("x", 0), Unit("x", 1)])


# ---- run and capture ----

def _counter(model, name):
    calls = []
    handle = get_layer(model, name).register_forward_hook(lambda m, i, o: calls.append(name))
    return calls, handle


def test_run_stops_after_the_deepest_requested_layer(caffenet, images):
    fc8_calls, h8 = _counter(caffenet, "fc8")
    conv4_calls, h4 = _counter(caffenet, "conv4")
    try:
        acts = run(caffenet, images, ["conv3", "conv1"])
        assert set(acts) == {"conv1", "conv3"}
        assert acts["conv3"].shape == (2, 96, 7, 7) and acts["conv1"].shape == (2, 32, 28, 28)
        assert fc8_calls == [] and conv4_calls == []  # nothing after conv3 was computed
        acts = run(caffenet, images, ["fc8"])
        assert fc8_calls == ["fc8"] and conv4_calls == ["conv4"]
        assert torch.equal(acts["fc8"], caffenet(images))
    finally:
        h8.remove()
        h4.remove()


def test_run_gives_the_same_activations_as_a_full_pass(caffenet, images):
    with capture(caffenet, ["conv3"], stop=False) as full:
        out = caffenet(images)
    assert out.shape == (2, 10)  # stop=False runs to the end
    assert torch.equal(run(caffenet, images, ["conv3"])["conv3"], full["conv3"])


def test_hooks_are_removed_after_run(caffenet, images):
    layer = get_layer(caffenet, "conv3")
    run(caffenet, images, ["conv3"])
    assert len(layer._forward_hooks) == 0
    # and a later full forward pass is not cut short
    assert caffenet(images).shape == (2, 10)


def test_hooks_are_removed_after_an_exception_in_the_block(caffenet, images):
    layer = get_layer(caffenet, "conv3")
    with pytest.raises(KeyError, match="boom"):
        with capture(caffenet, ["conv3"]) as acts:
            assert len(layer._forward_hooks) == 1  # the hook is in place inside the block
            raise KeyError("boom")
    assert len(layer._forward_hooks) == 0
    assert acts == {}


def test_capture_with_an_unknown_layer_leaves_no_hooks(caffenet):
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        with capture(caffenet, ["conv3", "nope"]):
            pass
    assert all(len(m._forward_hooks) == 0 for m in caffenet.modules())


def test_run_names_layers_that_were_never_called():
    model = load_model("tests.helpers:factory")
    with pytest.raises(RuntimeError, match=r"\['unused'\] were never called"):
        run(model, torch.zeros(1, 1, 4, 4), ["conv", "unused"])
    assert len(get_layer(model, "unused")._forward_hooks) == 0


def test_get_layer_rejects_the_empty_name(caffenet):
    with pytest.raises(ValueError, match="unknown layer ''"):
        get_layer(caffenet, "")


# ---- list_layers ----

def test_list_layers_fmnist_caffenet(caffenet):
    layers = list_layers(caffenet)
    shapes = {name: shape for name, _, shape in layers}
    assert shapes["conv1"] == (32, 28, 28)
    assert shapes["pool1"] == (32, 14, 14)
    assert shapes["conv2"] == (64, 14, 14)
    assert shapes["conv3"] == (96, 7, 7)
    assert shapes["conv4"] == (96, 7, 7)
    assert shapes["conv5"] == (64, 7, 7)
    assert shapes["pool5"] == (64, 3, 3)
    assert shapes["flatten"] == (576,)
    assert shapes["fc6"] == (512,) and shapes["fc7"] == (512,) and shapes["fc8"] == (10,)
    assert shapes["conv3.0"] == (96, 7, 7)  # nested modules are listed too
    top = [name for name, _, _ in layers if "." not in name]
    assert top == ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "flatten",
                   "fc6", "drop6", "fc7", "drop7", "fc8"]  # call order
    kinds = {name: kind for name, kind, _ in layers}
    assert kinds["fc8"] == "Linear" and kinds["conv3"] == "Sequential" and kinds["pool5"] == "MaxPool2d"
    assert all(len(m._forward_hooks) == 0 for m in caffenet.modules())


def test_list_layers_with_another_input_shape(caffenet):
    shapes = {name: shape for name, _, shape in list_layers(caffenet.net, (1, 28, 28))}
    assert shapes["conv5"] == (64, 7, 7)
    tiny = load_model("tests.helpers:factory")
    assert [(n, s) for n, _, s in list_layers(tiny)] == [("conv", (2, 4, 4)), ("flatten", (32,)), ("fc", (3,))]
