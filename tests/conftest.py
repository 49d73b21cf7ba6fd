"""Shared fixtures. One thread: the machine's cores are shared with training jobs, and the tensors here are tiny."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import random_caffenet

torch.set_num_threads(1)


@pytest.fixture()
def caffenet():
    """fmnist-caffenet with seeded random weights: deterministic, eval mode, frozen."""
    return random_caffenet()


@pytest.fixture()
def images():
    """(2, 1, 28, 28) in [0, 1], fixed."""
    return torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
