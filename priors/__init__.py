"""Prior models of crystals given their space group: the CrystalFormer transformer."""

from .config import CONFIGS, PriorConfig, get_config
from .density import (
    LogProbTerms,
    letter_log_probs,
    log_prob,
    sample_lattice,
    satisfies_constraints,
    species_log_probs,
)
from .io import load_prior, save_prior
from .model import CrystalFormer, count_parameters
from .sample import sample, sample_with_log_prob
from .train import TrainOptions, TrainResult, train

__all__ = [
    "CONFIGS",
    "CrystalFormer",
    "LogProbTerms",
    "PriorConfig",
    "TrainOptions",
    "TrainResult",
    "count_parameters",
    "get_config",
    "letter_log_probs",
    "load_prior",
    "log_prob",
    "sample",
    "sample_lattice",
    "sample_with_log_prob",
    "satisfies_constraints",
    "save_prior",
    "species_log_probs",
    "train",
]
