"""Element substitution at one site (tied sites change with it).

Two proposals: uniform over the allowed elements other than the current one (symmetric), and
the prior's own conditional p(a_i | tokens before a_i) restricted to the allowed elements other than
the current one (Metropolised Gibbs, with its Hastings correction). The conditional does not depend
on a_i itself, so one evaluation serves both directions.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cfmc.arrays import CrystalArrays
from cfmc.kernels.base import Proposal, ProposalFn, as_top_level
from cfmc.kernels.constraints import SiteConstraints


def _apply(position: CrystalArrays, constraints: SiteConstraints, site, new, active):
    tied = constraints.tie == site
    species = jnp.where(tied & active, new, position.species)
    pairs = constraints.differ
    ok = jnp.all(species[pairs[:, 0]] != species[pairs[:, 1]])
    return position._replace(species=species.astype(position.species.dtype)), ok


def uniform_proposal() -> ProposalFn:
    """Uniform over the allowed elements except the current one; symmetric."""

    def propose(key, position, constraints, site, step_size) -> Proposal:
        current = position.species[site]
        cand = constraints.allowed[site] & (jnp.arange(constraints.allowed.shape[-1]) != current)
        active = constraints.species_move[site] & position.mask[site] & jnp.any(cand)
        new = jax.random.categorical(key, jnp.where(cand, 0.0, -jnp.inf))
        out, ok = _apply(position, constraints, site, new, active)
        return Proposal(out, jnp.zeros(()), ok & active, active)

    return propose


def prior_proposal(species_log_probs: Callable[[CrystalArrays], jax.Array]) -> ProposalFn:
    """From the prior's conditional at the site, excluding the current element.

    species_log_probs: batched arrays -> (B, N, 119), e.g. `PriorFunctions.species_log_probs`.
    q(a'|a) = p(a') / sum_{b != a} p(b); the ratio q(a|a') / q(a'|a) corrects for it.
    """

    def propose(key, position, constraints, site, step_size) -> Proposal:
        batched = jax.tree.map(lambda x: x[None], position)
        lp = species_log_probs(batched)[0, site]
        allowed = constraints.allowed[site]
        idx = jnp.arange(allowed.shape[-1])
        current = position.species[site]
        cand = allowed & (idx != current)
        active = constraints.species_move[site] & position.mask[site] & jnp.any(cand)
        logits = jnp.where(cand, lp, -jnp.inf)
        new = jax.random.categorical(key, logits)
        back = allowed & (idx != new)
        log_fwd = lp[new] - jax.nn.logsumexp(logits)
        log_bwd = lp[current] - jax.nn.logsumexp(jnp.where(back, lp, -jnp.inf))
        out, ok = _apply(position, constraints, site, new, active)
        log_q = jnp.where(active, log_bwd - log_fwd, 0.0)
        return Proposal(out, log_q, ok & active & jnp.isfinite(log_q), active)

    return propose


def species_substitution(
    logdensity_fn: Callable[[CrystalArrays], jax.Array],
    constraints: SiteConstraints,
    site: int,
    species_log_probs: Callable[[CrystalArrays], jax.Array] | None = None,
):
    """blackjax-style kernel for one chain; the prior-informed proposal when species_log_probs
    is given, else uniform."""
    propose = uniform_proposal() if species_log_probs is None else prior_proposal(species_log_probs)
    return as_top_level(propose, logdensity_fn, constraints, site)
