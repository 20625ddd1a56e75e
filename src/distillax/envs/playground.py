"""Any MuJoCo Playground `MjxEnv` as a distillax `ContextualEnv`: context -> model fields and
task parameters (the `distillax[playground]` extra).

The adapter is `envs/mjx.py`'s `MjxEnvironment`, shared with brax (`envs/brax.py`); its
docstring gives the route, the per-env physics, the bounded actions and termination vs
truncation. What is Playground's: the physics is the env's `mjx_model`, which Playground's
own domain randomisation swaps as `env._mjx_model` (so the adapter sets that, on a copy);
the frame loop is `mujoco_playground._src.mjx_env.step` (a scan whose carry, the MJX `Data`,
holds fields MJX fills with model constants, made `shard_map`-safe like brax's); the time
limit is the env's own `config.episode_length` unless a task sets another. Playground's
training wrapper repeats actions (`action_repeat`); every dm_control-suite env has 1, and an
env with another is refused here rather than silently stepped once per action.

Implementation: since Playground 0.2 every env defaults to `impl="warp"` (MuJoCo Warp, NVIDIA
GPUs only). `load` picks `default_impl()`: "jax" (MJX's pure-JAX pipeline) on machines
without a CUDA GPU, "warp" on one where warp-lang sees a CUDA device. Only the "jax" path has
been run (the development machine has no GPU); on a GPU, pass `impl="jax"` to compare.

Offline: the 25 dm_control-suite envs ship their XML inside the package; the locomotion and
manipulation suites clone a git repository (mujoco_menagerie) at load time, so they need
the network once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from mujoco_playground import MjxEnv, registry

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv
from distillax.envs.mjx import MJX_LOOP_MODULES, MjxEnvironment, as_contextual


@functools.cache
def default_impl() -> str:
    """The MJX implementation for this machine: "warp" where JAX runs on a CUDA GPU and
    warp-lang finds a CUDA device, else "jax" (Playground's "warp" does not run without
    one)."""
    if jax.default_backend() != "gpu":
        return "jax"
    try:
        import warp

        warp.init()
        return "warp" if warp.is_cuda_available() else "jax"
    except Exception:  # no usable warp: MJX's own JAX pipeline runs everywhere
        return "jax"


def load(name: str, impl: str | None = None, **overrides: Any) -> MjxEnv:
    """Playground's `registry.load(name)` with `config_overrides` `{"impl": impl, **overrides}`
    (`impl` None: `default_impl()`)."""
    return registry.load(name, config_overrides={"impl": impl or default_impl(), **overrides})


class PlaygroundEnvironment(MjxEnvironment):
    """A Playground `MjxEnv` as a gymnax `Environment` (`MjxEnvironment`): its model is
    `env._mjx_model` (what its `mjx_model` returns, and what Playground's own domain
    randomisation swaps), its MJX data `State.data`."""

    MODEL, DATA = "_mjx_model", "data"
    LOOP_MODULES = (*MJX_LOOP_MODULES, "mujoco_playground._src.mjx_env")


# What the shipped Playground tasks' presets share (each task's module adds its cells and
# budget, and what it measured). Playground's own PPO (brax's, on GPUs) takes thousands of envs
# and 60M steps; on 2 CPU cores the budget is the physics tables' 400k, so many updates per
# sample instead: 16 envs x 256 steps, 10 epochs x 16 minibatches (160 gradient steps per
# 4,096 env steps; brax PPO's reference settings, `double_pendulum.PRESET`, make 32 per
# 10,240), lr 1e-3 (Playground's), reward x 0.1 (returns <= 1000: value targets ~10).
# Measured (2-core CPU shared with other jobs), one seed, 400k steps, at Playground's own
# cart-pole physics (one context): `ppo` 764 greedy; at 256 envs x 40 steps, 4 epochs x 8
# minibatches, lr 3e-4, it stayed at 197 (a random policy: ~30).
SUITE_PRESET = dict(
    num_envs=16, num_steps=256, num_minibatches=16, update_epochs=10, learning_rate=1e-3,
    gamma=0.99, gae_lambda=0.95, reward_scale=0.1, normalize_obs=True, hidden_sizes=(64, 64),
    ent_coef=0.01, eval_every=1000, eval_contexts=16,
)


def contextual(name: str, env: MjxEnv, space: ContextSpace,
               default_context: tuple[float, ...],
               physics: Callable[[Any, jax.Array], Any] | None = None,
               task: Callable[[jax.Array], jax.Array] | None = None, task_dim: int = 0,
               episode_length: int | None = None) -> ContextualEnv:
    """A Playground env as a `ContextualEnv`.

    `physics(model, context [d]) -> model` returns the context's MJX `Model` (replace only
    what changes, `model.tree_replace({...})`; None: the physics is fixed); `task(context
    [d]) -> [task_dim]` the reset-time task parameters, read by the env's `reset_task(rng,
    task)` (None: none). Both must be pure and jit-able: they run in every step.
    `episode_length` None: the env's own (`config.episode_length`).
    """
    config = getattr(env.unwrapped, "_config", None)
    repeat = int(getattr(config, "action_repeat", 1))
    if repeat != 1:
        raise ValueError(f"Playground env {type(env.unwrapped).__name__}: action_repeat = "
                         f"{repeat} is not supported (1: one physics control step per action)")
    if episode_length is None:
        episode_length = int(getattr(config, "episode_length", 1000))
    penv = PlaygroundEnvironment(env, episode_length=episode_length, task_dim=task_dim,
                                 name=name, physics=physics, default_context=default_context)
    return as_contextual(penv, space, default_context, task)
