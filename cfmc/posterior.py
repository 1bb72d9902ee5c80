"""The posterior: log p(C|g) + sum_k w_k log p(y_k|C), divided by a temperature.

The prior part is JAX (jitted, batched over chains); conditioners are host callables over a list of
`Crystal` (torch predictors, composition rules), called once for the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfmc.arrays import CrystalArrays


class PriorFunctions(NamedTuple):
    """The prior as pure functions of batched arrays (what the kernels need of it).

    log_prob(arrays) -> object with .total and .lattice (and the other terms), each (B,)
    species_log_probs(arrays) -> (B, N, 119) log p(a_i | tokens before a_i), or None
    sample_lattice(key, arrays, temperature) -> (B, 6) symmetrised lattice, or None
    sample(key, spacegroup, num, **clamps) -> CrystalArrays, or None
    max_sites: site slots of the arrays the prior takes
    """

    log_prob: Callable[[CrystalArrays], Any]
    species_log_probs: Callable[[CrystalArrays], jax.Array] | None = None
    sample_lattice: Callable[..., jax.Array] | None = None
    sample: Callable[..., CrystalArrays] | None = None
    max_sites: int | None = None
    # log_prob and species_log_probs take arrays cut after the last real site (fewer slots than
    # max_sites) and give the same densities: padding after a crystal's end does not enter them
    trims: bool = False


def as_prior(prior: Any, allowed_species: np.ndarray | None = None) -> PriorFunctions:
    """Wrap a `cfmc.priors.CrystalFormer` (or pass `PriorFunctions` through) as pure functions.

    allowed_species, if given, is handed to the prior's log_prob (renormalising the species
    categoricals over it); by default the prior is only restricted, not renormalised, which is the
    exact conditional of the prior given the template's constraints.
    """
    if isinstance(prior, PriorFunctions):
        return prior
    from cfmc import priors

    model = prior
    allowed = None if allowed_species is None else jnp.asarray(allowed_species)

    def allowed_for(arrays):  # a per-site mask cut like arrays cut after their last real site
        if allowed is None or allowed.ndim < 2:
            return allowed
        return allowed[..., : np.shape(arrays.wyckoff)[-1], :]

    def sample(key, spacegroup, num, **clamps):
        return priors.sample(model, key, spacegroup, num, **clamps)

    return PriorFunctions(
        log_prob=lambda arrays: priors.log_prob(model, arrays, allowed_for(arrays)),
        species_log_probs=lambda arrays: priors.species_log_probs(
            model, arrays, allowed_for(arrays)),
        sample_lattice=lambda key, arrays, temperature=1.0: priors.sample_lattice(
            model, key, arrays, temperature=temperature
        ),
        sample=sample if hasattr(priors, "sample") else None,
        max_sites=getattr(getattr(model, "config", None), "max_sites", None),
        trims=True,
    )


class PosteriorTerms(NamedTuple):
    """Every term per crystal; `total` is tempered, the rest are not."""

    total: np.ndarray
    log_prior: np.ndarray  # full prior, lattice term included
    log_likelihood: np.ndarray  # sum_k w_k log p(y_k|C)
    prior_terms: dict[str, np.ndarray]
    conditioner_terms: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    failed: np.ndarray


def _name(c: Any, k: int) -> str:
    name = getattr(c, "name", None) or getattr(c, "__name__", None) or type(c).__name__
    return str(name) if name != "function" else f"conditioner{k}"


class Posterior:
    """log pi(C) = [log p(C|g) (optionally without its lattice term) + sum_k w_k log p(y_k|C)] / T.

    prior: a CrystalFormer model or `PriorFunctions`; conditioners: callables mapping a list of
    `Crystal` to an object with `.logp` (and optionally `.terms`, `.values`, `.failed`) or directly
    to a (B,) array of log-likelihoods.
    """

    def __init__(
        self,
        prior: Any,
        conditioners: Sequence[Callable] = (),
        weights: Sequence[float] | None = None,
        temperature: float = 1.0,
        marginalize_lattice: bool = False,
        allowed_species: np.ndarray | None = None,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.prior = as_prior(prior, allowed_species)
        self.conditioners = tuple(conditioners)
        if weights is None:
            weights = [1.0] * len(self.conditioners)
        if len(weights) != len(self.conditioners):
            raise ValueError(
                f"{len(weights)} weights for {len(self.conditioners)} conditioners"
            )
        self.weights = tuple(float(w) for w in weights)
        self.temperature = float(temperature)
        self.marginalize_lattice = bool(marginalize_lattice)
        names = [_name(c, k) for k, c in enumerate(self.conditioners)]
        self.names = tuple(
            n if names.count(n) == 1 else f"{n}{k}" for k, n in enumerate(names)
        )
        if self.marginalize_lattice:
            lattice_dependent = [n for n, c in zip(self.names, self.conditioners, strict=True)
                                 if getattr(c, "uses_lattice", False)]
            if lattice_dependent:
                logging.getLogger(__name__).warning(
                    "conditioners %s depend on the lattice, but the lattice is marginalised: they "
                    "see the chains' placeholder cell; keep the lattice in the chain instead",
                    ", ".join(lattice_dependent))
        self.chunk_size = 128
        self._prior_part = jax.jit(chunked(self.prior_part, self.chunk_size))
        self._prior_terms = jax.jit(chunked(self.prior.log_prob, self.chunk_size))

    @property
    def has_conditioners(self) -> bool:
        return bool(self.conditioners)

    def prior_part(self, arrays: CrystalArrays) -> jax.Array:
        """(B,) untempered prior term the chains see: log p(C|g), without the lattice factor when
        the lattice is marginalised (it is the last autoregressive factor). Pure JAX."""
        terms = self.prior.log_prob(arrays)
        total = terms.total
        if self.marginalize_lattice:
            total = total - terms.lattice
        return jnp.where(jnp.isnan(total), -jnp.inf, total)

    def site_slots(self, mask: np.ndarray, differ: np.ndarray | None = None) -> int:
        """Site slots that site moves of a batch (site `mask` (..., N)) need: every real site, cut
        to a multiple of SITE_BUCKET (a few compiled shapes), all N when the prior cannot take
        cut arrays or a `differ` pair names a slot beyond the cut."""
        n = int(np.shape(mask)[-1])
        if not self.prior.trims:
            return n
        cut = site_bucket(mask)
        if differ is not None and np.size(differ) and int(np.max(differ)) >= cut:
            return n
        return cut

    def prior_logdensity(self, arrays: CrystalArrays) -> np.ndarray:
        """Jitted `prior_part` (in chunks of chains) on the host."""
        return np.asarray(self._prior_part(_to_jax(arrays)))

    def logdensity_fn(self) -> Callable[[CrystalArrays], jax.Array]:
        """Single-crystal tempered log density for the blackjax-style kernels (prior only)."""
        if self.conditioners:
            raise ValueError(
                "this posterior has host-side conditioners; use cfmc.sweep.Sampler, which calls "
                "them for the whole batch of chains"
            )
        beta = 1.0 / self.temperature

        def logdensity(position: CrystalArrays) -> jax.Array:
            batched = jax.tree.map(lambda x: jnp.asarray(x)[None], position)
            return beta * self.prior_part(batched)[0]

        return logdensity

    def conditioner_logdensity(self, arrays: CrystalArrays):
        """Weighted conditioner log-likelihoods for a batch, on the host, as a
        `cfmc.predictors.ConditionResult`. A conditioner that raises fails the whole batch;
        -inf/NaN fail single crystals."""
        from cfmc.predictors.conditioners import ConditionResult

        b = CrystalArrays(*(np.asarray(f) for f in arrays)).batch_size
        total = np.zeros(b)
        failed = np.zeros(b, bool)
        terms: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        errors: list[str | None] = [None] * b
        if not self.conditioners or b == 0:
            return ConditionResult(total, terms, values, failed, tuple(errors))
        from cfmc.crystal import from_arrays

        crystals = from_arrays(arrays)
        for name, w, c in zip(self.names, self.weights, self.conditioners, strict=True):
            logp, sub_terms, sub_values, sub_failed, sub_errors = _call_conditioner(c, crystals, b)
            bad = sub_failed | ~np.isfinite(logp)
            failed |= bad
            total += w * np.where(bad, 0.0, logp)
            terms[name] = w * logp
            for k, v in sub_terms.items():
                terms[f"{name}.{k}"] = w * v
            values.update(sub_values)
            errors = [e if e is not None else s for e, s in zip(errors, sub_errors, strict=True)]
        total[failed] = -np.inf
        return ConditionResult(total, terms, values, failed, tuple(errors))

    def prior_terms(self, arrays: CrystalArrays) -> dict[str, np.ndarray]:
        """Every term of log p(C|g) (`total` included, lattice term included) for a batch."""
        pt = self._prior_terms(_to_jax(arrays))
        return {k: np.asarray(getattr(pt, k))
                for k in getattr(pt, "_fields", ("total", "lattice"))}

    def __call__(self, arrays: CrystalArrays) -> PosteriorTerms:
        """Every term for a batch: the tempered total and the untempered parts."""
        prior_terms = self.prior_terms(arrays)
        log_prior = prior_terms["total"]
        part = log_prior - prior_terms["lattice"] if self.marginalize_lattice else log_prior
        cond = self.conditioner_logdensity(arrays)
        total = (part + cond.logp) / self.temperature
        return PosteriorTerms(
            total, log_prior, cond.logp, prior_terms, cond.terms, cond.values, cond.failed
        )


SITE_BUCKET = 4  # cut arrays keep a multiple of this many site slots


def site_bucket(mask: np.ndarray, step: int = SITE_BUCKET) -> int:
    """Slots holding every real site of a batch (`mask` (..., N)): the last real slot rounded up
    to a multiple of `step`, at least `step`, at most N."""
    mask = np.asarray(mask, bool)
    n = int(mask.shape[-1])
    real = np.flatnonzero(mask.reshape(-1, n).any(0))
    last = int(real[-1]) + 1 if real.size else 1
    return min(n, -(-last // step) * step)


def trim_sites(arrays: CrystalArrays, n: int) -> CrystalArrays:
    """The first `n` site slots of every per-site field (leading batch axes kept)."""
    return arrays._replace(wyckoff=arrays.wyckoff[..., :n], species=arrays.species[..., :n],
                           coords=arrays.coords[..., :n, :], mask=arrays.mask[..., :n])


def restore_sites(trimmed: CrystalArrays, full: CrystalArrays) -> CrystalArrays:
    """`trimmed`'s slots followed by the slots of `full` beyond them (JAX arrays)."""
    n = trimmed.wyckoff.shape[-1]
    if n == full.wyckoff.shape[-1]:
        return trimmed

    def join(t, f, axis):
        return jnp.concatenate([t, jnp.asarray(f)[(Ellipsis, slice(n, None))
                                                  + (slice(None),) * (-1 - axis)]], axis=axis)

    return trimmed._replace(wyckoff=join(trimmed.wyckoff, full.wyckoff, -1),
                            species=join(trimmed.species, full.species, -1),
                            coords=join(trimmed.coords, full.coords, -2),
                            mask=join(trimmed.mask, full.mask, -1))


def chunked(fn: Callable, chunk_size: int) -> Callable:
    """Apply a batched function to `chunk_size` crystals at a time (one huge batch runs slower
    per crystal on CPU, its intermediates fall out of cache); same results."""

    def run(arrays: CrystalArrays):
        b = arrays.spacegroup.shape[0]

        def one(x):
            out = fn(jax.tree.map(lambda v: v[None], x))
            return jax.tree.map(lambda v: v[0], out)

        return jax.lax.map(one, arrays, batch_size=max(1, min(chunk_size, b)))

    return run


def _to_jax(arrays: CrystalArrays) -> CrystalArrays:
    return CrystalArrays(*(jnp.asarray(f) for f in arrays))


def _call_conditioner(c: Callable, crystals: list, b: int):
    out = c(crystals)
    errors: tuple = (None,) * b
    if hasattr(out, "logp"):
        logp = np.asarray(out.logp, float).reshape(-1)
        terms = _flat(getattr(out, "terms", None))
        values = _flat(getattr(out, "values", None))
        failed = getattr(out, "failed", None)
        failed = np.zeros(b, bool) if failed is None else np.asarray(failed, bool).reshape(-1)
        errors = tuple(getattr(out, "errors", None) or errors)
    else:
        logp = np.asarray(out, float).reshape(-1)
        terms, values, failed = {}, {}, np.zeros(b, bool)
    if logp.shape != (b,) or failed.shape != (b,):
        raise ValueError(
            f"conditioner {_name(c, 0)} returned {logp.shape[0]} values for {b} crystals"
        )
    if len(errors) != b:
        errors = (None,) * b
    return np.where(np.isnan(logp), -np.inf, logp), terms, values, failed, errors


def _flat(d: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, float).reshape(-1) for k, v in (d or {}).items()}
