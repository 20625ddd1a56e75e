"""distillax: concurrent policy distillation (DnC, Distral) for contextual MDPs in JAX.

    from distillax import Config, load_policy, train
    state, summary = train(Config(task="cartpole", method="central", partitions=4,
                                  checkpoint_dir="runs/a"))
    policy = load_policy("runs/a")          # the central policy: policy(obs, context, key)
"""

from distillax.config import Config, ConfigError, validate

__all__ = ["Config", "ConfigError", "validate", "train", "resume", "Summary", "load_policy",
           "TASKS", "Task", "ContextualEnv", "make_task", "register"]


def __getattr__(name: str):
    # The env exports are lazy too: gymnax creates arrays when imported, which starts the
    # JAX backend, and `jax.distributed.initialize` must come before that (multi-process runs).
    if name in ("TASKS", "Task", "ContextualEnv", "make_task", "register"):
        from distillax import envs

        return getattr(envs, name)
    # Lazy for the same reason. (`distillax/train.py` is only the `-m` entry point of the
    # command line, never imported by the library, so `train` here is always the function.)
    if name in ("train", "resume", "Summary"):
        from distillax import run

        return getattr(run, name)
    if name == "load_policy":
        from distillax.checkpoint import load_policy

        return load_policy
    raise AttributeError(f"module 'distillax' has no attribute {name!r}")
