"""Any brax `Env` as a distillax `ContextualEnv`: context -> `System` fields and task parameters.

Route: `BraxEnvironment` is a gymnax `Environment` over a brax `PipelineEnv` whose `EnvParams`
(`BraxParams`) carry what a context sets: the physics (`sys`, a brax `System`, i.e. an MJX
`Model`) and reset-time task parameters (`task`, e.g. a goal). So the unchanged
`ContextualEnv` (its key split, auto-reset into `next_context`, termination vs truncation)
and `rollout.reset_ended` drive brax tasks exactly as they drive gymnax ones, and nothing in
the rollout, the update or the evaluator knows about brax. The alternative, a second
`ContextualEnv` implementation for brax, would duplicate that contract and its tests.

Per-env physics: `BraxParams` carry the context itself, and the env's step and reset build
its `System` (`BraxEnvironment.system`: `physics(sys, context)`) in every step of every env,
vmapped over `[P, B]` contexts, so the replaced `System` leaves (and only those) gain the env
axes while every other leaf stays one shared constant. The brax env reads `self.sys` while it
is traced; `_system` hands it a copy of the env holding the context's `System` (brax's own
`DomainRandomizationVmapWrapper` swaps `env.sys` in place instead), so any `PipelineEnv`
works unmodified. Replace only the fields a context changes (`sys.tree_replace`), and
recompute every field MuJoCo derives from them that the step reads (see
`double_pendulum.physics`). Measured cost in benchmarks/brax_results.md (raw stepping,
per-env physics at the default context vs shared physics).

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

import copy
import functools
from collections.abc import Callable
from typing import Any

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

    context: `[d]`, the context whose `System` the env builds (`BraxEnvironment.system`;
    `[0]` when the physics is fixed); task: `[k]` task parameters that the env's
    `reset_task` reads (a goal, a target), `[0]` for pure physics tasks.
    """

    context: jax.Array
    task: jax.Array
    max_steps_in_episode: int = struct.field(pytree_node=False, default=1000)


@struct.dataclass
class BraxState:
    """inner: brax's own `State` (pipeline state, obs, reward, done, metrics, info), with
    None for its zero-size fields (`BraxEnvironment._layout`); time: steps since the
    episode began (the truncation counter), int32 `[]`."""

    inner: BraxInnerState
    time: jax.Array


def _system(env: PipelineEnv, sys: Any) -> PipelineEnv:
    """A shallow copy of `env` that reads `sys` as `self.sys`. A copy, not brax's own way
    (its domain-randomisation wrapper swaps `env.sys` in place while tracing), because
    distillax traces its training and evaluation programs side by side in two threads."""
    view = copy.copy(env)
    view.sys = sys
    return view


def _manual_axes() -> frozenset:
    """The mesh axes of the `shard_map` being traced (empty outside any)."""
    return frozenset(jax.sharding.get_abstract_mesh().manual_axes)


def _strong(x: Any) -> jax.Array:
    """`x` as an array of a definite (not weak) dtype: a scan re-types a carry whose weak
    type changes by re-evaluating its body, and that path checks varying axes strictly."""
    x = jnp.asarray(x)
    return jax.lax.convert_element_type(x, x.dtype) if jax.typeof(x).weak_type else x


def _to(tree: Any, axes: frozenset) -> Any:
    """Every leaf of `tree` cast to vary over `axes` (`pcast`: the values do not change)."""

    def one(x):
        x = _strong(x)
        missing = tuple(sorted(axes - frozenset(jax.typeof(x).manual_axis_type.varying)))
        return jax.lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(one, tree)


def _uniform(tree: Any) -> Any:
    """`tree` varying over every manual axis. An env's state is per-env data, so inside
    `shard_map` all of it varies over "data"; MJX leaves some fields (model constants such
    as `qfrc_gravcomp`) unvarying, which a scan carry over the state (the rollout's) would
    refuse. A no-op outside `shard_map`."""
    axes = _manual_axes()
    return _to(tree, axes) if axes else tree


class _ShardMapSafeLax:
    """`jax.lax` as MJX's modules see it after `use_shard_map_safe_mjx`: inside `shard_map`,
    `while_loop`, `scan` and `cond` make their carries and branch outputs vary over every
    manual axis (`pcast`, which changes no value), so a carry that starts constant and
    becomes device-varying, or a branch that returns a literal, type-checks; the rest, and
    everything outside `shard_map`, is plain `jax.lax`.

    Every leaf varies over every axis, rather than each over only what it must: `vmap` of a
    `cond` whose predicate varies (MJX's linesearch under the env vmap) selects the branches'
    operands with that predicate and re-evaluates the branches on the now-varying operands,
    which fails for any operand a branch was traced with as unvarying (jax 0.11); and the
    target is known without tracing the bodies again."""

    def __getattr__(self, name: str) -> Any:
        return getattr(jax.lax, name)

    @staticmethod
    def while_loop(cond_fun, body_fun, init_val):
        axes = _manual_axes()
        if not axes:
            return jax.lax.while_loop(cond_fun, body_fun, init_val)
        return jax.lax.while_loop(cond_fun, lambda c: _to(body_fun(c), axes),
                                  _to(init_val, axes))

    @staticmethod
    def scan(f, init, xs=None, length=None, **kwargs):
        axes = _manual_axes()
        if not axes:
            return jax.lax.scan(f, init, xs, length=length, **kwargs)

        def typed(c, x):
            c, y = f(c, x)
            return _to(c, axes), y

        return jax.lax.scan(typed, _to(init, axes), xs, length=length, **kwargs)

    @staticmethod
    def cond(pred, true_fun, false_fun, *operands):
        axes = _manual_axes()
        if not axes:
            return jax.lax.cond(pred, true_fun, false_fun, *operands)
        return jax.lax.cond(pred, lambda *o: _to(true_fun(*o), axes),
                            lambda *o: _to(false_fun(*o), axes), *_to(operands, axes))


class _ShardMapSafeJax:
    """The `jax` module with `lax` replaced by `_ShardMapSafeLax`."""

    lax = _ShardMapSafeLax()

    def __getattr__(self, name: str) -> Any:
        return getattr(jax, name)


# The modules that run lax loops or conds over MJX data in brax's pipelines (mujoco-mjx
# 3.17, brax 0.14): MJX's solver and its helpers, and brax's `pipeline_step` (a scan over
# frames whose carry, the MJX `Data`, holds fields MJX fills with model constants)
_LOOP_MODULES = tuple(f"mujoco.mjx._src.{m}" for m in ("solver", "support", "collision_sdf",
                                                       "forward")) + ("brax.envs.base",)


def use_shard_map_safe_mjx() -> None:
    """Make MJX traceable inside distillax's `shard_map` (idempotent).

    distillax runs the rollout inside `shard_map` with varying-manual-axes checks on (the
    update's gradient semantics rely on them). mujoco-mjx 3.17 starts its solver loops from
    carries with constant fields that the loop bodies make device-varying, returns a
    literal `False` from one `lax.cond` branch, and fills some `Data` fields with model
    constants that brax's frame scan then carries; those checks refuse all three. So the
    modules that loop see `jax.lax` through `_ShardMapSafeLax`, which fixes the types and
    keeps every value (tests/test_brax.py checks a sharded rollout equals the plain one).
    Called when a brax task is built; pyproject.toml pins the mujoco-mjx it was written for.
    """
    import importlib

    for name in _LOOP_MODULES:
        module = importlib.import_module(name)
        if not isinstance(getattr(module, "jax", None), _ShardMapSafeJax):
            module.jax = _ShardMapSafeJax()


def clip_action(action: jax.Array) -> jax.Array:
    """The env-side bound: brax actuators take [-1, 1] (see the module docstring)."""
    return jnp.clip(action, -1.0, 1.0)


class BraxEnvironment(environment.Environment):
    """A brax `PipelineEnv` as a gymnax `Environment` with `BraxParams`.

    `physics(sys, context [d]) -> sys` gives a context's `System` (None: brax's own, shared
    by every env). An env with task parameters (`task_dim > 0`) implements
    `reset_task(rng, task [k]) -> State`; every other brax env is reset with `reset(rng)`.

    Reset and step are per-env functions under one `jax.jit` each: tracing MJX is slow
    (~2-3 s of Python per call on a 2-core CPU), and a distillax program calls them several
    times with the same shapes (the step's auto-reset, `rollout.reset_ended`, the shape pass
    of the training loop, this class's own shape passes), which the jit's trace cache then
    serves from one trace.
    """

    def __init__(self, env: PipelineEnv, *, episode_length: int = 1000, task_dim: int = 0,
                 name: str = "", physics: Callable[[Any, jax.Array], Any] | None = None,
                 default_context: tuple[float, ...] = ()):
        if task_dim and not hasattr(env, "reset_task"):
            raise ValueError(f"{type(env).__name__}: task_dim = {task_dim} needs a "
                             "`reset_task(rng, task)` method")
        use_shard_map_safe_mjx()
        self.brax_env = env.unwrapped
        self.episode_length = int(episode_length)
        self.task_dim = int(task_dim)
        self.physics = physics
        self._default_context = tuple(default_context) if physics else ()
        self._name = name or type(self.brax_env).__name__
        self._brax_reset = jax.jit(self._brax_reset_impl)  # also traced for shapes, below
        self._reset = jax.jit(self._reset_impl)
        self._step = jax.jit(self._step_impl)

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> BraxParams:
        return BraxParams(jnp.asarray(self._default_context, jnp.float32),
                          jnp.zeros((self.task_dim,), jnp.float32), self.episode_length)

    def system(self, context: jax.Array) -> Any:
        """The `System` of a context `[d]` (brax's own when the physics is fixed)."""
        base = self.brax_env.sys
        return base if self.physics is None else self.physics(base, context)

    @functools.cached_property
    def _layout(self) -> tuple[Any, dict[int, jax.ShapeDtypeStruct]]:
        """(treedef of brax's per-env `State`, its zero-size leaves by position): MJX `Data`
        has fields sized by absent model parts (no cameras, no activations: `cam_xpos
        [0, 3]`, `act [0]`), and orbax refuses to save zero-size arrays, so the state this
        env hands out holds None there (`_strip`) and brax gets them back (`_fill`)."""
        p = self.default_params
        shapes = jax.eval_shape(lambda k: self._brax_reset(k, p.context, p.task),
                                jax.random.PRNGKey(0))
        leaves, treedef = jax.tree.flatten(shapes)
        return treedef, {i: x for i, x in enumerate(leaves) if x.size == 0}

    def _strip(self, inner: BraxInnerState) -> BraxInnerState:
        leaves, treedef = jax.tree.flatten(inner)
        empty = self._layout[1]
        return treedef.unflatten([None if i in empty else x for i, x in enumerate(leaves)])

    def _fill(self, inner: BraxInnerState) -> BraxInnerState:
        treedef, empty = self._layout
        rest = iter(jax.tree.leaves(inner))
        return treedef.unflatten([jnp.zeros(empty[i].shape, empty[i].dtype) if i in empty
                                  else next(rest) for i in range(treedef.num_leaves)])

    def _brax_reset_impl(self, key: jax.Array, context: jax.Array,
                         task: jax.Array) -> BraxInnerState:
        env = _system(self.brax_env, self.system(context))
        return env.reset_task(key, task) if self.task_dim else env.reset(key)

    def _reset_impl(self, key: jax.Array, context: jax.Array,
                    task: jax.Array) -> tuple[jax.Array, BraxState]:
        state = self._brax_reset(key, context, task)
        return _uniform((state.obs, BraxState(self._strip(state), jnp.zeros((), jnp.int32))))

    def _step_impl(self, state: BraxState, action: jax.Array,
                   context: jax.Array) -> tuple[jax.Array, BraxState, jax.Array, jax.Array]:
        # brax envs update their metrics / info dicts in place: hand them copies, so the
        # caller's state (a scan carry, a reset branch) is never mutated while traced
        inner = self._fill(state.inner)
        inner = inner.replace(metrics=dict(inner.metrics), info=dict(inner.info))
        nxt = _system(self.brax_env, self.system(context)).step(inner, clip_action(action))
        return _uniform((nxt.obs, BraxState(self._strip(nxt), state.time + 1), nxt.reward,
                         nxt.done > 0.5))

    def reset_env(self, key: jax.Array, params: BraxParams) -> tuple[jax.Array, BraxState]:
        return self._reset(key, params.context, params.task)

    def step_env(self, key: jax.Array, state: BraxState, action: jax.Array,
                 params: BraxParams) -> tuple[jax.Array, BraxState, jax.Array, jax.Array, dict]:
        del key  # brax dynamics are deterministic
        return (*self._step(state, action, params.context), {})

    @functools.cached_property
    def _obs_size(self) -> int:
        # traced, not run: brax's own `observation_size` runs (and compiles) a reset
        p = self.default_params
        shape = jax.eval_shape(lambda k: self._brax_reset(k, p.context, p.task).obs,
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
    benv = BraxEnvironment(env, episode_length=episode_length, task_dim=task_dim, name=name,
                           physics=physics, default_context=default_context)
    none = jnp.zeros((0,), jnp.float32)

    def to_params(c: jax.Array) -> BraxParams:
        return BraxParams(none if physics is None else c, none if task is None else task(c),
                          episode_length)

    return ContextualEnv(name, benv, space, to_params, default_context)
