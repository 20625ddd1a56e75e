"""Any brax `Env` as a distillax `ContextualEnv`: context -> `System` fields and task parameters.

The adapter is `envs/mjx.py`'s `MjxEnvironment`, shared with MuJoCo Playground's envs
(`envs/playground.py`); its docstring gives the route, the per-env physics, the bounded
actions and termination vs truncation. What is brax's: the physics is the env's `sys` (a
brax `System`, i.e. an MJX `Model`), which the adapter swaps on a copy of the env, and
brax's `pipeline_step` (a scan over frames whose carry, the MJX `Data`, holds
fields MJX fills with model constants) is one of the loops made `shard_map`-safe. Measured
cost of per-env physics in benchmarks/brax_results.md (raw stepping, per-env physics at the
default context vs shared physics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from brax.envs.base import PipelineEnv

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv
from distillax.envs.mjx import MJX_LOOP_MODULES, MjxEnvironment, as_contextual


class BraxEnvironment(MjxEnvironment):
    """A brax `PipelineEnv` as a gymnax `Environment` (`MjxEnvironment`): its model is
    `env.sys`, its MJX data `State.pipeline_state`."""

    MODEL, DATA = "sys", "pipeline_state"
    LOOP_MODULES = (*MJX_LOOP_MODULES, "brax.envs.base")

    @property
    def brax_env(self) -> PipelineEnv:
        """The wrapped brax env (`inner_env`, by its library's name)."""
        return self.inner_env

    @property
    def mj_model(self) -> Any:
        return self.inner_env.sys.mj_model


def contextual(name: str, env: PipelineEnv, space: ContextSpace,
               default_context: tuple[float, ...],
               physics: Callable[[Any, jax.Array], Any] | None = None,
               task: Callable[[jax.Array], jax.Array] | None = None, task_dim: int = 0,
               episode_length: int = 1000) -> ContextualEnv:
    """A brax env as a `ContextualEnv`.

    `physics(sys, context [d]) -> sys` returns the context's `System` (replace only what
    changes; None: the physics is fixed); `task(context [d]) -> [task_dim]` the reset-time
    task parameters (None: none). Both must be pure and jit-able: they run in every step.
    """
    benv = BraxEnvironment(env, episode_length=episode_length, task_dim=task_dim, name=name,
                           physics=physics, default_context=default_context)
    return as_contextual(benv, space, default_context, task)
