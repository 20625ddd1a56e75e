"""How close `distillax.limits`' memory estimates come to what XLA allocates: for each config,
the estimate over XLA's `memory_analysis` (arguments + outputs + temporaries) of the compiled
program it stands for, one training iteration or one evaluation over the grid.

    .venv/bin/python benchmarks/memory_estimates.py [--brax]

Prints a table and writes benchmarks/memory_estimates.md. (tests/test_limits.py keeps one
training and one evaluation case within 2x; this is the wider check behind limits.py's
docstrings.)
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp

from distillax import limits, parallel
from distillax.config import Config
from distillax.evaluation import grid_program, run_policies
from distillax.model import build_model
from distillax.trainer import init_run_state, make_runner

TRAINING = [("cartpole", {}), ("pendulum", {}), ("pointgoal", {}), ("fourrooms", {}),
            ("cartpole", dict(num_envs=512)), ("cartpole", dict(seeds=4)),
            ("pendulum", dict(num_envs=512, num_steps=64)),
            ("cartpole", dict(partitions=16, num_envs=256)),
            ("cartpole", dict(hidden_sizes=(256, 256))), ("pendulum", dict(num_minibatches=1)),
            ("pendulum", dict(sweep=(("distill_coef", (0.1, 1.0, 2.0)),)))]
EVALUATION = [("cartpole", 512), ("pendulum", 4096), ("pointgoal", 1000)]
BRAX_TRAINING = [("ant-goal", dict(num_envs=128, num_steps=16)),
                 ("reacher-target", dict(num_envs=64, num_steps=32))]
BRAX_EVALUATION = [("ant-goal", 64)]


def _allocated(compiled) -> int:
    m = compiled.memory_analysis()
    return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes


def training(task: str, changes: dict) -> tuple[int, int]:
    config = Config(task=task, **changes)
    model = build_model(config)
    state = init_run_state(model)
    runner = make_runner(model, state, parallel.make_mesh(1), 1)
    compiled = runner.step.lower(runner.place(state), runner.count(1)).compile()
    return limits.training(config, model.env).bytes, _allocated(compiled)


def evaluation(task: str, contexts: int) -> tuple[int, int]:
    config = Config(task=task)
    model = build_model(config)
    policies = jax.tree.map(lambda x: x[0], run_policies(model, init_run_state(model)))
    grid = jnp.asarray(model.env.space.spread(contexts, jax.random.PRNGKey(0)))
    compiled = grid_program(model, True).lower(policies, grid, jax.random.PRNGKey(0)).compile()
    episodes = contexts * (config.partitions + 1)
    estimate = limits.evaluation(config, model.env, episodes, name="", value=0, what="")
    return estimate.bytes, _allocated(compiled)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--brax", action="store_true", help="also two brax tasks (the brax extra)")
    a = p.parse_args()
    cases = [("training", t, c, training) for t, c in TRAINING]
    cases += [("evaluation", t, n, evaluation) for t, n in EVALUATION]
    if a.brax:
        cases += [("training", t, c, training) for t, c in BRAX_TRAINING]
        cases += [("evaluation", t, n, evaluation) for t, n in BRAX_EVALUATION]
    lines = ["| program | task | changes | estimate MiB | XLA MiB | estimate / XLA |",
             "|---|---|---|---:|---:|---:|"]
    for kind, task, changes, fn in cases:
        estimate, allocated = fn(task, changes)
        size = changes if kind == "training" else f"{changes} contexts"
        lines.append(f"| {kind} | {task} | {size} | {estimate / 2**20:.1f} | "
                     f"{allocated / 2**20:.1f} | {estimate / allocated:.2f} |")
        print(lines[-1], flush=True)
    text = ("# limits.py's memory estimates against XLA's memory_analysis\n\nCommand: "
            f"`benchmarks/memory_estimates.py{' --brax' if a.brax else ''}`\n\n"
            + "\n".join(lines) + "\n")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "memory_estimates.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
