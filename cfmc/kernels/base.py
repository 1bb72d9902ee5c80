"""Shared pieces of the crystal kernels: state, info, the Metropolis-Hastings step.

A cfmc kernel is a crystal-aware proposal `propose(key, position, constraints, site, step_size) ->
Proposal`; the accept/reject arithmetic is blackjax's (`static_binomial_sampling`). Positions are
single crystals (`CrystalArrays` without batch axis); `jax.vmap` runs many chains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from blackjax.mcmc.proposal import static_binomial_sampling

from cfmc.arrays import CrystalArrays
from cfmc.template import SiteConstraints


class CrystalState(NamedTuple):
    """State of one chain: its crystal and the log density there."""

    position: CrystalArrays
    logdensity: jax.Array


class MoveInfo(NamedTuple):
    """What one step did: acceptance probability, whether it moved, and the proposal."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_valid: jax.Array  # False: the proposal broke a constraint (impossible cell, differ pair)
    is_active: jax.Array  # False: nothing to move at this site (a no-op, not counted)
    proposal: CrystalState


class Proposal(NamedTuple):
    """A proposed crystal, log q(x|x') - log q(x'|x), and validity flags."""

    position: CrystalArrays
    log_q_ratio: jax.Array
    is_valid: jax.Array
    is_active: jax.Array


ProposalFn = Callable[[jax.Array, CrystalArrays, SiteConstraints, jax.Array, jax.Array], Proposal]


def init(
    position: CrystalArrays, logdensity_fn: Callable[[CrystalArrays], jax.Array]
) -> CrystalState:
    """Initial state of one chain."""
    position = jax.tree.map(jnp.asarray, position)
    return CrystalState(position, logdensity_fn(position))


def log_acceptance(log_ratio: jax.Array, valid: jax.Array) -> jax.Array:
    """Log MH acceptance with invalid proposals and NaN ratios rejected."""
    bad = jnp.isnan(log_ratio) | ~valid
    return jnp.where(bad, -jnp.inf, log_ratio)


def accept(key: jax.Array, log_alpha: jax.Array, current, proposed):
    """Accept `proposed` with probability min(1, exp(log_alpha)) (blackjax's binomial step).
    Returns (state, is_accepted, acceptance probability)."""
    state, (do_accept, p_accept, _) = static_binomial_sampling(key, log_alpha, current, proposed)
    return state, do_accept, p_accept


def build_kernel(propose: ProposalFn) -> Callable:
    """MH kernel from a proposal: kernel(rng_key, state, logdensity_fn, constraints, site,
    step_size) -> (state, info)."""

    def kernel(rng_key, state: CrystalState, logdensity_fn, constraints, site, step_size):
        key_prop, key_acc = jax.random.split(rng_key)
        prop = propose(key_prop, state.position, constraints, site, step_size)
        new = CrystalState(prop.position, logdensity_fn(prop.position))
        log_alpha = log_acceptance(new.logdensity - state.logdensity + prop.log_q_ratio,
                                   prop.is_valid & prop.is_active)
        out, do_accept, p_accept = accept(key_acc, log_alpha, state, new)
        return out, MoveInfo(p_accept, do_accept, prop.is_valid, prop.is_active, new)

    return kernel


def as_top_level(
    propose: ProposalFn,
    logdensity_fn: Callable[[CrystalArrays], jax.Array],
    constraints: SiteConstraints,
    site: int | jax.Array = 0,
    step_size: float | jax.Array = 0.0,
) -> SamplingAlgorithm:
    """blackjax's user interface: `init(position)` and `step(rng_key, state)` for one chain."""
    kernel = build_kernel(propose)
    constraints = jax.tree.map(jnp.asarray, constraints)

    def init_fn(position: CrystalArrays, rng_key=None) -> CrystalState:
        return init(position, logdensity_fn)

    def step_fn(rng_key: jax.Array, state: CrystalState) -> tuple[CrystalState, MoveInfo]:
        return kernel(rng_key, state, logdensity_fn, constraints, jnp.asarray(site),
                      jnp.asarray(step_size, jnp.float32))

    return SamplingAlgorithm(init_fn, step_fn)
