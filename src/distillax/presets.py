"""Per-task settings that learn: a task's registration holds them (`envs.Task.preset`; a
shipped task's in its own module, `envs/<task>.py`), `preset(name)` is how the command line
(`--preset NAME`) and the experiments (`experiments/<task>.py`) read them.

    config = Config(**preset("double-pendulum-physics"))     # task included
    python -m distillax.train --preset pendulum --method dnc

Each entry says what was measured with it (command, budget, result, machine) or that it was
not run. The brax tasks all normalise observations (their raw scales span 1e-2 to 1e1) and
scale rewards down: distillax clips the value loss (`clip_eps` per iteration), so value
targets must stay O(1-10); brax's own PPO, which does not clip the value, scales them *up*
(reward_scaling 10 on these tasks). Minibatches split the time axis here, so
`num_steps = unroll x minibatches` reproduces a brax batch of that many unrolls: 256 envs x
40 steps, 8 minibatches, is brax's 256 envs, unroll 5, 8 minibatches of 256 (10,240 env steps
per iteration).
"""

from __future__ import annotations

from typing import Any


def preset(name: str) -> dict[str, Any]:
    """The config fields of preset `name`, its task included; an unknown name is a
    `ConfigError` listing the presets."""
    from distillax import envs
    from distillax.config import ConfigError

    if name not in envs.names():
        raise ConfigError(f"--preset {name!r} is invalid: one of {envs.names()}")
    return {"task": name, **envs.task(name).preset}
