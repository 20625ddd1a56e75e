"""Contextual tasks by name: the shipped ones, and yours (`register`).

A task is one `Task` record (its factory, preset, drawer, and whether the program cache may
trust it). A shipped task's record lives in its own module's `TASKS`; `SHIPPED` below is the
one list that names them. Modules are imported when one of their tasks is first asked for:
importing distillax never imports gymnax's tasks, brax or MuJoCo Playground, and a brax/MJX
task needs the `distillax[brax]` extra, a Playground task the `distillax[playground]` extra,
only when it is built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from distillax.envs.base import ContextualEnv, Drawer, Step, Task

# Every shipped task: name -> (its module under distillax.envs, the extra it needs or None).
SHIPPED: dict[str, tuple[str, str | None]] = {
    "cartpole": ("cartpole", None),
    "cartpole-v1": ("cartpole", None),
    "pendulum": ("pendulum", None),
    "pointgoal": ("pointgoal", None),
    "fourrooms": ("fourrooms", None),
    "double-pendulum-physics": ("double_pendulum", "brax"),
    "double-pendulum": ("double_pendulum", "brax"),
    "reacher-target": ("reacher_target", "brax"),
    "ant-goal": ("ant_goal", "brax"),
    "cartpole-swingup-physics": ("cartpole_swingup", "playground"),
    "reacher-easy-target": ("reacher_easy", "playground"),
}


class MissingExtra(ImportError):
    """A shipped task whose optional extra is not installed."""


# The tasks registered in this process (`register`), which take precedence over a shipped
# task of the same name.
TASKS: dict[str, Task] = {}


def register(name: str, make: Callable[[], ContextualEnv], *,
             preset: Mapping[str, Any] | None = None, drawer: Drawer | None = None,
             trusted: bool = False) -> None:
    """Make a task available by name to the config, the CLI, the evaluator and videos.

    `preset`: config fields that learn on it (`--preset NAME`); `drawer`: how videos draw
    it; `trusted`: the program cache may store its compiled programs under its name (say so
    only for code that changes only with distillax's own version or its libraries')."""
    TASKS[name] = Task(make=make, preset=dict(preset or {}), drawer=drawer, trusted=trusted)


def names() -> list[str]:
    """Every task name: the shipped ones and those registered."""
    return sorted(set(SHIPPED) | set(TASKS))


def task(name: str) -> Task:
    """The `Task` registered as `name`, a shipped one imported on first use. An unknown name
    is a `KeyError`; a shipped task whose extra is missing a `MissingExtra` saying which."""
    if name in TASKS:
        return TASKS[name]
    if name not in SHIPPED:
        raise KeyError(f"unknown task `{name}`; valid: {names()}")
    return _shipped(name)


@functools.cache
def _shipped(name: str) -> Task:
    module, extra = SHIPPED[name]
    try:
        mod = importlib.import_module(f"distillax.envs.{module}")
    except ImportError as e:
        raise MissingExtra(f"task `{name}` needs the {extra} extra: pip install "
                           f"'distillax[{extra}]' ({e})") from e
    return mod.TASKS[name]


def build(config: Any) -> ContextualEnv:
    """The task of `config` (validated), built once per constructor, with the config's
    task-dependent rules checked (`config.check_task`). A name not in `names()`, a
    constructor that raises or returns no usable task, or a rule broken is a `ConfigError`
    naming the field. Compiles nothing."""
    from distillax.config import ConfigError, check_task
    from distillax.contexts import ContextSpace

    name = config.task

    def fail(valid: str):
        raise ConfigError(f"config field `task` = {name!r} is invalid: {valid}")

    if name not in names():
        fail(f"one of {names()} (add one with distillax.envs.register)")
    try:
        env = _built(task(name).make)
    except MissingExtra as e:  # not the task's fault: say what to install, in one line
        fail(str(e))
    except Exception as e:  # a user's task: report whatever its constructor raised
        fail(f"a task that builds; its constructor raised {type(e).__name__}: {e}")
    if not isinstance(env, ContextualEnv) or not isinstance(env.space, ContextSpace):
        fail(f"a constructor returning a ContextualEnv with a ContextSpace (got "
             f"{type(env).__name__})")
    if env.space.dim < 1 or len(env.default_context) != env.space.dim:
        fail(f"a task whose context space has >= 1 dims and a default context of that length "
             f"(space {list(env.space.names)}, default context {env.default_context})")
    check_task(config, env)
    return env


@functools.lru_cache(maxsize=32)
def _built(make: Callable[[], ContextualEnv]) -> ContextualEnv:
    """One task per constructor: building a brax task takes seconds, and one object keeps
    models built from equal configs equal (so their compiled programs are shared)."""
    return make()


def shipped(name: str) -> bool:
    """Whether task `name`'s code is distillax's and its libraries' (a shipped task not
    registered over, or a registration that says `trusted`): `programs.program_key` keys
    only such tasks."""
    try:
        return task(name).trusted
    except (KeyError, ImportError):
        return False


def make_task(name: str) -> ContextualEnv:
    """Build task `name` (a new object each call)."""
    try:
        return task(name).make()
    except KeyError as e:
        raise ValueError(e.args[0]) from None


__all__ = ["SHIPPED", "TASKS", "ContextualEnv", "Drawer", "MissingExtra", "Step", "Task", "build",
           "make_task", "names", "register", "shipped", "task"]
