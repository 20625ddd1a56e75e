"""Shipped contextual tasks. `TASKS[name]()` builds one; add yours with `register`."""

from typing import Callable

from distillax.envs import cartpole, fourrooms, pendulum, pointgoal
from distillax.envs.base import ContextualEnv, Step

TASKS: dict[str, Callable[[], ContextualEnv]] = {
    "cartpole": cartpole.make,
    "pendulum": pendulum.make,
    "pointgoal": pointgoal.make,
    "fourrooms": fourrooms.make,
}


def register(name: str, make: Callable[[], ContextualEnv]) -> None:
    """Make a task available by name to the config, the CLI and the evaluator."""
    TASKS[name] = make


def make_task(name: str) -> ContextualEnv:
    if name not in TASKS:
        raise ValueError(f"unknown task `{name}`; valid: {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "ContextualEnv", "Step", "make_task", "register"]
