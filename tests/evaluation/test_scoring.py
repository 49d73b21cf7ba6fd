"""dgn_am.evaluation.scoring: evaluator specs and feature layers."""

import pytest

from dgn_am.evaluation.scoring import FEATURE_LAYERS, default_layers, parse_evaluator
from dgn_am.models.loading import load_model


def test_parse_evaluator_by_hand():
    assert parse_evaluator("fmnist-resnet") == ("fmnist-resnet", None, None)
    assert parse_evaluator(" fmnist-caffenet-s1=w.safetensors ") == ("fmnist-caffenet-s1", "w.safetensors", None)
    assert parse_evaluator("pkg.nets:make@fc1/conv2") == ("pkg.nets:make", None, ("fc1", "conv2"))
    assert parse_evaluator("m=random@a/b") == ("m", "random", ("a", "b"))
    with pytest.raises(ValueError, match="MODEL@PENULT/EARLY"):
        parse_evaluator("fmnist-resnet@pool")
    with pytest.raises(ValueError, match=r"MODEL\[=WEIGHTS\]"):
        parse_evaluator("fmnist-resnet=")


@pytest.mark.parametrize("name", sorted(FEATURE_LAYERS))
def test_default_layers_pick_the_shipped_feature_layers(name):
    # the rule for unknown models agrees with the layers named for the shipped ones
    assert default_layers(load_model(name, "random")) == FEATURE_LAYERS[name]


@pytest.mark.parametrize("name", ["fmnist-resnet", "fmnist-caffenet-s1"])
def test_evaluator_features_are_embed_features_for_torchmetrics(name):
    import torch

    from dgn_am.evaluation.scoring import Evaluator, EvaluatorFeatures

    e = Evaluator.from_spec(name)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    emb = e.embed(x)
    for space in ("penult", "early"):
        ext = EvaluatorFeatures(e, space, emb[space].shape[1])
        f = ext(x)
        assert f.dtype == torch.float64 and f.shape == (6, ext.num_features)
        assert torch.allclose(f, torch.as_tensor(emb[space]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown feature space"):
        EvaluatorFeatures(e, "late", 3)
