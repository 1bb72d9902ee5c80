"""Symmetry-preserving Metropolis kernels with blackjax's interface (init/step, pure, vmap-able)."""

from cfmc.kernels.base import (
    CrystalState,
    MoveInfo,
    Proposal,
    accept,
    as_top_level,
    build_kernel,
    init,
    log_acceptance,
)
from cfmc.kernels.coords import coordinate_shift, vonmises_proposal
from cfmc.kernels.lattice import gaussian_proposal, is_valid_cell, lattice_move
from cfmc.kernels.species import prior_proposal, species_substitution, uniform_proposal

__all__ = [
    "CrystalState",
    "MoveInfo",
    "Proposal",
    "accept",
    "as_top_level",
    "build_kernel",
    "coordinate_shift",
    "gaussian_proposal",
    "init",
    "is_valid_cell",
    "lattice_move",
    "log_acceptance",
    "prior_proposal",
    "species_substitution",
    "uniform_proposal",
    "vonmises_proposal",
]
