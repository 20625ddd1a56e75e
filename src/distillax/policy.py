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
from distillax.contexts import Partition, assign
from distillax.model import Model, build_model

Policy = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def own_cell(model: Model, partition: Partition) -> Callable[[jax.Array], jax.Array]:
    """`which` for `teacher_policy`: the teacher of each context's own cell, `[N, d] -> [N]`."""
    return lambda context: assign(partition, model.env.space, context)


def central_policy(model: Model, policies: Policies, greedy: bool) -> Policy:
    """`policy(obs [..., obs], context [..., d], key) -> action [...]` of the central policy.

    For method `ppo` (no central policy) the single teacher acts instead.
    """
    if not model.has_central:
        return teacher_policy(model, policies, own_cell(model, policies.partition), greedy)

    def policy(obs, context, key):
        dist = model.central_dist(policies.central, obs, context, policies.central_stats)
        return dist.mode() if greedy else dist.sample(key)

    return policy


def teacher_policy(model: Model, policies: Policies, which: Callable[[jax.Array], jax.Array],
                   greedy: bool) -> Policy:
    """Teachers acting on `obs [..., obs]`, `context [..., d]` (leading axes, or none, are a
    batch of N): row n by teacher `which(context [N, d])[n]`, e.g. `own_cell`."""

    def policy(obs, context, key):
        lead = obs.shape[:-1]
        obs, context = obs.reshape(-1, obs.shape[-1]), context.reshape(-1, context.shape[-1])
        idx = which(context)  # [N]
        pick = lambda x: x[idx]  # noqa: E731  N stacked teachers [N, ...], one input each
        acting = model.acting_params(jax.tree.map(pick, policies.teacher), policies.central)
        dist, _ = model.teachers(acting, obs[:, None], context[:, None],
                                 jax.tree.map(pick, policies.teacher_stats),
                                 policies.central_stats)
        dist = jax.tree.map(lambda x: x[:, 0], dist)
        action = dist.mode() if greedy else dist.sample(key)
        return action.reshape(lead + action.shape[1:])

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
    jitted = jax.jit(central_policy(model, policies, greedy))

    def policy(obs: Any, context: Any, key: jax.Array) -> jax.Array:
        return jitted(jnp.asarray(obs, jnp.float32), jnp.asarray(context, jnp.float32), key)

    policy.config = info.config  # type: ignore[attr-defined]  # what the policy was trained with
    policy.step = info.step  # type: ignore[attr-defined]
    return policy
