"""`dgn-am train-prior`: LightningCLI over PriorModule, then code statistics and export of the prior file.

    dgn-am train-prior --config training/configs/fmnist-fc6.yaml --out checkpoints/prior-fmnist-fc6.safetensors
    dgn-am train-prior --config training/configs/fmnist-fc6.yaml --trainer.max_epochs 1 --trainer.limit_train_batches 20
    dgn-am train-prior --config training/configs/fmnist-fc6.yaml --ckpt_path runs/.../last.ckpt   # resume

Every key of the config can be overridden on the command line (--model.lambda_adv 0.1, --trainer.devices 2 ...).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI
from tqdm import tqdm

from dgn_am.errors import UsageError, weights_out
from dgn_am.priors import bank_indices, code_stats, save_prior
from training.prior import PriorModule
from training.resume import WEIGHTS_ONLY, AtomicCheckpointIO, resume_path, resume_record


class PriorCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs):
        """The configured Trainer, plus checkpoints written atomically (a kill while saving keeps the last one)."""
        plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        return super().instantiate_trainer(plugins=[*plugins, AtomicCheckpointIO()], **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--out", default=None, help="write the prior (.safetensors) here after training")
        parser.add_argument("--k", type=float, default=3.0, help="upper bound = mean + k * std of the code")
        parser.add_argument("--nonnegative", type=bool, default=True, help="lower bound 0 (post-ReLU codes)")
        parser.add_argument("--ckpt_path", default=None, help="resume from this Lightning checkpoint (loaded with "
                            "weights_only=True: a checkpoint cannot run code)")


@torch.no_grad()
def evaluate_reconstruction(module: PriorModule, loader) -> dict:
    """Fraction of images whose reconstruction the encoder's network classifies as the true label, and losses."""
    module.eval()
    agree = n = 0
    img = 0.0
    for x, y in loader:
        x, y = x.to(module.device), y.to(module.device)
        _, x_rec = module.reconstruct(x)
        agree += int((module.encoder.classify(x_rec).argmax(1) == y).sum())
        img += float(((x_rec.clamp(0, 1) - x) ** 2).mean()) * len(x)
        n += len(x)
    return {"recon_acc": agree / n, "recon_mse": img / n, "images": n}


def export(module: PriorModule, datamodule, out: Path, k: float, nonnegative: bool, provenance: dict) -> dict:
    """Code statistics over the training set, reconstruction quality on the test set, then write the prior."""
    module.eval()
    loader = torch.utils.data.DataLoader(datamodule.train_set, batch_size=500)
    with tqdm(total=len(datamodule.train_set), desc="code statistics", unit="img") as bar:
        stats = code_stats(lambda x: module.encoder(x.to(module.device)), (b[0] for b in loader), bar.update)
    quality = evaluate_reconstruction(module, datamodule.test_dataloader())
    picks = bank_indices(len(datamodule.train_set), 256, seed=0)
    bank = torch.cat([module.encoder(datamodule.train_set[int(i)][0][None].to(module.device)) for i in picks])
    encoder = module.encoder
    meta = {"encoder": {"model": encoder.spec_name, "layer": encoder.layer}, "test_reconstruction": quality,
            **provenance}
    save_prior(out, module.generator.cpu(), stats, k, nonnegative, meta, bank.cpu())
    return meta


def _check_out(out: str | None) -> None:
    """--out names a .safetensors file in a folder that is (or can be) a folder; checked before training."""
    if out is not None:
        weights_out(out)


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cli = PriorCLI(PriorModule, L.LightningDataModule, subclass_mode_data=True, args=argv, run=False,
                       save_config_kwargs={"overwrite": True}, seed_everything_default=0,
                       parser_kwargs={"exit_on_error": False})
    except ArgumentError as e:  # one line, like every other command, instead of jsonargparse's usage block
        raise UsageError(f"{' '.join(str(e).split())}; see dgn-am train-prior --help") from None
    cfg = cli.config
    _check_out(cfg.get("out"))
    ckpt_path = resume_path(cfg.get("ckpt_path"))
    resumed_from = resume_record(ckpt_path)  # read now: the run's own checkpoints may replace the file
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=WEIGHTS_ONLY)
    if not cfg.get("out") or not cli.trainer.is_global_zero:
        return None
    datamodule = cli.datamodule
    datamodule.setup("fit")
    logged = {k: round(float(v), 5) for k, v in cli.trainer.callback_metrics.items()}
    provenance = {"command": "dgn-am train-prior " + " ".join(argv), "seed": cfg.get("seed_everything"),
                  "epochs": cli.trainer.current_epoch, "steps": cli.trainer.global_step, "final_metrics": logged,
                  "resumed_from": resumed_from,
                  "hparams": dict(cli.model.hparams)}
    meta = export(cli.model, datamodule, Path(cfg["out"]), cfg["k"], cfg["nonnegative"], provenance)
    print(json.dumps({k: meta[k] for k in ("test_reconstruction", "final_metrics")}))
    return meta


if __name__ == "__main__":
    main()
