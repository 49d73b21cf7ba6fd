"""Target networks for 28x28 grayscale Fashion-MNIST, the embedded default.

Both take normalized images, (B, 1, 28, 28) with Fashion-MNIST's mean and std removed; the wrapper in
`dgn_am.models.loading` folds that normalization in, so users always feed values in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from dgn_am.models.spec import InputSpec

FASHION_MNIST_INPUT = InputSpec(
    size=(28, 28),
    channels=1,
    mean=(0.2860,),  # measured over the 60k training images
    std=(0.3530,),
)

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU: one named layer whose output is post-ReLU, as a Caffe blob after ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class FmnistCaffeNet(nn.Module):
    """CaffeNet-shaped classifier: conv1..conv5, fc6, fc7, fc8.

    Layer outputs (for a 28x28 input): conv1 (32, 28, 28), conv2 (64, 14, 14), conv3 (96, 7, 7),
    conv4 (96, 7, 7), conv5 (64, 7, 7), fc6 (code_dim,), fc7 (512,), fc8 (10,) raw logits. Another input `size`
    (64 for the RGB ImageFolder recipe) changes only the spatial sizes and fc6's input: 64 * (size // 8)^2.
    fc6 is post-ReLU, so every unit is >= 0: the code layer a prior inverts, as CaffeNet's fc6 in DGN-AM.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, code_dim: int = 512, size: int = 28) -> None:
        super().__init__()
        if size < 8:
            raise ValueError(f"FmnistCaffeNet needs images of at least 8x8 pixels (three 2x2 poolings), got {size}")
        self.conv1 = _conv(in_channels, 32)
        self.pool1 = nn.MaxPool2d(2)  # 28 -> 14
        self.conv2 = _conv(32, 64)
        self.pool2 = nn.MaxPool2d(2)  # 14 -> 7
        self.conv3 = _conv(64, 96)
        self.conv4 = _conv(96, 96)
        self.conv5 = _conv(96, 64)
        self.pool5 = nn.MaxPool2d(2)  # 7 -> 3
        self.flatten = nn.Flatten()
        side = size // 2 // 2 // 2  # 28 -> 14 -> 7 -> 3
        self.fc6 = nn.Sequential(nn.Linear(64 * side * side, code_dim), nn.ReLU())
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Sequential(nn.Linear(code_dim, 512), nn.ReLU())
        self.drop7 = nn.Dropout(0.5)
        self.fc8 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, size, size) normalized -> (B, num_classes) logits."""
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.pool5(self.conv5(self.conv4(self.conv3(x))))
        x = self.drop6(self.fc6(self.flatten(x)))
        x = self.drop7(self.fc7(x))
        return self.fc8(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class FmnistResNet(nn.Module):
    """A small ResNet, deliberately unlike the CaffeNet shape: residual blocks, no fc hidden layers, global pooling.

    Layer outputs (28x28 input): stem (24, 28, 28), layer1 (24, 28, 28), layer2 (48, 14, 14), layer3 (96, 7, 7),
    pool (96,) penultimate features, fc (10,) raw logits.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 24, size: int = 28) -> None:
        """size: input side; any size works (global pooling), it is accepted so every architecture takes it."""
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, 28, 28) normalized -> (B, num_classes) logits."""
        return self.fc(self.pool(self.layer3(self.layer2(self.layer1(self.stem(x))))))
