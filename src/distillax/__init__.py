"""distillax: concurrent policy distillation (DnC, Distral) for contextual MDPs in JAX.

    from distillax import Config, train
    state, summary = train(Config(task="cartpole", method="central", partitions=4))
"""

from distillax.config import Config, ConfigError, validate
from distillax.envs import TASKS, ContextualEnv, make_task, register

__all__ = ["Config", "ConfigError", "validate", "train", "Summary", "TASKS", "ContextualEnv",
           "make_task", "register"]


def __getattr__(name: str):
    # Lazy, so `python -m distillax.train` does not import its own module twice.
    if name in ("train", "Summary"):
        from distillax import train as _train_module

        return getattr(_train_module, name)
    raise AttributeError(f"module 'distillax' has no attribute {name!r}")
