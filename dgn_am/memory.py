"""How many items fit in a memory budget (`--max-memory`), estimated from what autograd keeps during one step.

The memory a batch of B items needs is about A + B * m, where A is fixed (the weights of the target and the prior) and
m is what one more item adds: the tensors the forward pass saves for the backward pass (every layer's activations
up to the deepest one read, the generator's included, times the `samples` copies), and the gradients of about as
many bytes that the backward pass makes from them. m is measured, not guessed: one step of the real method runs on a
batch of 1 and of 2 items, and a `torch.autograd.graph.saved_tensors_hooks` hook adds up the bytes of every distinct
tensor saved, leaving out the weights; m = 2 * (saved(2) - saved(1)). The count depends only on the shapes, so every
process and every resume finds the same chunks. Not counted: the Python interpreter and torch's own libraries (a few
hundred MB of resident memory on a CPU), which are there whatever the batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch

from dgn_am.errors import UsageError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
GRADIENT_FACTOR = 2  # the backward pass makes gradients of about the bytes saved for it


def parse_size(text: str) -> int:
    """'2GB' -> 2_000_000_000, '512MiB' -> 536_870_912, '1.5gb', '300000000' (bytes); a UsageError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
        raise UsageError(f"--max-memory {text!r} is not a size; write a positive number with a unit, e.g. 2GB, "
                         "512MB or 1.5GiB")
    return int(float(m.group(1)) * _UNITS[unit])


def saved_bytes(fn: Callable[[], Any], skip: set[int]) -> int:
    """The bytes of the distinct tensors that autograd saves for backward while fn() runs, leaving out those whose
    storage is in `skip` (data pointers of the weights)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and ptr != 0:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@dataclass(frozen=True)
class Estimate:
    """fixed: bytes of the weights; per_item: bytes one more item in the batch adds (saved tensors and their
    gradients)."""

    fixed: int
    per_item: int

    def items_within(self, budget: int) -> int:
        """How many items fit in `budget` bytes (0 when not even one does)."""
        return max(0, (budget - self.fixed) // max(1, self.per_item))


def _weights(*modules: Any) -> tuple[int, set[int]]:
    """(bytes, storage data pointers) of the parameters and buffers of the given modules (None ones skipped)."""
    total, ptrs = 0, set()
    for m in modules:
        if m is None:
            continue
        for t in [*m.parameters(), *m.buffers()]:
            s = t.untyped_storage()
            if s.data_ptr() not in ptrs:
                ptrs.add(s.data_ptr())
                total += s.nbytes()
    return total, ptrs


def estimate(model: torch.nn.Module, unit: Any, seed: int, method: Any, prior: Any = None) -> Estimate:
    """The memory of a batch of `method` on `model` as fixed + B * per_item, from one step at batch 1 and 2 (unit
    with seeds `seed` and `seed + 1`)."""
    from dgn_am.methods import synthesize

    one_step = method.with_overrides(steps=1)
    generator = getattr(prior, "generator", None) if prior is not None else None
    fixed, skip = _weights(model, generator)
    saved = [saved_bytes(lambda n=n: synthesize(model, [unit], list(range(seed, seed + n)), one_step, prior=prior),
                         skip) for n in (1, 2)]
    per_item = GRADIENT_FACTOR * max(1, saved[1] - saved[0])
    return Estimate(fixed=fixed, per_item=per_item)


def chunk_units(budget: int, est: Estimate, seeds: int) -> int:
    """Units per chunk (each with all `seeds` seeds) so that a chunk fits `budget` bytes. A UsageError when one
    unit's seeds do not fit."""
    fit = est.items_within(budget)
    if fit < seeds:
        mb = (est.fixed + seeds * est.per_item) / 1e6
        raise UsageError(f"--max-memory {budget / 1e6:.0f}MB holds {fit} images per batch, but each unit has {seeds} "
                         f"seeds (about {mb:.0f}MB: {est.fixed / 1e6:.0f}MB of weights and {est.per_item / 1e6:.1f}MB "
                         "per image); give more memory, or fewer --seeds per run (--first-seed continues)")
    return fit // seeds
