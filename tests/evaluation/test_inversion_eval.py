"""dgn_am.evaluation.inversion: the scores by hand, the starts, and one small measurement on the shipped models."""

from __future__ import annotations

import pytest
import torch

from dgn_am.data import load_fashion_mnist
from dgn_am.evaluation.inversion import evaluate_inversion, scores, ssim, starts, table
from dgn_am.models.loading import load_model
from dgn_am.priors import load_prior


class Constant(torch.nn.Module):
    """A judge that always answers class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.0, 5.0, 0.0]).expand(len(x), 3)


def test_scores_by_hand():
    originals = torch.zeros(2, 1, 11, 11)
    images = originals.clone()
    images[1] += 0.5  # item 1: every pixel off by 0.5, squared error 0.25
    out = scores(images, originals, torch.tensor([1, 0]), Constant())
    assert out["mse"] == pytest.approx(0.125)  # mean of 0 and 0.25
    assert out["judge_top1"] == 0.5
    assert ssim(originals, originals.clone()).tolist() == pytest.approx([1.0, 1.0])
    assert ssim(images, originals)[1] < 0.1  # a flat shift of half the range: the luminance term alone is 0.04


@pytest.fixture(scope="module")
def shipped():
    x, y = load_fashion_mnist("test")
    return load_model("fmnist-caffenet"), load_model("fmnist-resnet"), load_prior("fmnist-fc6"), x[:4], y[:4]


def test_starts_are_the_same_image_for_everyone(shipped):
    model, judge, prior, x, y = shipped
    found = starts(model, judge, prior, x, y)
    assert set(found) == {"mean_image", "prior_mean_code"}
    assert all(0 < r["mse"] < 1 for r in found.values())


def test_a_small_measurement(shipped):
    model, judge, prior, x, y = shipped
    report, recon = evaluate_inversion(model, judge, prior, x, y, ["conv5", "fc6"], ["pixels", "encoder"], steps=2)
    assert [(r["layer"], r["mode"]) for r in report["runs"]] == [("conv5", "pixels"), ("fc6", "pixels"),
                                                                 ("fc6", "encoder")]  # encoder: code layer only
    assert recon["fc6/encoder"].shape == x.shape
    encoder = report["runs"][-1]
    assert encoder["steps"] == 0 and encoder["mse"] < report["starts"]["mean_image"]["mse"]
    assert report["originals"]["judge_top1"] == 1.0  # the judge gets these four test images right
    text = table(report)
    assert text.count("\n") == 2 + 3 + 1 + 2 - 1 and "| fc6 | encoder |" in text
