"""The CrystalFormer transformer (Cao et al. 2025, section 2.1) as Equinox modules.

One crystal is the token sequence

    [start(g), w_1, a_1, x_1, y_1, z_1, ..., w_N, a_N, x_N, y_N, z_N, w_{N+1} = pad]

with the space group g concatenated to every token's embedding. Causal self-attention makes the
output at a token the conditional of the next one: the start token gives the first letter, w_i gives
the species a_i, a_i, x_i and y_i give the coordinates, z_i gives the next letter, and the first
padding letter gives the lattice. Modules here act on one crystal; batches come from `jax.vmap`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .config import PriorConfig
from .exclusion import ExclusionZone

TWO_PI = 2.0 * math.pi
KV = tuple[jax.Array, jax.Array]  # keys and values of one layer


def _trunc_normal(key: jax.Array, shape: tuple[int, ...], scale: float) -> jax.Array:
    return scale * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)


class Dense(eqx.Module):
    """Affine map on the last axis (any leading axes)."""

    weight: jax.Array  # (out, in)
    bias: jax.Array  # (out,)

    def __init__(self, n_in: int, n_out: int, key: jax.Array, scale: float):
        self.weight = _trunc_normal(key, (n_out, n_in), scale)
        self.bias = jnp.zeros((n_out,), jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.weight.T + self.bias


class LayerNorm(eqx.Module):
    """Layer normalisation over the last axis."""

    weight: jax.Array
    bias: jax.Array
    eps: float = eqx.field(static=True, default=1e-5)

    def __init__(self, size: int):
        self.weight = jnp.ones((size,), jnp.float32)
        self.bias = jnp.zeros((size,), jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.weight + self.bias


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    if key is None or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class Attention(eqx.Module):
    """Multi-head causal self-attention with an optional key/value cache for decoding."""

    query: Dense
    key_proj: Dense
    value: Dense
    out: Dense
    n_heads: int = eqx.field(static=True)
    key_size: int = eqx.field(static=True)
    dropout_rate: float = eqx.field(static=True)

    def __init__(self, config: PriorConfig, key: jax.Array):
        kq, kk, kv, ko = jax.random.split(key, 4)
        d, hk = config.model_size, config.n_heads * config.key_size
        s = config.init_scale
        self.query = Dense(d, hk, kq, s)
        self.key_proj = Dense(d, hk, kk, s)
        self.value = Dense(d, hk, kv, s)
        self.out = Dense(hk, d, ko, s)
        self.n_heads, self.key_size = config.n_heads, config.key_size
        self.dropout_rate = config.attn_dropout_rate

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.n_heads, self.key_size)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """x: (L, D) -> (L, D), position t attending to positions <= t."""
        n = x.shape[0]
        # Head-major (H, L, K) layout: batched products whose batch axes lead run several times
        # faster on XLA's CPU backend than the (L, H, K) layout of the cache.
        q, k, v = (
            jnp.swapaxes(self._heads(proj(x)), 0, 1)
            for proj in (self.query, self.key_proj, self.value)
        )
        scores = jnp.einsum("htk,hsk->hts", q, k) * (1.0 / math.sqrt(self.key_size))
        causal = jnp.tril(jnp.ones((n, n), bool))
        weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        weights = _dropout(weights, self.dropout_rate, key)
        h = jnp.einsum("hts,hsk->htk", weights, v)
        return self.out(jnp.swapaxes(h, 0, 1).reshape(n, -1))

    def step(
        self, x: jax.Array, cache: KV, start: jax.Array, local: list[KV]
    ) -> tuple[jax.Array, KV]:
        """One token x (D,) during decoding; returns its output and its own (key, value).

        It attends to the cache (L, H, K) at positions below `start` (read only), then to the
        tokens decoded since (`local`, a list of (key, value) of shape (H, K)), then to itself.
        Reading and writing one cache in a step makes XLA copy it, so writes happen in batches
        (`CrystalFormer.write_cache`).
        """
        q = self._heads(self.query(x))
        k, v = self._heads(self.key_proj(x)), self._heads(self.value(x))
        lk = jnp.stack([*(kv[0] for kv in local), k])  # (T, H, K)
        lv = jnp.stack([*(kv[1] for kv in local), v])
        scale = 1.0 / math.sqrt(self.key_size)
        s_cache = jnp.einsum("hk,shk->hs", q, cache[0]) * scale
        s_cache = jnp.where(jnp.arange(cache[0].shape[0]) < start, s_cache, -jnp.inf)
        s_local = jnp.einsum("hk,thk->ht", q, lk) * scale
        w = jax.nn.softmax(jnp.concatenate([s_cache, s_local], axis=-1), axis=-1)
        n = cache[0].shape[0]
        h = jnp.einsum("hs,shk->hk", w[:, :n], cache[1]) + jnp.einsum("ht,thk->hk", w[:, n:], lv)
        return self.out(h.reshape(-1)), (k, v)


class Block(eqx.Module):
    """Pre-layer-norm transformer block: attention then a GELU MLP, both residual."""

    ln1: LayerNorm
    attn: Attention
    ln2: LayerNorm
    fc1: Dense
    fc2: Dense
    dropout_rate: float = eqx.field(static=True)

    def __init__(self, config: PriorConfig, key: jax.Array):
        ka, k1, k2 = jax.random.split(key, 3)
        d, s = config.model_size, config.init_scale
        self.ln1, self.ln2 = LayerNorm(d), LayerNorm(d)
        self.attn = Attention(config, ka)
        self.fc1 = Dense(d, config.widening_factor * d, k1, s)
        self.fc2 = Dense(config.widening_factor * d, d, k2, s)
        self.dropout_rate = config.dropout_rate

    def _mlp(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(self.ln2(x))))

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        k1, k2, k3 = jax.random.split(key, 3) if key is not None else (None, None, None)
        x = x + _dropout(self.attn(self.ln1(x), k1), self.dropout_rate, k2)
        return x + _dropout(self._mlp(x), self.dropout_rate, k3)

    def step(self, x: jax.Array, cache: KV, start: jax.Array, local: list[KV]):
        h, kv = self.attn.step(self.ln1(x), cache, start, local)
        x = x + h
        return x + self._mlp(x), kv


class CrystalFormer(eqx.Module):
    """Space-group-informed autoregressive transformer over (w, a, x, y, z) site tokens."""

    g_embed: jax.Array  # (230, E)
    w_embed: jax.Array  # (28, E)
    a_embed: jax.Array  # (119, E)
    pos_embed: jax.Array  # (seq_len, D)
    start_proj: Dense
    w_proj: Dense
    a_proj: Dense
    coord_proj: tuple[Dense, Dense, Dense]
    blocks: tuple[Block, ...]
    ln_out: LayerNorm
    w_head: Dense
    a_head: Dense
    coord_head: Dense
    lattice_head: Dense
    exclusion: ExclusionZone | None
    config: PriorConfig = eqx.field(static=True)

    def __init__(self, config: PriorConfig, key: jax.Array):
        keys = iter(jax.random.split(key, 16 + config.n_layers))
        c, s = config, config.init_scale
        e, d = c.embed_size, c.model_size
        self.config = c
        self.g_embed = _trunc_normal(next(keys), (230, e), s)
        self.w_embed = _trunc_normal(next(keys), (c.num_letters, e), s)
        self.a_embed = _trunc_normal(next(keys), (c.num_species, e), s)
        self.pos_embed = _trunc_normal(next(keys), (c.seq_len, d), s)
        self.start_proj = Dense(e, d, next(keys), s)
        self.w_proj = Dense(2 * e + 1, d, next(keys), s)
        self.a_proj = Dense(2 * e, d, next(keys), s)
        self.coord_proj = tuple(Dense(e + 2 * c.Nf, d, next(keys), s) for _ in range(3))
        self.blocks = tuple(Block(c, next(keys)) for _ in range(c.n_layers))
        self.ln_out = LayerNorm(d)
        self.w_head = Dense(d, c.num_letters, next(keys), s)
        self.a_head = Dense(d, c.num_species, next(keys), s)
        self.coord_head = Dense(d, 3 * c.Kx, next(keys), s)
        self.lattice_head = Dense(d, c.Kl + 12 * c.Kl, next(keys), s)
        self.exclusion = ExclusionZone() if c.exclusion else None

    # --- token embeddings (any leading axes) ---------------------------------------------------

    def embed_start(self, g: jax.Array) -> jax.Array:
        return self.start_proj(self.g_embed[g - 1])

    def embed_letter(self, g: jax.Array, w: jax.Array, mult: jax.Array) -> jax.Array:
        ge = jnp.broadcast_to(self.g_embed[g - 1], (*jnp.shape(w), self.config.embed_size))
        feats = [ge, self.w_embed[w], jnp.log1p(mult.astype(jnp.float32))[..., None]]
        return self.w_proj(jnp.concatenate(feats, axis=-1))

    def embed_species(self, g: jax.Array, a: jax.Array) -> jax.Array:
        ge = jnp.broadcast_to(self.g_embed[g - 1], (*jnp.shape(a), self.config.embed_size))
        return self.a_proj(jnp.concatenate([ge, self.a_embed[a]], axis=-1))

    def embed_coord(self, g: jax.Array, x: jax.Array, axis: int) -> jax.Array:
        k = jnp.arange(1, self.config.Nf + 1, dtype=jnp.float32)
        phase = TWO_PI * x[..., None] * k
        ge = jnp.broadcast_to(self.g_embed[g - 1], (*jnp.shape(x), self.config.embed_size))
        feats = jnp.concatenate([ge, jnp.cos(phase), jnp.sin(phase)], axis=-1)
        return self.coord_proj[axis](feats)

    def embed(self, g: jax.Array, w: jax.Array, a: jax.Array, xyz: jax.Array, mult: jax.Array):
        """Token embeddings (5N+2, D) of one crystal with N site slots (positions added)."""
        n = w.shape[0]
        site = jnp.stack(
            [
                self.embed_letter(g, w, mult),
                self.embed_species(g, a),
                *(self.embed_coord(g, xyz[:, k], k) for k in range(3)),
            ],
            axis=1,
        ).reshape(5 * n, -1)
        tail = self.embed_letter(g, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        h = jnp.concatenate([self.embed_start(g)[None], site, tail[None]], axis=0)
        return h + self.pos_embed[: 5 * n + 2]

    # --- the transformer ------------------------------------------------------------------------

    def __call__(self, h: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Embedded tokens (L, D) -> final hidden states (L, D); dropout only when key is given."""
        keys = (
            jax.random.split(key, len(self.blocks))
            if key is not None
            else [None] * len(self.blocks)
        )
        for block, k in zip(self.blocks, keys, strict=True):
            h = block(h, k)
        return self.ln_out(h)

    def init_cache(self) -> tuple[tuple[jax.Array, jax.Array], ...]:
        c = self.config
        z = jnp.zeros((c.seq_len, c.n_heads, c.key_size), jnp.float32)
        return tuple((z, z) for _ in self.blocks)

    def step(self, x: jax.Array, cache, start: jax.Array, local: list[list[KV]], pos: jax.Array):
        """Decode one embedded token x (D,) at position `pos` (position embedding added here).

        cache: per layer (keys, values) valid below `start`; local: per layer, the (key, value)
        of the tokens decoded since `start`. Returns the final hidden state and this token's
        (key, value) per layer.
        """
        h = x + self.pos_embed[pos]
        kvs = []
        for block, layer_cache, layer_local in zip(self.blocks, cache, local, strict=True):
            h, kv = block.step(h, layer_cache, start, layer_local)
            kvs.append(kv)
        return self.ln_out(h), kvs

    @staticmethod
    def write_cache(cache, local: list[list[KV]], start: jax.Array):
        """Write the decoded tokens' (key, value) into the cache at positions start, start+1..."""
        out = []
        for (ck, cv), layer_local in zip(cache, local, strict=True):
            k = jnp.stack([kv[0] for kv in layer_local])
            v = jnp.stack([kv[1] for kv in layer_local])
            out.append(
                (
                    jax.lax.dynamic_update_slice(ck, k, (start, 0, 0)),
                    jax.lax.dynamic_update_slice(cv, v, (start, 0, 0)),
                )
            )
        return tuple(out)


def count_parameters(model: CrystalFormer) -> int:
    """Number of trainable scalars."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(np.prod(x.shape) for x in leaves))


def with_fourier_features(model: CrystalFormer, nf: int) -> CrystalFormer:
    """The same model with `nf` >= config.Nf coordinate frequencies: the new frequencies enter
    with zero weights, so densities are unchanged until training uses them (finer positional
    resolution for a trained prior without starting over)."""
    old = model.config.Nf
    if nf < old:
        raise ValueError(f"cannot drop Fourier frequencies ({old} -> {nf})")
    if nf == old:
        return model
    e = model.config.embed_size

    def widen(proj: Dense) -> Dense:
        # Feature columns: [space group (e), cos k=1..Nf, sin k=1..Nf]; new k go after each block.
        w, zeros = proj.weight, jnp.zeros((proj.weight.shape[0], nf - old), proj.weight.dtype)
        cols = [w[:, :e], w[:, e : e + old], zeros, w[:, e + old :], zeros]
        return eqx.tree_at(lambda d: d.weight, proj, jnp.concatenate(cols, axis=1))

    wider = eqx.tree_at(lambda m: m.coord_proj, model, tuple(widen(p) for p in model.coord_proj))
    return _with_config(jax.tree_util.tree_leaves(wider), model.config.replace(Nf=nf))


def with_exclusion_zone(model: CrystalFormer, zone: ExclusionZone | None = None) -> CrystalFormer:
    """The same transformer with an exclusion zone around earlier atoms (`priors.exclusion`) in
    each site's last free coordinate; the zone's three scalars are then trained (fine-tuning)."""
    if model.exclusion is not None:
        return model
    zone = zone if zone is not None else ExclusionZone()
    leaves = [*jax.tree_util.tree_leaves(model), *jax.tree_util.tree_leaves(zone)]
    return _with_config(leaves, model.config.replace(exclusion=True))


def without_exclusion_zone(model: CrystalFormer) -> CrystalFormer:
    """The same transformer without its exclusion zone (to compare the two densities)."""
    if model.exclusion is None:
        return model
    leaves = jax.tree_util.tree_leaves(eqx.tree_at(lambda m: m.exclusion, model, None))
    return _with_config(leaves, model.config.replace(exclusion=False))


def _with_config(leaves: list, config: PriorConfig) -> CrystalFormer:
    # The config is a static field: put the arrays into a skeleton built with the new one (the
    # exclusion zone is the last field, so its leaves come last).
    skeleton = eqx.filter_eval_shape(CrystalFormer, config, jax.random.PRNGKey(0))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(skeleton), leaves)
