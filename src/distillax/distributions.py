"""Action distributions: categorical and diagonal Gaussian, as pytrees.

Both have the same methods, so losses are written once. A distribution over a batch has
leading axes `[...]`; its parameters carry one more axis `[..., A]`. Every KL is the closed
form; `kl(p, q)` is KL(p || q).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

LOG_2PI = math.log(2 * math.pi)  # a float: importing this module must not start JAX


@struct.dataclass
class Categorical:
    logits: jax.Array  # [..., A]

    @property
    def log_probs(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """`action [...]` integer -> `[...]`."""
        idx = action.astype(jnp.int32)[..., None]
        return jnp.take_along_axis(self.log_probs, idx, axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        lp = self.log_probs
        return -jnp.sum(jnp.exp(lp) * lp, axis=-1)

    def kl(self, other: Categorical) -> jax.Array:
        lp, lq = self.log_probs, other.log_probs
        return jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.logits, axis=-1)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1)

    @property
    def location(self) -> jax.Array:
        """What `mse` distillation matches: the logits."""
        return self.logits

    def widened(self, scale: jax.Array) -> Categorical:
        """At temperature `scale [...]` (> 1: flatter; noise injection's acting policy)."""
        return Categorical(self.logits / scale[..., None])

    def combine(self, other: Categorical, alpha: float, beta: float) -> Categorical:
        """The Boltzmann policy of `alpha * self.logits + beta * other.logits`."""
        return Categorical(alpha * self.logits + beta * other.logits)


@struct.dataclass
class DiagGaussian:
    mean: jax.Array  # [..., A]
    log_std: jax.Array  # [..., A] (broadcastable)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """`action [..., A]` -> `[...]`."""
        z = (action - self.mean) * jnp.exp(-self.log_std)
        return jnp.sum(-0.5 * z**2 - self.log_std - 0.5 * LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        log_std = jnp.broadcast_to(self.log_std, self.mean.shape)
        return jnp.sum(log_std + 0.5 * (1.0 + LOG_2PI), axis=-1)

    def kl(self, other: DiagGaussian) -> jax.Array:
        var_ratio = jnp.exp(2 * (self.log_std - other.log_std))
        t = ((self.mean - other.mean) * jnp.exp(-other.log_std)) ** 2
        return jnp.sum(0.5 * (var_ratio + t - 1.0) - (self.log_std - other.log_std), axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        return self.mean + jnp.exp(self.log_std) * jax.random.normal(key, self.mean.shape)

    def mode(self) -> jax.Array:
        return self.mean

    @property
    def location(self) -> jax.Array:
        """What `mse` distillation matches: the mean."""
        return self.mean

    def widened(self, scale: jax.Array) -> DiagGaussian:
        """With its std times `scale [...]` (noise injection's acting policy)."""
        return DiagGaussian(self.mean, self.log_std + jnp.log(scale)[..., None])

    def combine(self, other: DiagGaussian, alpha: float, beta: float) -> DiagGaussian:
        """Distral's 2-column policy for Gaussians: the normalised product `self^alpha *
        other^beta` (log-densities add, as logits do), a Gaussian with precision
        `alpha/s1^2 + beta/s2'^2` and the precision-weighted mean.

        `other` (the task column f_i) has its scale read relative to sqrt(beta / (1 - alpha)):
        s2' = exp(log_std) * sqrt(beta / (1 - alpha)). The family of products is the same
        (a constant shift of f_i's log std), but the product of two unit Gaussians is now a
        unit Gaussian, so a 2-column teacher starts from the exploration scale of every other
        method's teachers (a plain product would start at std (alpha + beta)^-1/2, 0.43 at
        alpha 0.5, beta 5). Needs alpha < 1 (`config.validate` checks it).
        """
        p1 = alpha * jnp.exp(-2 * self.log_std)
        p2 = (1.0 - alpha) * jnp.exp(-2 * other.log_std)  # = beta / s2'^2
        precision = p1 + p2
        mean = (p1 * self.mean + p2 * other.mean) / precision
        return DiagGaussian(mean, -0.5 * jnp.log(precision))


Distribution = Categorical | DiagGaussian


def stop_gradient(dist: Distribution) -> Distribution:
    return jax.tree.map(jax.lax.stop_gradient, dist)
