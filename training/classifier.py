"""Training target classifiers: a LightningModule and the `dgn-am train-classifier` entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from dgn_am.errors import ArgumentParser, UsageError, bounded_int, finite_float, weights_out
from dgn_am.models.fmnist import CLASSES
from dgn_am.models.loading import ARCHITECTURES, write_state_dict
from dgn_am.models.spec import InputSpec
from training.loggers import LOGGERS, make_logger
from training.resume import WEIGHTS_ONLY, AtomicCheckpointIO, resume_path, resume_record


def augment(x: torch.Tensor, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Random translation by up to `pad` pixels (zero fill) and horizontal flip. x: (B, C, H, W) in [0, 1]."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    out = padded[torch.arange(b)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(b, device=x.device) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of `net` on images in [0, 1], normalized by `input_spec` inside the module."""

    def __init__(self, net: nn.Module, input_spec: InputSpec, lr: float = 0.05, weight_decay: float = 5e-4,
                 epochs: int = 10, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.net, self.input_spec = net, input_spec
        self.lr, self.weight_decay, self.epochs, self.label_smoothing = lr, weight_decay, epochs, label_smoothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.input_spec.normalize(x))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(augment(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)
        return loss

    def _eval(self, batch, prefix: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{prefix}/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log(f"{prefix}/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True, sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, "test")

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, nesterov=True,
                              weight_decay=self.weight_decay)
        steps = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps, pct_start=0.2)
        return [opt], [{"scheduler": sched, "interval": "step"}]


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="dgn-am train-classifier", description="Train a target classifier on "
                       "Fashion-MNIST (default) or an ImageFolder, and save it as .safetensors. Checkpoints go to "
                       "--checkpoint-dir; --ckpt-path resumes from one.")
    p.add_argument("--arch", default="fmnist-caffenet", choices=sorted(ARCHITECTURES), help="architecture")
    p.add_argument("--out", required=True, help="output weights file (.safetensors), written atomically")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=finite_float, default=0.05, help="peak learning rate of the one-cycle SGD schedule")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    p.add_argument("--download", action="store_true", help="fetch Fashion-MNIST with torchvision if missing")
    p.add_argument("--image-folder", default=None, help="train on ROOT/CLASS/IMAGE files instead of Fashion-MNIST")
    p.add_argument("--image-size", type=int, default=28, help="with --image-folder: square size to crop to")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="with --image-folder: 1 or 3")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images (smoke tests)")
    p.add_argument("--logger", default="csv", choices=LOGGERS)
    p.add_argument("--log-dir", default="runs")
    p.add_argument("--log-every", type=int, default=50, help="log the training loss every N steps (default: 50)")
    p.add_argument("--checkpoint-dir", default=None, help="where checkpoints go, last.ckpt among them "
                   "(default: LOG_DIR/OUT_NAME/checkpoints)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also save last.ckpt every N training steps "
                   "(default 0: at the end of every epoch only)")
    p.add_argument("--ckpt-path", "--ckpt_path", dest="ckpt_path", default=None,
                   help="resume from this checkpoint (e.g. runs/NAME/checkpoints/last.ckpt) with the same flags")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--strategy", default="auto", help="e.g. ddp for many GPUs, ddp_spawn for CPU processes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def _check_args(args) -> Path:
    """Every flag in range and --out writable, before any data is read; returns --out as a Path."""
    out = weights_out(args.out)
    bounded_int(args.epochs, "--epochs", 1)
    bounded_int(args.batch_size, "--batch-size", 1, 65_536)
    bounded_int(args.image_size, "--image-size", 1, 4096)
    bounded_int(args.checkpoint_every, "--checkpoint-every", 0)
    bounded_int(args.log_every, "--log-every", 1)
    if args.limit is not None:
        bounded_int(args.limit, "--limit", 1)
    if args.threads is not None:
        bounded_int(args.threads, "--threads", 1)
    if args.lr <= 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    return out


def main(argv: list[str] | None = None) -> dict:
    """Train, test on the held-out test set, save weights with metadata; returns the metadata."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    out = _check_args(args)
    ckpt_path = resume_path(args.ckpt_path, "--ckpt-path")
    resumed_from = resume_record(ckpt_path)  # read now: the run's own checkpoints may replace the file
    if args.threads:
        torch.set_num_threads(args.threads)
    L.seed_everything(args.seed, workers=True)
    from training.data import FashionMNISTDataModule, ImageFolderDataModule

    if args.image_folder:
        dm = ImageFolderDataModule(args.image_folder, args.image_size, args.channels, args.batch_size)
        num_classes, size = None, args.image_size
        spec = InputSpec((args.image_size,) * 2, args.channels, (0.5,) * args.channels, (0.25,) * args.channels)
    else:
        from dgn_am.models.fmnist import FASHION_MNIST_INPUT

        dm = FashionMNISTDataModule(args.data_dir, args.batch_size, download=args.download, limit=args.limit)
        num_classes, spec, size = 10, FASHION_MNIST_INPUT, 28
    dm.setup()
    num_classes = num_classes or len(dm.classes)
    if len(dm.train_set) < args.batch_size:  # the loader drops incomplete batches: no step would be taken
        raise UsageError(f"{len(dm.train_set)} training images (after {len(dm.val_set)} held out for validation) "
                         f"are fewer than one batch of --batch-size {args.batch_size}; raise --limit or lower "
                         "--batch-size")
    arch_args = {"num_classes": num_classes, "in_channels": spec.channels, "size": size}
    net = ARCHITECTURES[args.arch](**arch_args)
    module = ClassifierModule(net, spec, lr=args.lr, epochs=args.epochs)
    checkpoints = ModelCheckpoint(dirpath=args.checkpoint_dir or Path(args.log_dir) / out.stem / "checkpoints",
                                  save_last=True, every_n_train_steps=args.checkpoint_every or None)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=args.devices,
                        strategy=args.strategy, logger=make_logger(args.logger, args.log_dir, out.stem),
                        deterministic=True, callbacks=[checkpoints], plugins=[AtomicCheckpointIO()],
                        log_every_n_steps=args.log_every)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=WEIGHTS_ONLY)
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    meta = {"arch": args.arch, "arch_args": arch_args, "input_spec": spec.to_dict(), "num_classes": num_classes,
            "class_names": list(getattr(dm, "classes", CLASSES)), "seed": args.seed,
            "epochs": args.epochs, "steps": trainer.global_step, "test_acc": round(float(test["test/acc"]), 4),
            "resumed_from": resumed_from,
            "command": "dgn-am train-classifier " + " ".join(argv)}
    if trainer.is_global_zero:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_state_dict(out, module.net.state_dict(), meta)  # atomic: a temporary file, then one rename
        print(json.dumps(meta))
    return meta


if __name__ == "__main__":
    main()
