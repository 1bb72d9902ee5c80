"""Symmetry-preserving Metropolis kernels with blackjax's interface (init/step, pure, vmap-able)."""

from cfmc.kernels.base import (
    Answer,
    Ask,
    Conditioned,
    CrystalState,
    KernelStages,
    MoveInfo,
    Pending,
    Proposal,
    ProposalFn,
    Target,
    accept,
    as_top_level,
    build_kernel,
    build_kernel_stages,
    compose_kernel,
    conditioned,
    host_answer,
    init,
    log_acceptance,
)
from cfmc.kernels.block import BlockDraws, prior_block_draws, prior_block_proposal
from cfmc.kernels.constraints import SiteConstraints, free_constraints
from cfmc.kernels.coords import coordinate_shift, vonmises_proposal
from cfmc.kernels.crystal_pool import (
    CrystalPoolFit,
    CrystalPoolProposal,
    crystal_pool_proposal,
)
from cfmc.kernels.isir import IsirPending, build_isir_kernel, build_isir_stages
from cfmc.kernels.lattice import gaussian_proposal, is_valid_cell, lattice_move
from cfmc.kernels.population import PopulationFit, PopulationProposal, population_proposal
from cfmc.kernels.species import prior_proposal, species_substitution, uniform_proposal

__all__ = [
    "Answer",
    "Ask",
    "BlockDraws",
    "Conditioned",
    "CrystalPoolFit",
    "CrystalPoolProposal",
    "CrystalState",
    "IsirPending",
    "KernelStages",
    "MoveInfo",
    "Pending",
    "PopulationFit",
    "PopulationProposal",
    "Proposal",
    "ProposalFn",
    "SiteConstraints",
    "Target",
    "accept",
    "as_top_level",
    "build_isir_kernel",
    "build_isir_stages",
    "build_kernel",
    "build_kernel_stages",
    "compose_kernel",
    "conditioned",
    "coordinate_shift",
    "crystal_pool_proposal",
    "free_constraints",
    "gaussian_proposal",
    "host_answer",
    "init",
    "is_valid_cell",
    "lattice_move",
    "log_acceptance",
    "population_proposal",
    "prior_block_draws",
    "prior_block_proposal",
    "prior_proposal",
    "species_substitution",
    "uniform_proposal",
    "vonmises_proposal",
]
