"""The pool a fitted block proposal is refitted to at the end of burn-in: its own weighted pool
and the chains' states.

A proposal fitted before the run (to prior draws weighted towards the posterior) loses chains
that the site moves take to better crystals than its pool holds. At the end of burn-in the run
(`Sampler.end_burn_in`) refits it to the pool and the chains' states, the chains (equal weights)
holding `share` of the weight: a chain's neighbourhood and the other chains' states become
proposable. The proposal is fixed for every recorded sweep, so the recorded chain is exact; the
burn-in draws it depended on are discarded.
"""

from __future__ import annotations

import numpy as np

from cfmc.arrays import CrystalArrays

SHARE = 0.5  # the chains' share of the refitted proposal's weight


def check_share(share: float) -> float:
    if not 0 <= share < 1:
        raise ValueError(f"refit_share must be in [0, 1), got {share}")
    return float(share)


def with_chains(pool: CrystalArrays, log_weights: np.ndarray, chains: CrystalArrays,
                share: float = SHARE) -> tuple[CrystalArrays, np.ndarray]:
    """The pool (its log weights normalised to 1 - share) and the chains (share / B each) as one
    weighted pool, chains last. Host side, deterministic (a resumed run refits alike)."""
    c = CrystalArrays(*(np.asarray(f) for f in chains))
    p = CrystalArrays(*(np.asarray(f).astype(np.asarray(g).dtype)
                        for f, g in zip(pool, c, strict=True)))
    if p.mask.shape[1:] != c.mask.shape[1:]:
        raise ValueError(f"the chains have {c.mask.shape[1]} site slots, the pool "
                         f"{p.mask.shape[1]}")
    lw = np.asarray(log_weights, np.float64)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    top = lw.max()
    lw = lw - top - np.log(np.exp(lw - top).sum()) + np.log1p(-share)
    both = CrystalArrays(*(np.concatenate([a, b]) for a, b in zip(p, c, strict=True)))
    return both, np.concatenate([lw, np.full(len(c.mask), np.log(share / len(c.mask)))])
