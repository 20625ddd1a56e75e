"""Acting: the central policy alone, or the teachers, as plain functions of what acting needs.

    policy = distillax.load_policy("runs/a")            # the latest checkpoint
    action = policy(obs, context, key)                   # obs [..., obs_dim], context [..., d]

`Policies` holds only the parameters, normalisers and partition (what
`checkpoint.restore_policies` reads back, and what `evaluation` plays), so acting needs no
optimizer, environment carry or training code. Reading a checkpoint (`checkpoint.load`,
`checkpoint.load_policy`) is the checkpoint module's: this one never imports orbax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from distillax.contexts import Partition, assign
from distillax.distributions import Distribution
from distillax.model import Model
from distillax.normalizer import RunningStats

Policy = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@struct.dataclass
class Policies:
    """The arrays acting needs, restored without optimizer states or env carries."""

    teacher: Any  # teacher params, leaves [P, ...]
    central: Any  # central params
    teacher_stats: RunningStats  # [P, obs]
    central_stats: RunningStats  # [obs]
    partition: Partition
    # the run's coefficients by field name (`TrainState.hparams`): a sweep member's Distral
    # alpha and beta shape its 2-column teachers' policy; None: the model's config
    hparams: Any = None


def _acting(model: Model, policies: Policies) -> Model:
    return model if policies.hparams is None else model.with_hparams(policies.hparams)


def choose(dist: Distribution, key: jax.Array, greedy: Any) -> jax.Array:
    """The distribution's mode where `greedy`, else a sample. `greedy` is a Python bool, or a
    traced bool scalar (then both are computed and one selected: one compiled program serves
    greedy and sampled evaluation)."""
    if isinstance(greedy, bool):
        return dist.mode() if greedy else dist.sample(key)
    return jnp.where(greedy, dist.mode(), dist.sample(key))


def own_cell(model: Model, partition: Partition) -> Callable[[jax.Array], jax.Array]:
    """`which` for `teacher_policy`: the teacher of each context's own cell, `[N, d] -> [N]`."""
    return lambda context: assign(partition, model.env.space, context)


# One step of a role on a batch: `(obs [N, obs], context [N, d], memory) -> (distribution
# [N], after)`, `after(action [N, ...]) -> memory'` given the action taken (a recurrent
# central policy remembers it, whoever took it); the memory is the role's `[N, size]`
# (`initial_memory`), None when feed-forward (and returned as it came).
Step = Callable[[jax.Array, jax.Array, Any],
                tuple[Distribution, Callable[[jax.Array], Any]]]


def initial_memory(model: Model, n: int, central: bool) -> Any:
    """`[n, size]` zeros: the memory of fresh episodes of the central policy (`central`; for
    a method without one, its single teacher's) or of the teachers; None when feed-forward."""
    teacher, central_memory = model.initial_memory((n,))
    return central_memory if central and model.has_central else teacher


def central_step(model: Model, policies: Policies) -> Step:
    """The central policy's `Step` (for a method without a central policy, the single
    teacher's)."""
    if not model.has_central:
        return teacher_step(model, policies, own_cell(model, policies.partition))
    model = _acting(model, policies)

    def step(obs, context, memory):
        out = model.central_dist(policies.central, obs, context, policies.central_stats,
                                 memory=memory)
        if not model.central_memory:
            return out, lambda action: memory
        return out[1], lambda action: model.central_remember(out[0], action)

    return step


def teacher_step(model: Model, policies: Policies, which: Callable[[jax.Array], jax.Array]
                 ) -> Step:
    """The teachers' `Step`: row n by teacher `which(context [N, d])[n]`, e.g. `own_cell`."""
    model = _acting(model, policies)

    def step(obs, context, memory):
        idx = which(context)  # [N]
        pick = lambda x: jnp.asarray(x)[idx]  # noqa: E731  N stacked teachers [N, ...], one each
        acting = model.acting_params(jax.tree.map(pick, policies.teacher), policies.central)
        out = model.teachers(acting, obs[:, None], context[:, None],
                             jax.tree.map(pick, policies.teacher_stats),
                             policies.central_stats,
                             memory=None if memory is None else memory[:, None])
        memory = out[-1][:, 0] if model.teacher_memory else memory
        return jax.tree.map(lambda x: x[:, 0], out[0]), lambda action: memory

    return step


def _stateless(step: Step) -> Callable[[jax.Array, jax.Array], Distribution]:
    return lambda obs, context: step(obs, context, None)[0]


def central_dist(model: Model, policies: Policies) -> Callable[[jax.Array, jax.Array],
                                                                 Distribution]:
    """`dist(obs [N, obs], context [N, d])`: the feed-forward central policy's action
    distribution `[N]` (for a method without a central policy, the single teacher's)."""
    return _stateless(central_step(model, policies))


def teacher_dist(model: Model, policies: Policies, which: Callable[[jax.Array], jax.Array]
                 ) -> Callable[[jax.Array, jax.Array], Distribution]:
    """`dist(obs [N, obs], context [N, d])`: row n's distribution from feed-forward teacher
    `which(context [N, d])[n]`, e.g. `own_cell`."""
    return _stateless(teacher_step(model, policies, which))


def _acts(dist: Callable[[jax.Array, jax.Array], Distribution], greedy: Any) -> Policy:
    """A policy over any leading axes (or none) from a distribution over a batch `[N]`."""

    def policy(obs, context, key):
        lead = obs.shape[:-1]
        d = dist(obs.reshape(-1, obs.shape[-1]), context.reshape(-1, context.shape[-1]))
        action = choose(d, key, greedy)
        return action.reshape(lead + action.shape[1:])

    return policy


def recurrent_acts(step: Step, greedy: Any) -> Callable[..., tuple[jax.Array, Any]]:
    """`policy(obs [N, obs], context [N, d], key, memory) -> (action [N, ...], memory')`
    from a `Step`: what `evaluation.episodes` plays when the memory is carried."""

    def policy(obs, context, key, memory):
        d, after = step(obs, context, memory)
        action = choose(d, key, greedy)
        return action, after(action)

    return policy


def central_policy(model: Model, policies: Policies, greedy: Any) -> Policy:
    """`policy(obs [..., obs], context [..., d], key) -> action [...]` of the central policy.

    For a method without a central policy (`ppo`) the single teacher acts instead.
    """
    return _acts(central_dist(model, policies), greedy)


def teacher_policy(model: Model, policies: Policies, which: Callable[[jax.Array], jax.Array],
                   greedy: Any) -> Policy:
    """Teachers acting on `obs [..., obs]`, `context [..., d]` (leading axes, or none, are a
    batch of N): row n by teacher `which(context [N, d])[n]`, e.g. `own_cell`."""
    return _acts(teacher_dist(model, policies, which), greedy)


def policy_name(has_central: bool, method: str) -> str:
    """What the acting policy is called in tables, figures and videos: the central policy, or
    the single policy of a method without one (named by its method)."""
    return "central" if has_central else f"{method} policy"
