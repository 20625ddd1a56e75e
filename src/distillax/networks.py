"""Actor-critic teachers (stacked along a partition axis) and the central actor.

Teachers are one Flax Linen module whose parameters carry a leading axis `[P, ...]`:
`init_stacked` vmaps `init` over P keys and `apply_stacked` vmaps `apply` over params and
inputs (the acme ensemble pattern), so P teachers cost one batched forward pass.
The central policy is an actor only: it never acts during training, so it needs no value.
With feature distillation (Actor-Mimic) it also holds one learned linear map per teacher from
its last hidden layer to that teacher's (`feature_maps`, applied by `map_features`).

With a memory (`Config.teacher_memory`, `central_memory`) a role is recurrent: `Core` (the
feed-forward torso, then a GRU) feeds a one-layer head. A recurrent module is one step,
`(memory [..., M], x [..., in]) -> (memory', ...)`; `unroll` scans it over a sequence with
the episode resets. The teacher's actor and critic have a core each (as their feed-forward
networks are separate MLPs, rsl_rl's recurrent actor-critic does the same), so the value loss
never moves the policy's memory and a teacher's actor has the central actor's structure.
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
    -> `[P, n, h]` (`params`: an `Actor` or a `RecurrentActor` with `feature_maps = P`)."""
    p = params["params"]
    p = p.get("head", p)  # a recurrent actor's maps are its head's
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


class Core(nn.Module):
    """The feed-forward torso (`hidden_sizes`), then a GRU of `memory_size` units, one step:
    `(memory [..., M], x [..., in]) -> (memory', out [..., M])` (a GRU's output is its state).
    `previous [..., A]`, when given, joins the torso's output at the GRU's input (the previous
    action, `RecurrentActor.reads_action`)."""

    hidden_sizes: Sequence[int]
    memory_size: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, memory: jax.Array, x: jax.Array, previous: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        act = ACTIVATIONS[self.activation]
        for h in self.hidden_sizes:
            x = act(_dense(h, np.sqrt(2))(x))
        if previous is not None:
            x = jnp.concatenate([x, previous], axis=-1)
        return nn.GRUCell(self.memory_size, name="gru")(memory, x)


class RecurrentActor(nn.Module):
    """`Core`, then `Actor`'s head of one hidden layer (of the last torso width, so the
    features that feature distillation reads have the feed-forward actor's size):
    `(memory [..., M], obs) -> (memory', distribution)` (or `(memory', (dist, hidden))` with
    `with_features`).

    With `reads_action` its memory also holds the previous action, `[..., M:]` (`[..., A]`,
    one-hot when discrete; zeros at an episode's start), which the GRU reads beside the
    torso's output, as RL^2's policies do: the central policy learns from actions chosen by
    teachers that may see what it does not (the context), and only an action together with
    the state's answer to it identifies, e.g., a flipped actuator. The step returns only the
    GRU's state; the caller appends the action taken (`Model.central_remember`)."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    memory_size: int = 128
    feature_maps: int = 0
    reads_action: bool = False

    @nn.compact
    def __call__(self, memory: jax.Array, obs: jax.Array, with_features: bool = False) -> Any:
        m = self.memory_size
        previous = memory[..., m:] if self.reads_action else None
        memory, y = Core(self.hidden_sizes, m, self.activation,
                         name="core")(memory[..., :m], obs, previous)
        head = Actor(self.action_dim, self.discrete, tuple(self.hidden_sizes[-1:]),
                     self.activation, self.feature_maps, name="head")
        return memory, head(y, with_features=with_features)


class RecurrentActorCritic(nn.Module):
    """One step of a recurrent teacher: `(memory [..., 2M], obs) -> (memory', distribution,
    value [...])`, plus the actor's hidden layer with `with_features`. The memory is the
    actor's state `[..., :M]`, then the critic's `[..., M:]`."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    memory_size: int = 128

    def setup(self):
        self.actor = RecurrentActor(self.action_dim, self.discrete, self.hidden_sizes,
                                    self.activation, self.memory_size)
        self.critic_core = Core(self.hidden_sizes, self.memory_size, self.activation)
        self.critic = MLP(tuple(self.hidden_sizes[-1:]), 1, 1.0, self.activation)

    def __call__(self, memory: jax.Array, obs: jax.Array,
                 with_features: bool = False) -> tuple[Any, ...]:
        m = self.memory_size
        m_actor, out = self.actor(memory[..., :m], obs, with_features=with_features)
        m_critic, y = self.critic_core(memory[..., m:], obs)
        out = out if with_features else (out,)
        return (jnp.concatenate([m_actor, m_critic], axis=-1), out[0],
                self.critic(y)[..., 0], *out[1:])

    def value(self, memory: jax.Array, obs: jax.Array) -> jax.Array:
        """The value `[...]` at `obs` with the critic's state `memory[..., M:]` (the actor's
        half is not read): e.g. of a truncated episode's true last observation."""
        _, y = self.critic_core(memory[..., self.memory_size:], obs)
        return self.critic(y)[..., 0]


def unroll(step: Any, memory: Any, xs: Any, reset: jax.Array) -> tuple[Any, Any]:
    """Scan a recurrent `step(memory, x_t) -> (memory', y_t)` over the leading time axis of
    `xs` (leaves `[T, ...]`) from `memory [..., M]`, zeroing the memory before step t where
    `reset [T, ...]` (an episode begins at t: the previous step ended one). The rollout resets
    its carried memory the same way, after the step that ended an episode, so this recomputes
    the rollout's states. Returns (the memory after T steps, `ys` leaves `[T, ...]`)."""

    def body(m, x):
        x_t, reset_t = x
        return step(jnp.where(reset_t[..., None], 0.0, m), x_t)

    return jax.lax.scan(body, memory, (xs, reset))
