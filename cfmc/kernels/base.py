"""The one Metropolis-Hastings step of every crystal kernel, with blackjax's interface.

A cfmc kernel is a crystal-aware proposal `propose(key, position, constraints, site, step_size) ->
Proposal` handed to `build_kernel`; the accept/reject arithmetic is blackjax's
(`static_binomial_sampling`). Positions are single crystals (`CrystalArrays` without batch axis);
`jax.vmap` runs many chains. The target is a `Target`: the prior part in JAX plus, optionally,
host-side conditioners (torch predictors). Every step is two pure halves (`KernelStages`):
`propose` (proposal, prior terms, stage one of delayed acceptance) returns what the conditioners
must see (`Ask`), `accept` takes their `Answer` and does the accept/reject. The sweep engine jits
each half on its own and calls the conditioners between them, once per move for all chains, so
neither program holds a host callback and both stay in the persistent compilation cache;
`build_kernel` joins the same halves into one step (calling the conditioners through
`jax.pure_callback`), so the kernel the tests prove exact is the kernel production runs.
Options of the same step:

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
    """Conditioners of the crystals (leading axes those of `need`; vmapped: of the batch, in
    one host call) where `need`, through `jax.pure_callback`."""
    lead = jnp.shape(need)
    shapes = (jax.ShapeDtypeStruct(lead, jnp.float32), jax.ShapeDtypeStruct(lead, jnp.bool_),
              {k: jax.ShapeDtypeStruct(lead, jnp.float32) for k in names})

    def host(pos, nd):
        return _host_conditioners(target.conditioners, names, pos, nd)

    return jax.pure_callback(host, shapes, position, need, vmap_method="broadcast_all")


class Ask(NamedTuple):
    """What a move asks of the host conditioners: the crystals (any leading axes) and which of
    them to evaluate."""

    positions: CrystalArrays
    need: jax.Array


class Answer(NamedTuple):
    """The host's answer to an `Ask`: weighted log-likelihoods, failures and named values, with
    the leading axes of `Ask.need` (-inf / NaN where not evaluated)."""

    logp: jax.Array
    failed: jax.Array
    values: dict[str, jax.Array]


class Pending(NamedTuple):
    """A Metropolis-Hastings proposal waiting for the conditioners: what the acceptance needs."""

    proposal: Proposal
    log_prior: jax.Array  # untempered prior part at the proposal
    log_alpha_prior: jax.Array  # log acceptance of the prior part (the whole one without
    # conditioners, stage one of delayed acceptance)
    is_evaluated: jax.Array  # the conditioners are asked about the proposal
    key: jax.Array  # the acceptance's key


class KernelStages(NamedTuple):
    """A step in two pure halves around the host conditioners, so each half jits to a plain XLA
    program (no host callback, cacheable on disk):

    propose(rng_key, state, prior, constraints, site, step_size, beta) -> (pending, Ask)
    accept(state, pending, Answer | None, beta) -> (state, MoveInfo)

    `conditioned`: whether the target has conditioners (without them `accept` takes None and
    the step is the prior's alone). `compose_kernel` joins the halves into one step.
    """

    propose: Callable
    accept: Callable
    conditioned: bool


def build_kernel_stages(propose: ProposalFn, delayed_acceptance: bool = False,
                        conditioned: bool = True) -> KernelStages:
    """The Metropolis-Hastings step of a proposal as `KernelStages`; `build_kernel` composes
    the same two halves."""

    def propose_stage(rng_key, state: CrystalState, prior, constraints, site, step_size,
                      beta=1.0) -> tuple[Pending, Ask]:
        key_prop, key_first, key_acc = jax.random.split(rng_key, 3)
        prop = propose(key_prop, state.position, constraints, site, step_size)
        ok = prop.is_valid & prop.is_active
        lp = jnp.asarray(prior(prop.position), state.log_prior.dtype)
        d_prior = lp - state.log_prior
        first = log_acceptance(beta * d_prior + prop.log_q_ratio, ok)
        if not conditioned:
            evaluated = jnp.zeros((), bool)
        elif delayed_acceptance:  # stage one: the prior screens; survivors reach the host
            u = jax.random.uniform(key_first)
            evaluated = ok & (jnp.log(u) < first)
        else:
            evaluated = ok
        return Pending(prop, lp, first, evaluated, key_acc), Ask(prop.position, evaluated)

    def accept_stage(state: CrystalState, pending: Pending, answer: Answer | None,
                     beta=1.0) -> tuple[CrystalState, MoveInfo]:
        prop, lp, evaluated = pending.proposal, pending.log_prior, pending.is_evaluated
        if answer is None:
            ll, failed, values = jnp.zeros_like(lp), jnp.zeros((), bool), {}
            log_alpha = pending.log_alpha_prior
        else:
            ll, failed, values = answer
            d_like = ll - state.log_likelihood
            if delayed_acceptance:
                ratio = beta * d_like
            else:
                d_prior = lp - state.log_prior
                ratio = beta * (d_prior + d_like) + prop.log_q_ratio
            log_alpha = log_acceptance(ratio, evaluated & ~failed)
        new = CrystalState(prop.position, lp + ll, lp, ll, values)
        out, do_accept, p_accept = accept(pending.key, log_alpha, state, new)
        info = MoveInfo(p_accept, do_accept, prop.is_valid, prop.is_active, evaluated, failed,
                        new)
        return out, info

    return KernelStages(propose_stage, accept_stage, conditioned)


def compose_kernel(stages: Callable[[bool], KernelStages]) -> Callable:
    """One step from its two halves: kernel(rng_key, state, target, constraints, site,
    step_size, beta=1) -> (state, info); `stages(conditioned)` builds the halves. With host
    conditioners the step calls them through `evaluate` (a `jax.pure_callback`)."""

    def kernel(rng_key, state: CrystalState, target, constraints, site, step_size, beta=1.0):
        if not isinstance(target, Target):
            target = Target(target)
        halves = stages(target.conditioners is not None)
        pending, ask = halves.propose(rng_key, state, target.prior, constraints, site,
                                      step_size, beta)
        answer = None
        if halves.conditioned:
            answer = Answer(*evaluate(target, ask.positions, ask.need, tuple(state.values)))
        return halves.accept(state, pending, answer, beta)

    return kernel


def build_kernel(propose: ProposalFn, delayed_acceptance: bool = False) -> Callable:
    """MH kernel from a proposal: kernel(rng_key, state, target, constraints, site, step_size,
    beta=1) -> (state, info). `target` is a `Target` or a JAX log density of one crystal. The
    step is the two halves of `build_kernel_stages`, joined."""
    return compose_kernel(
        lambda conditioned: build_kernel_stages(propose, delayed_acceptance, conditioned))


def host_answer(fn: Callable[[CrystalArrays], Conditioned], names: tuple[str, ...],
                ask: Ask) -> Answer:
    """Evaluate the conditioners on the host for an `Ask` read back from the device (one
    batched call over every crystal marked `need`); numpy arrays in the `Answer`."""
    position, need = jax.device_get((ask.positions, ask.need))
    return Answer(*_host_conditioners(fn, names, position, need))


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
