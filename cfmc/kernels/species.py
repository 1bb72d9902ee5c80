"""Element substitution at one site (tied sites change with it).

Two proposals: uniform over the allowed elements other than the current one (symmetric), and
the prior's own conditional p(a_i | tokens before a_i) restricted to the allowed elements other than
the current one (Metropolised Gibbs, with its Hastings correction). The conditional does not depend
on a_i itself, so one evaluation serves both directions; `prior_scan` visits every site from the
last to the first with the conditionals of one evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cfmc.arrays import CrystalArrays
from cfmc.kernels.base import Proposal, ProposalFn, Target, as_top_level, build_kernel_stages
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


def _from_conditional(key, position, constraints, site, lp) -> Proposal:
    """A draw from the conditional log-probabilities `lp` (119,) at `site`, restricted to the
    allowed elements other than the current one, with its Hastings correction."""
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


def prior_proposal(species_log_probs: Callable[[CrystalArrays], jax.Array]) -> ProposalFn:
    """From the prior's conditional at the site, excluding the current element.

    species_log_probs: batched arrays -> (B, N, 119), e.g. `PriorFunctions.species_log_probs`.
    q(a'|a) = p(a') / sum_{b != a} p(b); the ratio q(a|a') / q(a'|a) corrects for it.
    """

    def propose(key, position, constraints, site, step_size) -> Proposal:
        lp = species_log_probs(jax.tree.map(lambda x: x[None], position))[0, site]
        return _from_conditional(key, position, constraints, site, lp)

    return propose


def prior_scan(species_log_probs: Callable[[CrystalArrays], jax.Array]) -> Callable:
    """Every site's prior-conditional substitution in one step, last site first, from one
    evaluation of the conditionals: a site's conditional depends only on the tokens before it,
    which the substitutions at later sites leave as they are, so each proposal is the one
    `prior_proposal` would make there (N + 1 prior evaluations for N sites instead of 2N).

    kernel(rng_key, state, target, constraints, site, step_size, beta=1) -> (state, info),
    `site` unused; `info` holds one entry per site (last first; no proposals). Prior targets
    only: host conditioners would need a call between the sites.
    """

    def kernel(rng_key, state, target, constraints, site, step_size, beta=1.0):
        table = species_log_probs(jax.tree.map(lambda x: x[None], state.position))[0]

        def from_table(key, position, cons, s, step):
            return _from_conditional(key, position, cons, s, table[s])

        stages = build_kernel_stages(from_table, conditioned=False)
        prior = target.prior if isinstance(target, Target) else target

        def one(st, s):
            pending, _ = stages.propose(jax.random.fold_in(rng_key, s), st, prior, constraints,
                                        s, step_size, beta)
            st, info = stages.accept(st, pending, None, beta)
            return st, info._replace(proposal=None)  # the counts only, not N proposed crystals

        return jax.lax.scan(one, state, jnp.arange(table.shape[0] - 1, -1, -1))

    return kernel


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
