"""Tiny networks for prior-training tests: an 8x8 grayscale classifier whose `fc1` (post-ReLU, 16 units) is a code."""

import torch
from torch import nn

from dgn_am.models.spec import InputSpec


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)  # 8 -> 4
        self.flatten = nn.Flatten()
        self.fc1 = nn.Sequential(nn.Linear(4 * 4 * 4, 16), nn.ReLU())
        self.fc2 = nn.Linear(16, 3)
        self.input_spec = InputSpec(size=(8, 8), channels=1, mean=(0.5,), std=(0.25,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(self.flatten(self.pool1(self.conv1(x)))))


def tiny_net() -> TinyNet:
    torch.manual_seed(123)
    net = TinyNet()
    with torch.no_grad():  # non-trivial running statistics, so a BatchNorm update would show
        net.conv1[1].running_mean.uniform_(-0.5, 0.5)
        net.conv1[1].running_var.uniform_(0.5, 2.0)
    return net
