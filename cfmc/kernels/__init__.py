"""Symmetry-preserving Metropolis kernels with blackjax's interface (init/step, pure, vmap-able)."""

from cfmc.kernels.base import (
    Conditioned,
    CrystalState,
    MoveInfo,
    Proposal,
    ProposalFn,
    Target,
    accept,
    as_top_level,
    build_kernel,
    conditioned,
    init,
    log_acceptance,
)
from cfmc.kernels.block import prior_block_proposal
from cfmc.kernels.constraints import SiteConstraints, free_constraints
from cfmc.kernels.coords import coordinate_shift, vonmises_proposal
from cfmc.kernels.lattice import gaussian_proposal, is_valid_cell, lattice_move
from cfmc.kernels.species import prior_proposal, species_substitution, uniform_proposal

__all__ = [
    "Conditioned",
    "CrystalState",
    "MoveInfo",
    "Proposal",
    "ProposalFn",
    "SiteConstraints",
    "Target",
    "accept",
    "as_top_level",
    "build_kernel",
    "conditioned",
    "coordinate_shift",
    "free_constraints",
    "gaussian_proposal",
    "init",
    "is_valid_cell",
    "lattice_move",
    "log_acceptance",
    "prior_block_proposal",
    "prior_proposal",
    "species_substitution",
    "uniform_proposal",
    "vonmises_proposal",
]
