"""A contextual environment: a gymnax environment + a context space + `context -> EnvParams`.

Any gymnax environment becomes contextual this way: give its context space and a pure
function that builds its `EnvParams` from a context vector, recomputing every derived field
(CartPole's `total_mass`, `polemass_length`). Episodes end in `step`, which resets into the
context the caller passes as `next_context` (drawn from the acting teacher's partition), so
the context changes exactly at episode boundaries and the env itself holds no sampler.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments.environment import Environment

from distillax.contexts import ContextSpace


@struct.dataclass
class Step:
    """One transition of one env (shapes for a single env; vmapped they gain axes).

    obs: the next observation to act on (the reset observation when the episode ended);
    final_obs: the true observation reached by the action (what truncation bootstraps from);
    context: the context of the next observation.
    """

    obs: jax.Array
    state: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    context: jax.Array


@dataclasses.dataclass(frozen=True)
class ContextualEnv:
    """A family of MDPs indexed by a context. `to_params(c)` must be pure and jit-able."""

    name: str
    env: Environment
    space: ContextSpace
    to_params: Callable[[jax.Array], Any]
    default_context: tuple[float, ...]

    @property
    def obs_dim(self) -> int:
        return int(self.env.observation_space(self.env.default_params).shape[0])

    @property
    def discrete(self) -> bool:
        return hasattr(self.env.action_space(self.env.default_params), "n")

    @property
    def action_dim(self) -> int:
        """Number of actions (categorical) or action dimensions (Gaussian)."""
        space = self.env.action_space(self.env.default_params)
        return int(space.n) if self.discrete else int(space.shape[0])

    @property
    def max_steps(self) -> int:
        return int(self.env.default_params.max_steps_in_episode)

    def reset(self, key: jax.Array, context: jax.Array) -> tuple[jax.Array, Any]:
        return self.env.reset_env(key, self.to_params(context))

    def transition(self, key: jax.Array, state: Any, action: jax.Array,
                   context: jax.Array) -> Step:
        """Step in `context` and stop there, even where the episode ended (`obs` is then
        `final_obs`, and `state` the final state). Where the caller resets ended episodes
        itself (`rollout.reset_ended`), or only counts reward up to the first end
        (`evaluation.episode_returns`), this leaves out `step`'s reset of every env, which
        for a physics env costs about a forward pass per step and one more copy of it to
        compile. The key is used as `step` uses it."""
        key_step, _ = jax.random.split(key)
        params = self.to_params(context)
        obs, state, reward, terminated, _ = self.env.step_env(key_step, state, action, params)
        return Step(obs=obs, state=state, reward=jnp.asarray(reward, jnp.float32),
                    terminated=jnp.asarray(terminated, bool),
                    truncated=jnp.asarray(self.env.is_truncated(state, params), bool),
                    final_obs=obs, context=context)

    def step(self, key: jax.Array, state: Any, action: jax.Array, context: jax.Array,
             next_context: jax.Array) -> Step:
        """Step in `context`; on termination or truncation reset into `next_context`.

        The key is split exactly as gymnax's own `step` splits it, so with a fixed context
        equal to the default this reproduces `env.step(key, state, action, default_params)`.
        """
        out = self.transition(key, state, action, context)
        done = jnp.logical_or(out.terminated, out.truncated)
        obs_re, state_re = self.reset(jax.random.split(key)[1], next_context)
        pick = lambda re, st: jax.lax.select(done, re, st)  # noqa: E731
        return out.replace(obs=jax.tree.map(pick, obs_re, out.obs),
                           state=jax.tree.map(pick, state_re, out.state),
                           context=jnp.where(done, next_context, context))


@dataclasses.dataclass(frozen=True)
class Drawer:
    """How to draw one task in a video (`distillax.render`).

    view: the world box `(x0, x1, y0, y1)` a panel shows; pick: `(env, state, context [d])
    -> small pytree`, jit-able, what a recording keeps of each step (default: the state
    itself); draw: `draw(canvas, frames, t, context [d], env)` draws step t on a
    `render.Canvas`, where `frames` holds every recorded step of the episode (leaves
    `[T, ...]`, for trails).
    """

    view: tuple[float, float, float, float]
    draw: Callable[..., None]
    pick: Callable[[ContextualEnv, Any, jax.Array], Any] = lambda env, state, context: state


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
    """Everything distillax knows about a task, registered once under its name
    (`distillax.envs.register`; a shipped task in its own module's `TASKS`).

    make: builds the `ContextualEnv`; preset: `Config` field values that learn on it
    (`--preset NAME`, the experiments), each with a comment saying what was measured;
    drawer: how videos draw it (None: no videos); trusted: its code is distillax's and its
    libraries', so the program cache may key it by name (`programs.program_key`), which is
    true only of the shipped tasks and of a registration that says so.
    """

    make: Callable[[], ContextualEnv]
    preset: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}))
    drawer: Drawer | None = None
    trusted: bool = False

