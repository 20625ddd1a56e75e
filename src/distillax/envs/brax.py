"""Any brax `Env` as a distillax `ContextualEnv`: context -> `System` fields and task parameters.

Route: `BraxEnvironment` is a gymnax `Environment` over a brax `PipelineEnv` whose `EnvParams`
(`BraxParams`) carry what a context sets: the physics (`sys`, a brax `System`, i.e. an MJX
`Model`) and reset-time task parameters (`task`, e.g. a goal). So the unchanged
`ContextualEnv` (its key split, auto-reset into `next_context`, termination vs truncation)
and `rollout.reset_ended` drive brax tasks exactly as they drive gymnax ones, and nothing in
the rollout, the update or the evaluator knows about brax. The alternative, a second
`ContextualEnv` implementation for brax, would duplicate that contract and its tests.

Per-env physics: `to_params(context)` runs inside every step of every env, vmapped over
`[P, B]` contexts, so the replaced `System` leaves (and only those) gain the env axes while
every other leaf stays one shared constant. The brax env reads `self.sys` while it is traced;
`_system` swaps the context's `System` in for that call (what brax's own
`DomainRandomizationVmapWrapper` does), so any `PipelineEnv` works unmodified. Replace only
the fields a context changes (`sys.tree_replace`), and recompute every field MuJoCo derives
from them that the step reads (see `double_pendulum.physics`). Measured cost in
benchmarks/brax_results.md ("context -> System").

Bounded actions: brax actuators take controls in [-1, 1]. The policy stays an unbounded
diagonal Gaussian with its exact log-prob, and the environment clips: `step_env` applies
`clip(a, -1, 1)` before anything else, so the dynamics *and* the reward (brax's control
costs read the action) are functions of the clipped action. The clip is then part of the
MDP, so the policy gradient, every closed-form KL / entropy and the Distral product stay on
one parameterisation; evaluation takes the Gaussian's mean and the env clips it likewise.

Termination vs truncation: `terminated` is the brax env's own `done` (a fall); truncation is
the episode time limit counted here (`BraxState.time`, brax's `EpisodeWrapper` semantics),
so a truncated episode bootstraps from its true final observation (`Step.final_obs`).

brax dynamics are deterministic: the step key is unused, the reset key is brax's `rng`.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
from brax.envs.base import PipelineEnv
from brax.envs.base import State as BraxInnerState
from flax import struct
from gymnax.environments import environment, spaces

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv


@struct.dataclass
class BraxParams:
    """What a context sets: the physics and the reset-time task parameters.

    sys: the brax `System` (MJX `Model`) of this context; task: `[k]` task parameters that
    the env's `reset_task` reads (a goal, a target), `[0]` for pure physics tasks.
    """

    sys: Any
    task: jax.Array
    max_steps_in_episode: int = struct.field(pytree_node=False, default=1000)


@struct.dataclass
class BraxState:
    """inner: brax's own `State` (pipeline state, obs, reward, done, metrics, info);
    time: steps since the episode began (the truncation counter), int32 `[]`."""

    inner: BraxInnerState
    time: jax.Array


@contextlib.contextmanager
def _system(env: PipelineEnv, sys: Any) -> Iterator[PipelineEnv]:
    """Let `env` read `sys` as `self.sys` while it is traced (single-threaded tracing)."""
    old = env.sys
    env.sys = sys
    try:
        yield env
    finally:
        env.sys = old


def clip_action(action: jax.Array) -> jax.Array:
    """The env-side bound: brax actuators take [-1, 1] (see the module docstring)."""
    return jnp.clip(action, -1.0, 1.0)


class BraxEnvironment(environment.Environment):
    """A brax `PipelineEnv` as a gymnax `Environment` with `BraxParams`.

    An env with task parameters (`task_dim > 0`) implements `reset_task(rng, task [k]) ->
    State`; every other brax env is reset with its own `reset(rng)`.
    """

    def __init__(self, env: PipelineEnv, episode_length: int = 1000, task_dim: int = 0,
                 name: str = ""):
        if task_dim and not hasattr(env, "reset_task"):
            raise ValueError(f"{type(env).__name__}: task_dim = {task_dim} needs a "
                             "`reset_task(rng, task)` method")
        self.brax_env = env.unwrapped
        self.episode_length = int(episode_length)
        self.task_dim = int(task_dim)
        self._name = name or type(self.brax_env).__name__

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> BraxParams:
        return BraxParams(self.brax_env.sys, jnp.zeros((self.task_dim,), jnp.float32),
                          self.episode_length)

    def reset_env(self, key: jax.Array, params: BraxParams) -> tuple[jax.Array, BraxState]:
        with _system(self.brax_env, params.sys) as env:
            state = env.reset_task(key, params.task) if self.task_dim else env.reset(key)
        return state.obs, BraxState(state, jnp.zeros((), jnp.int32))

    def step_env(self, key: jax.Array, state: BraxState, action: jax.Array,
                 params: BraxParams) -> tuple[jax.Array, BraxState, jax.Array, jax.Array, dict]:
        del key  # brax dynamics are deterministic
        # brax envs update their metrics / info dicts in place: hand them copies, so the
        # caller's state (a scan carry, a reset branch) is never mutated while traced
        inner = state.inner.replace(metrics=dict(state.inner.metrics),
                                    info=dict(state.inner.info))
        with _system(self.brax_env, params.sys) as env:
            nxt = env.step(inner, clip_action(action))
        return nxt.obs, BraxState(nxt, state.time + 1), nxt.reward, nxt.done > 0.5, {}

    @functools.cached_property
    def _obs_size(self) -> int:
        # traced, not run: brax's own `observation_size` runs (and compiles) a reset
        shape = jax.eval_shape(lambda k: self.reset_env(k, self.default_params)[0],
                               jax.random.PRNGKey(0))
        return int(shape.shape[-1])

    def observation_space(self, params: BraxParams) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self._obs_size,), jnp.float32)

    def action_space(self, params: BraxParams) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (int(self.brax_env.action_size),), jnp.float32)

    @property
    def num_actions(self) -> int:
        return int(self.brax_env.action_size)


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
    benv = BraxEnvironment(env, episode_length, task_dim, name)
    base_sys = benv.brax_env.sys
    no_task = jnp.zeros((0,), jnp.float32)

    def to_params(c: jax.Array) -> BraxParams:
        sys = base_sys if physics is None else physics(base_sys, c)
        return BraxParams(sys, no_task if task is None else task(c), episode_length)

    return ContextualEnv(name, benv, space, to_params, default_context)
