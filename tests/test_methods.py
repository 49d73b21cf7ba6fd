"""The hand-crafted baseline methods: registry, rescaling, composition from text, reproducibility, every model kind,
the engine's step rules they use, the CLI's composition flags, and (with the trained checkpoint) that each method
raises its target."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from dgn_am.cli import main
from dgn_am.components import method_from_dict, parse_component, parse_step_rule
from dgn_am.engine import StepRule, maximize
from dgn_am.layers import parse_units
from dgn_am.methods import METHODS, Method, get_method, synthesize
from dgn_am.models.loading import TargetModel, checkpoints_dir, load_model
from dgn_am.models.spec import InputSpec
from dgn_am.objectives import UnitObjective
from dgn_am.operators import GaussianBlur, NormClip
from dgn_am.parameterizations import PixelParam
from dgn_am.penalties import TotalVariation
from dgn_am.transforms import Jitter, Pad
from tests.helpers import linear_model

BASELINES = ["simonyan", "yosinski", "yosinski-normclip", "yosinski-decay", "yosinski-blur", "yosinski-contrib",
             "mahendran", "olah", "nguyen-handcrafted"]
MAIN = ["simonyan", "yosinski", "mahendran", "olah", "nguyen-handcrafted"]


def short(name: str, steps: int = 3, mean: bool = True, **changes) -> Method:
    """A baseline with few steps; for 28x28 grayscale models (mean=True) the mean image is given, so no dataset
    is needed."""
    m = get_method(name)
    opts = m.options + ((("mean_image", torch.full((1, 28, 28), 0.3)),) if m.init == "mean-image" and mean else ())
    return dataclasses.replace(m, steps=steps, options=opts, **changes)


def rgb_model() -> TargetModel:
    """A tiny random RGB classifier on 20x20 inputs, ImageNet normalization."""
    torch.manual_seed(3)
    net = nn.Sequential()
    net.add_module("conv1", nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))
    net.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()))
    net.add_module("fc", nn.Linear(32, 5))
    spec = InputSpec(size=(20, 20), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return TargetModel(net, spec).eval().requires_grad_(False)


# ---- registry, settings, rescaling ----

def test_baselines_are_registered_with_descriptions():
    for name in BASELINES:
        assert METHODS[name].description
    assert get_method("olah").parameterization == "fourier"
    assert get_method("olah").step_rule == StepRule("adam", lr=0.05) and get_method("olah").steps == 512


@pytest.mark.parametrize("name", BASELINES)
def test_settings_are_json_and_rebuild_the_method(name):
    method = get_method(name)
    data = json.loads(json.dumps(method.settings()))
    assert method_from_dict(data) == method


def test_rescaling_to_the_model_size():
    olah = get_method("olah").rescaled((28, 28))
    assert [t.pixels for t in olah.transforms if isinstance(t, (Pad, Jitter))] == [2, 1, 1]  # 12, 8, 4 at 224
    assert olah.reference_size == 28
    assert get_method("olah").rescaled((224, 224)) is get_method("olah")
    blur = get_method("yosinski-blur").rescaled((28, 28)).operators[1]
    assert isinstance(blur, GaussianBlur) and blur.width == pytest.approx(28 / 227)
    assert get_method("yosinski").rescaled((224, 224)).operators[1].width == pytest.approx(4.0)  # 0.5 px at 28
    assert get_method("simonyan").rescaled((224, 224)) is get_method("simonyan")  # nothing spatial


def test_synthesize_records_the_rescaling(caffenet):
    result, _ = synthesize(caffenet, parse_units("fc8:0"), [0], short("olah", 1))
    assert result.settings["rescaled_from"] == 224
    assert result.settings["method"]["transforms"][0] == {"type": "Pad", "pixels": 2, "mode": "constant",
                                                          "value": 0.5}


# ---- behaviour on random-weight models ----

@pytest.mark.parametrize("name", BASELINES)
def test_same_seed_is_bit_identical_and_seeds_differ(caffenet, name):
    method = short(name)
    a, _ = synthesize(caffenet, parse_units("fc8:2"), [0, 1], method)
    b, _ = synthesize(caffenet, parse_units("fc8:2"), [0, 1], method)
    assert torch.equal(a.images, b.images)
    if name == "simonyan":  # starts from zeros and draws nothing: deterministic by design
        assert torch.equal(a.images[0], a.images[1])
    else:
        assert not torch.equal(a.images[0], a.images[1])


@pytest.mark.parametrize("name", BASELINES)
def test_every_method_runs_on_rgb_models_and_conv_units(name):
    model = rgb_model()
    units = parse_units("fc:1") + parse_units("conv1:3@mean")
    result, items = synthesize(model, units, [0], short(name, 2, mean=False))
    assert result.images.shape == (2, 3, 20, 20)
    assert torch.isfinite(result.images).all()
    assert result.images.min() >= 0 and result.images.max() <= 1


def test_exact_contribution_clipping_inside_a_method(caffenet):
    method = short("yosinski-contrib", 2, operators=(NormClip(10), ) + get_method("yosinski-contrib").operators[1:])
    exact = dataclasses.replace(method, operators=tuple(
        dataclasses.replace(o, exact=True) if hasattr(o, "exact") else o for o in method.operators))
    result, _ = synthesize(caffenet, parse_units("fc8:4"), [0], exact)
    zeroed = (result.params[0].abs().sum(0) == 0).float().mean()
    # the pixels below the 90th percentile of the exact contribution (705 of 784) are back at the mean
    assert zeroed.item() == pytest.approx(0.9, abs=2 / 784)


def test_mean_image_init_starts_from_the_given_image(caffenet, tmp_path):
    mean = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(0))
    method = dataclasses.replace(get_method("nguyen-handcrafted"), init_std=0.0, steps=1, transforms=(),
                                 step_rule=StepRule("sgd", lr=0.0), options=(("mean_image", mean),))
    result, _ = synthesize(caffenet, parse_units("fc8:0"), [0], method)
    assert torch.allclose(result.images[0], mean)


# ---- the step rules the baselines added to the engine ----

def test_progress_step_rises_a_linear_objective_by_lr_per_step():
    w = torch.tensor([[3.0, -4.0, 0.0, 0.0]])  # ||w|| = 5
    param = PixelParam((1, 2, 2), centre=0.0, box=False)
    objective = UnitObjective(parse_units("lin:0"))
    result = maximize(linear_model(w), objective, param, [0], 4, StepRule("progress", lr=2.0))
    assert torch.allclose(result.history[:, 0], torch.tensor([0.0, 2.0, 4.0, 6.0]))
    capped = maximize(linear_model(w), objective, param, [0], 2, StepRule("progress", lr=2.0, lr_max=0.01))
    assert capped.activations.item() == pytest.approx(2 * 0.01 * 25)  # step lr_max * w, twice: 0.5


def test_momentum_step_matches_heavy_ball():
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    param = PixelParam((1, 2, 2), centre=0.0, box=False)
    result = maximize(linear_model(w), UnitObjective(parse_units("lin:0")), param, [0], 3,
                      StepRule("momentum", lr=0.1, momentum=0.5))
    # velocities 1, 1.5, 1.75 -> positions 0.1, 0.25, 0.425
    assert result.params[0, 0, 0, 0].item() == pytest.approx(0.425)
    with pytest.raises(ValueError, match="momentum or progress"):
        StepRule("lbfgs")


# ---- composing from text ----

def test_parse_component():
    assert parse_component("penalty", "tv:weight=0.01") == TotalVariation(weight=0.01)
    assert parse_component("operator", "blur:width=1,every=4") == GaussianBlur(width=1.0, every=4)
    assert parse_component("operator", "contribclip:pct=80,exact=true").exact is True
    assert parse_component("transform", "Jitter:pixels=2") == Jitter(2)
    assert parse_step_rule("progress:lr=10,lr_max=0.5") == StepRule("progress", lr=10.0, lr_max=0.5)
    for kind, spec, message in [("penalty", "tvv", "unknown penalty 'tvv' in 'tvv'; available: l2, alpha, tv"),
                                ("operator", "blur:radius=1", "GaussianBlur has no setting radius"),
                                ("operator", "blur:every=two", "expected int"),
                                ("transform", "jitter:2", "write transform settings as NAME:key=value"),
                                ("operator", "normclip:pct=200", "percentile in")]:
        with pytest.raises(ValueError, match=message):
            parse_component(kind, spec)


def test_method_from_dict_fills_defaults_and_rejects_unknown_keys():
    m = method_from_dict({"name": "mine", "steps": 10, "penalties": [{"type": "tv", "weight": 0.1}],
                          "step_rule": {"kind": "adam", "lr": 0.05}})
    assert m.penalties == (TotalVariation(weight=0.1),) and m.step_rule.kind == "adam" and m.init == "zeros"
    with pytest.raises(ValueError, match="unknown method setting stpes"):
        method_from_dict({"stpes": 3})


def test_cli_composes_a_method_from_flags(tmp_path):
    out = tmp_path / "out"
    code = main(["synthesize", "--weights", "random", "--method", "simonyan", "--units", "fc8:0", "--seeds", "1",
                 "--steps", "2", "--penalty", "tv:weight=0.01", "--penalty", "alpha:weight=1,alpha=6",
                 "--operator", "blur:width=0.5,every=1", "--transform", "jitter:pixels=2",
                 "--step-rule", "momentum:lr=0.01", "--samples", "2", "--out", str(out), "--quiet"])
    assert code == 0
    row = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    method = row["settings"]["method"]
    assert row["method"] == "simonyan-custom" and (out / "fc8_u0_s0_simonyan-custom.png").is_file()
    assert [p["type"] for p in method["penalties"]] == ["TotalVariation", "AlphaNorm"]
    assert method["operators"] == [{"type": "GaussianBlur", "width": 0.5, "every": 1, "truncate": 4.0}]
    assert method["step_rule"]["kind"] == "momentum" and method["steps"] == 2 and method["samples"] == 2
    # the recorded settings replay as a config file, image for image
    (tmp_path / "m.json").write_text(json.dumps(row["settings"]))
    assert main(["synthesize", "--weights", "random", "--config", str(tmp_path / "m.json"), "--units", "fc8:0",
                 "--seeds", "1", "--out", str(tmp_path / "replay"), "--quiet"]) == 0
    assert (tmp_path / "replay" / "grid.png").read_bytes() == (out / "grid.png").read_bytes()


def test_cli_composes_preconditioners_and_the_bilateral_filter_by_name(tmp_path):
    out = tmp_path / "out"
    assert main(["synthesize", "--weights", "random", "--method", "yosinski", "--units", "fc8:0", "--seeds", "2",
                 "--steps", "3", "--preconditioner", "gradblur:width=0.7", "--preconditioner", "lapnorm:levels=3",
                 "--operator", "bilateral:width=0.5,range_sigma=0.2,every=2", "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    method = row["settings"]["method"]
    assert row["method"] == "yosinski-custom"
    assert method["preconditioners"] == [{"type": "GradientBlur", "width": 0.7, "truncate": 4.0},
                                         {"type": "LaplacianNormalize", "levels": 3, "scale": "rms", "eps": 1e-12}]
    assert method["operators"] == [{"type": "BilateralBlur", "width": 0.5, "range_sigma": 0.2, "every": 2,
                                    "truncate": 4.0}]
    (tmp_path / "m.json").write_text(json.dumps(row["settings"]))  # replays image for image
    assert main(["synthesize", "--weights", "random", "--config", str(tmp_path / "m.json"), "--units", "fc8:0",
                 "--seeds", "2", "--out", str(tmp_path / "replay"), "--quiet"]) == 0
    assert (tmp_path / "replay" / "grid.png").read_bytes() == (out / "grid.png").read_bytes()
    # the registered methods run by name and record their pieces
    assert main(["synthesize", "--weights", "random", "--method", "olah-lapnorm", "--units", "fc8:0", "--seeds", "1",
                 "--steps", "2", "--out", str(tmp_path / "lap"), "--quiet"]) == 0
    row = json.loads((tmp_path / "lap" / "manifest.jsonl").read_text())
    assert row["settings"]["method"]["preconditioners"][0]["type"] == "LaplacianNormalize"


def test_cli_composition_errors_are_one_line(tmp_path, capsys):
    base = ["synthesize", "--weights", "random", "--units", "fc8:0", "--seeds", "1", "--steps", "1",
            "--out", str(tmp_path / "o"), "--quiet"]
    for extra, message in [(["--penalty", "tv:wieght=1"], "TotalVariation has no setting wieght"),
                           (["--transform", "spin"], "unknown transform 'spin'"),
                           (["--config", str(tmp_path / "none.json")], "config file not found"),
                           (["--config", str(tmp_path / "none.json"), "--method", "olah"], "not both"),
                           (["--method", "olah", "--operator", "blur"], "'pixels' parameterization"),
                           (["--method", "olah", "--preconditioner", "lapnorm"], "'pixels' parameterization"),
                           (["--preconditioner", "lapnorm:scale=max"], "scale must be rms or mean-abs")]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


# ---- the trained classifier ----

TRAINED = checkpoints_dir() / "fmnist-caffenet.safetensors"


@pytest.mark.skipif(not TRAINED.is_file(), reason=f"trained checkpoint {TRAINED} absent (see checkpoints/MANIFEST)")
@pytest.mark.parametrize("name", BASELINES)
def test_each_method_raises_the_target_on_the_trained_classifier(name):
    model = load_model("fmnist-caffenet")
    method = get_method(name)
    if method.init == "mean-image":
        method = short(name, method.steps)  # a flat start stands in for the dataset mean (not needed here)
    result, _ = synthesize(model, parse_units("fc8:1,7"), [0], method)
    start, final = result.history[0], result.activations
    if name in MAIN:  # real test images score 11 on average at their own class
        assert (final > 15).all() and (final > start + 10).all(), (start, final)
    else:  # the published presets, some weak at 28 px (docs/baselines.md)
        assert (final > start + 0.1).all(), (start, final)
