"""The rows of scripts/speed.py that change how the work is done, not what is done.

- variants(): the engine batched with the target and generator in channels_last, under bf16 autocast, and with
  torch.compile on the generator and on each top-level block of the target (the engine's hooks read layers between
  blocks, and its early stop raises an exception, so the whole model is not compiled as one graph), each against
  the float32 engine in the same process, with the largest pixel difference of the images.
- training(): prior training steps (the shipped fmnist-fc6 configuration's networks: small-28 generator,
  discriminator, frozen fmnist-caffenet encoder and comparator; random images, batch 64) under Lightning against a
  bare PyTorch loop doing the same steps (the same D and G updates, the same optimizers, the same freezing of the
  other network's parameters, no logging or hooks).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import torch


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of `repeats` calls of fn, after one warm-up call (on a GPU, each call waits for its kernels)."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def _compiled(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a target model whose top-level blocks are compiled in place (hooks between blocks still fire)."""
    module = copy.deepcopy(module)
    root = getattr(module, "net", module)
    for child in root.children():
        child.compile()
    return module


def variants(model, prior, units, seeds, method, repeats: int, compile_too: bool = True) -> dict:
    """{name: {"seconds": [per-image times], "max_abs_diff": vs float32}} of the engine batched."""
    from dgn_am.methods import synthesize
    from dgn_am.priors import Prior

    n = len(units) * len(seeds)
    device = next(model.parameters()).device.type

    def run(m, p, autocast: bool = False) -> torch.Tensor:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            return synthesize(m, units, seeds, method, prior=p)[0].images.float()

    def with_generator(g) -> Prior:
        return Prior(g, prior.lower, prior.upper, prior.mean, prior.std, prior.provenance, prior.bank)

    base = run(model, prior)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    cl_prior = with_generator(copy.deepcopy(prior.generator).to(memory_format=torch.channels_last))
    cases: dict[str, Callable[[], torch.Tensor]] = {
        "float32": lambda: run(model, prior),
        "channels_last": lambda: run(cl_model, cl_prior),
        "bf16 autocast": lambda: run(model, prior, autocast=True),
    }
    if compile_too:
        c_model, c_gen = _compiled(model), copy.deepcopy(prior.generator)
        c_gen.compile()
        c_prior = with_generator(c_gen)
        t0 = time.perf_counter()
        run(c_model, c_prior)  # the first call compiles
        compile_s = time.perf_counter() - t0
        cases["torch.compile"] = lambda: run(c_model, c_prior)
    out = {}
    for name, fn in cases.items():
        times = [t / n for t in timed(fn, repeats)]
        diff = (fn() - base).abs()
        out[name] = {"seconds": times, "median": statistics.median(times), "min": min(times), "max": max(times),
                     "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                     "identical": bool((diff == 0).all())}
    if compile_too:
        out["torch.compile"]["compile_seconds"] = compile_s
    return out


def _prior_module(seed: int = 0):
    from dgn_am.models.generators import Generator
    from training.networks import Comparator, Discriminator, Encoder
    from training.prior import PriorModule

    torch.manual_seed(seed)
    return PriorModule(Generator("small-28"), Discriminator(1, 28, 512), Encoder("fmnist-caffenet", "fc6"),
                       Comparator("fmnist-caffenet", ["pool5", "fc7"]), lambda_adv=0.02)


def _bare_step(module, x: torch.Tensor, opt_g, opt_d, last_adv: float | None) -> float:
    """PriorModule.training_step's work on one batch without Lightning: the D step, then the G step, each with the
    other network's parameters frozen as Lightning's toggle_optimizer freezes them. Returns G's adversarial loss.
    (A function per step, as training_step is, so the step's tensors are freed before the next one.)"""
    from training.losses import discriminator_loss, feature_loss, generator_adversarial_loss, image_loss

    hp = module.hparams
    h, x_rec = module.reconstruct(x)
    module.generator.requires_grad_(False)
    d_loss = discriminator_loss(module.discriminator(x, h), module.discriminator(x_rec.detach(), h))
    if last_adv is None or float(d_loss.detach()) >= hp.d_pause * last_adv:
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    module.generator.requires_grad_(True)
    module.discriminator.requires_grad_(False)
    with torch.no_grad():
        f_real = module.comparator(x)
    l_adv = generator_adversarial_loss(module.discriminator(x_rec, h))
    g_loss = (hp.lambda_img * image_loss(x_rec, x) + hp.lambda_feat * feature_loss(module.comparator(x_rec), f_real)
              + hp.lambda_adv * l_adv)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    module.discriminator.requires_grad_(True)
    return float(l_adv.detach())


def _bare_steps(module, batches: list[torch.Tensor]) -> None:
    """The bare loop: the optimizers of PriorModule.configure_optimizers, then one _bare_step per batch."""
    opt_g, opt_d = module.configure_optimizers()
    module.train()
    last_adv = None
    for x in batches:
        last_adv = _bare_step(module, x, opt_g, opt_d, last_adv)


def training(steps: int, repeats: int, batch: int = 64, device: str = "cpu") -> dict:
    """Seconds per training step of the prior under Lightning and in a bare loop, `repeats` runs of `steps` steps
    each (after one warm-up run of each); Lightning's time is its whole fit() call, setup included. A step is one
    batch: a D update (unless paused) and a G update."""
    import lightning as L

    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(batch, 1, 28, 28, generator=g) for _ in range(steps)]
    on_device = [x.to(device) for x in batches]
    from torch.utils.data import DataLoader, TensorDataset

    images = torch.cat(batches)
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images), dtype=torch.long)), batch_size=batch)

    def lightning_run() -> None:
        # one epoch over the `steps` batches: max_steps would count the D and G optimizer steps both
        trainer = L.Trainer(max_epochs=1, accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(_prior_module(), train_dataloaders=loader)

    def bare_run() -> None:
        _bare_steps(_prior_module().to(device), on_device)

    out = {}
    for name, fn in (("lightning", lightning_run), ("bare loop", bare_run)):
        times = [t / steps for t in timed(fn, repeats)]
        out[name] = {"seconds_per_step": times, "median": statistics.median(times), "min": min(times),
                     "max": max(times)}
    out["lightning_throughput_over_bare"] = out["bare loop"]["median"] / out["lightning"]["median"]
    out.update({"steps": steps, "batch": batch})
    return out
