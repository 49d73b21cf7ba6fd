"""Fixtures of the toolbox tests: the shipped fmnist-caffenet, the first 60 Fashion-MNIST test images, and a
cheap preferred-input method (simonyan, 3 steps, 2 seeds) so that synthesis takes well under a second."""

from __future__ import annotations

import pytest
import torch

from dgn_am.app.cache import CacheSettings
from dgn_am.app.toolbox import Toolbox, ToolboxConfig
from dgn_am.data import load_fashion_mnist
from dgn_am.models.loading import load_model

N_IMAGES = 60
METHOD, STEPS, SEEDS = "simonyan", 3, 2


@pytest.fixture(scope="session")
def fmnist_test():
    images, labels = load_fashion_mnist("test")
    return images[:N_IMAGES].clone(), labels[:N_IMAGES].clone()


@pytest.fixture()
def make_toolbox(tmp_path, fmnist_test):
    """make_toolbox(**config) -> a Toolbox over fmnist-caffenet whose cache is in tmp_path/cache."""
    made = []

    def make(benchmark=None, seeds=SEEDS, steps=STEPS) -> Toolbox:
        settings = CacheSettings(root=tmp_path / "cache", model="fmnist-caffenet", seeds=seeds, steps=steps)
        tb = Toolbox(ToolboxConfig(cache=settings, method=METHOD, benchmark=benchmark),
                     load_model("fmnist-caffenet"), *fmnist_test)
        made.append(tb)
        return tb

    yield make
    for tb in made:
        tb.shutdown()


@pytest.fixture()
def toolbox(make_toolbox):
    return make_toolbox()


def png_bytes(x: torch.Tensor) -> bytes:
    """(C, H, W) in [0, 1] -> PNG file bytes (8-bit)."""
    import io

    from dgn_am.imageio import to_pil

    buf = io.BytesIO()
    to_pil(x).save(buf, format="PNG")
    return buf.getvalue()
