"""Running mean / variance of observations (Chan et al. parallel update), as a pytree.

Statistics are frozen during an iteration (rollout and update see the same ones, so the
stored log-probs stay valid) and folded in after it. With `axis_name` the counts, means
and variances are combined across every device's shard, so all replicas stay identical.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    mean: jax.Array  # [..., obs]
    var: jax.Array  # [..., obs]
    count: jax.Array  # [...]


def init_stats(shape: tuple[int, ...]) -> RunningStats:
    return RunningStats(jnp.zeros(shape), jnp.ones(shape), jnp.full(shape[:-1], 1e-4))


def apply(stats: RunningStats, x: jax.Array, enabled: bool) -> jax.Array:
    """Normalise `x [..., obs]` (statistics broadcast from the left) and clip to [-10, 10]."""
    if not enabled:
        return x
    return jnp.clip((x - stats.mean) / jnp.sqrt(stats.var + 1e-8), -10.0, 10.0)


def update(stats: RunningStats, x: jax.Array, batch_axes: tuple[int, ...],
           axis_name: str | None = None) -> RunningStats:
    """Fold the samples of `x` over `batch_axes` into `stats`."""
    n = jnp.asarray(1.0 * jnp.prod(jnp.asarray([x.shape[a] for a in batch_axes])))
    mean = jnp.mean(x, axis=batch_axes)
    sq = jnp.mean(x**2, axis=batch_axes)
    if axis_name is not None:
        mean, sq = jax.lax.pmean((mean, sq), axis_name)
        n = jax.lax.psum(n, axis_name)
    var = jnp.maximum(sq - mean**2, 0.0)
    count = stats.count[..., None]
    total = count + n
    delta = mean - stats.mean
    new_mean = stats.mean + delta * n / total
    m2 = stats.var * count + var * n + delta**2 * count * n / total
    return RunningStats(new_mean, m2 / total, total[..., 0])
