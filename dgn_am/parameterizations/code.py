"""DGN-AM: optimize the code of a learned generator prior (Nguyen et al. 2016), and the starts chosen for it."""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import torch

from dgn_am.layers import Unit, device_and_dtype, read_layer, run
from dgn_am.parameterizations.base import Init, Parameterization, seeded_normal
from dgn_am.priors import require_bank


class CodeParam(Parameterization):
    """DGN-AM: optimize a code h (B, code_dim) of a generator prior; the image is prior.image(h) for `target`.

    init "randn": h ~ N(0, init_std^2) per item from its seed (the reference, init_std 1);
    init "stats": h ~ N(mean, (init_std * std)^2) of the real codes, so the start looks like a real code;
    init "bank": the code of a real training image picked by the seed (the reference's start from E(x)), plus
    N(0, (init_std * std)^2) noise; the prior file stores a bank of such codes;
    init "bank-unit": a bank code chosen for the item's unit (`starts`, one code per item: unit_bank_starts, which
    the "code" builder calls with the (unit, seed) items), plus the same noise;
    a tensor (code_dim,) or (B, code_dim) starts from given codes (e.g. the code of a real image).
    project() clips h into [lower, upper] per unit (post-ReLU codes: [0, mean + k * std]).
    clamp=True clamps the image to [0, 1] before the target sees it (what is scored is what is saved); the reference
    loop (clamp=False) feeds the raw generator output to the target and clips only what it saves.
    """

    name = "code"

    def __init__(self, prior, target_spec, init: Init = "randn", init_std: float = 1.0, clip: bool = True,
                 clamp: bool = True, starts: torch.Tensor | None = None) -> None:
        self.prior, self.target_spec = prior, target_spec
        self.init_mode, self.init_std, self.clip, self.clamp = init, init_std, clip, clamp
        self.starts = starts  # (B, code_dim) for init "bank-unit"

    def init(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        d = self.prior.code_dim
        if isinstance(self.init_mode, torch.Tensor):
            h = self.init_mode.reshape(-1, d).float().cpu()
            if h.shape[0] not in (1, len(seeds)):
                raise ValueError(f"init codes have {h.shape[0]} rows; need 1 or {len(seeds)}")
            h = h.expand(len(seeds), d).clone()
        elif self.init_mode == "randn":
            h = seeded_normal(seeds, (d,), self.init_std)
        elif self.init_mode == "stats":
            h = self.prior.mean.cpu() + seeded_normal(seeds, (d,), self.init_std) * self.prior.std.cpu()
        elif self.init_mode == "bank":
            bank = require_bank(self.prior, "init 'bank'")
            picks = [int(torch.randint(len(bank), (1,), generator=torch.Generator().manual_seed(int(s)))) for s in seeds]
            h = bank.cpu()[picks] + self._start_noise(seeds)
        elif self.init_mode == "bank-unit":
            if self.starts is None or len(self.starts) != len(seeds):
                raise ValueError("init 'bank-unit' picks each item's start for its unit: run the method through "
                                 "dgn_am.synthesize (or pass starts=unit_bank_starts(model, items, prior))")
            h = self.starts.float().cpu() + self._start_noise(seeds)
        else:
            raise ValueError(f"unknown code init '{self.init_mode}'; use 'randn', 'stats', 'bank', 'bank-unit' or a "
                             "code tensor")
        return h.to(device=device, dtype=dtype)

    def _start_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """N(0, (init_std * std)^2) per item from its seed, added to a bank start (its own stream, apart from the
        seed's pick)."""
        noise = seeded_normal([s + 1_000_003 for s in seeds], (self.prior.code_dim,), self.init_std)
        return noise * self.prior.std.cpu()

    def to_image(self, p: torch.Tensor) -> torch.Tensor:
        return self.prior.image(p, self.target_spec, clamp=self.clamp)

    def project(self, p: torch.Tensor) -> None:
        if self.clip:
            torch.maximum(torch.minimum(p, self.prior.upper.to(p)), self.prior.lower.to(p), out=p)

    def settings(self) -> dict:
        init = "codes" if isinstance(self.init_mode, torch.Tensor) else self.init_mode
        return {"name": self.name, "init": init, "init_std": self.init_std, "clip": self.clip, "clamp": self.clamp,
                "prior": self.prior.provenance.get("path"), "code_dim": self.prior.code_dim}


@torch.no_grad()
def unit_bank_starts(model: torch.nn.Module, items: Sequence[tuple[Unit, int]], prior: Any,
                     min_candidates: int = 8) -> torch.Tensor:
    """Init "bank-unit": one start code per (unit, seed) from the prior's code bank of real images.

    A unit's candidates are the bank images on which it is the most active unit of its layer (read the way the unit
    is read: for an output unit, the images the network assigns to its class); with fewer than min_candidates, the
    max(min_candidates, 10%) bank images where it is most active. The candidates are shuffled by a generator seeded
    from the unit's address, and seed s takes candidate s mod their number: a seed's start depends only on its unit
    and itself, and seeds 0..n-1 start from n different images when there are n candidates. (B, code_dim)."""
    bank = require_bank(prior, "init 'bank-unit'")
    device = device_and_dtype(model)[0]
    images = prior.image(bank.to(device), model.input_spec)
    acts = run(model, images, list(dict.fromkeys(u.layer for u, _ in items)))
    order: dict[str, torch.Tensor] = {}
    codes = []
    for unit, seed in items:
        key = str(unit)
        if key not in order:
            table = read_layer(acts[unit.layer], unit)  # (N, C)
            candidates = (table.argmax(1) == unit.index).nonzero().flatten()
            if len(candidates) < min_candidates:
                k = min(len(bank), max(min_candidates, len(bank) // 10))
                candidates = table[:, unit.index].topk(k).indices
            gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            order[key] = candidates.cpu()[torch.randperm(len(candidates), generator=gen)]
        codes.append(bank[order[key][int(seed) % len(order[key])]])
    return torch.stack(codes).cpu()
