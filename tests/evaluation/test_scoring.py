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
