"""dgn_am: synthesize the preferred inputs of neurons.

    model = dgn_am.load_model("fmnist-caffenet")           # images (B, 1, 28, 28) in [0, 1] -> logits
    result, items = dgn_am.synthesize(model, dgn_am.parse_units("fc8:0-9"), seeds=[0, 1], method=dgn_am.get_method("simonyan"))
"""

from dgn_am.engine import Result, maximize
from dgn_am.steps import StepRule
from dgn_am.layers import Unit, list_layers, parse_units
from dgn_am.methods import METHODS, Method, get_method, synthesize
from dgn_am.models import InputSpec, TargetModel, load_model
from dgn_am.priors import Prior, load_prior
from dgn_am.objective_expr import ObjectiveTarget, parse_objective
from dgn_am.inversion import invert
from dgn_am.dream import DreamConfig, dream

__all__ = ["DreamConfig", "InputSpec", "METHODS", "Method", "ObjectiveTarget", "Result", "StepRule", "TargetModel",
           "Unit", "dream", "get_method", "invert", "list_layers", "load_model", "load_prior", "Prior", "maximize",
           "parse_objective", "parse_units", "synthesize"]
