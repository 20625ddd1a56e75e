"""The static pieces of a run, built once from a config: task, networks, optimizers, inputs.

`Model` holds no arrays. Its methods are pure functions of params and inputs; the rollout,
the update and the evaluator all build network inputs here, so every role sees the same
normalisation and context features.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from distillax import envs, normalizer
from distillax.config import Config
from distillax.distributions import Distribution
from distillax.envs import ContextualEnv
from distillax.networks import (
    Actor,
    ActorCritic,
    RecurrentActor,
    RecurrentActorCritic,
    apply_stacked,
    init_stacked,
    unroll,
)
from distillax.normalizer import RunningStats


@dataclasses.dataclass(frozen=True)
class Model:
    config: Config
    env: ContextualEnv
    teacher: ActorCritic | RecurrentActorCritic
    central: Actor | RecurrentActor

    def with_hparams(self, hparams: dict[str, Any]) -> Model:
        """This model reading its numeric coefficients from `hparams` (field name -> value,
        possibly traced: `TrainState.hparams` inside the training program), so a vmapped
        sweep runs each member's values."""
        return dataclasses.replace(self, config=self.config.replace(**hparams))

    @staticmethod
    def _adam(lr: Any, steps: int, anneal: bool) -> optax.GradientTransformation:
        if anneal:  # to 0 at the optimizer's own last step
            lr = optax.linear_schedule(lr, 0.0, steps)
        return optax.adam(lr, eps=1e-5)

    @property
    def teacher_tx(self) -> optax.GradientTransformation:
        """The teachers' Adam. Their gradients are clipped per teacher in the update (see
        `update.clip_per_teacher`), not here."""
        return self._adam(self.config.learning_rate, self.config.num_updates,
                          self.config.anneal_lr)

    @property
    def central_tx(self) -> optax.GradientTransformation:
        """The central policy's global-norm clip and Adam. It steps only in the epochs that
        train it (`update.update`), so its schedule counts those steps: it anneals to 0 at
        the run's end whatever `distill_epochs`."""
        c = self.config
        steps = c.num_iterations * c.central_epochs * c.num_minibatches
        return optax.chain(optax.clip_by_global_norm(c.max_grad_norm),
                           self._adam(c.central_lr, steps, c.anneal_central_lr))

    @property
    def has_central(self) -> bool:
        return self.config.spec.has_central

    @property
    def teacher_in_dim(self) -> int:
        sees = self.config.teacher_sees_context
        return self.env.obs_dim + (self.env.space.feature_dim if sees else 0)

    @property
    def central_in_dim(self) -> int:
        sees = self.config.central_sees_context
        return self.env.obs_dim + (self.env.space.feature_dim if sees else 0)

    def _input(self, obs: jax.Array, context: jax.Array, stats: RunningStats,
               with_context: bool, blind: bool = False) -> jax.Array:
        """Normalised obs, then the context features (as zeros with `blind`)."""
        x = normalizer.apply(stats, obs, self.config.normalize_obs)
        if with_context:
            features = self.env.space.features(context)
            if blind:
                features = jnp.zeros_like(features)
            x = jnp.concatenate([x, features], axis=-1)
        return x

    def teacher_input(self, obs: jax.Array, context: jax.Array, stats: RunningStats) -> jax.Array:
        """`obs [P, ..., obs]`, `context [P, ..., d]`, per-teacher stats `[P, obs]`."""
        expand = lambda s: s.reshape(s.shape[:1] + (1,) * (obs.ndim - 2) + s.shape[1:])  # noqa: E731
        return self._input(obs, context, jax.tree.map(expand, stats),
                           self.config.teacher_sees_context)

    def central_input(self, obs: jax.Array, context: jax.Array, stats: RunningStats) -> jax.Array:
        """`obs [..., obs]`, `context [..., d]`, one set of stats `[obs]`."""
        return self._input(obs, context, stats, self.config.central_sees_context)

    def column_input(self, obs: jax.Array, context: jax.Array, stats: RunningStats) -> jax.Array:
        """The shared central column's input on the teachers' side (`shares_central`):
        `central_input`, but with the context features zeroed where the teachers are
        context-blind, so a 2-column teacher sees no more than any other method's teacher.
        `obs [..., obs]`, `context [..., d]`, the central stats `[obs]`."""
        c = self.config
        return self._input(obs, context, stats, c.central_sees_context,
                           blind=not c.teacher_sees_context)

    @property
    def teacher_memory(self) -> int:
        """Floats of a teacher's memory per env (actor's GRU, then critic's); 0: feed-forward."""
        return 2 * self.config.memory_size if self.config.teacher_memory != "none" else 0

    @property
    def central_memory(self) -> int:
        """Floats of the central policy's memory per env, its GRU's state then the previous
        action (`RecurrentActor.reads_action`); 0: feed-forward (or no central)."""
        c = self.config
        recurrent = c.central_memory != "none" and self.has_central
        return c.memory_size + self.env.action_dim if recurrent else 0

    def central_remember(self, state: jax.Array, action: jax.Array) -> jax.Array:
        """A recurrent central policy's memory `[..., M + A]` after a step: its GRU's new
        `state [..., M]` (`central_dist`'s) and the `action [..., (A)]` taken there, whoever
        took it (one-hot when discrete)."""
        a = (jax.nn.one_hot(action, self.env.action_dim) if self.env.discrete
             else action.astype(state.dtype))
        return jnp.concatenate([state, a], axis=-1)

    def initial_memory(self, lead: tuple[int, ...]) -> tuple[Any, Any]:
        """(teacher, central) memory of fresh episodes, `[*lead, size]` zeros, or None for a
        feed-forward role (so a feed-forward run's state has the structure it always had)."""
        zeros = lambda n: jnp.zeros((*lead, n)) if n else None  # noqa: E731
        return zeros(self.teacher_memory), zeros(self.central_memory)

    @property
    def shares_central(self) -> bool:
        """Every teacher's policy contains the central network as a column (Distral 2-column)."""
        return self.config.spec.shares_central

    def acting_params(self, teacher: Any, central: Any) -> Any:
        """What the teachers act with: their own params, plus (distral2col only) the shared
        central column. Every other method acts without the central params."""
        return (teacher, central) if self.shares_central else teacher

    def teachers(self, acting: Any, obs: jax.Array, context: jax.Array, stats: RunningStats,
                 central_stats: RunningStats | None = None, with_features: bool = False,
                 memory: jax.Array | None = None) -> tuple[Any, ...]:
        """All teachers on their own inputs `[P, ...]` -> (distribution, value `[P, ...]`),
        plus, `with_features`, each teacher's last actor hidden layer `[P, ..., hidden]`.
        Recurrent teachers take one step from `memory [P, ..., 2M]` and return the new
        memory last.

        With a shared central column (distral2col) the policy of teacher i is the Boltzmann
        policy of `alpha * h_c(s) + beta * f_i(s)` (for Gaussians, the normalised product
        `pi_c^alpha * pi_f_i^beta`, `DiagGaussian.combine`), so the central network gets every
        teacher's gradient. h_c reads `column_input` (no context for context-blind teachers);
        the features are those of the teacher's own column f_i.
        """
        own = acting[0] if self.shares_central else acting
        x = self.teacher_input(obs, context, stats)
        if self.teacher_memory:
            out = jax.vmap(lambda p, m, xi: self.teacher.apply(
                p, m, xi, with_features=with_features))(own, memory, x)
            out = (*out[1:], out[0])
        else:
            out = apply_stacked(self.teacher, own, x, with_features=with_features)
        return self._with_column(acting, out, obs, context, central_stats)

    def _with_column(self, acting: Any, out: tuple[Any, ...], obs: jax.Array,
                     context: jax.Array, central_stats: RunningStats | None
                     ) -> tuple[Any, ...]:
        """`out` (the teachers' own distribution first) with, for distral2col, the
        distribution combined with the shared central column's on the same states."""
        if not self.shares_central:
            return out
        h = self.central.apply(acting[1], self.column_input(obs, context, central_stats))
        return (h.combine(out[0], self.config.distral_alpha, self.config.distral_beta),
                *out[1:])

    def teacher_values(self, acting: Any, obs: jax.Array, context: jax.Array,
                       stats: RunningStats, memory: jax.Array | None = None) -> jax.Array:
        """The teachers' values `[P, ...]`; recurrent ones from `memory [P, ..., 2M]`."""
        own = acting[0] if self.shares_central else acting
        x = self.teacher_input(obs, context, stats)
        if self.teacher_memory:
            return jax.vmap(lambda p, m, xi: self.teacher.apply(
                p, m, xi, method=RecurrentActorCritic.value))(own, memory, x)
        return apply_stacked(self.teacher, own, x, method=ActorCritic.value)

    def teacher_sequences(self, acting: Any, start: jax.Array | None, obs: jax.Array,
                          context: jax.Array, reset: jax.Array, stats: RunningStats,
                          with_features: bool = False,
                          central_stats: RunningStats | None = None) -> tuple[Any, ...]:
        """`teachers` along whole sequences `obs [P, T, b, obs]` (time axis 1): the recurrent
        teachers' states recomputed from `start [P, b, 2M]`, the rollout's memory at the
        sequences' first step, reset where `reset [P, T, b]` (`unroll`); gradients flow
        through the scan. Feed-forward teachers ignore `start` and `reset`. Returns
        (distribution, value `[P, T, b]`, and with `with_features` the hidden layer)."""
        if not self.teacher_memory:
            return self.teachers(acting, obs, context, stats, central_stats,
                                 with_features=with_features)
        x = self.teacher_input(obs, context, stats)
        own = acting[0] if self.shares_central else acting

        def one(params, m, x, reset):  # one teacher's [T, b, ...]
            step = lambda m, x_t: (lambda o: (o[0], o[1:]))(  # noqa: E731
                self.teacher.apply(params, m, x_t, with_features=with_features))
            return unroll(step, m, x, reset)[1]

        out = jax.vmap(one)(own, start, x, reset)
        return self._with_column(acting, out, obs, context, central_stats)

    def cross_policies(self, teacher: Any, obs: jax.Array, context: jax.Array,
                       stats: RunningStats) -> Distribution:
        """Every teacher on every partition's states: `obs [P, n, obs]` -> dist `[P, P, n]`,
        indexed [teacher, partition of the states, sample] (P^2 forward passes, vmapped)."""

        def one(params_i, stats_i):
            x = self._input(obs, context, stats_i, self.config.teacher_sees_context)
            return self.teacher.apply(params_i, x, method=ActorCritic.policy)

        return jax.vmap(one)(teacher, stats)

    def central_dist(self, params: Any, obs: jax.Array, context: jax.Array,
                     stats: RunningStats, with_features: bool = False,
                     memory: jax.Array | None = None) -> Any:
        """The central policy on `obs [..., obs]`: its distribution, or with `with_features`
        (distribution, last hidden layer `[..., hidden]`). A recurrent one takes one step
        from `memory [..., M + A]` and returns `(its GRU's state [..., M], that)`: the
        caller appends the action taken (`central_remember`)."""
        x = self.central_input(obs, context, stats)
        if self.central_memory:
            return self.central.apply(params, memory, x, with_features=with_features)
        return self.central.apply(params, x, with_features=with_features)

    def central_sequences(self, params: Any, start: jax.Array | None, obs: jax.Array,
                          context: jax.Array, action: jax.Array, reset: jax.Array,
                          stats: RunningStats, with_features: bool = False
                          ) -> tuple[Any, Any]:
        """The central policy along the teachers' sequences `obs [P, T, b, obs]` (time axis
        1): with a memory, its state runs along them from `start [P, b, M + A]`, reading the
        teachers' `action [P, T, b, (A)]` of each step at the next one, reset where `reset
        [P, T, b]` (the teachers' episode ends). Returns (its memory after the last step
        (None when feed-forward), `central_dist`'s output over `[P, T, b]`)."""
        if not self.central_memory:
            return None, self.central_dist(params, obs, context, stats, with_features)
        time_major = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731  [P, T, ...] <-> [T, P, ...]
        x = time_major(self.central_input(obs, context, stats))

        def step(m, xa):
            state, out = self.central.apply(params, m, xa[0], with_features=with_features)
            return self.central_remember(state, xa[1]), out

        end, out = unroll(step, start, (x, time_major(action)), time_major(reset))
        return end, jax.tree.map(time_major, out)

    def init_params(self, key: jax.Array) -> tuple[Any, Any]:
        """(teacher params `[P, ...]`, central params)."""
        k_t, k_c = jax.random.split(key)
        x_t, x_c = jnp.zeros((self.teacher_in_dim,)), jnp.zeros((self.central_in_dim,))
        m_t, m_c = self.initial_memory(())
        if self.teacher_memory:
            keys = jax.random.split(k_t, self.config.partitions)
            teacher = jax.vmap(self.teacher.init, in_axes=(0, None, None))(keys, m_t, x_t)
        else:
            teacher = init_stacked(self.teacher, k_t, self.config.partitions, x_t)
        central = (self.central.init(k_c, m_c, x_c) if self.central_memory
                   else self.central.init(k_c, x_c))
        return teacher, central


def build_model(config: Config) -> Model:
    """Networks for `config` (validated): builds its task, checking the task's rules first
    (`envs.build`: a `ConfigError` before anything compiles)."""
    env = envs.build(config)
    hidden, act, size = tuple(config.hidden_sizes), config.activation, config.memory_size
    teacher = (RecurrentActorCritic(env.action_dim, env.discrete, hidden, act, size)
               if config.teacher_memory != "none"
               else ActorCritic(env.action_dim, env.discrete, hidden, act))
    # Feature distillation: one map per teacher (an Actor-Mimic regression target each).
    maps = config.partitions if config.feature_coef > 0 else 0
    central = (RecurrentActor(env.action_dim, env.discrete, hidden, act, size, maps,
                              reads_action=True)
               if config.central_memory != "none"
               else Actor(env.action_dim, env.discrete, hidden, act, feature_maps=maps))
    return Model(config, env, teacher, central)
