"""The one Metropolis-Hastings step of every crystal kernel, with blackjax's interface.

A cfmc kernel is a crystal-aware proposal `propose(key, position, constraints, site, step_size) ->
Proposal` handed to `build_kernel`; the accept/reject arithmetic is blackjax's
(`static_binomial_sampling`). Positions are single crystals (`CrystalArrays` without batch axis);
`jax.vmap` runs many chains. The target is a `Target`: the prior part in JAX plus, optionally,
host-side conditioners (torch predictors), which the step calls through `jax.pure_callback`, so
the kernel the tests prove exact is the kernel production runs. Options of the same step:

- tempering: the log density ratio is multiplied by `beta = 1 / T` (the q ratio is not);
- delayed acceptance (Christen & Fox 2005): a proposal is first screened by the prior ratio times
  the q ratio, and only survivors reach the conditioners; the second stage accepts with the
  conditioner ratio, which keeps the chain exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.mcmc.proposal import static_binomial_sampling

from cfmc.arrays import CrystalArrays
from cfmc.kernels.constraints import SiteConstraints


class CrystalState(NamedTuple):
    """State of one chain: its crystal and the untempered parts of the log density there.

    values: predicted properties and per-conditioner log-likelihood terms (empty without
    conditioners); NaN where a prediction was not made.
    """

    position: CrystalArrays
    logdensity: jax.Array  # log_prior + log_likelihood
    log_prior: jax.Array
    log_likelihood: jax.Array
    values: dict[str, jax.Array]


class MoveInfo(NamedTuple):
    """What one step did: acceptance probability, whether it moved, and the proposal."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_valid: jax.Array  # False: the proposal broke a constraint (impossible cell, differ pair)
    is_active: jax.Array  # False: nothing to move at this site (a no-op, not counted)
    is_evaluated: jax.Array  # the conditioners were called for the proposal
    is_failed: jax.Array  # a conditioner failed on it (rejected)
    proposal: CrystalState


class Proposal(NamedTuple):
    """A proposed crystal, log q(x|x') - log q(x'|x), and validity flags."""

    position: CrystalArrays
    log_q_ratio: jax.Array
    is_valid: jax.Array
    is_active: jax.Array


ProposalFn = Callable[[jax.Array, CrystalArrays, SiteConstraints, jax.Array, jax.Array], Proposal]


class Conditioned(NamedTuple):
    """Host conditioners of a batch: weighted log-likelihood sum, failures, named values."""

    logp: np.ndarray
    failed: np.ndarray
    values: dict[str, np.ndarray]


class Target(NamedTuple):
    """The density a kernel samples: `prior(position) -> ()` (JAX, one crystal) plus, optionally,
    `conditioners(batched numpy arrays) -> Conditioned` evaluated on the host."""

    prior: Callable[[CrystalArrays], jax.Array]
    conditioners: Callable[[CrystalArrays], Conditioned] | None = None


def init(position: CrystalArrays, logdensity_fn: Callable[[CrystalArrays], jax.Array]
         ) -> CrystalState:
    """Initial state of one chain under a JAX log density (no conditioners)."""
    position = jax.tree.map(jnp.asarray, position)
    lp = jnp.asarray(logdensity_fn(position))
    return CrystalState(position, lp, lp, jnp.zeros_like(lp), {})


def log_acceptance(log_ratio: jax.Array, valid: jax.Array) -> jax.Array:
    """Log MH acceptance with invalid proposals and NaN ratios rejected."""
    bad = jnp.isnan(log_ratio) | ~valid
    return jnp.where(bad, -jnp.inf, log_ratio)


def accept(key: jax.Array, log_alpha: jax.Array, current, proposed):
    """Accept `proposed` with probability min(1, exp(log_alpha)) (blackjax's binomial step).
    Returns (state, is_accepted, acceptance probability)."""
    state, (do_accept, p_accept, _) = static_binomial_sampling(key, log_alpha, current, proposed)
    return state, do_accept, p_accept


def _host_conditioners(fn: Callable[[CrystalArrays], Conditioned], names: tuple[str, ...],
                       position: CrystalArrays, need: np.ndarray):
    """pure_callback body: run the conditioners on the crystals marked `need` (any leading batch
    axes), fill the rest with -inf / NaN."""
    lead = np.shape(need)
    n = int(np.prod(lead, dtype=int))
    flat = CrystalArrays(*(np.asarray(f).reshape((n,) + np.shape(f)[len(lead):])
                           for f in position))
    idx = np.flatnonzero(np.asarray(need).reshape(n))
    logp = np.full(n, -np.inf, np.float32)
    failed = np.zeros(n, bool)
    values = {k: np.full(n, np.nan, np.float32) for k in names}
    if idx.size:
        out = fn(flat.take(idx))
        logp[idx] = out.logp
        failed[idx] = out.failed
        for k in names:
            if k in out.values:
                values[k][idx] = out.values[k]
    return (logp.reshape(lead), failed.reshape(lead),
            {k: v.reshape(lead) for k, v in values.items()})


def evaluate(target: Target, position: CrystalArrays, need: jax.Array,
             names: tuple[str, ...]) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Conditioners of one crystal (vmapped: of the batch, in one host call) where `need`."""
    shapes = (jax.ShapeDtypeStruct((), jnp.float32), jax.ShapeDtypeStruct((), jnp.bool_),
              {k: jax.ShapeDtypeStruct((), jnp.float32) for k in names})

    def host(pos, nd):
        return _host_conditioners(target.conditioners, names, pos, nd)

    return jax.pure_callback(host, shapes, position, need, vmap_method="broadcast_all")


def build_kernel(propose: ProposalFn, delayed_acceptance: bool = False) -> Callable:
    """MH kernel from a proposal: kernel(rng_key, state, target, constraints, site, step_size,
    beta=1) -> (state, info). `target` is a `Target` or a JAX log density of one crystal."""

    def kernel(rng_key, state: CrystalState, target, constraints, site, step_size, beta=1.0):
        if not isinstance(target, Target):
            target = Target(target)
        key_prop, key_first, key_acc = jax.random.split(rng_key, 3)
        prop = propose(key_prop, state.position, constraints, site, step_size)
        ok = prop.is_valid & prop.is_active
        lp = jnp.asarray(target.prior(prop.position), state.log_prior.dtype)
        d_prior = lp - state.log_prior
        first = log_acceptance(beta * d_prior + prop.log_q_ratio, ok)
        if target.conditioners is None:
            ll, failed, values = jnp.zeros_like(lp), jnp.zeros((), bool), {}
            evaluated, log_alpha = jnp.zeros((), bool), first
        else:
            if delayed_acceptance:  # stage one: the prior screens; survivors reach the host
                u = jax.random.uniform(key_first)
                evaluated = ok & (jnp.log(u) < first)
            else:
                evaluated = ok
            ll, failed, values = evaluate(target, prop.position, evaluated,
                                          tuple(state.values))
            d_like = ll - state.log_likelihood
            ratio = beta * d_like if delayed_acceptance else beta * (d_prior + d_like) + (
                prop.log_q_ratio)
            log_alpha = log_acceptance(ratio, evaluated & ~failed)
        new = CrystalState(prop.position, lp + ll, lp, ll, values)
        out, do_accept, p_accept = accept(key_acc, log_alpha, state, new)
        info = MoveInfo(p_accept, do_accept, prop.is_valid, prop.is_active, evaluated, failed,
                        new)
        return out, info

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
        return kernel(rng_key, state, Target(logdensity_fn), constraints, jnp.asarray(site),
                      jnp.asarray(step_size, jnp.float32))

    return SamplingAlgorithm(init_fn, step_fn)


def conditioned(out: Any) -> Conditioned:
    """A `Conditioned` from a posterior's conditioner output (values and per-term log-likelihoods
    under `loglik_<term>`)."""
    values = {k: np.asarray(v, np.float32) for k, v in out.values.items()}
    values.update({f"loglik_{k}": np.asarray(v, np.float32) for k, v in out.terms.items()})
    return Conditioned(np.asarray(out.logp, np.float32), np.asarray(out.failed, bool), values)
