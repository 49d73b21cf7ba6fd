"""The same seed gives the same images: every registered method twice in one process, on the CPU and, where one is
present, on a GPU (deterministic kernels, dgn_am/reproducible.py); and the switch's settings are put back."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dgn_am.layers import parse_units
from dgn_am.methods import METHODS, get_method, synthesize
from dgn_am.models.caffenet import CaffeNet, CaffeNetConfig
from dgn_am.models.loading import TargetModel
from dgn_am.models.spec import caffe_input_spec
from dgn_am.priors import load_prior
from dgn_am.reproducible import deterministic
from tests.helpers import random_caffenet

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# scale, rotate and crop resample through grid_sample, whose CUDA backward pass adds with atomics: it has no
# deterministic kernel
GRID_SAMPLED = {"RandomScale", "RandomRotate", "RandomCrop"}


def _run(name: str, device: str) -> torch.Tensor:
    m = get_method(name)
    given = {"mean-image": ("mean_image", torch.full((1, 28, 28), 0.3)),
             "seed-image": ("init_images", torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(2)))}
    opts = m.options + ((given[m.init],) if m.init in given else ())
    method = dataclasses.replace(m, steps=4, options=opts)
    model = random_caffenet().to(device)
    prior = load_prior("fmnist-fc6", device=device) if m.parameterization == "code" else None
    result, _ = synthesize(model, parse_units("fc8:0-1") + parse_units("conv5:3"), [0, 1], method, prior=prior)
    return result.images.cpu()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_seed_same_images(name, device):
    a, b = _run(name, device), _run(name, device)
    sampled = {type(t).__name__ for t in get_method(name).transforms} & GRID_SAMPLED
    if device == "cuda" and sampled:
        diff = float((a - b).abs().max())
        print(f"{name} on cuda: largest pixel difference between two runs {diff:.2e}")
        assert diff < 0.1, f"{name}: {sorted(sampled)} on CUDA moved the images by {diff}"
    else:
        assert torch.equal(a, b), f"{name} on {device}: two runs with the same seeds differ"


@pytest.mark.parametrize("device", DEVICES)
def test_caffenet_same_seed_same_images(device):
    """The paper's target (LRN, grouped convolutions, ceil-mode pools) at reduced width and size: two runs equal."""
    torch.manual_seed(0)
    net = CaffeNet(CaffeNetConfig(convs=(8, 12, 16, 12, 8), fcs=(24, 20), num_classes=10, size=67))
    model = TargetModel(net, caffe_input_spec(size=67, crop_from=76)).eval().requires_grad_(False).to(device)
    method = dataclasses.replace(get_method("simonyan"), steps=4)
    a, b = (synthesize(model, parse_units("fc8:0-2"), [0, 1], method)[0].images.cpu() for _ in range(2))
    assert torch.equal(a, b)


def test_deterministic_switch_sets_and_restores_the_flags():
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with deterministic("cpu"):  # the CPU is deterministic already: nothing changes
        assert (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before
    cudnn.benchmark = True  # a user's own setting, to be put back
    try:
        with deterministic(torch.device("cuda", 0)):  # flags only: no GPU needed to set them
            assert cudnn.deterministic and not cudnn.benchmark
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.benchmark and cudnn.deterministic == before[0]
        assert torch.are_deterministic_algorithms_enabled() == before[2]
    finally:
        cudnn.benchmark = before[1]


def test_the_switch_is_put_back_after_an_error():
    """Back to what it was before (Lightning's Trainer(deterministic=True), run by earlier tests, turns it on for the
    whole process), both from off and from on."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        for state in (False, True):
            torch.use_deterministic_algorithms(state)
            with pytest.raises(RuntimeError):
                with deterministic("cuda"):
                    assert torch.is_deterministic_algorithms_warn_only_enabled()
                    raise RuntimeError("boom")
            assert torch.are_deterministic_algorithms_enabled() == state
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
