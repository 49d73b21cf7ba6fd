"""Training a fast style-transfer network for one style image: a LightningModule and `dgn-am train-stylizer`.

The content images are Fashion-MNIST's training images (or an ImageFolder's); the loss is dgn_am.fast_style's
TransferLoss, read by a frozen target model. See dgn_am/fast_style.py for the method.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch

from dgn_am.errors import ArgumentParser, UsageError, bounded_int, finite_float, weights_out
from dgn_am.fast_style import Stylizer, StylizerConfig, TransferLoss, TransferLossConfig, mean_losses, save_stylizer
from training.loggers import LOGGERS, make_logger


class StylizerModule(L.LightningModule):
    """Adam on the stylizer; the loss network (`model`) is frozen and kept out of the checkpoint's optimizer."""

    def __init__(self, net: Stylizer, model: torch.nn.Module, style: torch.Tensor, loss: TransferLossConfig,
                 lr: float = 1e-3) -> None:
        super().__init__()
        self.net, self.lr = net, lr
        self.model = model.eval().requires_grad_(False)
        self.register_buffer("style", style)
        self.loss_config = loss
        self._loss: TransferLoss | None = None

    def train(self, mode: bool = True) -> "StylizerModule":
        """Lightning puts the whole module in training mode; the loss network stays in eval mode (its batch norm
        must use its running statistics, and must not update them)."""
        super().train(mode)
        self.model.eval()
        return self

    def transfer_loss(self) -> TransferLoss:
        if self._loss is None:  # built on the module's device, once
            self._loss = TransferLoss(self.model, self.style, self.loss_config)
        return self._loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0]
        parts = self.transfer_loss()(self.net(x), x)
        for k, v in parts.items():
            self.log(f"train/{k}", v.mean(), prog_bar=k == "total")
        return parts["total"].mean()

    def validation_step(self, batch, batch_idx: int) -> None:
        x = batch[0]
        parts = self.transfer_loss()(self.net(x), x)
        for k, v in parts.items():
            self.log(f"val/{k}", v.mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="dgn-am train-stylizer", description="Train a feed-forward style-transfer network "
                       "(Johnson et al. 2016) for one style image on Fashion-MNIST's training images (or an "
                       "ImageFolder), with Gatys' losses read by a target model; save it as .safetensors for "
                       "`dgn-am style --network FILE`.")
    p.add_argument("--style", required=True, help="the style image file")
    p.add_argument("--out", required=True, help="output file (.safetensors), written atomically")
    p.add_argument("--model", default="fmnist-caffenet", help="the loss network (a target model spec or file)")
    p.add_argument("--weights", default=None, help="its weights (default: the shipped ones)")
    p.add_argument("--content-layer", default="conv4")
    p.add_argument("--style-layers", nargs="+", default=["conv1", "conv2", "conv3"])
    p.add_argument("--content-weight", type=finite_float, default=1e-5, help="alpha (default: %(default)s)")
    p.add_argument("--style-weight", type=finite_float, default=1.0, help="beta (default: %(default)s)")
    p.add_argument("--tv-weight", type=finite_float, default=1e-6, help="gamma (default: %(default)s)")
    p.add_argument("--width", type=int, default=16, help="channels of the first layer (default: %(default)s)")
    p.add_argument("--blocks", type=int, default=3, help="residual blocks (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after N steps (default: the epochs' steps)")
    p.add_argument("--lr", type=finite_float, default=1e-3, help="Adam step size (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.add_argument("--image-folder", default=None, help="content images from ROOT/CLASS/IMAGE files instead")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--logger", default="csv", choices=LOGGERS)
    p.add_argument("--log-dir", default="runs")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def _check(args) -> Path:
    out = weights_out(args.out)
    if not Path(args.style).is_file():
        raise UsageError(f"--style {args.style}: no such file")
    for flag in ("epochs", "batch_size", "width"):
        bounded_int(getattr(args, flag), "--" + flag.replace("_", "-"), 1)
    bounded_int(args.blocks, "--blocks", 0, 32)
    if args.max_steps != -1:
        bounded_int(args.max_steps, "--max-steps", 1)
    if args.limit is not None:
        bounded_int(args.limit, "--limit", 1)
    for flag in ("content_weight", "style_weight", "tv_weight"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if args.lr <= 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    return out


def _data(args, spec):
    from training.data import FashionMNISTDataModule, ImageFolderDataModule

    if args.image_folder:
        return ImageFolderDataModule(args.image_folder, spec.size[0], spec.channels, args.batch_size)
    return FashionMNISTDataModule(args.data_dir, args.batch_size, limit=args.limit)


def main(argv: list[str] | None = None) -> dict:
    """Train, score on the validation images, save the stylizer with its settings; returns the metadata."""
    from dgn_am.imageio import load_image
    from dgn_am.manifest import file_sha256
    from dgn_am.models.loading import load_model

    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    out = _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, workers=True)
    model = load_model(args.model, args.weights)
    spec = model.input_spec
    if spec.size[0] % 4 or spec.size[1] % 4:
        raise UsageError(f"the model's input {spec.size} is not divisible by 4, which the stylizer needs")
    style = load_image(args.style, spec)
    loss = TransferLossConfig(args.content_layer, tuple(args.style_layers), args.content_weight, args.style_weight,
                              args.tv_weight)
    TransferLoss(model, style, loss)  # unknown or non-spatial layers fail here, before any data is read
    net = Stylizer(StylizerConfig(spec.channels, args.width, args.blocks))
    module = StylizerModule(net, model, style, loss, lr=args.lr)
    dm = _data(args, spec)
    dm.setup()
    trainer = L.Trainer(max_epochs=args.epochs, max_steps=args.max_steps, accelerator=args.accelerator,
                        devices=args.devices, logger=make_logger(args.logger, args.log_dir, out.stem),
                        deterministic=True, enable_checkpointing=False, log_every_n_steps=10)
    trainer.fit(module, datamodule=dm)
    module.eval()
    with torch.no_grad():
        val = mean_losses([module.transfer_loss()(net(x), x) for x, _ in dm.val_dataloader()])
    meta = {"loss": asdict(loss), "model": args.model, "style": args.style,
            "style_sha256": file_sha256(Path(args.style)),
            "steps": trainer.global_step, "seed": args.seed, "val_losses": val,
            "command": "dgn-am train-stylizer " + " ".join(argv)}
    if trainer.is_global_zero:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_stylizer(out, net.cpu(), meta)
        print(json.dumps(meta))
    return meta


if __name__ == "__main__":
    main()
