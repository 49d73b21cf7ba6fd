"""Objectives written as short expressions, parsed by a small recursive-descent parser (never eval).

    fc8:3 - 0.5 * fc8:5          a unit minus half another (any unit address of one unit: conv5:12@mean, conv5:12@3,4,
                                 conv5+relu:12)
    layer:conv4                  the mean squared activation of a whole layer (DeepDream)
    logprob:fc8:3                log softmax of layer fc8 at class 3
    direction:fc6=dir.npy        the dot product of fc6 (spatially averaged) with the vector in dir.npy
    diversity:conv3              Olah et al.'s diversity across the seeds of one target
    + 0.1 * diversity:conv3      an expression that starts with + or - is ADDED to each unit's objective (--units)

Grammar (terms combine linearly; a term may be multiplied or divided by a number, never by another term):

    expression := [sign] product ((+ | -) product)*
    product    := factor ((* | /) factor)*        at most one factor of a product is a term
    factor     := NUMBER | TERM | ( expression ) | - factor

An expression parses to an `Expression`: a sum of (coefficient, Term) pairs. `build_objective` turns it into an
`Objective` for a batch on a given model; `interpolated` mixes two of them with a weight per item (Olah's
interpolation between objectives).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dgn_am.layers import Unit, check_units, parse_units
from dgn_am.objectives import (Acts, Direction, Diversity, LayerObjective, LogProb, Objective, UnitObjective)

EXAMPLES = "fc8:3, conv5:12@mean, layer:conv4, logprob:fc8:3, direction:fc6=dir.npy, diversity:conv3"
_NAME = r"[A-Za-z_][\w.]*(?:\+relu)?"
_TERM = re.compile(
    rf"(?P<kw>layer|diversity):(?P<kwlayer>{_NAME})"
    rf"|logprob:(?P<lplayer>{_NAME}):(?P<lpindex>\d+)"
    rf"|direction:(?P<dirlayer>{_NAME})=(?P<path>[^\s()*+]+)"
    rf"|(?P<unit>{_NAME}:\d+(?:@(?:mean|centre|center|\d+,\d+))?)")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Term:
    """One objective of an expression: kind is unit, layer, logprob, direction or diversity."""

    kind: str
    layer: str
    unit: Unit | None = None  # kind "unit"
    index: int | None = None  # kind "logprob": the class
    path: str | None = None  # kind "direction": the .npy file

    def __str__(self) -> str:
        if self.kind == "unit":
            return str(self.unit)
        if self.kind == "logprob":
            return f"logprob:{self.layer}:{self.index}"
        if self.kind == "direction":
            return f"direction:{self.layer}={self.path}"
        return f"{self.kind}:{self.layer}"


@dataclass(frozen=True)
class Expression:
    """A parsed objective: the sum of coefficient * term; relative: it began with + or - (added to the units)."""

    text: str
    terms: tuple[tuple[float, Term], ...]
    relative: bool = False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, expected: str) -> ValueError:
        self.skip()
        found = self.text[self.pos:].strip()
        found = f"'{found[:20]}'" if found else "the end"
        marked = f"{self.text[:self.pos]}>>HERE>>{self.text[self.pos:]}"
        return ValueError(f"bad objective '{self.text}': at column {self.pos + 1} ('{marked}') expected {expected}, "
                          f"found {found}. Terms: {EXAMPLES}; combine them with + and -, scale them with * NUMBER")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, chars: str) -> str | None:
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] in chars:
            return self.text[self.pos]
        return None

    def take(self, chars: str) -> str | None:
        c = self.peek(chars)
        if c is not None:
            self.pos += 1
        return c

    def expression(self) -> tuple[dict, float]:
        """(terms {Term: coefficient}, constant)."""
        sign = self.take("+-")
        terms, const = self.product()
        if sign == "-":
            terms, const = _scale(terms, const, -1.0)
        while (op := self.take("+-")) is not None:
            more, c = self.product()
            k = 1.0 if op == "+" else -1.0
            for t, v in more.items():
                terms[t] = terms.get(t, 0.0) + k * v
            const += k * c
        return terms, const

    def product(self) -> tuple[dict, float]:
        terms, const = self.factor()
        while (op := self.take("*/")) is not None:
            at = self.pos
            more, c = self.factor()
            if op == "/":
                if more:
                    self.pos = at
                    raise self.fail("a number to divide by (a term cannot divide)")
                if c == 0:
                    self.pos = at
                    raise self.fail("a non-zero number to divide by")
                terms, const = _scale(terms, const, 1.0 / c)
            elif terms and more:
                self.pos = at
                raise self.fail("a number (two terms cannot be multiplied; the objective is linear in its terms)")
            elif more:
                terms, const = _scale(more, c, const)
            else:
                terms, const = _scale(terms, const, c)
        return terms, const

    def factor(self) -> tuple[dict, float]:
        self.skip()
        if self.take("("):
            inner = self.expression()
            if not self.take(")"):
                raise self.fail("')' or an operator (+ - * /)")
            return inner
        if self.take("-"):
            terms, const = self.factor()
            return _scale(terms, const, -1.0)
        m = _TERM.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return {_term(m, self.text): 1.0}, 0.0
        m = _NUMBER.match(self.text, self.pos)
        if m and not re.match(r"[\w:]", self.text[m.end(): m.end() + 1]):
            self.pos = m.end()
            return {}, float(m.group())
        raise self.fail(f"a term ({EXAMPLES}), a number or '('")


def _scale(terms: dict, const: float, k: float) -> tuple[dict, float]:
    return {t: v * k for t, v in terms.items()}, const * k


def _term(m: re.Match, text: str) -> Term:
    if m.group("kw"):
        return Term(m.group("kw"), m.group("kwlayer"))
    if m.group("lplayer"):
        return Term("logprob", m.group("lplayer"), index=int(m.group("lpindex")))
    if m.group("dirlayer"):
        return Term("direction", m.group("dirlayer"), path=m.group("path"))
    unit = parse_units(m.group("unit"))[0]
    return Term("unit", unit.layer, unit=unit)


def parse_objective(text: str) -> Expression:
    """Parse an objective expression (module docstring). Raises ValueError saying what was expected where."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty objective; write one such as 'fc8:3 - 0.5 * fc8:5' (terms: {EXAMPLES})")
    parser = _Parser(text)
    relative = parser.peek("+-") is not None
    terms, const = parser.expression()
    parser.skip()
    if parser.pos < len(text):
        raise parser.fail("an operator (+ - * /) or the end")
    if const != 0:
        raise ValueError(f"bad objective '{text}': a constant term ({const:g}) changes no gradient; remove it")
    kept = tuple((v, t) for t, v in terms.items() if v != 0)
    if not kept:
        raise ValueError(f"bad objective '{text}': its terms cancel out, nothing is left to maximize")
    return Expression(text.strip(), kept, relative)


def check_expression(expr: Expression, model: torch.nn.Module) -> None:
    """Every term's layer exists in `model` and fits it (unit and class in range, direction of the layer's size)."""
    from dgn_am.layers import list_layers, split_reading

    shapes = {name: shape for name, _, shape in list_layers(model)}
    for _, term in expr.terms:
        if term.kind == "unit":
            check_units(model, [term.unit])
            continue
        check_units(model, [Unit(term.layer, 0, "mean")])  # the layer exists and reads
        channels = shapes[split_reading(term.layer)[0]][0]
        if term.kind == "logprob" and term.index >= channels:
            raise ValueError(f"objective term {term}: class {term.index} out of range; '{term.layer}' has "
                             f"{channels} outputs (0-{channels - 1})")
        if term.kind == "direction":
            vector = load_direction(term.path)
            if vector.numel() != channels:
                raise ValueError(f"objective term {term}: {term.path} holds {vector.numel()} numbers, but "
                                 f"'{term.layer}' has {channels} channels; give a vector of {channels}")


def load_direction(path: str) -> torch.Tensor:
    """The direction vector in a .npy file, as float32 (C,)."""
    if not Path(path).is_file():
        raise ValueError(f"direction file not found: {path}; save one with numpy.save('dir.npy', vector)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path} is not a .npy array ({e}); save one with numpy.save") from None
    vector = torch.from_numpy(np.asarray(array, dtype=np.float32)).flatten()
    if not torch.isfinite(vector).all():
        raise ValueError(f"direction file {path} holds NaN or infinite values")
    return vector


def _term_objective(term: Term, batch: int, groups: Sequence[int]) -> Objective:
    if term.kind == "unit":
        return UnitObjective([term.unit] * batch)
    if term.kind == "layer":
        return LayerObjective(term.layer)
    if term.kind == "logprob":
        return LogProb(term.layer, [term.index] * batch)
    if term.kind == "direction":
        return Direction(term.layer, load_direction(term.path))
    return Diversity(term.layer, groups)


def build_objective(expr: Expression, batch: int, units: Sequence[Unit] | None = None,
                    groups: Sequence[int] | None = None) -> Objective:
    """The Objective of `expr` for a batch of `batch` items, (B,) to maximize.

    units: each item's unit, needed when expr is relative (it is added to UnitObjective(units)); groups: each item's
    group for diversity terms (default: the item's unit for a relative expression, else one group of all items)."""
    if expr.relative and (units is None or len(units) != batch):
        raise ValueError(f"objective '{expr.text}' begins with + or -, so it is added to each item's unit: give "
                         "units (--units), or drop the leading sign to maximize the expression alone")
    if groups is None:
        if expr.relative:
            names = {str(u): i for i, u in enumerate(dict.fromkeys(str(u) for u in units))}
            groups = [names[str(u)] for u in units]
        else:
            groups = [0] * batch
    out: Objective | None = UnitObjective(units) if expr.relative else None
    for coefficient, term in expr.terms:
        part = coefficient * _term_objective(term, batch, groups)
        out = part if out is None else out + part
    return out


class Interpolated(Objective):
    """(1 - t_b) * a + t_b * b for item b: a row of frames moving from objective a (t = 0) to b (t = 1), (B,)."""

    def __init__(self, a: Objective, b: Objective, t: Sequence[float]) -> None:
        self.a, self.b, self.t = a, b, torch.tensor([float(v) for v in t])
        self.layers = tuple(dict.fromkeys(a.layers + b.layers))

    def __call__(self, acts: Acts) -> torch.Tensor:
        va, vb = self.a(acts), self.b(acts)
        t = self.t.to(va)
        return (1 - t) * va + t * vb


def frame_weights(frames: int) -> list[float]:
    """t of each of `frames` frames, evenly from 0 to 1 (frames >= 2)."""
    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    return [i / (frames - 1) for i in range(frames)]


@dataclass(frozen=True)
class ObjectiveTarget:
    """A row target that is an expression instead of a unit: the expression alone, or (with `to`) the frame at
    weight t of the interpolation from `expression` (t = 0) to `to` (t = 1). Stands where a Unit stands in
    dgn_am.synthesize's items; layer is None (no one unit is read)."""

    expression: str
    to: str | None = None
    t: float = 0.0
    layer = None
    spatial = "expression"

    def __str__(self) -> str:
        return self.expression if self.to is None else f"({self.expression}) -> ({self.to}) @ t={self.t:g}"


def objective_for(model: torch.nn.Module, targets: Sequence, extra: str = "") -> Objective:
    """The Objective of a batch whose item b has target targets[b]: all Units (plus `extra`, an expression added to
    each unit's objective when it begins with + or -), or all ObjectiveTargets of one expression (frames of one
    interpolation). Every term is checked against `model` first."""
    if not targets:
        raise ValueError("no targets: give units or an objective expression")
    if all(isinstance(t, Unit) for t in targets):
        if not extra:
            return UnitObjective(list(targets))
        expr = parse_objective(extra)
        if not expr.relative:
            raise ValueError(f"objective '{extra}' replaces the units: drop the units, or begin it with + or - to "
                             "add it to each unit's objective")
        check_expression(expr, model)
        return build_objective(expr, len(targets), units=list(targets))
    if not all(isinstance(t, ObjectiveTarget) for t in targets) or extra:
        raise ValueError("a batch mixes units and objective expressions; run them separately")
    if len({(t.expression, t.to) for t in targets}) != 1:
        raise ValueError("a batch holds more than one objective expression; run them separately")
    a = parse_objective(targets[0].expression)
    exprs = [a] if targets[0].to is None else [a, parse_objective(targets[0].to)]
    for e in exprs:
        if e.relative:
            raise ValueError(f"objective '{e.text}' begins with + or -, so it needs units to add to; drop the sign")
        check_expression(e, model)
    frames = {w: i for i, w in enumerate(sorted({t.t for t in targets}))}
    groups = [frames[t.t] for t in targets]  # diversity across the seeds of one frame
    built = [build_objective(e, len(targets), groups=groups) for e in exprs]
    return built[0] if len(built) == 1 else Interpolated(built[0], built[1], [t.t for t in targets])


def described(targets: list, extra: str) -> dict:
    """What was maximized, for the settings: {"units": True, "added": EXPR or None}, {"expression": EXPR}, or
    {"interpolate": [A, B]} (each row's t is in its address)."""
    first = targets[0]
    if not isinstance(first, ObjectiveTarget):
        return {"units": True, "added": extra or None}
    if first.to is None:
        return {"expression": first.expression}
    return {"interpolate": [first.expression, first.to]}
