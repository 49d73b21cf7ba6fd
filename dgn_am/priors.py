"""Learned image priors: a generator with the statistics and bounds of the code it inverts, and its provenance.

A prior file (.safetensors) holds the generator's weights under `generator.*`, the per-unit code statistics
`code_mean`, `code_std`, `code_lower`, `code_upper` (each (code_dim,)), and metadata: the generator config, the
encoder (model and layer), k, and how it was trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from dgn_am.models.generators import Generator, GeneratorConfig
from dgn_am.models.loading import checkpoints_dir, read_state_dict, write_state_dict
from dgn_am.models.spec import CAFFE_MEAN_BGR, InputSpec

SHIPPED_PRIORS = {"fmnist-fc6": "prior-fmnist-fc6.safetensors"}
# mean of the reference's 3-sigma code bounds (act_range/3x/fc6.txt, CaffeNet fc6 after ReLU: integers 3 to 17)
REFERENCE_UPPER_MEAN = 11.85


def caffe_to_unit(x: torch.Tensor) -> torch.Tensor:
    """Caffe convention (B, 3, H, W), BGR with the mean subtracted, 0..255 -> RGB in [0, 1] (unclipped)."""
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x + mean) / 255.0).flip(1)


def to_target(x: torch.Tensor, output: str, spec: InputSpec, clip: bool = True) -> torch.Tensor:
    """The one conversion from a generator's output to a target model's input: (B, C, H, W) in [0, 1].

    - value convention: "unit" is taken as is; "caffe" goes through caffe_to_unit;
    - channels: RGB -> grayscale by ITU-R 601 luma; grayscale -> RGB by repetition;
    - size: an image of the target's `crop_from` size is cropped at its `crop_offset` (Caffe: 256 -> 227 at 14, as
      the reference fed the DeePSiM generator's output to CaffeNet); another larger square image is centre-cropped
      when the crop is within 1/8 of the size (256 -> 224 at offset 16), otherwise resized bilinearly;
    - values are clipped to [0, 1] (unless clip=False, for training), so what a target scores is what is saved.
    """
    if output == "caffe":
        x = caffe_to_unit(x)
    elif output != "unit":
        raise ValueError(f"unknown generator output convention '{output}'")
    if x.shape[1] == 3 and spec.channels == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, True)
    elif x.shape[1] == 1 and spec.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    h, w = spec.size
    if tuple(x.shape[2:]) != (h, w):
        dy, dx = x.shape[2] - h, x.shape[3] - w
        if spec.crop_from is not None and tuple(x.shape[2:]) == tuple(spec.crop_from):
            top, left = spec.crop_offset()
            x = x[:, :, top: top + h, left: left + w]
        elif 0 <= dy <= x.shape[2] // 8 and 0 <= dx <= x.shape[3] // 8:
            x = x[:, :, dy // 2: dy // 2 + h, dx // 2: dx // 2 + w]
        else:
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp(0, 1) if clip else x


@dataclass
class CodeStats:
    """Per-unit statistics of an encoder's code over a dataset, each (code_dim,)."""

    mean: torch.Tensor
    std: torch.Tensor
    count: int

    def bounds(self, k: float = 3.0, nonnegative: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """lower, upper: [0, mean + k * std] for post-ReLU codes, [mean - k std, mean + k std] otherwise."""
        upper = self.mean + k * self.std
        lower = torch.zeros_like(upper) if nonnegative else self.mean - k * self.std
        return lower, upper


@torch.no_grad()
def code_stats(encode: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor],
               progress: Callable[[int], None] | None = None) -> CodeStats:
    """Mean and (population) std of encode(x) per unit over all batches, accumulated in float64."""
    total = sq = None
    n = 0
    for x in batches:
        h = encode(x).flatten(1).double()  # (B, D)
        total = h.sum(0) if total is None else total + h.sum(0)
        sq = (h * h).sum(0) if sq is None else sq + (h * h).sum(0)
        n += h.shape[0]
        if progress:
            progress(h.shape[0])
    if n == 0:
        raise ValueError("code_stats got no data")
    mean = total / n
    std = (sq / n - mean * mean).clamp(min=0).sqrt()
    return CodeStats(mean.float(), std.float(), n)


@dataclass
class Prior:
    """A generator G and the box [lower, upper] its codes live in.

    image(h): h (B, code_dim) -> (B, C, H, W) in [0, 1] in `target`'s format (RGB/grayscale, size).
    """

    generator: Generator
    lower: torch.Tensor  # (code_dim,)
    upper: torch.Tensor  # (code_dim,)
    mean: torch.Tensor  # (code_dim,)
    std: torch.Tensor  # (code_dim,)
    provenance: dict = field(default_factory=dict)
    bank: torch.Tensor | None = None  # (N, code_dim) codes of real training images, for init "bank"

    @property
    def code_dim(self) -> int:
        return self.generator.config.code_dim

    def image(self, h: torch.Tensor, target: InputSpec, clamp: bool = True) -> torch.Tensor:
        """h (B, code_dim) -> (B, C, H, W) for `target`, clamped to [0, 1] unless clamp=False (raw values)."""
        return to_target(self.generator(h), self.generator.config.output, target, clip=clamp)

    @property
    def reference_scale(self) -> float:
        """s = mean(upper) / REFERENCE_UPPER_MEAN: this prior's code scale in units of CaffeNet fc6's, the code the
        reference loop's step sizes and start were set for. lr 8 s and a N(0, s^2) start map that loop onto it."""
        return float(self.upper.mean()) / REFERENCE_UPPER_MEAN

    def to(self, device) -> "Prior":
        self.generator.to(device)
        self.lower, self.upper = self.lower.to(device), self.upper.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        if self.bank is not None:
            self.bank = self.bank.to(device)
        return self


def require_bank(prior: Any, who: str, fix: str = "this one has none") -> torch.Tensor:
    """The prior's code bank (N, code_dim), or a ValueError naming `who` needs it and how to get one."""
    bank = getattr(prior, "bank", None)
    if bank is None or len(bank) == 0:
        raise ValueError(f"{who} needs a prior file with a code bank (code_bank); {fix}")
    return bank


def save_prior(path: str | Path, generator: Generator, stats: CodeStats, k: float, nonnegative: bool,
               provenance: dict, bank: torch.Tensor | None = None,
               bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """Write generator weights, code statistics, bounds, an optional bank of real codes (N, D), and metadata.
    The bounds are stats.bounds(k, nonnegative) unless given as (lower, upper), e.g. read from act_range files."""
    lower, upper = bounds if bounds is not None else stats.bounds(k, nonnegative)
    state = {f"generator.{n}": t for n, t in generator.state_dict().items()}
    state.update(code_mean=stats.mean, code_std=stats.std, code_lower=lower, code_upper=upper)
    if bank is not None:
        state["code_bank"] = bank.float()
    meta = {"generator_config": generator.config.to_dict(), "k": k, "nonnegative": nonnegative,
            "code_count": stats.count, **provenance}
    write_state_dict(path, state, meta)


def load_prior(name: str | Path, device: str | torch.device = "cpu") -> Prior:
    """A shipped prior by name (fmnist-fc6) or a prior file. It can serve as the prior for any target network."""
    path = Path(name)
    if str(name) in SHIPPED_PRIORS:
        path = checkpoints_dir() / SHIPPED_PRIORS[str(name)]
        if not path.is_file():
            raise FileNotFoundError(f"prior {name} not found at {path}; set DGN_AM_CHECKPOINTS, or train it with the "
                                    "command in checkpoints/MANIFEST")
    elif not path.is_file():
        raise FileNotFoundError(f"prior '{name}' is neither a shipped prior ({', '.join(SHIPPED_PRIORS)}) nor a file")
    state, meta = read_state_dict(path)
    needed = {"code_mean", "code_std", "code_lower", "code_upper"}  # code_bank is optional
    if "generator_config" not in meta or not needed.issubset(state):
        raise ValueError(f"{path} is not a prior file: it lacks generator_config metadata or {sorted(needed)}")
    config = GeneratorConfig.from_dict(json.loads(meta["generator_config"]))
    generator = Generator(config)
    generator.load_state_dict({k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")})
    generator.eval().requires_grad_(False)
    provenance = {k: (json.loads(v) if v[:1] in "[{" else v) for k, v in meta.items()}
    provenance["path"] = str(path)
    prior = Prior(generator, state["code_lower"], state["code_upper"], state["code_mean"], state["code_std"],
                  provenance, state.get("code_bank"))
    return prior.to(device)


_ENCODERS: dict[tuple[str, str], nn.Module] = {}  # encoder models loaded by `encode`, by (spec, device)


@torch.no_grad()
def encode(prior: Prior, images: torch.Tensor) -> torch.Tensor:
    """The code of real images under the prior's own encoder: images (B, C, H, W) in [0, 1] -> (B, code_dim).

    The encoder is the model and layer recorded in the prior file (provenance "encoder")."""
    from dgn_am.layers import run
    from dgn_am.models.loading import load_model

    enc = prior.provenance.get("encoder")
    if not isinstance(enc, dict):
        raise ValueError("this prior file does not record its encoder (model, layer); cannot encode images")
    device = prior.lower.device
    key = (enc["model"], str(device))
    if key not in _ENCODERS:
        _ENCODERS[key] = load_model(enc["model"], device=device)
    model = _ENCODERS[key]
    x = to_target(images.to(device), "unit", model.input_spec)
    return run(model, x, [enc["layer"]], raw=True)[enc["layer"]].flatten(1)


def bank_indices(n_images: int, size: int, seed: int = 0) -> torch.Tensor:
    """Which training images give the code bank: `size` distinct indices drawn with a seeded generator."""
    return torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))[: min(size, n_images)]


def restat(path: str | Path, images: torch.Tensor, out: str | Path, k: float = 3.0, nonnegative: bool = True,
           bank_size: int = 256, seed: int = 0, command: str = "",
           progress: Callable[[int], None] | None = None) -> Prior:
    """Recompute a prior's code statistics, bounds and bank over `images` (N, C, H, W) in [0, 1] with its own
    encoder, and write the result to `out` (which may be `path`). The generator is unchanged."""
    prior = load_prior(path)
    meta = {k_: v for k_, v in prior.provenance.items() if k_ not in ("path", "generator_config", "k", "nonnegative",
                                                                       "code_count")}
    batches = (images[i: i + 500] for i in range(0, len(images), 500))
    stats = code_stats(lambda x: encode(prior, x), batches, progress)
    bank = encode(prior, images[bank_indices(len(images), bank_size, seed)]) if bank_size else None
    meta["code_stats_command"] = command
    save_prior(out, prior.generator, stats, k, nonnegative, meta, bank)
    return load_prior(out)
