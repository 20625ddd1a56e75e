"""Sizes a user types, bounded by this machine's memory before any compute.

A run's memory grows with `num_envs x num_steps x runs` (runs: seeds x sweep members) and
the network widths; an evaluation's with its contexts (`--contexts`, `--resolution`) times
the P + 1 policies, and its videos' with `--video`. Without a bound a size too large for the
machine ran for minutes and then died in an allocation (`ArrayMemoryError`, 298 GiB for
`--resolution 100000`), or ran until killed. Each estimate here is a formula over the
config and the env's shapes, checked against XLA's own `memory_analysis` of the compiled
program in tests/test_limits.py; `require_fits` refuses one over the memory available with
one line naming the field, its value, the estimate and the limit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp

from distillax.config import Config, ConfigError

F32 = 4  # bytes of every float and int the programs keep


@dataclasses.dataclass(frozen=True, kw_only=True)
class Estimate:
    """About `bytes` of memory for `what`, set by `name` (a flag or a config field, as the
    user wrote it) = `value`."""

    name: str
    value: Any
    bytes: int
    what: str


def available_bytes() -> int:
    """The memory a program may take: an accelerator's own (`bytes_limit`, summed over the
    local devices), else the host's available memory (Linux's MemAvailable; all memory
    where that cannot be read), which every CPU device shares."""
    devices = jax.local_devices()
    if devices[0].platform != "cpu":
        return sum(int((d.memory_stats() or {}).get("bytes_limit", 0)) for d in devices)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def size_text(n: float) -> str:
    """`n` bytes as '1.5 GiB' (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def require_fits(estimate: Estimate, limit: int | None = None) -> None:
    """Raise `ConfigError` if `estimate` needs more than `limit` bytes (default
    `available_bytes()`)."""
    limit = available_bytes() if limit is None else limit
    if estimate.bytes > limit:
        raise ConfigError(f"{estimate.name} = {estimate.value!r} is invalid: {estimate.what} "
                          f"would need about {size_text(estimate.bytes)} of memory, more than "
                          f"the {size_text(limit)} available here")


def traced_bytes(fn: Any, env: Any) -> int:
    """Bytes of what `fn(key, context)` returns for one env, from its shapes (traced, not
    run)."""
    shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((2,), jnp.uint32),
                            jax.ShapeDtypeStruct((env.space.dim,), jnp.float32))
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def state_bytes(env: Any) -> int:
    """Bytes of one env's state and observation, from its reset."""
    return traced_bytes(env.reset, env)


def _step_floats(env: Any) -> int:
    """Floats one env step keeps: observation, context, action (one index, or the action's
    dimensions) and eight scalars (log-probability, value, reward, the two ends, ...)."""
    return env.obs_dim + env.space.dim + (1 if env.discrete else env.action_dim) + 8


def _actor_floats(config: Config, env: Any) -> int:
    """Parameters of one actor (a mean and a log-std per action dimension; a critic has
    about as many)."""
    sizes = (env.obs_dim + env.space.feature_dim, *config.hidden_sizes, 2 * env.action_dim)
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


def training(config: Config, env: Any) -> Estimate:
    """One training iteration of every run in one process, named after the field furthest
    above its default. Per run, each of the `num_envs x num_steps` env steps keeps its
    transition three times over (the buffer, its advantages and returns, a minibatch's copy)
    and, for a minibatch's share of the steps, the activations of six passes through the
    hidden layers (actor, critic and central, forward and backward); every network's
    parameters are kept four times (values, gradients, Adam's two moments) and each env's
    state three times (state, step, reset choice). Against XLA's `memory_analysis`: 0.84-1.44
    of it on classic and brax tasks (benchmarks/memory_estimates.py; tests/test_limits.py)."""
    hidden = tuple(config.hidden_sizes)
    per_step = 3 * _step_floats(env) + 6 * sum(hidden) / config.num_minibatches
    params = (2 * config.partitions + 1) * _actor_floats(config, env)  # teachers' critics too
    runs = config.seeds * math.prod(len(v) for _, v in config.sweep)
    envs = config.num_envs / jax.process_count()  # a process keeps its share of the envs
    total = runs * (F32 * (envs * config.num_steps * per_step + 4 * params)
                    + 3 * envs * state_bytes(env))
    factors = {"num_envs": config.num_envs / 64, "num_steps": config.num_steps / 128,
               "seeds": config.seeds, "hidden_sizes": max(hidden, default=1) / 64,
               "partitions": config.partitions / 4}
    if config.sweep:
        factors["sweep"] = runs / config.seeds
    name = max(factors, key=factors.get)  # the field furthest above its usual size
    value = config.sweep if name == "sweep" else getattr(config, name)
    return Estimate(name=f"config field `{name}`", value=value, bytes=int(total),
                    what=f"one iteration of {runs} run{'s' * (runs > 1)} x {config.num_envs} "
                         f"envs x {config.num_steps} steps (hidden {list(hidden)})")


def evaluation(config: Config, env: Any, episodes: int, *, name: str, value: Any,
               what: str) -> Estimate:
    """`episodes` episodes run at once (held-out contexts x runs, or an evaluation's contexts
    x its P + 1 policies): per episode, the env's state three times (state, step, reset
    choice), a step's floats, two passes through the hidden layers and a copy of its actor's
    parameters (`policy.teacher_policy` gathers each row's teacher)."""
    floats = _step_floats(env) + 2 * sum(config.hidden_sizes) + _actor_floats(config, env)
    per = 3 * state_bytes(env) + F32 * floats
    return Estimate(name=name, value=value, bytes=int(episodes * per), what=what)
