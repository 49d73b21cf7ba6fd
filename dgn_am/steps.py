"""Step rules: how p moves along the ascent direction d at each step. One small class per rule, holding only its
own options, plus `StepRule`, the frozen record a method stores, prints and reads back from JSON or `--step-rule`.

    rule = StepRule("progress", lr=2.0, lr_max=0.5)   # the record (Method.step_rule, manifests, configs)
    step = rule.start(p)                              # -> Progress(lr_max=0.5), bound to p
    step(p, d, rule.lr_at(i, steps))                  # in the loop, under torch.no_grad

Every rule works per item: p and d are (B, ...), and a per-item scale is broadcast over the rest.
To add a rule: write a class with `kind`, `options` and `__call__(p, d, lr)` (and `from_rule` if it has options or
state), and register it in RULES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch


def _per_item(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1), to scale each item of `like` (B, ...)."""
    return v.view(-1, *[1] * (like.dim() - 1))


class Rule:
    """A step rule bound to one p: call it as rule(p, d, lr) to update p in place along the ascent direction d."""

    kind: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()  # StepRule fields this rule reads, besides lr and lr_end

    @classmethod
    def from_rule(cls, rule: "StepRule", p: torch.Tensor) -> "Rule":
        return cls()

    def __call__(self, p: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        raise NotImplementedError


class SGD(Rule):
    """p += lr * d."""

    kind = "sgd"

    def __call__(self, p: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        p.add_(d, alpha=lr)


class Normalized(Rule):
    """p += lr / mean(|d|) * d per item, so the mean absolute change per unit equals lr (DGN-AM)."""

    kind = "normalized"

    def __call__(self, p: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        scale = d.abs().flatten(1).mean(1).clamp(min=1e-12)  # (B,)
        p.add_(d * _per_item(lr / scale, d))


@dataclass
class Progress(Rule):
    """p += min(lr_max, lr / ||d||^2) * d per item, so a linear objective rises by lr per step, with the step size
    capped at lr_max (Yosinski's toolbox "progress" policy)."""

    kind: ClassVar[str] = "progress"
    options: ClassVar[tuple[str, ...]] = ("lr_max",)
    lr_max: float | None = None  # the largest step size lr / ||d||^2 may reach (None: no cap)

    @classmethod
    def from_rule(cls, rule: "StepRule", p: torch.Tensor) -> "Progress":
        return cls(lr_max=rule.lr_max)

    def __call__(self, p: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        size = lr / d.flatten(1).pow(2).sum(1).clamp(min=1e-30)  # (B,)
        if self.lr_max is not None:
            size = size.clamp(max=self.lr_max)
        p.add_(d * _per_item(size, d))


class _TorchOptimizer(Rule):
    """A torch.optim optimizer over p; it minimizes, so it is handed -d."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def __call__(self, p: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        self.optimizer.param_groups[0]["lr"] = lr
        p.grad = -d  # the torch optimizers minimize -score
        self.optimizer.step()
        p.grad = None


class Adam(_TorchOptimizer):
    """torch.optim.Adam on -score (Olah et al.)."""

    kind = "adam"

    @classmethod
    def from_rule(cls, rule: "StepRule", p: torch.Tensor) -> "Adam":
        return cls(torch.optim.Adam([p], lr=rule.lr))


class Momentum(_TorchOptimizer):
    """torch.optim.SGD with heavy-ball momentum on -score (Mahendran & Vedaldi)."""

    kind = "momentum"
    options = ("momentum",)

    @classmethod
    def from_rule(cls, rule: "StepRule", p: torch.Tensor) -> "Momentum":
        return cls(torch.optim.SGD([p], lr=rule.lr, momentum=rule.momentum))


RULES: dict[str, type[Rule]] = {r.kind: r for r in (SGD, Momentum, Adam, Normalized, Progress)}


def usage() -> str:
    """Every rule with its settings, for help texts: 'sgd:lr=, momentum:lr=,momentum=, ...'."""
    return ", ".join(f"{k}:" + ",".join(f"{o}=" for o in ("lr", *r.options)) for k, r in RULES.items()) + \
        " (lr_end= for a linear decay)"


@dataclass(frozen=True)
class StepRule:
    """The step rule a method uses, as a record: which rule (`kind`, a key of RULES), its step-size schedule, and
    the options of the rules that have them. `start(p)` builds the rule itself."""

    kind: str = "sgd"
    lr: float = 1.0  # step size at the first step ("progress": desired objective rise per step)
    lr_end: float | None = None  # None: constant; else linear decay lr_i = lr + (lr_end - lr) * i / steps
    momentum: float = 0.9  # "momentum" only: the heavy-ball coefficient
    lr_max: float | None = None  # "progress" only: the largest step size lr / ||d||^2 may reach (None: no cap)

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ValueError(f"unknown step rule '{self.kind}'; use sgd, normalized, adam, momentum or progress")

    def lr_at(self, i: int, steps: int) -> float:
        """The step size at 0-based step i of `steps`."""
        return self.lr if self.lr_end is None else self.lr + (self.lr_end - self.lr) * i / steps

    def start(self, p: torch.Tensor) -> Rule:
        """The rule bound to p (B, ...), with a fresh state (an optimizer's moments) for this run."""
        return RULES[self.kind].from_rule(self, p)
