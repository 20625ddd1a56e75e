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
from distillax.networks import Actor, ActorCritic, apply_stacked, init_stacked
from distillax.normalizer import RunningStats


@dataclasses.dataclass(frozen=True)
class Model:
    config: Config
    env: ContextualEnv
    teacher: ActorCritic
    central: Actor

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
    def shares_central(self) -> bool:
        """Every teacher's policy contains the central network as a column (Distral 2-column)."""
        return self.config.spec.shares_central

    def acting_params(self, teacher: Any, central: Any) -> Any:
        """What the teachers act with: their own params, plus (distral2col only) the shared
        central column. Every other method acts without the central params."""
        return (teacher, central) if self.shares_central else teacher

    def teachers(self, acting: Any, obs: jax.Array, context: jax.Array, stats: RunningStats,
                 central_stats: RunningStats | None = None, with_features: bool = False
                 ) -> tuple[Any, ...]:
        """All teachers on their own inputs `[P, ...]` -> (distribution, value `[P, ...]`),
        plus, `with_features`, each teacher's last actor hidden layer `[P, ..., hidden]`.

        With a shared central column (distral2col) the policy of teacher i is the Boltzmann
        policy of `alpha * h_c(s) + beta * f_i(s)` (for Gaussians, the normalised product
        `pi_c^alpha * pi_f_i^beta`, `DiagGaussian.combine`), so the central network gets every
        teacher's gradient. h_c reads `column_input` (no context for context-blind teachers);
        the features are those of the teacher's own column f_i.
        """
        own = acting[0] if self.shares_central else acting
        out = apply_stacked(self.teacher, own, self.teacher_input(obs, context, stats),
                            with_features=with_features)
        if self.shares_central:
            h = self.central.apply(acting[1], self.column_input(obs, context, central_stats))
            out = (h.combine(out[0], self.config.distral_alpha, self.config.distral_beta),
                   *out[1:])
        return out

    def teacher_values(self, acting: Any, obs: jax.Array, context: jax.Array,
                       stats: RunningStats) -> jax.Array:
        own = acting[0] if self.shares_central else acting
        x = self.teacher_input(obs, context, stats)
        return apply_stacked(self.teacher, own, x, method=ActorCritic.value)

    def cross_policies(self, teacher: Any, obs: jax.Array, context: jax.Array,
                       stats: RunningStats) -> Distribution:
        """Every teacher on every partition's states: `obs [P, n, obs]` -> dist `[P, P, n]`,
        indexed [teacher, partition of the states, sample] (P^2 forward passes, vmapped)."""

        def one(params_i, stats_i):
            x = self._input(obs, context, stats_i, self.config.teacher_sees_context)
            return self.teacher.apply(params_i, x, method=ActorCritic.policy)

        return jax.vmap(one)(teacher, stats)

    def central_dist(self, params: Any, obs: jax.Array, context: jax.Array,
                     stats: RunningStats, with_features: bool = False) -> Any:
        """The central policy on `obs [..., obs]`: its distribution, or with `with_features`
        (distribution, last hidden layer `[..., hidden]`)."""
        return self.central.apply(params, self.central_input(obs, context, stats),
                                  with_features=with_features)

    def init_params(self, key: jax.Array) -> tuple[Any, Any]:
        """(teacher params `[P, ...]`, central params)."""
        k_t, k_c = jax.random.split(key)
        teacher = init_stacked(self.teacher, k_t, self.config.partitions,
                               jnp.zeros((self.teacher_in_dim,)))
        central = self.central.init(k_c, jnp.zeros((self.central_in_dim,)))
        return teacher, central


def build_model(config: Config) -> Model:
    """Networks for `config` (validated): builds its task, checking the task's rules first
    (`envs.build`: a `ConfigError` before anything compiles)."""
    env = envs.build(config)
    hidden, act = tuple(config.hidden_sizes), config.activation
    teacher = ActorCritic(env.action_dim, env.discrete, hidden, act)
    # Feature distillation: one map per teacher (an Actor-Mimic regression target each).
    maps = config.partitions if config.feature_coef > 0 else 0
    central = Actor(env.action_dim, env.discrete, hidden, act, feature_maps=maps)
    return Model(config, env, teacher, central)
