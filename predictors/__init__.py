"""Property predictors and the conditioners that turn them into log p(y|C) terms."""

from .base import (
    FunctionPredictor,
    PredictionResult,
    Predictor,
    crystal_key,
    predictor,
    structure_key,
)
from .conditioners import (
    AtLeast,
    AtMost,
    Between,
    Conditioner,
    ConditionerSum,
    ConditionResult,
    FunctionConditioner,
    Gaussian,
    PropertyConditioner,
    as_conditioner,
)
from .megnet import MEGNetBandGap, MEGNetFormationEnergy, MEGNetPredictor, load_megnet
from .registry import available, get_predictor, register

__all__ = [
    "AtLeast",
    "AtMost",
    "Between",
    "ConditionResult",
    "Conditioner",
    "ConditionerSum",
    "FunctionConditioner",
    "FunctionPredictor",
    "Gaussian",
    "MEGNetBandGap",
    "MEGNetFormationEnergy",
    "MEGNetPredictor",
    "PredictionResult",
    "Predictor",
    "PropertyConditioner",
    "as_conditioner",
    "available",
    "crystal_key",
    "get_predictor",
    "load_megnet",
    "predictor",
    "register",
    "structure_key",
]
