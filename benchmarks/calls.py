"""Per-call timing at the peer's small size (4 envs x 128 steps): where the full-training
gap to rejax comes from (benchmarks/results.md, "Findings").

    .venv/bin/python benchmarks/calls.py
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        .venv/bin/python benchmarks/calls.py --tag single-thread

distillax `ppo` trains from scratch for the peer budget (1024 iterations) in calls of
`--iters` iterations, each timed; then rejax's own `train()` (the whole budget in one call)
runs `--reps` times. Prints ms per iteration per call and writes
benchmarks/calls-<tag>.json. Needs rejax (`make bench` installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
import run as bench

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=64, help="iterations per distillax call")
    p.add_argument("--budget", type=int, default=2**19, help="env steps of a full training")
    p.add_argument("--reps", type=int, default=3, help="rejax full trainings")
    p.add_argument("--tag", default="default-threads")
    a = p.parse_args()
    envs, steps = 4, 128
    config = bench.distillax_config("ppo", 1, envs, steps, a.budget, task="cartpole-v1",
                                    anneal_lr=False, **bench.PEER_HP)
    _, runner, state = bench.distillax_runner(config, a.iters, 0)
    compiled, _ = runner.compile(state)
    n = compiled.count(a.iters)
    calls = []
    for _ in range(config.num_iterations // a.iters):
        t = time.perf_counter()
        state, metrics = bench._block(compiled.step(state, n))
        calls.append({"ms_per_iteration": 1e3 * (time.perf_counter() - t) / a.iters,
                      "episodes_per_env": float(np.asarray(metrics.episodes)[-1].sum()) / envs,
                      "teacher_return": float(np.asarray(metrics.teacher_return)[-1].mean())})
        print("distillax", json.dumps(calls[-1]), flush=True)
    algo = bench.rejax_ppo(envs, steps, a.budget, bench.PEER_HP)
    train = jax.jit(algo.train).lower(jax.random.PRNGKey(0)).compile()
    rejax = []
    for i in range(a.reps):
        t = time.perf_counter()
        bench._block(train(jax.random.PRNGKey(i)))
        rejax.append(1e3 * (time.perf_counter() - t) / config.num_iterations)
        print("rejax", json.dumps({"ms_per_iteration": rejax[-1]}), flush=True)
    out = {"tag": a.tag, "xla_flags": os.environ.get("XLA_FLAGS", ""), "envs": envs,
           "steps": steps, "iters_per_call": a.iters, "distillax_calls": calls,
           "distillax_total_s": sum(c["ms_per_iteration"] for c in calls) * a.iters / 1e3,
           "rejax_ms_per_iteration": rejax}
    with open(os.path.join(HERE, f"calls-{a.tag}.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"distillax {out['distillax_total_s']:.2f} s in {len(calls)} calls; rejax "
          f"{np.median(rejax) * config.num_iterations / 1e3:.2f} s (median of {a.reps})")


if __name__ == "__main__":
    main()
