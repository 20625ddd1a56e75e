"""Actor-critic teachers (stacked along a partition axis) and the central actor.

Teachers are one Flax Linen module whose parameters carry a leading axis `[P, ...]`:
`init_stacked` vmaps `init` over P keys and `apply_stacked` vmaps `apply` over params and
inputs (the acme ensemble pattern), so P teachers cost one batched forward pass.
The central policy is an actor only: it never acts during training, so it needs no value.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from distillax.distributions import Categorical, DiagGaussian, Distribution

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale),
                    bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """`[..., in] -> [..., out]`; orthogonal init (sqrt 2 hidden, `out_scale` last)."""

    hidden_sizes: Sequence[int]
    out_dim: int
    out_scale: float
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for h in self.hidden_sizes:
            x = act(_dense(h, np.sqrt(2))(x))
        return _dense(self.out_dim, self.out_scale)(x)


class Actor(nn.Module):
    """Observation `[..., obs]` -> action distribution over `[...]`."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> Distribution:
        out = MLP(self.hidden_sizes, self.action_dim, 0.01, self.activation, name="pi")(obs)
        if self.discrete:
            return Categorical(out)
        # State-independent log std, as in PPO's continuous-control setting.
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return DiagGaussian(out, jnp.broadcast_to(log_std, out.shape))


class ActorCritic(nn.Module):
    """Observation `[..., obs]` -> (distribution over `[...]`, value `[...]`)."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    def setup(self):
        self.actor = Actor(self.action_dim, self.discrete, self.hidden_sizes, self.activation)
        self.critic = MLP(self.hidden_sizes, 1, 1.0, self.activation)

    def __call__(self, obs: jax.Array) -> tuple[Distribution, jax.Array]:
        return self.actor(obs), self.critic(obs)[..., 0]

    def value(self, obs: jax.Array) -> jax.Array:
        return self.critic(obs)[..., 0]

    def policy(self, obs: jax.Array) -> Distribution:
        return self.actor(obs)


def init_stacked(module: nn.Module, key: jax.Array, num: int, obs: jax.Array) -> Any:
    """Params of `num` independent copies of `module`, stacked: leaves `[num, ...]`."""
    return jax.vmap(module.init, in_axes=(0, None))(jax.random.split(key, num), obs)


def apply_stacked(module: nn.Module, params: Any, x: jax.Array, **kwargs: Any) -> Any:
    """Apply stacked params `[P, ...]` to inputs `[P, ...]`: one vmapped forward pass."""
    return jax.vmap(lambda p, xi: module.apply(p, xi, **kwargs))(params, x)
