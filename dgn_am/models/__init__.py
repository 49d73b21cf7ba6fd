"""Target networks, generators, and weight loading (never downloads)."""

from dgn_am.models.loading import TargetModel, load_model
from dgn_am.models.spec import InputSpec

__all__ = ["InputSpec", "TargetModel", "load_model"]
