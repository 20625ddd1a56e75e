"""What the brax and MuJoCo Playground adapters share: an MJX-backed env as a gymnax env.

Both libraries' envs have the same shape: `reset(rng) -> State`, `step(state, action) ->
State` with `State.obs / reward / done / metrics / info` and the MJX `Data` in one more field,
actions in [-1, 1], and the physics an MJX `Model` the env reads from an attribute while it
is traced (brax: `env.sys`, a `System`; Playground: `env._mjx_model`). So one adapter,
`MjxEnvironment`, holds every rule, and `envs/brax.py` and `envs/playground.py` only name
the model's attribute and the data's field (`MODEL`, `DATA`) and the library modules that
run loops over MJX data (`LOOP_MODULES`). This module imports neither library.

Route: `MjxEnvironment` is a gymnax `Environment` whose `EnvParams` (`MjxParams`) carry what
a context sets: the context whose model the env builds and reset-time task parameters
(`task`, e.g. a goal). So the unchanged `ContextualEnv` (its key split, auto-reset into
`next_context`, termination vs truncation) and `rollout.reset_ended` drive these tasks
exactly as they drive gymnax ones, and nothing in the rollout, the update or the evaluator
knows about brax or Playground. The alternative, a second `ContextualEnv` implementation,
would duplicate that contract and its tests.

Per-env physics: `MjxParams` carry the context itself, and the env's step and reset build
its model (`MjxEnvironment.system`: `physics(model, context)`) in every step of every env,
vmapped over `[P, B]` contexts, so the replaced model leaves (and only those) gain the env
axes while every other leaf stays one shared constant. The wrapped env reads its model
while it is traced; `with_model` hands it a shallow copy of the env holding the context's
model (brax's and Playground's own domain-randomisation wrappers swap it in place instead),
so any env of either library works unmodified. This is what Playground's domain
randomisation cannot do: it builds one model per env outside the step, once, where a
context here is redrawn at every episode end inside the jitted rollout. Replace only the
fields a context changes (`model.tree_replace`), and recompute every field MuJoCo derives
from them that the step reads (see `double_pendulum.physics`, `cartpole_swingup.physics`).

Bounded actions: both libraries' actuators take controls in [-1, 1]. The policy stays an
unbounded diagonal Gaussian with its exact log-prob, and the environment clips: the step
applies `clip(a, -1, 1)` before anything else, so the dynamics *and* the reward (control
costs read the action) are functions of the clipped action. The clip is then part of the
MDP, so the policy gradient, every closed-form KL / entropy and the Distral product stay on
one parameterisation; evaluation takes the Gaussian's mean and the env clips it likewise.

Termination vs truncation: `terminated` is the wrapped env's own `done` (a fall, a NaN
state); truncation is the episode time limit counted here (`MjxState.time`, brax's
`EpisodeWrapper` semantics, which Playground's training wrapper uses too), so a truncated
episode bootstraps from its true final observation (`Step.final_obs`).

MJX dynamics are deterministic: the step key is unused, the reset key is the env's `rng`.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv


@struct.dataclass
class MjxParams:
    """What a context sets: the physics and the reset-time task parameters.

    context: `[d]`, the context whose model the env builds (`MjxEnvironment.system`; `[0]`
    when the physics is fixed); task: `[k]` task parameters that the env's `reset_task`
    reads (a goal, a target), `[0]` for pure physics tasks.
    """

    context: jax.Array
    task: jax.Array
    max_steps_in_episode: int = struct.field(pytree_node=False, default=1000)


@struct.dataclass
class MjxState:
    """inner: the wrapped library's own `State` (MJX data, obs, reward, done, metrics, info),
    with None for its zero-size fields (`MjxEnvironment._layout`); time: steps since the
    episode began (the truncation counter), int32 `[]`."""

    inner: Any
    time: jax.Array


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


# The modules of MJX (mujoco-mjx 3.17) that run lax loops or conds over MJX data: its solver
# and its helpers. Each adapter adds its library's own (`MjxEnvironment.LOOP_MODULES`).
MJX_LOOP_MODULES = tuple(f"mujoco.mjx._src.{m}" for m in ("solver", "support", "collision_sdf",
                                                          "forward"))


def use_shard_map_safe_mjx(modules: tuple[str, ...] = MJX_LOOP_MODULES) -> None:
    """Make MJX traceable inside distillax's `shard_map` (idempotent).

    distillax runs the rollout inside `shard_map` with varying-manual-axes checks on (the
    update's gradient semantics rely on them). mujoco-mjx 3.17 starts its solver loops from
    carries with constant fields that the loop bodies make device-varying, returns a
    literal `False` from one `lax.cond` branch, and fills some `Data` fields with model
    constants that the libraries' frame scans (brax's `pipeline_step`, Playground's
    `mjx_env.step`) then carry; those checks refuse all three. So `modules`, the ones that
    loop, see `jax.lax` through `_ShardMapSafeLax`, which fixes the types and keeps every
    value (tests/test_brax.py checks a sharded rollout equals the plain one). Called when an
    MJX task is built; pyproject.toml pins the mujoco-mjx it was written for.
    """
    for name in modules:
        module = importlib.import_module(name)
        if not isinstance(getattr(module, "jax", None), _ShardMapSafeJax):
            module.jax = _ShardMapSafeJax()


def clip_action(action: jax.Array) -> jax.Array:
    """The env-side bound: the actuators take [-1, 1] (see the module docstring)."""
    return jnp.clip(action, -1.0, 1.0)


def capsule_inertia_per_mass(length: jax.Array, radius: float) -> jax.Array:
    """A uniform capsule's inertia per unit mass `[3]` (axis z, cylinder `length`): MuJoCo's
    formula, for a context that changes a capsule's length. With h = length / 2, per unit
    density `Vc = pi r^2 2h`, `Vs = 4/3 pi r^3`,
    `I_perp = Vc (3 r^2 + 4 h^2) / 12 + Vs (2 r^2 / 5 + h^2 + 3 h r / 4)`,
    `I_axis = Vc r^2 / 2 + Vs 2 r^2 / 5`, divided by the volume Vc + Vs."""
    r, h = radius, length / 2
    vc = jnp.pi * r**2 * 2 * h
    vs = 4.0 / 3.0 * jnp.pi * r**3
    perp = vc * (3 * r**2 + 4 * h**2) / 12 + vs * (2 * r**2 / 5 + h**2 + 3 * h * r / 4)
    axis = vc * r**2 / 2 + vs * 2 * r**2 / 5
    return jnp.stack([perp, perp, axis]) / (vc + vs)


def rescaled_inertia(inertia: jax.Array, mass: jax.Array, length: jax.Array, mass0: float,
                     length0: float, radius: float) -> jax.Array:
    """A capsule body's compiled inertia `[3]` (at `mass0`, `length0`) moved to `mass`,
    `length`: `I0 (m / m0) (g(l) / g(l0))` with g the per-mass capsule inertia, so the
    default gives the compiled values exactly (x / x = 1 in floating point) and others
    MuJoCo's formula."""
    ratio = (capsule_inertia_per_mass(length, radius)
             / capsule_inertia_per_mass(jnp.float32(length0), radius))
    return inertia * (mass / mass0) * ratio


def with_attribute(env: Any, name: str, value: Any) -> Any:
    """A shallow copy of `env` with attribute `name` set to `value`: how an adapter hands the
    wrapped env a context's model. A copy, not the libraries' own way (their domain-
    randomisation wrappers swap the model in place while tracing), because distillax traces
    its training and evaluation programs side by side in two threads."""
    view = copy.copy(env)
    setattr(view, name, value)
    return view


class MjxEnvironment(environment.Environment):
    """An MJX-backed env (brax's or Playground's) as a gymnax `Environment` with `MjxParams`.

    `physics(model, context [d]) -> model` gives a context's MJX model (None: the env's own,
    shared by every env). An env with task parameters (`task_dim > 0`) implements
    `reset_task(rng, task [k]) -> State`; every other env is reset with `reset(rng)`.
    Subclasses say which attribute of the wrapped env holds its model (`MODEL`: read by
    `base_model`, swapped on a copy by `with_model`), which field of its `State` the MJX
    `Data` (`DATA`), and which of its library's modules loop over MJX data (`LOOP_MODULES`).

    Reset and step are per-env functions under one `jax.jit` each: tracing MJX is slow
    (~2-3 s of Python per call on a 2-core CPU), and a distillax program calls them several
    times with the same shapes (the step's auto-reset, `rollout.reset_ended`, the shape pass
    of the training loop, this class's own shape passes), which the jit's trace cache then
    serves from one trace.
    """

    MODEL: str = ""
    DATA: str = ""
    LOOP_MODULES: tuple[str, ...] = MJX_LOOP_MODULES

    def __init__(self, env: Any, *, episode_length: int = 1000, task_dim: int = 0,
                 name: str = "", physics: Callable[[Any, jax.Array], Any] | None = None,
                 default_context: tuple[float, ...] = ()):
        if task_dim and not hasattr(env, "reset_task"):
            raise ValueError(f"{type(env).__name__}: task_dim = {task_dim} needs a "
                             "`reset_task(rng, task)` method")
        if int(episode_length) < 1:
            raise ValueError(f"{type(env).__name__}: episode_length = {episode_length} is "
                             "invalid: a positive number of steps")
        use_shard_map_safe_mjx(self.LOOP_MODULES)
        self.inner_env = env.unwrapped
        self.episode_length = int(episode_length)
        self.task_dim = int(task_dim)
        self.physics = physics
        self._default_context = tuple(default_context) if physics else ()
        self._name = name or type(self.inner_env).__name__
        self._inner_reset = jax.jit(self._inner_reset_impl)  # also traced for shapes, below
        self._reset = jax.jit(self._reset_impl)
        self._step = jax.jit(self._step_impl)

    # --- what a library's adapter says: where its env keeps the model and the data ---

    @property
    def base_model(self) -> Any:
        """The wrapped env's own MJX model."""
        return getattr(self.inner_env, self.MODEL)

    def with_model(self, model: Any) -> Any:
        """The wrapped env reading `model` as its own (`with_attribute`)."""
        return with_attribute(self.inner_env, self.MODEL, model)

    def mjx_data(self, inner: Any) -> Any:
        """The MJX `Data` in the wrapped library's `State` `inner`."""
        return getattr(inner, self.DATA)

    @property
    def mj_model(self) -> Any:
        """The wrapped env's host-side `mujoco.MjModel` (geom types, bodies, names)."""
        return self.inner_env.mj_model

    # --- shared --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> MjxParams:
        return MjxParams(context=jnp.asarray(self._default_context, jnp.float32),
                         task=jnp.zeros((self.task_dim,), jnp.float32),
                         max_steps_in_episode=self.episode_length)

    def system(self, context: jax.Array) -> Any:
        """The MJX model of a context `[d]` (the env's own when the physics is fixed)."""
        base = self.base_model
        return base if self.physics is None else self.physics(base, context)

    @functools.cached_property
    def _layout(self) -> tuple[Any, dict[int, jax.ShapeDtypeStruct]]:
        """(treedef of the wrapped env's per-env `State`, its zero-size leaves by position):
        MJX `Data` has fields sized by absent model parts (no cameras, no activations:
        `cam_xpos [0, 3]`, `act [0]`), and orbax refuses to save zero-size arrays, so the
        state this env hands out holds None there (`_strip`) and the env gets them back
        (`_fill`)."""
        p = self.default_params
        shapes = jax.eval_shape(lambda k: self._inner_reset(k, p.context, p.task),
                                jax.random.PRNGKey(0))
        leaves, treedef = jax.tree.flatten(shapes)
        return treedef, {i: x for i, x in enumerate(leaves) if x.size == 0}

    def _strip(self, inner: Any) -> Any:
        leaves, treedef = jax.tree.flatten(inner)
        empty = self._layout[1]
        return treedef.unflatten([None if i in empty else x for i, x in enumerate(leaves)])

    def _fill(self, inner: Any) -> Any:
        treedef, empty = self._layout
        rest = iter(jax.tree.leaves(inner))
        return treedef.unflatten([jnp.zeros(empty[i].shape, empty[i].dtype) if i in empty
                                  else next(rest) for i in range(treedef.num_leaves)])

    def _inner_reset_impl(self, key: jax.Array, context: jax.Array, task: jax.Array) -> Any:
        env = self.with_model(self.system(context))
        return env.reset_task(key, task) if self.task_dim else env.reset(key)

    def _reset_impl(self, key: jax.Array, context: jax.Array,
                    task: jax.Array) -> tuple[jax.Array, MjxState]:
        state = self._inner_reset(key, context, task)
        return _uniform((state.obs, MjxState(inner=self._strip(state),
                                             time=jnp.zeros((), jnp.int32))))

    def _step_impl(self, state: MjxState, action: jax.Array,
                   context: jax.Array) -> tuple[jax.Array, MjxState, jax.Array, jax.Array]:
        # brax and Playground envs update their metrics / info dicts in place: hand them
        # copies, so the caller's state (a scan carry, a reset branch) is never mutated
        # while traced
        inner = self._fill(state.inner)
        inner = inner.replace(metrics=dict(inner.metrics), info=dict(inner.info))
        nxt = self.with_model(self.system(context)).step(inner, clip_action(action))
        return _uniform((nxt.obs, MjxState(inner=self._strip(nxt), time=state.time + 1),
                         nxt.reward, nxt.done > 0.5))

    def reset_env(self, key: jax.Array, params: MjxParams) -> tuple[jax.Array, MjxState]:
        return self._reset(key, params.context, params.task)

    def step_env(self, key: jax.Array, state: MjxState, action: jax.Array,
                 params: MjxParams) -> tuple[jax.Array, MjxState, jax.Array, jax.Array, dict]:
        del key  # MJX dynamics are deterministic
        return (*self._step(state, action, params.context), {})

    @functools.cached_property
    def _obs_size(self) -> int:
        # traced, not run: the libraries' own `observation_size` runs (and compiles) a reset
        p = self.default_params
        shape = jax.eval_shape(lambda k: self._inner_reset(k, p.context, p.task).obs,
                               jax.random.PRNGKey(0))
        return int(shape.shape[-1])

    def observation_space(self, params: MjxParams) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self._obs_size,), jnp.float32)

    def action_space(self, params: MjxParams) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (int(self.inner_env.action_size),), jnp.float32)

    @property
    def num_actions(self) -> int:
        return int(self.inner_env.action_size)


def as_contextual(env: MjxEnvironment, space: ContextSpace, default_context: tuple[float, ...],
                  task: Callable[[jax.Array], jax.Array] | None = None) -> ContextualEnv:
    """`env` as a `ContextualEnv` over `space`: a context sets the physics (if `env` has a
    `physics`) and the reset-time task parameters `task(context [d]) -> [env.task_dim]`
    (None: none). `task` must be pure and jit-able: it runs in every step."""
    none = jnp.zeros((0,), jnp.float32)

    def to_params(c: jax.Array) -> MjxParams:
        return MjxParams(context=none if env.physics is None else c,
                         task=none if task is None else task(c),
                         max_steps_in_episode=env.episode_length)

    return ContextualEnv(name=env.name, env=env, space=space, to_params=to_params,
                         default_context=tuple(default_context))
