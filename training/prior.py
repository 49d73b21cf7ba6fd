"""Training a deep generator network prior (DeePSiM objective) with Lightning's manual optimization.

Each batch: h = E(x) (frozen), x' = G(h);
  D step: discriminator_loss(D(x, h), D(x'.detach(), h)), skipped while D is too far ahead (d_pause);
  G step: lambda_img * image_loss + lambda_feat * feature_loss(C(x'), C(x)) + lambda_adv * adversarial loss.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn

from dgn_am.imageio import make_grid, save_image
from training.losses import discriminator_loss, feature_loss, generator_adversarial_loss, image_loss


class PriorModule(L.LightningModule):
    """Trains `generator` to invert the frozen `encoder`, judged by the frozen `comparator` and `discriminator`."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        encoder: nn.Module,
        comparator: nn.Module,
        lambda_img: float = 1.0,
        lambda_feat: float = 1.0,
        lambda_adv: float = 0.01,
        lr: float = 2e-4,
        beta1: float = 0.5,
        d_pause: float = 0.1,
        n_preview: int = 16,
    ) -> None:
        """lambda_*: loss weights on images in [0, 1]; d_pause: skip the D update while its loss is below
        d_pause times G's adversarial loss (D too far ahead); n_preview: validation images in the preview grid."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator", "encoder", "comparator"])
        self.generator, self.discriminator = generator, discriminator
        self.encoder, self.comparator = encoder, comparator
        for frozen in (self.encoder, self.comparator):
            frozen.eval().requires_grad_(False)
        self.automatic_optimization = False
        self._last_g_adv: float | None = None  # G's adversarial loss at the previous step
        self._preview: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "PriorModule":
        """Lightning calls .train() on every child; the frozen networks must stay in eval mode (BatchNorm)."""
        super().train(mode)
        self.encoder.eval()
        self.comparator.eval()
        return self

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) in [0, 1] -> (code h (B, D), reconstruction G(h) (B, C, H, W))."""
        with torch.no_grad():
            h = self.encoder(x)
        return h, self.generator(h)

    def training_step(self, batch, batch_idx: int) -> None:
        x = batch[0]
        opt_g, opt_d = self.optimizers()
        h, x_rec = self.reconstruct(x)

        self.toggle_optimizer(opt_d)
        d_loss = discriminator_loss(self.discriminator(x, h), self.discriminator(x_rec.detach(), h))
        # decided on the loss averaged over all processes, so every DDP rank pauses together
        d_mean = float(self.trainer.strategy.reduce(d_loss.detach(), reduce_op="mean"))
        paused = self._last_g_adv is not None and d_mean < self.hparams.d_pause * self._last_g_adv
        if not paused:
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        with torch.no_grad():
            f_real = self.comparator(x)
        l_img = image_loss(x_rec, x)
        l_feat = feature_loss(self.comparator(x_rec), f_real)
        l_adv = generator_adversarial_loss(self.discriminator(x_rec, h))
        g_loss = self.hparams.lambda_img * l_img + self.hparams.lambda_feat * l_feat + self.hparams.lambda_adv * l_adv
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self._last_g_adv = float(self.trainer.strategy.reduce(l_adv.detach(), reduce_op="mean"))

        self.log_dict({"train/img": l_img, "train/feat": l_feat, "train/adv": l_adv, "train/g": g_loss,
                       "train/d": d_loss, "train/d_paused": float(paused)}, prog_bar=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        h, x_rec = self.reconstruct(x)
        agree = (self.encoder.classify(x_rec).argmax(1) == y).float().mean()
        self.log_dict({"val/img": image_loss(x_rec, x), "val/feat": feature_loss(self.comparator(x_rec),
                       self.comparator(x)), "val/recon_acc": agree}, prog_bar=True, sync_dist=True)
        if batch_idx == 0:
            n = self.hparams.n_preview
            self._preview = torch.cat([x[:n], x_rec[:n].clamp(0, 1)]).detach().cpu()

    def on_validation_epoch_end(self) -> None:
        """A grid of originals (top row) against reconstructions (bottom row) on fixed validation images."""
        if self.trainer.sanity_checking:
            return
        # trainer.log_dir broadcasts rank 0's folder: a collective call, so every DDP rank makes it (rank 0 alone
        # would wait for the others for ever: multi-process training with validation hung here)
        folder = Path(self.trainer.log_dir or ".")
        if self._preview is None or not self.trainer.is_global_zero:
            return
        grid = make_grid(self._preview, rows=2)
        save_image(grid, folder / f"recon_epoch{self.current_epoch:03d}.png", scale=3)
        logger = self.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image("val/reconstructions", [grid.permute(1, 2, 0).numpy()], step=self.global_step)
        elif logger is not None and hasattr(getattr(logger, "experiment", None), "add_image"):
            logger.experiment.add_image("val/reconstructions", grid, self.global_step)

    def configure_optimizers(self):
        betas = (self.hparams.beta1, 0.999)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]
