"""Lightning DataModules: Fashion-MNIST from its IDX files, and an ImageFolder of a user's own images."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dgn_am.data import VALIDATION_SIZE, image_folder, load_fashion_mnist


class FashionMNISTDataModule(L.LightningDataModule):
    """Fashion-MNIST as in-memory tensors: images (B, 1, 28, 28) in [0, 1], labels (B,).

    Reads the Debian package's gzip IDX files, or data_dir; it downloads only when the user opts in (--download).
    The last `val_size` training images are held out for validation; `test` is the official 10k test set.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        val_size: int = VALIDATION_SIZE,
        download: bool = False,
        num_workers: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        self.data_dir, self.batch_size, self.val_size = data_dir, batch_size, val_size
        self.download, self.num_workers, self.limit = download, num_workers, limit

    def prepare_data(self) -> None:
        load_fashion_mnist("test", self.data_dir, download=self.download)  # fails early with how to get the data

    def setup(self, stage: str | None = None) -> None:
        x, y = load_fashion_mnist("train", self.data_dir, download=self.download)
        if self.limit:
            x, y = x[: self.limit], y[: self.limit]
        n_val = min(self.val_size, len(x) // 10)
        self.train_set = TensorDataset(x[:-n_val], y[:-n_val])
        self.val_set = TensorDataset(x[-n_val:], y[-n_val:])
        tx, ty = load_fashion_mnist("test", self.data_dir)
        self.test_set = TensorDataset(tx, ty)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, self.batch_size, shuffle=True, drop_last=True, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, 500, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, 500, num_workers=self.num_workers)


class _Files(Dataset):
    def __init__(self, paths: list[Path], labels: list[int], transform) -> None:
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return self.transform(im), self.labels[i]


class ImageFolderDataModule(L.LightningDataModule):
    """A user's images in root/CLASS/IMAGE, any size: resized (shorter side) and centre-cropped to `size`.

    Batches are (B, channels, size, size) in [0, 1]; channels=1 converts to grayscale, 3 to RGB.
    Every `val_every`-th file (sorted order) is held out for validation.
    """

    def __init__(
        self, root: str, size: int = 64, channels: int = 3, batch_size: int = 64, val_every: int = 20,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        self.root, self.size, self.channels = root, size, channels
        self.batch_size, self.val_every, self.num_workers = batch_size, val_every, num_workers

    def setup(self, stage: str | None = None) -> None:
        from torchvision import transforms as T

        paths, labels, self.classes = image_folder(self.root)
        mode = "L" if self.channels == 1 else "RGB"
        transform = T.Compose([T.Lambda(lambda im: im.convert(mode)), T.Resize(self.size), T.CenterCrop(self.size),
                               T.ToTensor()])
        val = [i % self.val_every == 0 for i in range(len(paths))]
        pick = lambda keep: ([p for p, v in zip(paths, val) if v == keep], [l for l, v in zip(labels, val) if v == keep])
        self.train_set = _Files(*pick(False), transform)
        self.val_set = _Files(*pick(True), transform)
        self.test_set = self.val_set

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, self.batch_size, shuffle=True, drop_last=True, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
