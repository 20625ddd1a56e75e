"""Acting in training: teachers roll out in their partitions; GAE. (Held-out episodes:
`evaluation.episode_returns`.)

`rollout` scans over T steps and vmaps over P partitions x B envs. Its arguments are the
teachers' params, never the central policy's: the central policy does not act during
training. Every env carries its own PRNG key, so a rollout is the same whichever device
holds which envs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from distillax.contexts import Partition, sample_in_cell
from distillax.envs.base import ContextualEnv, Step


@struct.dataclass
class EnvCarry:
    """Per-env state, every leaf `[P, B, ...]` (the env axis is what devices split)."""

    state: Any  # the gymnax env state
    obs: jax.Array  # [P, B, obs] raw observation to act on
    context: jax.Array  # [P, B, d] the context of the running episode
    key: jax.Array  # [P, B, 2] each env's own PRNG key
    episode_return: jax.Array  # [P, B] return so far in the running episode
    last_return: jax.Array  # [P, B] return of the last completed episode
    episodes: jax.Array  # [P, B] completed episodes
    episode_step: jax.Array  # [P, B] steps since the running episode began (t in gamma^t)
    # [P, B, 2M] recurrent teachers' memory to act with (zeros at an episode's first step);
    # None for feed-forward teachers
    teacher_memory: Any = None
    # [P, B, M] a recurrent central policy's memory at the same step, advanced along the
    # teachers' trajectories by the trainer (`trainer._batch`), never by acting; else None
    central_memory: Any = None


@struct.dataclass
class Transition:
    """A rollout, every leaf `[P, T, B, ...]` (time-major within a partition)."""

    obs: jax.Array  # raw teacher observation s_t
    context: jax.Array  # c_t, for the central policy's input
    action: jax.Array
    log_prob: jax.Array  # log pi_i,old(a_t | s_t)
    value: jax.Array  # V_i(s_t)
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_value: jax.Array  # V_i(true s_{t+1}); used only where truncated
    episode_step: jax.Array  # t, the step's index within its episode


def over_envs(f: Callable[..., Any]) -> Callable[..., Any]:
    """`f` on one env, applied to every env of `[P, B, ...]` leaves as one vmap over P x B.

    Same values as `vmap(vmap(f))`, but the env's function is batched once: vmap re-traces a
    jitted function's jaxpr at each level, and for an MJX step or reset that is seconds of
    tracing per level."""

    def batched(*args):
        P, B = jax.tree.leaves(args)[0].shape[:2]
        flat = jax.tree.map(lambda x: x.reshape((P * B,) + x.shape[2:]), args)
        return jax.tree.map(lambda x: x.reshape((P, B) + x.shape[1:]), jax.vmap(f)(*flat))

    return batched


def noisy_envs(num_envs: int, every: int) -> jax.Array:
    """`[num_envs]` bool: the envs of a cell that act with injected noise, the last of every
    `every` (0: none). Each device holds a slice of the env axis whose length `every` divides
    (`config.validate`), so the local pattern is the global one."""
    if not every:
        return jnp.zeros(num_envs, bool)
    return jnp.arange(num_envs) % every == every - 1


def acting_envs(x: jax.Array, every: int, axis: int) -> jax.Array:
    """`x` without the noisy envs (`noisy_envs`) along its env `axis`, or along a flattened
    (time, env) axis whose envs are innermost: `[..., n, ...] -> [..., n (every - 1) / every,
    ...]`. What the teachers' own terms read; 0: `x` itself."""
    if not every:
        return x
    shape = x.shape
    grouped = x.reshape(shape[:axis] + (shape[axis] // every, every) + shape[axis + 1:])
    kept = jax.lax.slice_in_dim(grouped, 0, every - 1, axis=axis + 1)
    return kept.reshape(shape[:axis] + (-1,) + shape[axis + 1:])


def init_envs(key: jax.Array, env: ContextualEnv, partition: Partition, envs_per_cell: int,
              candidates: int, memory: tuple[Any, Any] = (None, None)) -> EnvCarry:
    """Reset `envs_per_cell` envs in every cell, each in a context drawn from its cell;
    `memory`: the (teacher, central) memory of fresh episodes (`Model.initial_memory`)."""
    P = partition.size
    keys = jax.random.split(key, P * envs_per_cell).reshape(P, envs_per_cell, -1)
    cells = jnp.broadcast_to(jnp.arange(P)[:, None], (P, envs_per_cell))

    def one(key, cell):
        key, k_ctx, k_reset = jax.random.split(key, 3)
        context = sample_in_cell(k_ctx, partition, env.space, cell, candidates)
        obs, state = env.reset(k_reset, context)
        return key, context, obs, state

    keys, contexts, obs, states = over_envs(one)(keys, cells)
    zeros = jnp.zeros((P, envs_per_cell))
    return EnvCarry(state=states, obs=obs, context=contexts, key=keys, episode_return=zeros,
                    last_return=zeros, episodes=zeros,
                    episode_step=jnp.zeros((P, envs_per_cell), jnp.int32),
                    teacher_memory=memory[0], central_memory=memory[1])


def rollout(teacher_params: Any, carry: EnvCarry, partition: Partition,
            act: Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]],
            value_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
            env: ContextualEnv, num_steps: int, candidates: int, noise_every: int = 0,
            noise_scale: jax.Array | float = 1.0) -> tuple[EnvCarry, Transition]:
    """T steps of every teacher in its own partition.

    `act(params, obs [P, B, obs], context [P, B, d]) -> (dist, value)` and `value_fn` (same
    inputs -> `[P, B]`) close over the teacher network and its input normalisation.
    Recurrent teachers (`carry.teacher_memory` not None) take the memory as a fourth argument
    of both and `act` returns the new memory third; the carried memory is zeroed after a
    step that ended an episode (termination or truncation, so at every context redraw).
    Noise injection: the envs `noisy_envs(B, noise_every)` act with the teacher's std (or
    temperature) times `noise_scale`; every env stores the teacher's own log-prob.
    Returns the carry after T steps and the transitions `[P, T, B, ...]`.
    """

    def step(carry: EnvCarry, _):
        keys = jax.vmap(jax.vmap(lambda k: jax.random.split(k, 4)))(carry.key)
        key, k_act, k_step, k_ctx = (keys[:, :, i] for i in range(4))
        recurrent = carry.teacher_memory is not None
        dist, value, memory = _act(act, teacher_params, carry)
        behaviour = dist
        if noise_every:
            B = carry.obs.shape[1]
            behaviour = dist.widened(jnp.broadcast_to(
                jnp.where(noisy_envs(B, noise_every), noise_scale, 1.0), value.shape))
        action = jax.vmap(jax.vmap(lambda d, k: d.sample(k)))(behaviour, k_act)
        # Every env steps; `reset_ended` then draws a context for just the envs whose
        # episode ended and resets them (as `env.step` would have with that context)
        out = over_envs(env.transition)(k_step, carry.state, action, carry.context)
        done = jnp.logical_or(out.terminated, out.truncated)
        final_value = None
        if recurrent:  # V(true s_{t+1}) reads the critic's state after s_t: taken here (a
            # cond on truncation fails to type under the seeds' vmap inside shard_map)
            final_value = value_fn(teacher_params, out.final_obs, carry.context, memory)
            memory = jnp.where(done[..., None], 0.0, memory)
        out = reset_ended(out, done, k_step, k_ctx, partition, env, candidates)
        ep_return = carry.episode_return + out.reward
        new = EnvCarry(
            state=out.state, obs=out.obs, context=out.context, key=key,
            episode_return=jnp.where(done, 0.0, ep_return),
            last_return=jnp.where(done, ep_return, carry.last_return),
            episodes=carry.episodes + done,
            episode_step=jnp.where(done, 0, carry.episode_step + 1),
            teacher_memory=memory, central_memory=carry.central_memory,
        )
        # final_value is filled in after the scan, from final_obs: one batched critic pass
        # over [P, T, B] instead of one per step (the per-step cost dominates at few envs)
        tr = Transition(obs=carry.obs, context=carry.context, action=action,
                        log_prob=dist.log_prob(action), value=value, reward=out.reward,
                        terminated=out.terminated, truncated=out.truncated,
                        final_value=final_value, episode_step=carry.episode_step)
        return new, (tr, None if recurrent else out.final_obs)

    carry, (traj, final_obs) = jax.lax.scan(step, carry, None, length=num_steps)
    traj, final_obs = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (traj, final_obs))
    if final_obs is None:
        return carry, traj
    return carry, traj.replace(final_value=value_fn(teacher_params, final_obs, traj.context))


def _act(act: Callable[..., Any], params: Any, carry: EnvCarry) -> tuple[Any, Any, Any]:
    """(dist, value, the teachers' memory after the step: None when feed-forward)."""
    if carry.teacher_memory is None:
        return (*act(params, carry.obs, carry.context), None)
    return act(params, carry.obs, carry.context, carry.teacher_memory)


def reset_ended(out: Step, done: jax.Array, k_step: jax.Array, k_ctx: jax.Array,
                partition: Partition, env: ContextualEnv, candidates: int) -> Step:
    """Reset the envs whose episode ended (`done [P, B]`) into a fresh context of their cell.

    `out` is every env's `ContextualEnv.transition` (no reset). For an ended
    env i this draws `sample_in_cell(k_ctx[i], cell)` and resets with the reset key that
    `ContextualEnv.step` splits from `k_step[i]`, so the result is exactly the step with
    that context as `next_context`. Only ended envs pay for the rejection sampling
    (`candidates` draws from rho each): they are gathered in chunks by a `while_loop` that
    runs ceil(#ended / chunk) times, instead of drawing a context for all P x B envs every
    step, which cost most of the rollout (see benchmarks/findings.md).
    """
    P, B = done.shape
    n = P * B
    chunk = min(n, max(8, n // 16))
    flat = lambda x: x.reshape((n,) + x.shape[2:])  # noqa: E731
    padded = -(-n // chunk) * chunk
    count = jnp.sum(done)
    k_step, k_ctx = flat(k_step), flat(k_ctx)

    def draw(k_ctx, k_step, cell):
        context = sample_in_cell(k_ctx, partition, env.space, cell, candidates)
        _, k_reset = jax.random.split(k_step)  # as ContextualEnv.step splits its key
        obs, state = env.reset(k_reset, context)
        return obs, state, context

    def redraw(out: Step) -> Step:
        ended = jnp.nonzero(done.reshape(n), size=padded, fill_value=n)[0]  # then n: no env

        def body(x):
            c, acc = x
            ids = jax.lax.dynamic_slice(ended, (c * chunk,), (chunk,))
            safe = jnp.minimum(ids, n - 1)
            new = jax.vmap(draw)(k_ctx[safe], k_step[safe], safe // B)
            acc = jax.tree.map(lambda a, v: a.at[ids].set(v, mode="drop"), acc, new)
            return c + 1, acc

        init = (flat(out.obs), jax.tree.map(flat, out.state), flat(out.context))
        _, (obs, state, context) = jax.lax.while_loop(lambda x: x[0] * chunk < count, body,
                                                      (jnp.zeros((), jnp.int32), init))
        unflat = lambda x: x.reshape((P, B) + x.shape[1:])  # noqa: E731
        return out.replace(obs=unflat(obs), state=jax.tree.map(unflat, state),
                           context=unflat(context))

    # Most steps end no episode: skipping the gather then saves a quarter of the rollout
    # at 4-64 envs (benchmarks/findings.md). Under a vmap over seeds (`seeds > 1`) the cond
    # becomes a select that always runs `redraw`: no saving there, same results.
    return jax.lax.cond(count > 0, redraw, lambda out: out, out)


def episode_starts(terminated: jax.Array, truncated: jax.Array) -> jax.Array:
    """`[P, T, B]` -> `[P, T, B]` bool: step t begins a new episode within the rollout (step
    t - 1 ended one), where a recurrent policy's memory is zeroed before acting (`unroll`).
    The first step is never marked: the memory carried into the rollout is already reset."""
    done = jnp.logical_or(terminated, truncated)
    return jnp.concatenate([jnp.zeros_like(done[:, :1]), done[:, :-1]], axis=1)


def gae(reward_t: jax.Array, value_t: jax.Array, terminated_t: jax.Array,
        truncated_t: jax.Array, final_value_t: jax.Array, last_value: jax.Array,
        gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation for one teacher, time-major `[T, B]`.

    `last_value [B]` is V(s_T) after the rollout. An episode that ended at t is never
    bootstrapped through into the next one; a truncated (not terminated) one bootstraps from
    the value of its true final observation. Returns (advantages, returns), `[T, B]`.
    """
    done = jnp.logical_or(terminated_t, truncated_t)
    next_value = jnp.concatenate([value_t[1:], last_value[None]], axis=0)
    bootstrap = jnp.where(done, jnp.where(terminated_t, 0.0, final_value_t), next_value)
    delta = reward_t + gamma * bootstrap - value_t

    def back(adv_tp1, x):
        delta, done = x
        adv = delta + gamma * lam * jnp.where(done, 0.0, adv_tp1)
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(last_value), (delta, done), reverse=True)
    return adv, adv + value_t
