"""Iterated sampling-importance-resampling (i-SIR) with block proposals from the prior.

One step draws `tries` independent block proposals x'_1..x'_K from q (the prior's autoregressive
conditionals given the kept tokens, `prior_block_draws`), weighs them and the current crystal x
by w = pi(.)^beta / q(.), and moves to one of the K + 1 in proportion to its weight (Andrieu, Lee
& Vihola 2018, "Uniform ergodicity of the iterated conditional SMC and geometric ergodicity of
particle Gibbs samplers"; Tjelmeland 2004). The kernel leaves pi^beta invariant for any K; with
K = 1 it is the independence Metropolis-Hastings move with Barker's acceptance. Its probability of
moving grows with K towards one, which is what a posterior ~nats away from the proposal needs:
an independence sampler with one proposal is accepted only rarely there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cfmc.kernels.base import (
    Answer,
    Ask,
    CrystalState,
    KernelStages,
    MoveInfo,
    compose_kernel,
)
from cfmc.kernels.block import BlockDrawFn, BlockDraws


class IsirPending(NamedTuple):
    """i-SIR's draws waiting for the conditioners."""

    draws: BlockDraws
    log_prior: jax.Array  # (tries,) untempered prior part at each draw
    ok: jax.Array  # (tries,) valid draws with finite prior (asked of the conditioners)
    key: jax.Array  # the pick's key


def build_isir_stages(draws: BlockDrawFn, tries: int, conditioned: bool = True
                      ) -> KernelStages:
    """i-SIR as `KernelStages` (two halves around the host conditioners, which evaluate every
    valid draw of every chain in one call); `build_isir_kernel` composes them."""
    if tries < 1:
        raise ValueError(f"i-SIR needs at least one try, got {tries}")

    def propose_stage(rng_key, state: CrystalState, prior, constraints, site, step_size,
                      beta=1.0) -> tuple[IsirPending, Ask]:
        key_draw, key_pick = jax.random.split(rng_key)
        d = draws(key_draw, state.position, constraints, site, tries, step_size)
        # one try at a time: under the sampler's vmap over chains each step is a chunk of
        # chains, where a vmap over the tries too made batches 8x as wide and 25 % slower per
        # crystal on a CPU (cache misses)
        lp = jax.lax.map(prior, d.positions).astype(state.log_prior.dtype)
        ok = d.is_valid & jnp.isfinite(lp)
        return IsirPending(d, lp, ok, key_pick), Ask(d.positions, ok & conditioned)

    def accept_stage(state: CrystalState, pending: IsirPending, answer: Answer | None,
                     beta=1.0) -> tuple[CrystalState, MoveInfo]:
        d, lp, ok = pending.draws, pending.log_prior, pending.ok
        if answer is None:
            ll = jnp.zeros_like(lp)
            failed = jnp.zeros(tries, bool)
            values = {}
        else:  # every valid proposal reached the host
            ll, failed, values = answer
            ok &= ~failed
        log_w = jnp.where(ok, beta * (lp + ll) - d.log_q, -jnp.inf)
        log_w = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
        # a current crystal the proposal cannot reach (q = 0) is left only by other moves
        active = jnp.isfinite(d.log_q_current)
        log_w0 = jnp.where(active, beta * state.logdensity - d.log_q_current, 0.0)
        all_w = jnp.concatenate([log_w0[None], log_w])
        pick = jax.random.categorical(pending.key, all_w)
        moved = (pick > 0) & active
        j = jnp.maximum(pick - 1, 0)
        new = CrystalState(jax.tree.map(lambda v: v[j], d.positions), lp[j] + ll[j], lp[j],
                           ll[j], {k: v[j] for k, v in values.items()})
        out = jax.tree.map(lambda a, b: jnp.where(moved, b.astype(a.dtype), a), state, new)
        p_move = jnp.where(active, 1.0 - jax.nn.softmax(all_w)[0], 0.0)
        evaluated = jnp.any(ok) if answer is not None else jnp.zeros((), bool)
        info = MoveInfo(p_move, moved, jnp.any(d.is_valid), active, evaluated,
                        jnp.any(failed), new)
        return out, info

    return KernelStages(propose_stage, accept_stage, conditioned)


def build_isir_kernel(draws: BlockDrawFn, tries: int) -> Callable:
    """i-SIR kernel with the step interface of `build_kernel`: kernel(rng_key, state, target,
    constraints, site, step_size, beta=1) -> (state, info); `step_size` carries the proposal's
    tuned parameters (`draws`' params)."""
    if tries < 1:
        raise ValueError(f"i-SIR needs at least one try, got {tries}")
    return compose_kernel(lambda conditioned: build_isir_stages(draws, tries, conditioned))
