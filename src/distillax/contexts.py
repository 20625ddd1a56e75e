"""Context spaces, their sampler rho(c), and partitioners (k-means, grid, tasks).

A context is a flat float vector `[d]`. A `ContextSpace` is a product of per-dimension
factors (uniform on [low, high], or uniform over a finite set of values such as a sign), or
a finite task set (the whole vector is one of K rows). Partitions are Voronoi cells of
centres in a scaled space where every dimension spans [0, 1], so no dimension dominates the
distance by its units. Sampling inside a cell is rejection sampling with a bounded number
of candidates drawn from rho, falling back to a stored member of the cell, so it never
loops without bound inside jit.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from distillax.xla import RUN_ONCE


@dataclasses.dataclass(frozen=True)
class ContextSpace:
    """A context space and its distribution rho.

    `values[k]` is None for a dimension uniform on [low[k], high[k]], or the finite set of
    values it takes with equal probability. `tasks`, if set, replaces the product: rho is
    uniform over its rows. `cyclic[k]`: dimension k is periodic with period high - low (an
    angle), so its features are a point on a circle, not a line (`features`).
    """

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    values: tuple[tuple[float, ...] | None, ...] = ()
    tasks: tuple[tuple[float, ...], ...] | None = None
    cyclic: tuple[bool, ...] = ()

    def __post_init__(self):
        if not self.values:
            object.__setattr__(self, "values", (None,) * len(self.names))
        if not self.cyclic:
            object.__setattr__(self, "cyclic", (False,) * len(self.names))
        d = len(self.names)
        if not (len(self.low) == len(self.high) == len(self.values) == len(self.cyclic) == d):
            raise ValueError(f"context space {self.names}: low/high/values/cyclic need {d} "
                             "entries")
        for n, lo, hi in zip(self.names, self.low, self.high):
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"context dim `{n}`: bounds [{lo}, {hi}] need finite low < high")
        if self.tasks is not None and any(len(t) != d for t in self.tasks):
            raise ValueError(f"context space {self.names}: every task needs {d} values")

    @property
    def dim(self) -> int:
        return len(self.names)

    def scale(self, c: jax.Array) -> jax.Array:
        """Map contexts `[..., d]` to [0, 1] per dimension."""
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        return (c - low) / (high - low)

    @property
    def feature_dim(self) -> int:
        """Entries of `features`: one per dimension, two per cyclic one."""
        return self.dim + sum(self.cyclic)

    def features(self, c: jax.Array) -> jax.Array:
        """Network input for a context `[..., d]` -> `[..., feature_dim]`: each dimension
        mapped to [-1, 1], a cyclic one to (cos, sin) of its phase, so that its two ends,
        one and the same context, are one input (as a line they sat at -1 and 1)."""
        u = self.scale(c)
        if not any(self.cyclic):
            return 2.0 * u - 1.0
        cols = []
        for k, cyclic in enumerate(self.cyclic):
            phase = 2.0 * jnp.pi * u[..., k]
            cols += [jnp.cos(phase), jnp.sin(phase)] if cyclic else [2.0 * u[..., k] - 1.0]
        return jnp.stack(cols, axis=-1)

    def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw contexts from rho: `[*shape, d]`."""
        if self.tasks is not None:
            tasks = jnp.asarray(self.tasks, jnp.float32)
            return tasks[jax.random.randint(key, shape, 0, len(self.tasks))]
        cols = []
        for k, key_k in zip(range(self.dim), jax.random.split(key, self.dim)):
            if self.values[k] is None:
                cols.append(jax.random.uniform(key_k, shape, minval=self.low[k],
                                               maxval=self.high[k]))
            else:
                vals = jnp.asarray(self.values[k], jnp.float32)
                cols.append(vals[jax.random.randint(key_k, shape, 0, len(vals))])
        return jnp.stack(cols, axis=-1)

    def spread(self, n: int, key: jax.Array) -> np.ndarray:
        """`[n, d]` held-out contexts spread over the whole space (stratified, not i.i.d.).

        Task sets: the tasks in turn. Products: every combination of the discrete values
        in turn, and a Latin hypercube over the continuous dimensions, so each continuous
        dimension is covered in n equal strata.
        """
        if self.tasks is not None:
            return np.asarray([self.tasks[i % len(self.tasks)] for i in range(n)], np.float32)
        discrete = [k for k in range(self.dim) if self.values[k] is not None]
        combos = list(itertools.product(*[self.values[k] for k in discrete])) or [()]
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
        out = np.zeros((n, self.dim), np.float32)
        for k in range(self.dim):
            if self.values[k] is None:
                u = (rng.permutation(n) + rng.uniform(size=n)) / n
                out[:, k] = self.low[k] + u * (self.high[k] - self.low[k])
        for i in range(n):
            for k, v in zip(discrete, combos[i % len(combos)]):
                out[i, k] = v
        return out


@struct.dataclass
class Partition:
    """P cells of a context space. Arrays only, so it lives in the train state.

    centres: [P, d] in the scaled space; weights: [P] the mass rho_i of each cell;
    pool: [P, K, d] members of each cell (contexts), the fallback of rejection sampling.
    """

    centres: jax.Array
    weights: jax.Array
    pool: jax.Array

    @property
    def size(self) -> int:
        return self.centres.shape[0]


def assign(partition: Partition, space: ContextSpace, c: jax.Array) -> jax.Array:
    """Index of the cell of each context `[..., d]` -> `[...]` (nearest centre)."""
    z = space.scale(c)
    d2 = jnp.sum((z[..., None, :] - partition.centres) ** 2, axis=-1)
    return jnp.argmin(d2, axis=-1)


def sample_in_cell(key: jax.Array, partition: Partition, space: ContextSpace, cell: jax.Array,
                   candidates: int) -> jax.Array:
    """One context from rho restricted to cell `cell` (a scalar index): `[d]`.

    Draws `candidates` contexts from rho and keeps the first inside the cell (exact
    rejection sampling when one lands); otherwise a uniformly chosen pool member.
    """
    key_c, key_p = jax.random.split(key)
    cand = space.sample(key_c, (candidates,))
    inside = assign(partition, space, cand) == cell
    first = jnp.argmax(inside)
    pool = partition.pool[cell]
    fallback = pool[jax.random.randint(key_p, (), 0, pool.shape[0])]
    return jnp.where(jnp.any(inside), cand[first], fallback)


def kmeans(key: jax.Array, z: jax.Array, k: int, iterations: int = 50,
           restarts: int = 4) -> jax.Array:
    """Lloyd's k-means with k-means++ seeding on points `z [N, d]`; best of `restarts`.

    Returns centres `[k, d]`. Deterministic for a key; fixed iteration counts (jit-able).
    """

    def seed(key):
        key0, key_rest = jax.random.split(key)
        first = z[jax.random.randint(key0, (), 0, z.shape[0])]
        centres = jnp.zeros((k, z.shape[1]), z.dtype).at[0].set(first)

        def add(j, carry):
            centres, key = carry
            key, sub = jax.random.split(key)
            d2 = jnp.sum((z[:, None] - centres[None]) ** 2, -1)
            d2 = jnp.min(jnp.where(jnp.arange(k) < j, d2, jnp.inf), axis=1)
            idx = jax.random.categorical(sub, jnp.log(d2 + 1e-12))
            return centres.at[j].set(z[idx]), key

        centres, _ = jax.lax.fori_loop(1, k, add, (centres, key_rest))
        return centres

    def lloyd(centres, _):
        labels = jnp.argmin(jnp.sum((z[:, None] - centres[None]) ** 2, -1), axis=1)
        onehot = jax.nn.one_hot(labels, k, dtype=z.dtype)
        counts = onehot.sum(0)
        means = (onehot.T @ z) / jnp.maximum(counts, 1)[:, None]
        # An empty cluster keeps its centre rather than collapsing to the origin.
        return jnp.where(counts[:, None] > 0, means, centres), None

    def run(key):
        centres, _ = jax.lax.scan(lloyd, seed(key), None, length=iterations)
        inertia = jnp.sum(jnp.min(jnp.sum((z[:, None] - centres[None]) ** 2, -1), axis=1))
        return centres, inertia

    centres, inertia = jax.vmap(run)(jax.random.split(key, restarts))
    return centres[jnp.argmin(inertia)]


def make_partition(key: jax.Array, space: ContextSpace, kind: str, num: int,
                   samples: int = 10_000, grid_shape: tuple[int, ...] = (),
                   pool_size: int = 64) -> Partition:
    """Cut `space` into `num` cells by `kind` in {"kmeans", "grid", "tasks"}.

    Weights rho_i are the fraction of `samples` draws from rho in each cell (exact for
    task sets, where each task is its own cell).
    """
    key_s, key_k, key_p = jax.random.split(key, 3)
    if kind == "tasks":
        tasks = jnp.asarray(space.tasks, jnp.float32)
        if tasks.shape[0] != num:
            raise ValueError(f"partitioner `tasks`: {tasks.shape[0]} tasks but {num} partitions")
        centres = space.scale(tasks)
        weights = jnp.full((num,), 1.0 / num)
        return Partition(centres, weights, jnp.repeat(tasks[:, None], pool_size, axis=1))
    c = space.sample(key_s, (samples,))
    z = space.scale(c)
    if kind == "kmeans" and num == 1:  # one cell: its centre is the mean, no clustering
        centres = jnp.mean(z, axis=0, keepdims=True)
    elif kind == "kmeans":
        centres = jax.jit(kmeans, static_argnums=(2,), compiler_options=RUN_ONCE)(key_k, z, num)
    elif kind == "grid":
        if len(grid_shape) != space.dim:
            raise ValueError(f"partitioner `grid`: grid_shape {grid_shape} needs {space.dim} "
                             f"cell counts, one per context dim {list(space.names)}")
        if int(np.prod(grid_shape)) != num:
            raise ValueError(f"partitioner `grid`: grid_shape {grid_shape} has "
                             f"{int(np.prod(grid_shape))} cells, not {num}")
        axes = [(np.arange(n) + 0.5) / n for n in grid_shape]
        centres = jnp.asarray(list(itertools.product(*axes)), jnp.float32)
    else:
        raise ValueError(f"unknown partitioner `{kind}`; valid: kmeans, grid, tasks")
    partition = Partition(centres, jnp.zeros((num,)), jnp.zeros((num, pool_size, space.dim)))
    labels = np.asarray(assign(partition, space, c))
    counts = np.bincount(labels, minlength=num)
    if np.any(counts == 0):
        raise ValueError(f"partitioner `{kind}`: cells {np.flatnonzero(counts == 0).tolist()} "
                         f"hold none of {samples} samples of rho; use fewer partitions")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key_p)).ravel().tolist())
    c_np = np.asarray(c)
    pool = np.stack([c_np[rng.choice(np.flatnonzero(labels == i), pool_size)]
                     for i in range(num)])
    return Partition(centres, jnp.asarray(counts / samples, jnp.float32), jnp.asarray(pool))
