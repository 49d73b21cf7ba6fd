"""Building methods from text: the pieces by short name, "NAME:key=value,..." specs, and JSON method configs.

    parse_component("penalty", "tv:weight=0.01")          -> TotalVariation(weight=0.01)
    parse_component("operator", "blur:width=1,every=4")   -> GaussianBlur(width=1.0, every=4)
    method_from_dict(json.load(open("my_method.json")))    -> Method(...)

A config is the JSON form of Method.settings() (what every manifest.jsonl row stores under settings.method), so a
recorded run can be replayed; pieces are {"type": "ClassName" or short name, field: value, ...}; missing fields keep
their defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dgn_am.steps import StepRule
from dgn_am.methods import Method
from dgn_am.operators import (Anchor, BilateralBlur, CentreBias, ContributionClip, Decay, GaussianBlur, NormClip,
                              Share, StopAt)
from dgn_am.penalties import AlphaNorm, L2Penalty, TotalVariation
from dgn_am.preconditioners import GradientBlur, LaplacianNormalize
from dgn_am.transforms import Jitter, Noise, Pad, RandomCrop, RandomRotate, RandomScale

# The one registry of piece names: kind -> short name -> class. The CLI's --penalty/--operator/--transform flags,
# their help and JSON configs are all built from it; a new piece is registered here and nowhere else.
COMPONENTS: dict[str, dict[str, type]] = {
    "penalty": {"l2": L2Penalty, "alpha": AlphaNorm, "tv": TotalVariation},
    "operator": {"decay": Decay, "blur": GaussianBlur, "normclip": NormClip, "contribclip": ContributionClip,
                 "centrebias": CentreBias, "anchor": Anchor,
                 "stopat": StopAt, "share": Share, "bilateral": BilateralBlur},
    "transform": {"pad": Pad, "jitter": Jitter, "scale": RandomScale, "rotate": RandomRotate, "crop": RandomCrop,
                  "noise": Noise},
    "preconditioner": {"gradblur": GradientBlur, "lapnorm": LaplacianNormalize},
}
FIELD = {"penalty": "penalties", "operator": "operators", "transform": "transforms",  # Method field of each kind
         "preconditioner": "preconditioners"}
ROLE = {"penalty": "subtracted from the objective",  # what each kind does, for help texts
        "operator": "applied to p after each step",
        "transform": "random image transforms",
        "preconditioner": "applied to the gradient before each step (pixels)"}


def usage(kind: str) -> str:
    """Every piece of a kind with its settings, for help texts: 'l2:weight=, alpha:weight=,alpha=,...'."""
    return ", ".join(f"{name}:" + ",".join(f"{f.name}=" for f in dataclasses.fields(cls))
                     for name, cls in COMPONENTS[kind].items())


def _check_type(owner: str, key: str, value: Any, default: Any, where: str) -> Any:
    """value if it has the type of the field's default (an int is a float; None is allowed where the default is
    None), else a one-line ValueError: a config's "steps": "five" fails here, not deep inside a run."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        kind = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}[type(default)]
        raise ValueError(f"{owner}.{key} must be {kind}, got {value!r} (in '{where}')")
    return value


def _convert(cls: type, key: str, text: Any, default: Any, where: str) -> Any:
    """Convert a text value to the type of the field's default (bool, int, float, str; None default: float)."""
    if not isinstance(text, str):
        return _check_type(cls.__name__, key, text, default, where)
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float) or default is None:
            return None if text.lower() == "none" else float(text)
        return text
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default or 0.0).__name__
        raise ValueError(f"bad value '{text}' for {cls.__name__}.{key} in '{where}': expected {kind}") from None


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """cls(**values) with values converted to the fields' types; unknown keys raise a one-line error."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting {', '.join(unknown)} (in '{where}'); "
                         f"settings: {', '.join(fields)}")
    kwargs = {k: _convert(cls, k, v, fields[k].default, where) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"cannot build {cls.__name__} from '{where}': {e}") from None


def _lookup(kind: str, name: str, where: str) -> type:
    table = COMPONENTS[kind]
    by_class = {c.__name__: c for c in table.values()}
    if name in table:
        return table[name]
    if name in by_class:
        return by_class[name]
    raise ValueError(f"unknown {kind} '{name}' in '{where}'; available: {', '.join(table)}")


def parse_component(kind: str, spec: str) -> Any:
    """'NAME' or 'NAME:key=value,key=value' -> the component; kind is penalty, operator, transform or
    preconditioner."""
    if kind not in COMPONENTS:
        raise ValueError(f"unknown component kind '{kind}'; use {', '.join(COMPONENTS)}")
    name, _, rest = spec.partition(":")
    cls = _lookup(kind, name.strip(), spec)
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"bad setting '{part}' in '{spec}'; write {kind} settings as NAME:key=value,key=value")
        values[key.strip()] = value.strip()
    return build(cls, values, spec)


def _component_from_dict(kind: str, d: Any) -> Any:
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"each {kind} in a config must be an object with a \"type\", got {d!r}")
    values = {k: v for k, v in d.items() if k != "type"}
    return build(_lookup(kind, str(d["type"]), str(d)), values, str(d))


def method_from_dict(d: dict[str, Any]) -> Method:
    """Rebuild a Method from its settings() dict (e.g. a JSON config file). Unknown keys are errors."""
    if not isinstance(d, dict):
        raise ValueError("a method config must be a JSON object such as {\"name\": \"mine\", \"steps\": 200, ...}")
    d = {k: v for k, v in d.items() if k != "type"}
    fields = {f.name for f in dataclasses.fields(Method)}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise ValueError(f"unknown method setting {', '.join(unknown)}; settings: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = dict(d)
    kwargs.setdefault("name", "custom")
    for f in dataclasses.fields(Method):
        if f.name in d and f.name not in ("step_rule", "options", *FIELD.values()):
            default = "" if f.name == "name" else f.default
            _check_type("method", f.name, d[f.name], default, "config")
    if "step_rule" in d:
        rule = d["step_rule"]
        if not isinstance(rule, dict):
            raise ValueError(f"step_rule must be an object such as {{\"kind\": \"adam\", \"lr\": 0.05}}, got {rule!r}")
        kwargs["step_rule"] = build(StepRule, {k: v for k, v in rule.items() if k != "type"}, "step_rule")
    for kind, field in FIELD.items():
        if field in d:
            if not isinstance(d[field], list):
                raise ValueError(f"{field} must be a list of objects, got {d[field]!r}")
            kwargs[field] = tuple(_component_from_dict(kind, c) for c in d[field])
    if isinstance(d.get("image_start"), list):
        kwargs["image_start"] = tuple(d["image_start"])
    if "options" in d:
        opts = d["options"]
        kwargs["options"] = tuple(opts.items()) if isinstance(opts, dict) else tuple(tuple(o) for o in opts)
    return Method(**kwargs)


def parse_step_rule(spec: str) -> StepRule:
    """'KIND' or 'KIND:key=value,...', e.g. 'adam:lr=0.05' or 'progress:lr=10,lr_max=0.5' -> StepRule."""
    kind, _, rest = spec.partition(":")
    values: dict[str, str] = {"kind": kind.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"bad setting '{part}' in '{spec}'; write KIND:key=value, e.g. adam:lr=0.05")
        values[key.strip()] = value.strip()
    return build(StepRule, values, spec)
