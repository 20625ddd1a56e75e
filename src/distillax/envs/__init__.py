"""Shipped contextual tasks. `TASKS[name]()` builds one; add yours with `register`.

The brax/MJX tasks (the `distillax[brax]` extra) are registered by name but built lazily:
their constructor imports brax, so importing distillax, or building a gymnax task, never
does.
"""

import importlib
from typing import Callable

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


def register(name: str, make: Callable[[], ContextualEnv]) -> None:
    """Make a task available by name to the config, the CLI and the evaluator."""
    TASKS[name] = make


def make_task(name: str) -> ContextualEnv:
    if name not in TASKS:
        raise ValueError(f"unknown task `{name}`; valid: {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "ContextualEnv", "Step", "make_task", "register"]
