"""Acting from a checkpoint: the central policy alone, or the teachers, as plain functions.

    policy = distillax.load_policy("runs/a")            # the latest checkpoint
    action = policy(obs, context, key)                   # obs [..., obs_dim], context [..., d]

Only the parameters, normalisers and partition are read (`checkpoint.restore_policies`), and
only the network definitions are built: no optimizer, environment carry or training code.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from distillax.checkpoint import Policies, RunInfo, restore_policies
from distillax.model import Model, build_model

Policy = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def central_policy(model: Model, policies: Policies, greedy: bool) -> Policy:
    """`policy(obs [..., obs], context [..., d], key) -> action [...]` of the central policy.

    For method `ppo` (no central policy) the single teacher acts instead.
    """
    if not model.has_central:
        return teacher_policy(model, policies, lambda c: jnp.zeros(c.shape[:-1], jnp.int32),
                              greedy)

    def policy(obs, context, key):
        dist = model.central_dist(policies.central, obs, context, policies.central_stats)
        return dist.mode() if greedy else dist.sample(key)

    return policy


def teacher_policy(model: Model, policies: Policies, which: Callable[[jax.Array], jax.Array],
                   greedy: bool) -> Policy:
    """Teachers acting on a batch `obs [N, obs]`, `context [N, d]`: row n by teacher
    `which(context)[n]` (an int array `[N]`), e.g. the teacher of each context's own cell."""

    def policy(obs, context, key):
        idx = which(context)  # [N]
        pick = lambda x: x[idx]  # noqa: E731  N stacked teachers [N, ...], one input each
        acting = model.acting_params(jax.tree.map(pick, policies.teacher), policies.central)
        dist, _ = model.teachers(acting, obs[:, None], context[:, None],
                                 jax.tree.map(pick, policies.teacher_stats),
                                 policies.central_stats)
        dist = jax.tree.map(lambda x: x[:, 0], dist)
        return dist.mode() if greedy else dist.sample(key)

    return policy


def load(directory: str, step: int | None = None,
         seed: int | None = None) -> tuple[RunInfo, Model, Policies]:
    """Config, model and acting parameters of checkpoint `step` (default: latest); `seed`
    (0..S-1) picks one run of a multi-seed checkpoint (config `seeds` = S > 1)."""
    info, policies = restore_policies(directory, step, seed)
    return info, build_model(info.config), policies


def load_policy(directory: str, greedy: bool = False, step: int | None = None,
                seed: int | None = None) -> Policy:
    """The central policy of a checkpoint as a jitted `policy(obs, context, key) -> action`.

    `obs [..., obs_dim]` is the raw environment observation (the stored normaliser is applied
    inside), `context [..., d]` the context vector, `key` a PRNG key (unused when `greedy`,
    which takes the distribution's mode). Leading axes are batch axes, including none.
    A multi-seed checkpoint needs `seed`, the index s of the run (of config seed + s).
    Raises `checkpoint.CheckpointError` if the checkpoint is missing or unreadable.
    """
    info, model, policies = load(directory, step, seed)
    act = central_policy(model, policies, greedy)
    if not model.has_central:
        # The teacher path indexes a batch axis; give a single observation one.
        batched = act

        def act(obs, context, key):
            lead = obs.shape[:-1]
            o, c = obs.reshape(-1, obs.shape[-1]), context.reshape(-1, context.shape[-1])
            a = batched(o, c, key)
            return a.reshape(lead + a.shape[1:])

    jitted = jax.jit(act)

    def policy(obs: Any, context: Any, key: jax.Array) -> jax.Array:
        return jitted(jnp.asarray(obs, jnp.float32), jnp.asarray(context, jnp.float32), key)

    policy.config = info.config  # type: ignore[attr-defined]  # what the policy was trained with
    policy.step = info.step  # type: ignore[attr-defined]
    return policy
