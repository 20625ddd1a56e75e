"""Actor-critic teachers (stacked along a partition axis) and the central actor.

Teachers are one Flax Linen module whose parameters carry a leading axis `[P, ...]`:
`init_stacked` vmaps `init` over P keys and `apply_stacked` vmaps `apply` over params and
inputs (the acme ensemble pattern), so P teachers cost one batched forward pass.
The central policy is an actor only: it never acts during training, so it needs no value.
With feature distillation (Actor-Mimic) it also holds one learned linear map per teacher from
its last hidden layer to that teacher's (`feature_maps`, applied by `map_features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    """`[..., in] -> [..., out]` (and the last hidden layer `[..., hidden]` with
    `with_hidden`); orthogonal init (sqrt 2 hidden, `out_scale` last)."""

    hidden_sizes: Sequence[int]
    out_dim: int
    out_scale: float
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, with_hidden: bool = False) -> Any:
        act = ACTIVATIONS[self.activation]
        for h in self.hidden_sizes:
            x = act(_dense(h, np.sqrt(2))(x))
        out = _dense(self.out_dim, self.out_scale)(x)
        return (out, x) if with_hidden else out


class Actor(nn.Module):
    """Observation `[..., obs]` -> action distribution over `[...]` (and, `with_features`,
    the last hidden layer `[..., hidden]`).

    `feature_maps = P > 0` adds the params `feature_map_kernel [P, hidden, hidden]` and
    `feature_map_bias [P, hidden]`: teacher i's map from this actor's last hidden layer to
    the teacher's (same `hidden_sizes`), fitted with the actor by feature distillation.
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    feature_maps: int = 0

    @nn.compact
    def __call__(self, obs: jax.Array, with_features: bool = False) -> Any:
        out, hidden = MLP(self.hidden_sizes, self.action_dim, 0.01, self.activation,
                          name="pi")(obs, with_hidden=True)
        if self.feature_maps:
            h = self.hidden_sizes[-1]
            init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
            self.param("feature_map_kernel", init, (self.feature_maps, h, h))
            self.param("feature_map_bias", nn.initializers.zeros, (self.feature_maps, h))
        if self.discrete:
            dist = Categorical(out)
        else:  # state-independent log std, as in PPO's continuous-control setting
            log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
            dist = DiagGaussian(out, jnp.broadcast_to(log_std, out.shape))
        return (dist, hidden) if with_features else dist


def map_features(params: Any, hidden: jax.Array) -> jax.Array:
    """Teacher i's map applied to the central features of its states: `hidden [P, n, h]`
    -> `[P, n, h]` (`params`: an `Actor` with `feature_maps = P`)."""
    p = params["params"]
    return (jnp.einsum("pnh,phk->pnk", hidden, p["feature_map_kernel"])
            + p["feature_map_bias"][:, None, :])


class ActorCritic(nn.Module):
    """Observation `[..., obs]` -> (distribution over `[...]`, value `[...]`)."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    def setup(self):
        self.actor = Actor(self.action_dim, self.discrete, self.hidden_sizes, self.activation)
        self.critic = MLP(self.hidden_sizes, 1, 1.0, self.activation)

    def __call__(self, obs: jax.Array, with_features: bool = False) -> tuple[Any, ...]:
        """(distribution, value) or, `with_features`, (distribution, value, actor hidden)."""
        if with_features:
            dist, hidden = self.actor(obs, with_features=True)
            return dist, self.critic(obs)[..., 0], hidden
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
