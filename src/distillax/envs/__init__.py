"""Shipped contextual tasks. `TASKS[name]()` builds one; add yours with `register`.

The brax/MJX tasks (the `distillax[brax]` extra) are registered by name but built lazily:
their constructor imports brax, so importing distillax, or building a gymnax task, never
does.
"""

import functools
import importlib
from collections.abc import Callable
from typing import Any

from distillax.envs import cartpole, fourrooms, pendulum, pointgoal
from distillax.envs.base import ContextualEnv, Step


def _lazy(module: str, make: str = "make") -> Callable[[], ContextualEnv]:
    """A constructor that imports `distillax.envs.<module>` (and so brax) when called."""

    def build() -> ContextualEnv:
        try:
            mod = importlib.import_module(f"distillax.envs.{module}")
        except ImportError as e:
            raise ImportError(f"task module `{module}` needs the brax extra: "
                              f"pip install 'distillax[brax]' ({e})") from e
        return getattr(mod, make)()

    build.__qualname__ = build.__name__ = f"{module}.{make}"
    return build


TASKS: dict[str, Callable[[], ContextualEnv]] = {
    "cartpole": cartpole.make,
    "cartpole-v1": cartpole.make_v1,
    "pendulum": pendulum.make,
    "pointgoal": pointgoal.make,
    "fourrooms": fourrooms.make,
    # brax / MJX (lazy)
    "double-pendulum-physics": _lazy("double_pendulum"),
    "double-pendulum": _lazy("double_pendulum", "make_default"),
    "reacher-target": _lazy("reacher_target"),
    "ant-goal": _lazy("ant_goal"),
}
_SHIPPED = dict(TASKS)


def build(config: Any) -> ContextualEnv:
    """The task of `config` (validated), built once per constructor, with the config's
    task-dependent rules checked (`config.check_task`). A name not in `TASKS`, a constructor
    that raises or returns no usable task, or a rule broken is a `ConfigError` naming the
    field. Compiles nothing."""
    from distillax.config import ConfigError, check_task
    from distillax.contexts import ContextSpace

    name = config.task

    def fail(valid: str):
        raise ConfigError(f"config field `task` = {name!r} is invalid: {valid}")

    if name not in TASKS:
        fail(f"one of {sorted(TASKS)} (add one with distillax.envs.register)")
    try:
        task = _built(TASKS[name])
    except Exception as e:  # a user's task: report whatever its constructor raised
        fail(f"a task that builds; its constructor raised {type(e).__name__}: {e}")
    if not isinstance(task, ContextualEnv) or not isinstance(task.space, ContextSpace):
        fail(f"a constructor returning a ContextualEnv with a ContextSpace (got "
             f"{type(task).__name__})")
    if task.space.dim < 1 or len(task.default_context) != task.space.dim:
        fail(f"a task whose context space has >= 1 dims and a default context of that length "
             f"(space {list(task.space.names)}, default context {task.default_context})")
    check_task(config, task)
    return task


@functools.lru_cache(maxsize=32)
def _built(make: Callable[[], ContextualEnv]) -> ContextualEnv:
    """One task per constructor: building a brax task takes seconds, and one object keeps
    models built from equal configs equal (so their compiled programs are shared)."""
    return make()


def register(name: str, make: Callable[[], ContextualEnv]) -> None:
    """Make a task available by name to the config, the CLI and the evaluator."""
    TASKS[name] = make


def shipped(name: str) -> bool:
    """Whether task `name` is one distillax ships (not one `register`-ed over or beside them):
    its code is distillax's and its libraries' (`programs.program_key` relies on this)."""
    return name in _SHIPPED and TASKS.get(name) is _SHIPPED[name]


def make_task(name: str) -> ContextualEnv:
    if name not in TASKS:
        raise ValueError(f"unknown task `{name}`; valid: {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "ContextualEnv", "Step", "build", "make_task", "register", "shipped"]
